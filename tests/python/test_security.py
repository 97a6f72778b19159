"""Permissions as pika sees them (issue 12): RabbitMQ's 403 and 530 refusals, with the users that
tests/python/broker.toml gives the broker scripts/test starts. The queues the tests need are declared by guest,
which has every permission on "/".
"""

from __future__ import annotations

import os
import uuid

import pika
import pika.exceptions
import pytest
from pika.exceptions import ChannelClosedByBroker

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_PORT", "5672"))


def connect(user: str, password: str, vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host=HOST,
            port=PORT,
            virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1,
            socket_timeout=5,
            stack_timeout=10,
        )
    )


@pytest.fixture
def queue():
    name = f"pika-sec-{uuid.uuid4().hex[:8]}"
    conn = connect("guest", "guest")
    conn.channel().queue_declare(name)
    yield name
    conn.channel().queue_delete(name)
    conn.close()


def test_write_without_read_publishes_but_cannot_consume(queue):
    conn = connect("pika-writer", "writer-pw")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"hello")
    guest = connect("guest", "guest")
    assert guest.channel().queue_declare(queue, passive=True).method.message_count == 1
    guest.close()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_consume(queue, lambda *a: None)
    assert e.value.reply_code == 403
    assert e.value.reply_text == (
        f"ACCESS_REFUSED - read access to queue '{queue}' in vhost '/' refused for user 'pika-writer'"
    )
    conn.close()


def test_without_configure_a_user_cannot_declare():
    conn = connect("pika-writer", "writer-pw")
    ch = conn.channel()
    name = f"pika-writer.{uuid.uuid4().hex[:8]}"
    ch.queue_declare(name)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare("someone-elses")
    assert e.value.reply_code == 403
    assert "configure access to queue 'someone-elses'" in e.value.reply_text
    ch = conn.channel()
    ch.queue_delete(name)
    conn.close()


def test_no_permission_on_a_vhost_is_refused_at_open():
    # pika reports a refusal during its handshake as ProbableAccessDeniedError, carrying the broker's close.
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        connect("pika-writer", "writer-pw", "pika-other")
    assert "(530)" in str(e.value)
    assert "NOT_ALLOWED - access to vhost 'pika-other' refused for user 'pika-writer'" in str(e.value)


def test_a_monitoring_user_cannot_purge_or_delete(queue):
    conn = connect("pika-monitor", "monitor-pw")
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().queue_purge(queue)
    assert e.value.reply_code == 403
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().queue_delete(queue)
    assert e.value.reply_code == 403
    conn.close()


def test_a_wrong_password_is_refused():
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect("pika-writer", "not-the-password")
