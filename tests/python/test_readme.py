"""The README's snippets, run as written (with the test broker's addresses): the pika one, the MQTT one and the STOMP
one."""

import os
import re
import time
from pathlib import Path

import pika
import pytest

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = os.environ.get("WARREN_PORT", "5672")
MQTT_PORT = os.environ.get("WARREN_MQTT_PORT")
STOMP_PORT = os.environ.get("WARREN_STOMP_PORT")


def blocks():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert found, "README.md has python blocks"
    return found


def test_readme_pika_snippet(capsys):
    code = next(b for b in blocks() if "import pika" in b).replace("localhost:5672", f"{HOST}:{PORT}")
    exec(compile(code, "README.md", "exec"), {})
    assert "received b'hello, warren'" in capsys.readouterr().out


@pytest.mark.skipif(not MQTT_PORT, reason="WARREN_MQTT_PORT is not set")
def test_readme_mqtt_snippet():
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=int(PORT)))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", "sensors.#")
    code = next(b for b in blocks() if "paho" in b).replace('"localhost", 1883', f'"{HOST}", {MQTT_PORT}')
    exec(compile(code, "README.md", "exec"), {})
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert (method.routing_key, body) == ("sensors.kitchen.temp", b"21.5")
    conn.close()


@pytest.mark.skipif(not STOMP_PORT, reason="WARREN_STOMP_PORT is not set")
def test_readme_stomp_snippet():
    pytest.importorskip("stomp")
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=int(PORT)))
    ch = conn.channel()
    ch.queue_delete("orders")
    code = next(b for b in blocks() if "import stomp" in b).replace('("localhost", 61613)', f'("{HOST}", {STOMP_PORT})')
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    # stomp.py's disconnect() returns once DISCONNECT is written, not once the broker has answered it. Warren handles a
    # connection's frames in order and closes it after the DISCONNECT receipt, so once the socket is closed the SEND
    # before it has been stored.
    deadline = time.monotonic() + 10
    while scope["c"].is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    method, props, body = ch.basic_get("orders", auto_ack=True)
    assert (body, props.content_type, props.delivery_mode) == (b'{"id": 1}', "application/json", 2)
    ch.queue_delete("orders")
    conn.close()
