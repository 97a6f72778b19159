"""STOMP 1.0, 1.1 and 1.2 against Warren with stomp.py, each test talking to an AMQP client (pika) through the same
queues and exchanges, as RabbitMQ's STOMP plugin maps destinations:

  /queue/q          the queue `q` (declared durable by the STOMP side), published through the default exchange
  /amq/queue/q      the existing queue `q` (never declared; SUBSCRIBE to a missing one is an error)
  /topic/k          routing key `k` on `amq.topic`; a subscription gets its own exclusive queue bound with `k`
  /exchange/x/k     routing key `k` on the existing exchange `x`

The tests were validated against RabbitMQ 3.10 with rabbitmq_stomp; where RabbitMQ does something surprising, the
test encodes it and says so in a comment. The STOMP port comes from WARREN_STOMP_PORT (skipped when unset), the AMQP
port from WARREN_PORT.
"""

from __future__ import annotations

import os
import queue
import socket
import time
import uuid

import pika
import pytest

stomp = pytest.importorskip("stomp")

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_PORT", "5672"))
STOMP_PORT = os.environ.get("WARREN_STOMP_PORT")
pytestmark = pytest.mark.skipif(not STOMP_PORT, reason="WARREN_STOMP_PORT is not set")
WAIT = 5.0
QUIET = 0.5  # how long "nothing arrives" is watched for

CONNECTIONS = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}


def name(prefix="q"):
    return f"py-stomp-{prefix}-{uuid.uuid4().hex[:8]}"


class Frames(stomp.ConnectionListener):
    """Every frame a connection receives, one queue.Queue per command."""

    def __init__(self):
        self.q = {k: queue.Queue() for k in ("CONNECTED", "MESSAGE", "RECEIPT", "ERROR", "DISCONNECTED", "HEARTBEAT")}

    def on_connected(self, frame):
        self.q["CONNECTED"].put(frame)

    def on_message(self, frame):
        self.q["MESSAGE"].put(frame)

    def on_receipt(self, frame):
        self.q["RECEIPT"].put(frame)

    def on_error(self, frame):
        self.q["ERROR"].put(frame)

    def on_disconnected(self):
        self.q["DISCONNECTED"].put(True)

    def on_heartbeat(self):
        self.q["HEARTBEAT"].put(True)

    def on_heartbeat_timeout(self):
        self.q["DISCONNECTED"].put("heartbeat timeout")


