"""Queue semantics driven by pika: priorities, dead-lettering, de-duplication.

Same conventions as test_pika.py (whose helpers this module reuses): the
broker address comes from WARREN_HOST / WARREN_PORT, every queue/exchange name
is uuid-suffixed and deleted afterwards, and every wait is bounded.

The priority and dead-lettering tests were validated against RabbitMQ 3.10, so
their assertions are what a real broker does.  The de-duplication tests follow
the rabbitmq-message-deduplication plugin / LavinMQ semantics and are skipped
unless the server announces itself as Warren (RabbitMQ has no such feature
without the plugin).
"""

from __future__ import annotations

import datetime
import time

import pika
import pytest

from test_pika import WAIT, Broker, broker, get_all, bodies  # noqa: F401  (fixture)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def get_one(ch, queue, timeout=WAIT):
    """basic_get (auto-ack) until one message arrives or `timeout` elapses."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def pika_props(**kwargs) -> pika.BasicProperties:
    return pika.BasicProperties(**kwargs)


def message_count(ch, queue) -> int:
    return ch.queue_declare(queue=queue, passive=True).method.message_count


def dlx_pair(broker: Broker, ch, **source_args):
    """Declare a DLQ and a source queue dead-lettering into it via the default exchange."""
    dlq = broker.queue(ch, "dlq")
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    args.update(source_args)
    src = broker.queue(ch, "src", arguments=args)
    return src, dlq


def check_death(props, src, reason):
    """Check the x-death / x-first-death-* headers of a message dead-lettered once.

    Returns the single x-death entry for further checks.
    """
    headers = props.headers or {}
    deaths = headers.get("x-death")
    assert isinstance(deaths, list) and len(deaths) == 1, f"x-death: {deaths!r}"
    death = deaths[0]
    assert isinstance(death, dict), f"x-death[0]: {death!r}"
    assert death.get("count") == 1, death
    assert death.get("reason") == reason, death
    assert death.get("queue") == src, death
    assert death.get("exchange") == "", death
    assert death.get("routing-keys") == [src], death
    assert isinstance(death.get("time"), datetime.datetime), death
    assert headers.get("x-first-death-queue") == src, headers
    assert headers.get("x-first-death-reason") == reason, headers
    assert headers.get("x-first-death-exchange") == "", headers
    return death


# --------------------------------------------------------------------------
# Priority queues
# --------------------------------------------------------------------------


def test_priority_queue_orders_by_priority_fifo_within(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    q = broker.queue(ch, "prio", arguments={"x-max-priority": 10})
    for i, prio in enumerate([1, 5, 9, 5, 0]):
        ch.basic_publish(
            exchange="",
            routing_key=q,
            body=f"p{prio}-{i}",
            properties=pika_props(priority=prio),
        )
    assert message_count(ch, q) == 5
    got = get_all(ch, q, 5)
    assert bodies(got) == ["p9-2", "p5-1", "p5-3", "p1-0", "p0-4"]
    assert [p.priority for _, p, _ in got] == [9, 5, 5, 1, 0]


def test_priority_above_max_treated_as_max(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    q = broker.queue(ch, "prio", arguments={"x-max-priority": 10})
    # If 200 ranked above 10 "over" would come first; as the max it is FIFO
    # with the other priority-10 messages.
    for body, prio in [("low", 9), ("max1", 10), ("over", 200), ("max2", 10)]:
        ch.basic_publish(
            exchange="", routing_key=q, body=body, properties=pika_props(priority=prio)
        )
    assert message_count(ch, q) == 4
    got = get_all(ch, q, 4)
    assert bodies(got) == ["max1", "over", "max2", "low"]


# --------------------------------------------------------------------------
# Dead-lettering
# --------------------------------------------------------------------------


def test_dead_letter_on_reject(broker):
    conn = broker.connect()
    ch = conn.channel()
    src, dlq = dlx_pair(broker, ch)
    ch.basic_publish(exchange="", routing_key=src, body="rejected-body")
    deadline = time.monotonic() + WAIT
    method = None
    while method is None and time.monotonic() < deadline:
        method, _, body = ch.basic_get(src, auto_ack=False)
        if method is None:
            time.sleep(0.02)
    assert method is not None, "message never reached the source queue"
    assert body == b"rejected-body"
    ch.basic_reject(delivery_tag=method.delivery_tag, requeue=False)

    msg = get_one(ch, dlq)
    assert msg is not None, "rejected message was not dead-lettered"
    _, props, body = msg
    assert body == b"rejected-body"
    check_death(props, src, "rejected")
    assert message_count(ch, src) == 0
    assert message_count(ch, dlq) == 0


def test_dead_letter_on_queue_ttl(broker):
    conn = broker.connect()
    ch = conn.channel()
    src, dlq = dlx_pair(broker, ch, **{"x-message-ttl": 100})
    t0 = time.monotonic()
    ch.basic_publish(exchange="", routing_key=src, body="ttl-body")
    # 100 ms TTL: it must be in the DLQ well within ~0.6 s (bounded at 1 s).
    msg = get_one(ch, dlq, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert msg is not None, f"expired message not dead-lettered after {elapsed:.2f}s"
    _, props, body = msg
    assert body == b"ttl-body"
    check_death(props, src, "expired")
    assert message_count(ch, src) == 0


def test_dead_letter_on_per_message_expiration(broker):
    conn = broker.connect()
    ch = conn.channel()
    src, dlq = dlx_pair(broker, ch)
    t0 = time.monotonic()
    ch.basic_publish(
        exchange="",
        routing_key=src,
        body="exp-body",
        properties=pika_props(expiration="150"),
    )
    msg = get_one(ch, dlq, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert msg is not None, f"expired message not dead-lettered after {elapsed:.2f}s"
    _, props, body = msg
    assert body == b"exp-body"
    death = check_death(props, src, "expired")
    assert death.get("original-expiration") == "150", death
    assert props.expiration is None, f"expiration kept: {props.expiration!r}"
    assert message_count(ch, src) == 0


def test_dead_letter_on_max_length(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    src, dlq = dlx_pair(broker, ch, **{"x-max-length": 2})
    for body in ("a", "b", "c"):
        ch.basic_publish(exchange="", routing_key=src, body=body)
    msg = get_one(ch, dlq)
    assert msg is not None, "dropped head was not dead-lettered"
    _, props, body = msg
    assert body == b"a"
    check_death(props, src, "maxlen")
    assert bodies(get_all(ch, src, 2)) == ["b", "c"]
    assert message_count(ch, dlq) == 0


# --------------------------------------------------------------------------
# De-duplication (Warren only)
# --------------------------------------------------------------------------


def _product(conn) -> str:
    product = conn._impl.server_properties.get("product", "")
    if isinstance(product, bytes):
        product = product.decode("utf-8", "replace")
    return product


@pytest.fixture
def warren(broker):
    """The `broker` fixture, skipping the test unless the server is Warren."""
    conn = broker.connect()
    if _product(conn) != "Warren":
        pytest.skip(f"de-duplication is Warren-only (server is {_product(conn)!r})")
    return broker


DEDUP = {"x-message-deduplication": True, "x-cache-size": 100}


def test_dedup_queue_by_message_id(warren):
    ch = warren.connect().channel()
    ch.confirm_delivery()
    q = warren.queue(ch, "dedup", arguments=dict(DEDUP))
    # Duplicates are dropped silently: every publish is still confirmed
    # (a nack would raise NackError here).
    for body, mid in [("a1", "a"), ("a2", "a"), ("b1", "b")]:
        ch.basic_publish(
            exchange="", routing_key=q, body=body, properties=pika_props(message_id=mid)
        )
    assert message_count(ch, q) == 2
    assert bodies(get_all(ch, q, 2)) == ["a1", "b1"]


def test_dedup_queue_by_dedup_header(warren):
    ch = warren.connect().channel()
    ch.confirm_delivery()
    q = warren.queue(ch, "dedup", arguments=dict(DEDUP))
    for body in ("k1-first", "k1-second"):
        ch.basic_publish(
            exchange="",
            routing_key=q,
            body=body,
            properties=pika_props(headers={"x-deduplication-header": "k1"}),
        )
    assert message_count(ch, q) == 1
    assert bodies(get_all(ch, q, 1)) == ["k1-first"]


def test_dedup_cache_ttl_expires(warren):
    ch = warren.connect().channel()
    ch.confirm_delivery()
    q = warren.queue(ch, "dedup", arguments={**DEDUP, "x-cache-ttl": 200})
    ch.basic_publish(
        exchange="", routing_key=q, body="x1", properties=pika_props(message_id="x")
    )
    time.sleep(0.5)
    ch.basic_publish(
        exchange="", routing_key=q, body="x2", properties=pika_props(message_id="x")
    )
    assert message_count(ch, q) == 2
    assert bodies(get_all(ch, q, 2)) == ["x1", "x2"]


def test_dedup_exchange(warren):
    ch = warren.connect().channel()
    ch.confirm_delivery()
    x = warren.exchange(ch, "fanout", "dedupx", arguments=dict(DEDUP))
    q = warren.queue(ch, "dedupq")
    ch.queue_bind(queue=q, exchange=x)
    for body in ("e1", "e2"):
        ch.basic_publish(
            exchange=x, routing_key="", body=body, properties=pika_props(message_id="e")
        )
    assert message_count(ch, q) == 1
    assert bodies(get_all(ch, q, 1)) == ["e1"]
