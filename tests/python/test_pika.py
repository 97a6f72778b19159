"""AMQP 0-9-1 behaviour tests driven by pika's BlockingConnection.

The broker address comes from WARREN_HOST (default 127.0.0.1) and WARREN_PORT
(default 5672); the user is guest/guest on vhost "/".  The suite was validated
against RabbitMQ, so every assertion here is what a real broker does.

Every test uses uuid-suffixed queue/exchange names and deletes what it
declares, so tests do not interfere and the suite can be re-run against a
long-lived broker.  All waits are bounded (see `pump`) so nothing hangs.
"""

from __future__ import annotations

import os
import time
import uuid

import pika
import pika.exceptions
import pytest
from pika.exceptions import ChannelClosedByBroker, UnroutableError

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_PORT", "5672"))

#: Upper bound for any single wait for messages to arrive.
WAIT = 3.0
#: How long to keep listening to be sure that nothing *more* arrives.
SETTLE = 0.3


def connect() -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=HOST,
        port=PORT,
        virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
        socket_timeout=5,
        stack_timeout=10,
        blocked_connection_timeout=10,
    )
    return pika.BlockingConnection(params)


def pump(conns, until, timeout=WAIT, step=0.02) -> bool:
    """Process I/O on `conns` until `until()` is true or `timeout` elapses."""
    deadline = time.monotonic() + timeout
    while True:
        if until():
            return True
        if time.monotonic() >= deadline:
            return False
        for conn in conns:
            conn.process_data_events(time_limit=step)


def settle(conns, duration=SETTLE) -> None:
    """Keep processing I/O for `duration` seconds (to catch extra deliveries)."""
    pump(conns, lambda: False, timeout=duration)


def get_all(ch, queue, expected, timeout=WAIT):
    """basic_get (auto-ack) until `expected` messages were read, then check empty.

    Returns the list of (method, properties, body).
    """
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.02)
            continue
        got.append((method, props, body))
    method, _, body = ch.basic_get(queue, auto_ack=True)
    assert method is None, f"unexpected extra message in {queue}: {body!r}"
    return got


def bodies(msgs):
    return [body.decode() for _, _, body in msgs]


class Broker:
    """Tracks connections and entities created by one test, and cleans up."""

    def __init__(self):
        self.conns: list[pika.BlockingConnection] = []
        self.queues: set[str] = set()
        self.exchanges: set[str] = set()

    def connect(self) -> pika.BlockingConnection:
        conn = connect()
        self.conns.append(conn)
        return conn

    @staticmethod
    def name(kind: str) -> str:
        return f"warren-test.{kind}.{uuid.uuid4().hex[:12]}"

    def queue(self, ch, kind="q", **kwargs) -> str:
        name = self.name(kind)
        ch.queue_declare(queue=name, **kwargs)
        self.queues.add(name)
        return name

    def exchange(self, ch, exchange_type, kind="x", **kwargs) -> str:
        name = self.name(kind)
        ch.exchange_declare(exchange=name, exchange_type=exchange_type, **kwargs)
        self.exchanges.add(name)
        return name

    def close(self):
        for conn in self.conns:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass
        if not (self.queues or self.exchanges):
            return
        conn = connect()
        try:
            for name in self.queues:
                try:
                    conn.channel().queue_delete(queue=name)
                except pika.exceptions.ChannelClosed:
                    pass
            for name in self.exchanges:
                try:
                    conn.channel().exchange_delete(exchange=name)
                except pika.exceptions.ChannelClosed:
                    pass
        finally:
            conn.close()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.close()


class Collector:
    """A consumer callback that records deliveries; acks them if asked."""

    def __init__(self, ack=False):
        self.ack = ack
        self.msgs = []

    def __call__(self, ch, method, props, body):
        self.msgs.append((method, props, body))
        if self.ack:
            ch.basic_ack(delivery_tag=method.delivery_tag)

    def __len__(self):
        return len(self.msgs)


# --------------------------------------------------------------------------
# Work queues
# --------------------------------------------------------------------------