class Stomp:
    """A connected stomp.py client; frames land in per-command queues (see Frames)."""

    def __init__(self, version="1.2", heartbeats=(0, 0), auto_decode=True):
        kw = {} if version == "1.0" else {"vhost": "/", "heartbeats": heartbeats}
        self.c = CONNECTIONS[version]([(HOST, int(STOMP_PORT))], auto_decode=auto_decode, **kw)
        self.frames = Frames()
        self.c.set_listener("frames", self.frames)
        # stomp.py sends no host header for 1.0 (and host=localhost otherwise): always name vhost '/'.
        self.c.connect("guest", "guest", headers={"host": "/"})
        self.connected = self.next("CONNECTED")

    def next(self, command, timeout=WAIT):
        try:
            return self.frames.q[command].get(timeout=timeout)
        except queue.Empty:
            errors = list(self.frames.q["ERROR"].queue)
            raise AssertionError(f"no {command} frame (errors: {[e.headers for e in errors]})") from None

    def nothing(self, command="MESSAGE", timeout=QUIET):
        with pytest.raises(queue.Empty):
            self.frames.q[command].get(timeout=timeout)

    def messages(self, n):
        return [self.next("MESSAGE") for _ in range(n)]

    def sync(self):
        """A receipt round trip: every frame sent before it has been processed. (STOMP has no no-op frame; a BEGIN
        with a receipt, then ABORT, is the cheapest one that touches no destination.)"""
        rid = uuid.uuid4().hex
        self.c.send_frame("BEGIN", {"transaction": rid, "receipt": rid})
        self.c.send_frame("ABORT", {"transaction": rid})
        assert self.next("RECEIPT").headers["receipt-id"] == rid

    def disconnect(self, receipt):
        """DISCONNECT with a receipt, as stomp.py's disconnect() does but without its unbounded wait."""
        self.c.set_receipt(receipt, "DISCONNECT")
        self.c.send_frame("DISCONNECT", {"receipt": receipt})
        assert self.next("RECEIPT").headers["receipt-id"] == receipt
        self.next("DISCONNECTED")

    def close(self):
        if self.c.is_connected():
            self.disconnect(f"bye-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def amqp():
    """A pika channel; queues listed in amqp.to_delete are deleted afterwards (STOMP's /queue/s are durable)."""
    conn = pika.BlockingConnection(
        pika.ConnectionParameters(host=HOST, port=PORT, credentials=pika.PlainCredentials("guest", "guest"))
    )
    ch = conn.channel()
    ch.to_delete = []
    yield ch
    tidy = conn.channel()
    for q in ch.to_delete:
        tidy.queue_delete(q)
    conn.close()


def declare(ch, durable=True, **arguments):
    """A fresh queue; durable by default, so that a STOMP /queue/ SUBSCRIBE's own (durable) declare matches it."""
    q = name()
    ch.queue_declare(q, durable=durable, arguments=arguments or None)
    ch.to_delete.append(q)
    return q


def amqp_get(ch, q, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, props, body = ch.basic_get(q, auto_ack=True)
        if method:
            return method, props, body
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived on {q}")


def amqp_empty(ch, q):
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert method is None, f"unexpected {body!r} on {q}"


def recv_frame(sock):
    """One raw frame (up to its NUL) from a socket, b"" once the peer has closed."""
    buf = b""
    while b"\0" not in buf:
        try:
            chunk = sock.recv(4096)
        except OSError:
            return b""
        if not chunk:
            return b""
        buf += chunk
    return buf.split(b"\0", 1)[0].lstrip(b"\r\n")


# --- connecting ---------------------------------------------------------------------------------------------------


def test_connect_with_stomp_1_2_reports_version_and_server():
    s = Stomp("1.2")
    headers = s.connected.headers
    assert headers["version"] == "1.2"
    assert headers["server"]  # RabbitMQ: "RabbitMQ/3.10.8"
    assert headers["heart-beat"] == "0,0"
    assert headers.get("session")
    s.close()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_connect_with_older_versions(version, amqp):
    s = Stomp(version)
    assert s.connected.headers["version"] == version
    q = declare(amqp)
    s.c.send(f"/amq/queue/{q}", f"from {version}")
    assert amqp_get(amqp, q)[2] == f"from {version}".encode()
    if version == "1.0":
        s.c.subscribe(f"/amq/queue/{q}")  # 1.0 needs no subscription id
    else:
        s.c.subscribe(f"/amq/queue/{q}", id="s")
    amqp.basic_publish("", q, b"back")
    m = s.next("MESSAGE")
    assert m.body == "back" and m.headers["message-id"]
    assert "ack" not in m.headers  # the ack header is new in 1.2
    s.close()


def test_bad_login_gets_an_error_frame_and_the_session_is_dead(amqp):
    q = declare(amqp)
    sock = socket.create_connection((HOST, int(STOMP_PORT)), timeout=WAIT)
    sock.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:wrong\n\n\0")
    error = recv_frame(sock)
    assert error.startswith(b"ERROR\n") and b"\nmessage:" in error  # RabbitMQ: message:Bad CONNECT
    # RabbitMQ does not close at once: the socket stays open until its 10 s login timeout, and every further frame
    # gets ERROR "Illegal command" ("You must log in using CONNECT first"). Closing at once is fine too.
    try:
        sock.sendall(f"SEND\ndestination:/amq/queue/{q}\nreceipt:r1\n\nsneaky\0".encode())
        answer = recv_frame(sock)
    except OSError:
        answer = b""
    assert answer == b"" or answer.startswith(b"ERROR\n")
    sock.close()
    amqp_empty(amqp, q)


# --- destinations -------------------------------------------------------------------------------------------------


def test_send_to_a_queue_reaches_amqp_with_its_properties(amqp):
    q = name()
    amqp.to_delete.append(q)
    s = Stomp()
    s.c.send(
        f"/queue/{q}", "hello", content_type="text/plain",
        headers={"persistent": "true", "correlation-id": "c-1", "reply-to": "replies", "priority": "5",
                 "x-tenant": "t1", "colour": "blue"},
        receipt="sent",
    )
    s.next("RECEIPT")
    method, props, body = amqp_get(amqp, q)
    assert body == b"hello"
    assert (props.content_type, props.delivery_mode) == ("text/plain", 2)
    assert (props.correlation_id, props.reply_to, props.priority) == ("c-1", "replies", 5)
    # Other STOMP headers become AMQP headers. (RabbitMQ copies even `receipt` and `content-length` there.)
    assert props.headers["x-tenant"] == "t1" and props.headers["colour"] == "blue"
    assert method.exchange == "" and method.routing_key == q
    # The STOMP side declared the queue durable (a non-durable re-declare would fail with PRECONDITION_FAILED).
    amqp.queue_declare(q, durable=True)
    s.close()


@pytest.mark.parametrize("prefix", ["/amq/queue/", "/queue/"])
def test_amqp_publish_reaches_a_stomp_subscriber(prefix, amqp):
    q = declare(amqp)
    s = Stomp()
    s.c.subscribe(prefix + q, id="sub-1", ack="client-individual")
    amqp.basic_publish("", q, b"from amqp", pika.BasicProperties(
        content_type="text/plain", headers={"x-tenant": "t1", "n": 7}, correlation_id="c-9", priority=3,
    ))
    m = s.next("MESSAGE")
    h = m.headers
    assert m.body == "from amqp"
    assert (h["content-type"], h["x-tenant"], h["n"]) == ("text/plain", "t1", "7")
    assert (h["correlation-id"], h["priority"]) == ("c-9", "3")
    # RabbitMQ names the destination after the exchange and key the message was published with, so a default
    # exchange publish shows as /queue/<key> even on an /amq/queue/ subscription.
    assert h["destination"] == f"/queue/{q}"
    assert h["subscription"] == "sub-1"
    assert h["message-id"] and h["ack"]  # RabbitMQ: the same opaque "T_sub-1@@session-...@@1" in both
    assert h["redelivered"] == "false"
    s.c.ack(h["ack"])
    s.close()


def test_a_topic_wildcard_subscription_gets_an_amqp_publish_to_amq_topic(amqp):
    room = uuid.uuid4().hex[:6]
    s = Stomp()
    s.c.subscribe(f"/topic/sensors-{room}.*", id="t")
    s.sync()
    amqp.basic_publish("amq.topic", f"sensors-{room}.kitchen", b"21.5")
    amqp.basic_publish("amq.topic", f"sensors-{room}.kitchen.humidity", b"40")
    m = s.next("MESSAGE")
    assert (m.body, m.headers["destination"]) == ("21.5", f"/topic/sensors-{room}.kitchen")
    s.nothing()
    s.close()


def test_send_to_a_topic_reaches_an_amqp_queue_bound_to_amq_topic(amqp):
    q = declare(amqp, durable=False)
    key = f"alerts.{uuid.uuid4().hex[:6]}"
    amqp.queue_bind(q, "amq.topic", key)
    s = Stomp()
    s.c.send(f"/topic/{key}", "fire")
    method, _, body = amqp_get(amqp, q)
    assert (method.exchange, method.routing_key, body) == ("amq.topic", key, b"fire")
    s.close()


def test_exchange_destination_both_ways(amqp):
    ex = name("ex")
    amqp.exchange_declare(ex, "direct", auto_delete=True)
    q = declare(amqp, durable=False)
    amqp.queue_bind(q, ex, "k1")
    s = Stomp()
    s.c.send(f"/exchange/{ex}/k1", "to amqp")
    method, _, body = amqp_get(amqp, q)
    assert (method.exchange, method.routing_key, body) == (ex, "k1", b"to amqp")
    s.c.subscribe(f"/exchange/{ex}/k2", id="x")
    s.sync()
    amqp.basic_publish(ex, "k2", b"to stomp")
    amqp.basic_publish(ex, "k3", b"not for stomp")
    m = s.next("MESSAGE")
    assert (m.body, m.headers["destination"]) == ("to stomp", f"/exchange/{ex}/k2")
    s.nothing()
    s.close()


# --- acknowledgement ----------------------------------------------------------------------------------------------


def publish(ch, q, *bodies):
    for b in bodies:
        ch.basic_publish("", q, b.encode() if isinstance(b, str) else b)


def test_client_individual_ack_redelivers_only_the_unacked(amqp):
    q = declare(amqp)
    publish(amqp, q, "m1", "m2", "m3")
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s", ack="client-individual")
    got = {m.body: m.headers["ack"] for m in s.messages(3)}
    s.c.ack(got["m2"], receipt="acked")
    s.next("RECEIPT")
    s.close()
    back = [amqp_get(amqp, q) for _ in range(2)]
    assert sorted(body for _, _, body in back) == [b"m1", b"m3"]
    assert all(method.redelivered for method, _, _ in back)
    amqp_empty(amqp, q)


def test_client_ack_is_cumulative(amqp):
    q = declare(amqp)
    publish(amqp, q, "m1", "m2", "m3", "m4")
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s", ack="client")
    msgs = s.messages(4)
    assert [m.body for m in msgs] == ["m1", "m2", "m3", "m4"]
    s.c.ack(msgs[2].headers["ack"], receipt="acked")  # acks m1..m3
    s.next("RECEIPT")
    s.close()
    method, _, body = amqp_get(amqp, q)
    assert (body, method.redelivered) == (b"m4", True)
    amqp_empty(amqp, q)


def test_nack_requeues_by_default(amqp):
    q = declare(amqp)
    publish(amqp, q, "again")
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s", ack="client-individual")
    first = s.next("MESSAGE")
    assert first.headers["redelivered"] == "false"
    s.c.nack(first.headers["ack"])
    second = s.next("MESSAGE")
    assert (second.body, second.headers["redelivered"]) == ("again", "true")
    s.c.ack(second.headers["ack"])
    s.close()


def test_nack_without_requeue_dead_letters(amqp):
    dlx = name("dlx")
    amqp.exchange_declare(dlx, "fanout", auto_delete=True)
    dlq = declare(amqp, durable=False)
    amqp.queue_bind(dlq, dlx)
    q = declare(amqp, durable=False, **{"x-dead-letter-exchange": dlx})
    publish(amqp, q, "poison")
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s", ack="client-individual")
    m = s.next("MESSAGE")
    s.c.nack(m.headers["ack"], requeue="false")
    _, props, body = amqp_get(amqp, dlq)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "rejected"
    s.nothing()
    s.close()
    amqp_empty(amqp, q)


def test_auto_ack_removes_messages_on_delivery(amqp):
    q = declare(amqp)
    publish(amqp, q, "a", "b")
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s", ack="auto")
    msgs = s.messages(2)
    assert [m.body for m in msgs] == ["a", "b"]
    assert "ack" not in msgs[0].headers  # nothing to acknowledge
    s.close()
    amqp_empty(amqp, q)


def test_prefetch_count_limits_unacked_deliveries(amqp):
    q = declare(amqp)
    publish(amqp, q, *[f"m{i}" for i in range(5)])
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s", ack="client-individual", headers={"prefetch-count": "2"})
    first = s.messages(2)
    s.nothing()
    s.c.ack(first[0].headers["ack"])
    assert s.next("MESSAGE").body == "m2"
    s.nothing()
    s.close()


# --- transactions -------------------------------------------------------------------------------------------------


def test_a_committed_transaction_publishes_its_sends_together(amqp):
    q = declare(amqp)
    s = Stomp()
    s.c.begin("tx1")
    s.c.send(f"/amq/queue/{q}", "one", transaction="tx1")
    s.c.send(f"/amq/queue/{q}", "two", transaction="tx1")
    s.sync()
    amqp_empty(amqp, q)
    s.c.commit("tx1", receipt="committed")
    assert s.next("RECEIPT").headers["receipt-id"] == "committed"
    assert [amqp_get(amqp, q)[2] for _ in range(2)] == [b"one", b"two"]
    s.close()


def test_an_aborted_transaction_discards_its_sends(amqp):
    q = declare(amqp)
    s = Stomp()
    s.c.begin("tx1")
    s.c.send(f"/amq/queue/{q}", "never", transaction="tx1")
    s.c.abort("tx1", receipt="aborted")
    s.next("RECEIPT")
    s.c.send(f"/amq/queue/{q}", "after")
    assert amqp_get(amqp, q)[2] == b"after"
    amqp_empty(amqp, q)
    s.close()


def test_an_ack_in_a_transaction_takes_effect_only_on_commit(amqp):
    q = declare(amqp)
    publish(amqp, q, "kept", "gone")
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s", ack="client-individual")
    acks = {m.body: m.headers["ack"] for m in s.messages(2)}
    s.c.begin("t-abort")
    s.c.ack(acks["kept"], transaction="t-abort")
    s.c.abort("t-abort")
    s.c.begin("t-commit")
    s.c.ack(acks["gone"], transaction="t-commit")
    s.c.commit("t-commit", receipt="committed")
    s.next("RECEIPT")
    s.close()
    method, _, body = amqp_get(amqp, q)
    assert (body, method.redelivered) == (b"kept", True)
    amqp_empty(amqp, q)


# --- receipts, heart-beats ----------------------------------------------------------------------------------------


def test_send_with_a_receipt_gets_a_receipt(amqp):
    q = declare(amqp)
    s = Stomp()
    s.c.send(f"/amq/queue/{q}", "x", receipt="r-42")
    assert s.next("RECEIPT").headers["receipt-id"] == "r-42"
    s.close()


def test_disconnect_with_a_receipt_gets_a_receipt():
    s = Stomp()
    s.disconnect("bye-7")
    assert not s.c.is_connected()


def test_heart_beats_keep_an_idle_connection_up(amqp):
    s = Stomp(heartbeats=(1000, 1000))
    server_send, server_expect = (int(x) for x in s.connected.headers["heart-beat"].split(","))
    assert server_send > 0 and server_expect > 0  # RabbitMQ answers 1000,1000
    # The point is three idle seconds: stomp.py beats every second; the broker must beat too and not drop us.
    s.nothing("DISCONNECTED", timeout=3.0)
    assert not s.frames.q["HEARTBEAT"].empty(), "the broker sent no heart-beat"
    q = declare(amqp)
    s.c.send(f"/amq/queue/{q}", "still here", receipt="alive")
    s.next("RECEIPT")
    s.close()


# --- errors, unsubscribe, binary bodies ---------------------------------------------------------------------------


def test_send_to_an_unknown_destination_form_gets_an_error():
    s = Stomp()
    s.c.send("/bogus/x", "x")
    error = s.next("ERROR")
    assert error.headers["message"]  # RabbitMQ: "Unknown destination"
    # RabbitMQ keeps the connection open after this ERROR; Warren closes it, as the specification says after any
    # ERROR (docs/protocols.md). Either way it ends cleanly.
    try:
        s.next("DISCONNECTED", timeout=QUIET)
    except AssertionError:
        s.close()


def test_subscribe_to_a_missing_amq_queue_gets_an_error_and_the_connection_closes():
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{name('missing')}", id="s")
    error = s.next("ERROR")
    assert error.headers["message"]  # RabbitMQ: "not_found", body "NOT_FOUND - no queue '...' in vhost '/'"
    s.next("DISCONNECTED")


def test_unsubscribe_stops_deliveries(amqp):
    q = declare(amqp)
    s = Stomp()
    s.c.subscribe(f"/amq/queue/{q}", id="s")
    publish(amqp, q, "first")
    assert s.next("MESSAGE").body == "first"
    s.c.unsubscribe("s", receipt="gone")
    s.next("RECEIPT")
    publish(amqp, q, "second")
    s.nothing()
    assert amqp_get(amqp, q)[2] == b"second"
    s.close()


def test_a_binary_body_with_nul_bytes_round_trips(amqp):
    blob = b"\x00head\x00\xff\xfe\n\ntail\x00"
    q = declare(amqp)
    s = Stomp(auto_decode=False)
    s.c.send(f"/amq/queue/{q}", blob, content_type="application/octet-stream")  # stomp.py adds content-length
    _, props, body = amqp_get(amqp, q)
    assert (body, props.content_type) == (blob, "application/octet-stream")
    s.c.subscribe(f"/amq/queue/{q}", id="s")
    amqp.basic_publish("", q, blob)
    m = s.next("MESSAGE")
    assert (m.body, m.headers["content-length"]) == (blob, str(len(blob)))
    s.close()
