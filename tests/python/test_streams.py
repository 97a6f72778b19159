"""Streams (x-queue-type: stream) driven by pika. Every assertion here except the named consumer's stored offset
(Warren's addition) holds against RabbitMQ 3.10.8 as well (WARREN_PORT pointed at a RabbitMQ node)."""

from __future__ import annotations

import datetime
import os

import pika
import pika.exceptions
import pytest

from test_pika import Broker, Collector, connect, pump, settle

IS_WARREN = os.environ.get("WARREN_PEER", "") == ""


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.close()


def stream(b, ch, **args):
    return b.queue(ch, kind="s", durable=True, arguments={"x-queue-type": "stream", **args})


def publish(ch, queue, bodies, filter_value=None):
    ch.confirm_delivery()
    headers = {"x-stream-filter-value": filter_value} if filter_value else None
    for body in bodies:
        ch.basic_publish("", queue, body.encode(), pika.BasicProperties(delivery_mode=2, headers=headers))


def read(conn, queue, expected, **consume_args):
    """Consumes from a fresh channel with a prefetch, acking, until `expected` messages came (then a short settle)."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5)
    got = Collector(ack=True)
    ch.basic_consume(queue, got, arguments=consume_args)
    pump([conn], lambda: len(got) >= expected)
    settle([conn])
    ch.close()
    return got.msgs


def test_consumers_at_first_an_offset_and_a_timestamp_and_acks_remove_nothing(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = stream(broker, ch)
    publish(ch, q, [f"m{i}" for i in range(6)])
    first = read(conn, q, 6, **{"x-stream-offset": "first"})
    assert [b.decode() for _, _, b in first] == [f"m{i}" for i in range(6)]
    assert [p.headers["x-stream-offset"] for _, p, _ in first] == list(range(6))
    assert not any(m.redelivered for m, _, _ in first)
    at_4 = read(conn, q, 2, **{"x-stream-offset": 4})
    assert [b.decode() for _, _, b in at_4] == ["m4", "m5"]
    an_hour_ago = datetime.datetime.now() - datetime.timedelta(hours=1)
    since = read(conn, q, 6, **{"x-stream-offset": an_hour_ago})
    assert len(since) == 6
    # Nothing was removed by the acks: a new reader from the start gets everything again. (Warren's declare-ok
    # counts the stream's messages at once; RabbitMQ's count lags behind.)
    assert len(read(conn, q, 6, **{"x-stream-offset": "first"})) == 6
    if IS_WARREN:
        assert ch.queue_declare(q, passive=True).method.message_count == 6


def test_next_gets_only_new_messages(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = stream(broker, ch)
    publish(ch, q, ["old"])
    reader = conn.channel()
    reader.basic_qos(prefetch_count=5)
    got = Collector(ack=True)
    reader.basic_consume(q, got, arguments={"x-stream-offset": "next"})
    settle([conn])
    publish(ch, q, ["new"])
    pump([conn], lambda: len(got) >= 1)
    settle([conn])
    assert [b for _, _, b in got.msgs] == [b"new"]


def test_refusals_match_rabbitmq(broker):
    conn = broker.connect()
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("warren-test.s.nd", durable=False, arguments={"x-queue-type": "stream"})
    assert e.value.reply_code == 406
    assert "invalid property 'non-durable'" in e.value.reply_text
    ch = conn.channel()
    q = stream(broker, ch)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume(q, lambda *a: None)
    assert e.value.reply_code == 406
    conn = broker.connect()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.channel().basic_get(q)
    assert e.value.reply_code == 540


def test_filtered_consumer_gets_only_its_values(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = stream(broker, ch)
    publish(ch, q, ["a1", "a2"], filter_value="a")
    publish(ch, q, ["b1"], filter_value="b")
    publish(ch, q, ["a3"], filter_value="a")
    got = read(conn, q, 3, **{"x-stream-offset": "first", "x-stream-filter": "a"})
    # RabbitMQ 3.10 has no filtering (3.13+ filters per chunk, and the client filters again): Warren's only.
    if IS_WARREN:
        assert [b.decode() for _, _, b in got] == ["a1", "a2", "a3"]


@pytest.mark.skipif(not IS_WARREN, reason="stored offsets over AMQP 0-9-1 are Warren's")
def test_a_named_consumer_resumes_after_reconnecting(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = stream(broker, ch)
    publish(ch, q, [f"m{i}" for i in range(5)])
    first = read(conn, q, 5, **{"x-stream-offset": "first", "x-stream-consumer-name": "py"})
    assert len(first) == 5
    conn.close()
    conn = broker.connect()
    ch = conn.channel()
    publish(ch, q, ["m5"])
    again = read(conn, q, 1, **{"x-stream-consumer-name": "py"})
    assert [b.decode() for _, _, b in again] == ["m5"]
