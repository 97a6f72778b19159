"""MQTT 3.1.1 and 5.0 against Warren with paho-mqtt, each test talking to an AMQP client (pika) through the same
exchanges and queues, as RabbitMQ's MQTT plugin maps them: topic `a/b/c` is routing key `a.b.c` on `amq.topic`.

The MQTT port comes from WARREN_MQTT_PORT (skipped when unset), the AMQP port from WARREN_PORT.
"""

from __future__ import annotations

import os
import queue
import socket
import time
import uuid

import pika
import pytest

paho = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTv311, MQTTv5  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_PORT", "5672"))
MQTT_PORT = os.environ.get("WARREN_MQTT_PORT")
pytestmark = pytest.mark.skipif(not MQTT_PORT, reason="WARREN_MQTT_PORT is not set")
WAIT = 5.0


def amqp():
    params = pika.ConnectionParameters(host=HOST, port=PORT, credentials=pika.PlainCredentials("guest", "guest"))
    return pika.BlockingConnection(params)


class Mqtt:
    """A paho client whose messages land in a queue; connected and looping in its own thread."""

    def __init__(self, client_id=None, version=MQTTv311, clean=True, will=None, properties=None):
        self.client_id = client_id or f"c-{uuid.uuid4().hex[:8]}"
        kwargs = {"clean_session": clean} if version == MQTTv311 else {}
        self.c = Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=version, **kwargs)
        self.version = version
        self.messages: queue.Queue = queue.Queue()
        self.connected: queue.Queue = queue.Queue()
        self.disconnected: queue.Queue = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, flags, rc, props: self.connected.put((flags, rc))
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.disconnected.put(rc)
        if will:
            self.c.will_set(*will)
        if version == MQTTv5:
            self.c.connect(HOST, int(MQTT_PORT), keepalive=30, clean_start=clean, properties=properties)
        else:
            self.c.connect(HOST, int(MQTT_PORT), keepalive=30)
        self.c.loop_start()
        flags, rc = self.connected.get(timeout=WAIT)
        assert not rc.is_failure, rc
        self.session_present = flags.session_present

    def subscribe(self, topic, qos=1, **kw):
        done = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, props: done.put(codes)
        self.c.subscribe(topic, qos, **kw)
        return done.get(timeout=WAIT)

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published()

    def get(self, timeout=WAIT):
        return self.messages.get(timeout=timeout)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def amqp_queue(ch, binding_key):
    q = ch.queue_declare(f"py-mqtt-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", binding_key)
    return q