def test_work_queue_competing_consumers_each_message_once(broker):
    conn_a, conn_b, conn_p = broker.connect(), broker.connect(), broker.connect()
    ch_a, ch_b, ch_p = conn_a.channel(), conn_b.channel(), conn_p.channel()
    q = broker.queue(ch_p, "work")
    got_a, got_b = Collector(ack=True), Collector(ack=True)
    for ch, got in ((ch_a, got_a), (ch_b, got_b)):
        ch.basic_qos(prefetch_count=1)
        ch.basic_consume(queue=q, on_message_callback=got, auto_ack=False)

    n = 20
    for i in range(n):
        ch_p.basic_publish(exchange="", routing_key=q, body=f"task-{i}")

    conns = [conn_a, conn_b, conn_p]
    assert pump(conns, lambda: len(got_a) + len(got_b) >= n), (
        f"only {len(got_a) + len(got_b)} of {n} delivered"
    )
    settle(conns)
    all_bodies = bodies(got_a.msgs) + bodies(got_b.msgs)
    assert len(all_bodies) == n, "a message was delivered twice"
    assert sorted(all_bodies) == sorted(f"task-{i}" for i in range(n))
    assert len(got_a) > 0 and len(got_b) > 0, "work was not shared"
    for method, _, _ in got_a.msgs + got_b.msgs:
        assert method.redelivered is False
    # Each consumer sees its own share in publish order.
    for got in (got_a, got_b):
        idx = [int(b.split("-")[1]) for b in bodies(got.msgs)]
        assert idx == sorted(idx)
    # Everything was acked: the queue is empty.
    assert ch_p.queue_declare(queue=q, passive=True).method.message_count == 0


def test_work_queue_unacked_redelivered_when_consumer_channel_closes(broker):
    conn_a, conn_b = broker.connect(), broker.connect()
    ch_a, ch_b = conn_a.channel(), conn_b.channel()
    q = broker.queue(ch_b, "work")
    for i in range(4):
        ch_b.basic_publish(exchange="", routing_key=q, body=f"job-{i}")

    # Consumer A takes everything and never acks.
    got_a = Collector(ack=False)
    ch_a.basic_consume(queue=q, on_message_callback=got_a, auto_ack=False)
    assert pump([conn_a], lambda: len(got_a) >= 4)
    assert [m.redelivered for m, _, _ in got_a.msgs] == [False] * 4

    # Consumer B joins: nothing is available while A holds the messages.
    got_b = Collector(ack=True)
    ch_b.basic_consume(queue=q, on_message_callback=got_b, auto_ack=False)
    settle([conn_a, conn_b])
    assert len(got_b) == 0
    ok = ch_b.queue_declare(queue=q, passive=True).method
    assert ok.message_count == 0  # unacked messages are not counted as ready
    assert ok.consumer_count == 2

    # A closes its channel without acking: the messages go to B, redelivered.
    ch_a.close()
    assert pump([conn_b], lambda: len(got_b) >= 4)
    settle([conn_b])
    assert sorted(bodies(got_b.msgs)) == [f"job-{i}" for i in range(4)]
    assert all(m.redelivered for m, _, _ in got_b.msgs)
    assert len(got_b) == 4


# --------------------------------------------------------------------------
# Exchange types
# --------------------------------------------------------------------------


def test_fanout_pubsub_to_three_queues(broker):
    pub = broker.connect()
    sub = broker.connect()
    ch_pub = pub.channel()
    x = broker.exchange(ch_pub, "fanout", kind="fanout")
    collectors = []
    for _ in range(3):
        ch = sub.channel()
        q = ch.queue_declare(queue="", exclusive=True).method.queue
        ch.queue_bind(queue=q, exchange=x, routing_key="ignored-by-fanout")
        got = Collector()
        ch.basic_consume(queue=q, on_message_callback=got, auto_ack=True)
        collectors.append(got)

    for i in range(5):
        ch_pub.basic_publish(exchange=x, routing_key=f"any.key.{i}", body=f"news-{i}")

    assert pump([sub], lambda: all(len(c) >= 5 for c in collectors))
    settle([sub])
    for got in collectors:
        assert bodies(got.msgs) == [f"news-{i}" for i in range(5)]
        assert all(m.exchange == x for m, _, _ in got.msgs)
        assert [m.routing_key for m, _, _ in got.msgs] == [
            f"any.key.{i}" for i in range(5)
        ]