def amqp_get(ch, q, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, props, body = ch.basic_get(q, auto_ack=True)
        if method:
            return method, props, body
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived on {q}")


def test_amqp_publish_reaches_an_mqtt_subscriber_of_a_wildcard():
    m = Mqtt()
    assert m.subscribe("sensors/+/temp") == [1] or m.subscribe("sensors/+/temp")
    conn = amqp()
    ch = conn.channel()
    ch.basic_publish("amq.topic", "sensors.kitchen.temp", b"21.5", pika.BasicProperties(content_type="text/plain"))
    ch.basic_publish("amq.topic", "sensors.kitchen.humidity", b"40")
    got = m.get()
    assert (got.topic, got.payload) == ("sensors/kitchen/temp", b"21.5")
    with pytest.raises(queue.Empty):
        m.get(timeout=0.5)
    conn.close()
    m.close()


def test_mqtt_publish_reaches_an_amqp_queue_persistent_at_qos1():
    conn = amqp()
    ch = conn.channel()
    q = amqp_queue(ch, "devices.#")
    m = Mqtt()
    m.publish("devices/d1/status", b"online", qos=1)
    m.publish("devices/d1/ping", b"0", qos=0)
    method, props, body = amqp_get(ch, q)
    assert (method.routing_key, body, props.delivery_mode) == ("devices.d1.status", b"online", 2)
    method, props, body = amqp_get(ch, q)
    assert (method.routing_key, props.delivery_mode) == ("devices.d1.ping", 1)
    m.close()
    conn.close()


def test_a_retained_message_is_delivered_on_subscribe_and_cleared_by_an_empty_one():
    topic = f"home/{uuid.uuid4().hex[:6]}/temp"
    p = Mqtt()
    p.publish(topic, b"19.5", retain=True)
    s = Mqtt()
    s.subscribe(topic)
    got = s.get()
    assert (got.payload, got.retain) == (b"19.5", True)
    p.publish(topic, b"", retain=True)
    s2 = Mqtt()
    s2.subscribe(topic)
    with pytest.raises(queue.Empty):
        s2.get(timeout=0.7)
    for c in (p, s, s2):
        c.close()


def test_a_will_is_published_when_a_client_vanishes():
    conn = amqp()
    ch = conn.channel()
    client = f"dev-{uuid.uuid4().hex[:6]}"
    q = amqp_queue(ch, f"clients.{client}.status")
    m = Mqtt(client_id=client, will=(f"clients/{client}/status", b"offline", 1, False))
    # Vanish without DISCONNECT.
    m.c.loop_stop()
    m.c.socket().close()
    _, _, body = amqp_get(ch, q)
    assert body == b"offline"
    conn.close()


def test_a_clean_disconnect_publishes_no_will():
    conn = amqp()
    ch = conn.channel()
    client = f"dev-{uuid.uuid4().hex[:6]}"
    q = amqp_queue(ch, f"clients.{client}.status")
    m = Mqtt(client_id=client, will=(f"clients/{client}/status", b"offline", 1, False))
    m.close()
    time.sleep(0.5)
    method, _, _ = ch.basic_get(q, auto_ack=True)
    assert method is None
    conn.close()


def test_a_persistent_session_keeps_qos1_messages_while_away():
    client = f"keeper-{uuid.uuid4().hex[:6]}"
    m = Mqtt(client_id=client, clean=False)
    m.subscribe("orders/#")
    m.close()
    conn = amqp()
    conn.channel().basic_publish(
        "amq.topic", "orders.eu.1", b"while away", pika.BasicProperties(delivery_mode=2)
    )
    conn.close()
    back = Mqtt(client_id=client, clean=False)
    assert back.session_present
    got = back.get()
    assert (got.topic, got.payload, got.qos) == ("orders/eu/1", b"while away", 1)
    back.close()
    # Clean up the durable session.
    Mqtt(client_id=client, clean=True).close()


def test_a_second_connection_with_the_same_client_id_takes_the_session_over():
    client = f"twin-{uuid.uuid4().hex[:6]}"
    first = Mqtt(client_id=client)
    second = Mqtt(client_id=client)
    first.disconnected.get(timeout=WAIT)
    second.subscribe("twin/#")
    second.publish("twin/x", b"1")
    assert second.get().payload == b"1"
    first.c.loop_stop()
    second.close()


def test_mqtt5_shared_subscription_splits_messages_between_group_members():
    a = Mqtt(version=MQTTv5)
    b = Mqtt(version=MQTTv5)
    group = uuid.uuid4().hex[:6]
    a.subscribe(f"$share/{group}/jobs/#")
    b.subscribe(f"$share/{group}/jobs/#")
    p = Mqtt()
    for i in range(20):
        p.publish(f"jobs/{i}", str(i).encode())
    got = []
    deadline = time.monotonic() + WAIT
    while len(got) < 20 and time.monotonic() < deadline:
        for c in (a, b):
            try:
                got.append((c.client_id, c.get(timeout=0.05).payload))
            except queue.Empty:
                pass
    assert sorted(int(x) for _, x in got) == list(range(20)), "each message once"
    assert {c for c, _ in got} == {a.client_id, b.client_id}, "both members got some"
    for c in (a, b, p):
        c.close()


def test_mqtt5_request_reply_with_an_amqp_rpc_server():
    conn = amqp()
    ch = conn.channel()
    q = amqp_queue(ch, "rpc.square")
    m = Mqtt(version=MQTTv5)
    reply_topic = f"rpc/replies/{m.client_id}"
    m.subscribe(reply_topic)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_topic
    props.CorrelationData = b"req-42"
    props.UserProperty = [("tenant", "t1")]
    props.ContentType = "text/plain"
    m.publish("rpc/square", b"7", properties=props)
    method, rprops, body = amqp_get(ch, q)
    assert rprops.reply_to == f"rpc.replies.{m.client_id}"
    assert rprops.correlation_id == "req-42"
    assert rprops.headers.get("tenant") == "t1" and rprops.content_type == "text/plain"
    # The AMQP server answers through the topic exchange, with reply_to as the key (as with RabbitMQ's plugin).
    ch.basic_publish(
        "amq.topic", rprops.reply_to, str(int(body) ** 2).encode(),
        pika.BasicProperties(correlation_id=rprops.correlation_id),
    )
    reply = m.get()
    assert reply.payload == b"49"
    assert reply.properties.CorrelationData == b"req-42"
    m.close()
    conn.close()


def test_bad_credentials_are_refused_with_a_connack_code():
    c = Client(CallbackAPIVersion.VERSION2, client_id="intruder", protocol=MQTTv311)
    result = queue.Queue()
    c.on_connect = lambda c, u, flags, rc, props: result.put(rc)
    c.username_pw_set("guest", "wrong")
    c.connect(HOST, int(MQTT_PORT))
    c.loop_start()
    rc = result.get(timeout=WAIT)
    assert rc.is_failure and rc.value in (4, 134), rc
    c.loop_stop()


def test_a_malformed_packet_closes_the_connection():
    s = socket.create_connection((HOST, int(MQTT_PORT)), timeout=WAIT)
    # A CONNECT whose remaining length runs past 4 bytes.
    s.sendall(bytes([0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))
    assert s.recv(16) == b""
    s.close()