def test_topic_routing_star_and_hash(broker):
    conn = broker.connect()
    ch = conn.channel()
    x = broker.exchange(ch, "topic", kind="topic")
    patterns = {
        "star": "stock.*.nyse",
        "hash_tail": "stock.#",
        "hash_head": "#.error",
        "star_mid": "app.*.error",
        "single_star": "*",
        "everything": "#",
        "exact": "stock.usd.nyse",
    }
    queues = {}
    for label, pattern in patterns.items():
        q = broker.queue(ch, f"topic-{label}")
        ch.queue_bind(queue=q, exchange=x, routing_key=pattern)
        queues[label] = q

    keys = [
        "stock.usd.nyse",
        "stock.eur",
        "stock",
        "stock.usd.nyse.extra",
        "app.db.error",
        "app.db.cache.error",
        "error",
        "misc.info",
    ]
    for key in keys:
        ch.basic_publish(exchange=x, routing_key=key, body=key)

    expected = {
        "star": ["stock.usd.nyse"],
        "hash_tail": ["stock.usd.nyse", "stock.eur", "stock", "stock.usd.nyse.extra"],
        "hash_head": ["app.db.error", "app.db.cache.error", "error"],
        "star_mid": ["app.db.error"],
        "single_star": ["stock", "error"],
        "everything": keys,
        "exact": ["stock.usd.nyse"],
    }
    for label, want in expected.items():
        got = bodies(get_all(ch, queues[label], len(want)))
        assert got == want, f"pattern {patterns[label]!r}"


def test_headers_exchange_x_match_all_and_any(broker):
    conn = broker.connect()
    ch = conn.channel()
    x = broker.exchange(ch, "headers", kind="headers")
    q_all = broker.queue(ch, "hdr-all")
    q_any = broker.queue(ch, "hdr-any")
    q_default = broker.queue(ch, "hdr-default")
    ch.queue_bind(
        queue=q_all, exchange=x, routing_key="",
        arguments={"x-match": "all", "format": "pdf", "type": "report"},
    )
    ch.queue_bind(
        queue=q_any, exchange=x, routing_key="",
        arguments={"x-match": "any", "format": "pdf", "type": "log"},
    )
    # No x-match: defaults to "all".
    ch.queue_bind(queue=q_default, exchange=x, routing_key="", arguments={"format": "pdf"})

    messages = [
        ("m1", {"format": "pdf", "type": "report"}),
        ("m2", {"format": "pdf", "type": "log"}),
        ("m3", {"format": "zip", "type": "log"}),
        ("m4", {"format": "zip", "type": "report"}),
        ("m5", None),
        ("m6", {"format": "pdf"}),
        ("m7", {"format": "pdf", "type": "report", "extra": 1}),
    ]
    for body, headers in messages:
        ch.basic_publish(
            exchange=x,
            routing_key="routing-key-is-ignored",
            body=body,
            properties=pika.BasicProperties(headers=headers),
        )

    assert bodies(get_all(ch, q_all, 2)) == ["m1", "m7"]
    assert bodies(get_all(ch, q_any, 5)) == ["m1", "m2", "m3", "m6", "m7"]
    assert bodies(get_all(ch, q_default, 4)) == ["m1", "m2", "m6", "m7"]


# --------------------------------------------------------------------------
# Request / reply
# --------------------------------------------------------------------------


def _start_rpc_server(broker, conn):
    """An uppercasing RPC server on its own connection; returns (queue, seen)."""
    ch = conn.channel()
    q = broker.queue(ch, "rpc")
    seen = []

    def on_request(ch, method, props, body):
        seen.append(props)
        ch.basic_publish(
            exchange="",
            routing_key=props.reply_to,
            body=body.upper(),
            properties=pika.BasicProperties(correlation_id=props.correlation_id),
        )
        ch.basic_ack(delivery_tag=method.delivery_tag)

    ch.basic_consume(queue=q, on_message_callback=on_request, auto_ack=False)
    return q, seen


def test_request_reply_with_reply_queue_and_correlation_id(broker):
    server, client = broker.connect(), broker.connect()
    rpc_q, seen = _start_rpc_server(broker, server)
    ch = client.channel()
    reply_q = ch.queue_declare(queue="", exclusive=True).method.queue
    got = Collector()
    ch.basic_consume(queue=reply_q, on_message_callback=got, auto_ack=True)

    requests = {str(uuid.uuid4()): f"hello-{i}" for i in range(3)}
    for corr, text in requests.items():
        ch.basic_publish(
            exchange="",
            routing_key=rpc_q,
            body=text,
            properties=pika.BasicProperties(reply_to=reply_q, correlation_id=corr),
        )
    assert pump([server, client], lambda: len(got) >= 3)
    settle([server, client])
    assert len(got) == 3
    replies = {props.correlation_id: body.decode() for _, props, body in got.msgs}
    assert replies == {corr: text.upper() for corr, text in requests.items()}
    assert all(p.reply_to == reply_q for p in seen)


def test_request_reply_with_direct_reply_to(broker):
    server, client = broker.connect(), broker.connect()
    rpc_q, seen = _start_rpc_server(broker, server)
    ch = client.channel()
    got = Collector()
    # Must consume from the pseudo-queue (auto-ack) before publishing.
    ch.basic_consume(
        queue="amq.rabbitmq.reply-to", on_message_callback=got, auto_ack=True
    )
    corr = str(uuid.uuid4())
    ch.basic_publish(
        exchange="",
        routing_key=rpc_q,
        body="ping",
        properties=pika.BasicProperties(
            reply_to="amq.rabbitmq.reply-to", correlation_id=corr
        ),
    )
    assert pump([server, client], lambda: len(got) >= 1)
    settle([server, client])
    assert len(got) == 1
    method, props, body = got.msgs[0]
    assert body == b"PING"
    assert props.correlation_id == corr
    # The server sees a per-channel generated address, not the bare name.
    assert len(seen) == 1
    assert seen[0].reply_to.startswith("amq.rabbitmq.reply-to.")
    assert seen[0].reply_to != "amq.rabbitmq.reply-to"


# --------------------------------------------------------------------------
# Mandatory, confirms, transactions
# --------------------------------------------------------------------------


def test_mandatory_unroutable_raises_with_confirms(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(UnroutableError) as excinfo:
        ch.basic_publish(
            exchange="",
            routing_key=broker.name("no-such-queue"),
            body="lost",
            mandatory=True,
        )
    returned = excinfo.value.messages
    assert len(returned) == 1
    assert returned[0].method.reply_code == 312
    assert returned[0].method.reply_text == "NO_ROUTE"
    assert returned[0].body == b"lost"
    # The channel is still usable and routable publishes are confirmed.
    q = broker.queue(ch, "mand")
    ch.basic_publish(exchange="", routing_key=q, body="kept", mandatory=True)
    assert bodies(get_all(ch, q, 1)) == ["kept"]


def test_mandatory_unroutable_on_return_callback(broker):
    conn = broker.connect()
    ch = conn.channel()
    x = broker.exchange(ch, "direct", kind="direct")
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, p, b)))
    ch.basic_publish(
        exchange=x,
        routing_key="unbound-key",
        body="bounce",
        properties=pika.BasicProperties(correlation_id="c-1"),
        mandatory=True,
    )
    # Not mandatory: silently dropped, no return.
    ch.basic_publish(exchange=x, routing_key="unbound-key", body="dropped")
    assert pump([conn], lambda: len(returned) >= 1)
    settle([conn])
    assert len(returned) == 1
    method, props, body = returned[0]
    assert method.reply_code == 312
    assert method.exchange == x
    assert method.routing_key == "unbound-key"
    assert props.correlation_id == "c-1"
    assert body == b"bounce"


def test_publisher_confirms(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "confirm")
    ch.confirm_delivery()
    for i in range(50):
        # BlockingChannel waits for the ack; a nack raises NackError.
        ch.basic_publish(exchange="", routing_key=q, body=f"c-{i}")
    # Unroutable but not mandatory: still acked (no exception).
    ch.basic_publish(exchange="", routing_key=broker.name("nowhere"), body="x")
    # Confirmed means enqueued: the count is exact right away.
    assert ch.queue_declare(queue=q, passive=True).method.message_count == 50
    assert bodies(get_all(ch, q, 50)) == [f"c-{i}" for i in range(50)]


def test_publish_to_missing_exchange_closes_channel_404(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as excinfo:
        ch.basic_publish(exchange=broker.name("no-such-exchange"), routing_key="k", body="x")
    assert excinfo.value.reply_code == 404
    assert conn.is_open
    conn.channel().close()


def test_tx_commit_and_rollback(broker):
    conn = broker.connect()
    ch = conn.channel()
    observer = conn.channel()
    q = broker.queue(ch, "tx")

    def ready():
        return observer.queue_declare(queue=q, passive=True).method.message_count

    ch.tx_select()
    for i in range(3):
        ch.basic_publish(exchange="", routing_key=q, body=f"committed-{i}")
    # Uncommitted publishes are not visible.
    assert ready() == 0
    ch.tx_commit()
    assert ready() == 3

    for i in range(2):
        ch.basic_publish(exchange="", routing_key=q, body=f"rolled-back-{i}")
    ch.tx_rollback()
    time.sleep(SETTLE)
    assert ready() == 3

    ch.basic_publish(exchange="", routing_key=q, body="committed-3")
    ch.tx_commit()
    assert ready() == 4

    # Acks are transactional too: a committed ack removes the message.
    method, _, body = ch.basic_get(q, auto_ack=False)
    assert body == b"committed-0"
    ch.basic_ack(delivery_tag=method.delivery_tag)
    ch.tx_commit()
    assert bodies(get_all(observer, q, 3)) == [
        "committed-1", "committed-2", "committed-3",
    ]


# --------------------------------------------------------------------------
# Acknowledgement variants and flow control
# --------------------------------------------------------------------------


def test_nack_and_reject_requeue_set_redelivered(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "nack")
    ch.basic_publish(exchange="", routing_key=q, body="again")

    method, _, body = ch.basic_get(q, auto_ack=False)
    assert body == b"again" and method.redelivered is False
    ch.basic_nack(delivery_tag=method.delivery_tag, requeue=True)

    method, _, body = ch.basic_get(q, auto_ack=False)
    assert body == b"again" and method.redelivered is True
    ch.basic_reject(delivery_tag=method.delivery_tag, requeue=True)

    method, _, body = ch.basic_get(q, auto_ack=False)
    assert body == b"again" and method.redelivered is True
    # requeue=False drops it (no dead-letter exchange configured).
    ch.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
    assert ch.basic_get(q, auto_ack=False) == (None, None, None)

    # nack(multiple=True) requeues everything up to the tag, in order.
    for i in range(3):
        ch.basic_publish(exchange="", routing_key=q, body=f"multi-{i}")
    tags = []
    for _ in range(3):
        method, _, _ = ch.basic_get(q, auto_ack=False)
        tags.append(method.delivery_tag)
    assert tags == sorted(tags)
    ch.basic_nack(delivery_tag=tags[-1], multiple=True, requeue=True)
    got = get_all(ch, q, 3)
    assert bodies(got) == ["multi-0", "multi-1", "multi-2"]
    assert all(m.redelivered for m, _, _ in got)


def test_consumer_nack_requeue_redelivers(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "nack-consumer")
    ch.basic_publish(exchange="", routing_key=q, body="retry-me")
    seen = []

    def on_message(ch, method, props, body):
        seen.append(method.redelivered)
        if len(seen) == 1:
            ch.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
        elif len(seen) == 2:
            ch.basic_reject(delivery_tag=method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(delivery_tag=method.delivery_tag)

    ch.basic_consume(queue=q, on_message_callback=on_message, auto_ack=False)
    assert pump([conn], lambda: len(seen) >= 3)
    settle([conn])
    assert seen == [False, True, True]
    assert ch.queue_declare(queue=q, passive=True).method.message_count == 0


def test_prefetch_limits_unacked_deliveries(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "prefetch")
    total, limit = 10, 3
    for i in range(total):
        ch.basic_publish(exchange="", routing_key=q, body=f"p-{i}")

    ch.basic_qos(prefetch_count=limit)
    got = Collector(ack=False)
    ch.basic_consume(queue=q, on_message_callback=got, auto_ack=False)
    acked = 0
    max_outstanding = 0

    def outstanding():
        nonlocal max_outstanding
        max_outstanding = max(max_outstanding, len(got) - acked)
        return len(got) - acked

    assert pump([conn], lambda: len(got) >= limit)
    settle([conn])
    assert len(got) == limit, "more deliveries than prefetch_count"

    # One ack frees exactly one slot.
    ch.basic_ack(delivery_tag=got.msgs[0][0].delivery_tag)
    acked = 1
    assert pump([conn], lambda: len(got) >= limit + 1)
    settle([conn])
    assert len(got) == limit + 1

    # Ack the rest (multiple=True) as they come, never exceeding the window.
    deadline = time.monotonic() + WAIT
    while len(got) < total and time.monotonic() < deadline:
        assert outstanding() <= limit
        if outstanding():
            ch.basic_ack(delivery_tag=got.msgs[-1][0].delivery_tag, multiple=True)
            acked = len(got)
        conn.process_data_events(time_limit=0.02)
    assert outstanding() <= limit
    assert max_outstanding <= limit
    assert bodies(got.msgs) == [f"p-{i}" for i in range(total)]


# --------------------------------------------------------------------------
# Queue declaration semantics
# --------------------------------------------------------------------------


def test_exclusive_queue_locked_to_its_connection(broker):
    owner, other = broker.connect(), broker.connect()
    q = broker.name("exclusive")
    owner.channel().queue_declare(queue=q, exclusive=True)

    for attempt in (
        lambda ch: ch.queue_declare(queue=q, exclusive=True),
        lambda ch: ch.queue_declare(queue=q, passive=True),
        lambda ch: ch.basic_consume(queue=q, on_message_callback=lambda *a: None),
    ):
        with pytest.raises(ChannelClosedByBroker) as excinfo:
            attempt(other.channel())
        assert excinfo.value.reply_code == 405  # RESOURCE_LOCKED
    assert other.is_open

    # The owner can use it; when the owner's connection closes it is deleted.
    ch = owner.channel()
    ch.basic_publish(exchange="", routing_key=q, body="mine")
    assert bodies(get_all(ch, q, 1)) == ["mine"]
    owner.close()
    with pytest.raises(ChannelClosedByBroker) as excinfo:
        other.channel().queue_declare(queue=q, passive=True)
    assert excinfo.value.reply_code == 404


def test_server_named_queue(broker):
    conn = broker.connect()
    ch = conn.channel()
    q1 = ch.queue_declare(queue="", exclusive=True).method.queue
    q2 = ch.queue_declare(queue="", exclusive=True).method.queue
    assert q1.startswith("amq.gen-") and q2.startswith("amq.gen-")
    assert q1 != q2
    ch.basic_publish(exchange="", routing_key=q1, body="to-generated")
    assert bodies(get_all(ch, q1, 1)) == ["to-generated"]


def test_passive_declare_missing_queue_404(broker):
    conn = broker.connect()
    with pytest.raises(ChannelClosedByBroker) as excinfo:
        conn.channel().queue_declare(queue=broker.name("missing"), passive=True)
    assert excinfo.value.reply_code == 404
    with pytest.raises(ChannelClosedByBroker) as excinfo:
        conn.channel().exchange_declare(exchange=broker.name("missing-x"), passive=True)
    assert excinfo.value.reply_code == 404
    # Only the channel was closed; the connection keeps working.
    assert conn.is_open
    ch = conn.channel()
    q = broker.queue(ch, "after-404")
    assert ch.queue_declare(queue=q, passive=True).method.queue == q


def test_inequivalent_redeclare_406(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "durable-mismatch", durable=False)
    with pytest.raises(ChannelClosedByBroker) as excinfo:
        conn.channel().queue_declare(queue=q, durable=True)
    assert excinfo.value.reply_code == 406  # PRECONDITION_FAILED
    x = broker.exchange(conn.channel(), "direct", kind="type-mismatch")
    with pytest.raises(ChannelClosedByBroker) as excinfo:
        conn.channel().exchange_declare(exchange=x, exchange_type="fanout")
    assert excinfo.value.reply_code == 406
    # An equivalent redeclare is fine and the queue is unchanged.
    assert conn.channel().queue_declare(queue=q, durable=False).method.queue == q


def test_declare_ok_counts(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "counts")
    for i in range(3):
        ch.basic_publish(exchange="", routing_key=q, body=f"n-{i}")
    assert pump([conn], lambda: ch.queue_declare(queue=q, passive=True).method.message_count == 3)
    ok = ch.queue_declare(queue=q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (3, 0)
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    consumer_ch.basic_consume(queue=q, on_message_callback=lambda *a: None)
    pump([conn], lambda: ch.queue_declare(queue=q, passive=True).method.message_count == 2)
    ok = ch.queue_declare(queue=q, passive=True).method
    # One message is out (unacked) with the consumer; two remain ready.
    assert (ok.message_count, ok.consumer_count) == (2, 1)


# --------------------------------------------------------------------------
# basic.get and message properties
# --------------------------------------------------------------------------


def test_basic_get_and_get_empty(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "get")
    assert ch.basic_get(q, auto_ack=False) == (None, None, None)

    ch.basic_publish(exchange="", routing_key=q, body="first")
    ch.basic_publish(exchange="", routing_key=q, body="second")
    assert pump([conn], lambda: ch.queue_declare(queue=q, passive=True).method.message_count == 2)

    method, _, body = ch.basic_get(q, auto_ack=False)
    assert body == b"first"
    assert method.message_count == 1  # messages left after this one
    assert method.redelivered is False
    assert method.exchange == "" and method.routing_key == q
    ch.basic_ack(delivery_tag=method.delivery_tag)

    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"second"
    assert method.message_count == 0
    assert ch.basic_get(q, auto_ack=True) == (None, None, None)


def test_message_properties_round_trip(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "props")
    sent = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"k1": "v1", "n": 42, "flag": True, "nested": {"a": "b"}, "list": [1, "x"]},
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="reply-here",
        expiration="60000",
        message_id="msg-1",
        timestamp=1_700_000_000,
        type="kind",
        user_id="guest",
        app_id="warren-tests",
    )
    body = bytes(range(256)) * 600  # > frame_max: split across body frames
    ch.basic_publish(exchange="", routing_key=q, body=body, properties=sent)
    [(_, got, got_body)] = get_all(ch, q, 1)
    assert got_body == body
    for field in (
        "content_type", "content_encoding", "headers", "delivery_mode",
        "priority", "correlation_id", "reply_to", "expiration", "message_id",
        "timestamp", "type", "user_id", "app_id",
    ):
        assert getattr(got, field) == getattr(sent, field), field


def test_empty_body_message(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = broker.queue(ch, "empty-body")
    ch.basic_publish(exchange="", routing_key=q, body=b"")
    [(_, _, body)] = get_all(ch, q, 1)
    assert body == b""
