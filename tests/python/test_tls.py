"""pika over AMQPS against Warren's TLS listener (issue 12).

scripts/test starts the broker with a test PKI made by `gen-test-certs` (a CA, a server certificate for 127.0.0.1
and localhost, and a client certificate with CN guest) and an AMQPS listener with verify_peer on, and passes:
WARREN_AMQPS_PORT, WARREN_TLS_CA (the CA file), WARREN_TLS_CLIENT_CERT and WARREN_TLS_CLIENT_KEY. Without them the
tests are skipped, unless WARREN_TLS_REQUIRED=1 (as scripts/test sets), which makes a missing set-up a failure.
"""

from __future__ import annotations

import os
import ssl
import uuid

import pika
import pika.exceptions
import pytest

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
AMQPS_PORT = os.environ.get("WARREN_AMQPS_PORT")
CA = os.environ.get("WARREN_TLS_CA")
CLIENT_CERT = os.environ.get("WARREN_TLS_CLIENT_CERT")
CLIENT_KEY = os.environ.get("WARREN_TLS_CLIENT_KEY")

if not (AMQPS_PORT and CA and CLIENT_CERT and CLIENT_KEY):
    if os.environ.get("WARREN_TLS_REQUIRED") == "1":
        raise RuntimeError("WARREN_TLS_REQUIRED=1 but WARREN_AMQPS_PORT / WARREN_TLS_* are not set")
    pytest.skip("no AMQPS listener given (WARREN_AMQPS_PORT, WARREN_TLS_*)", allow_module_level=True)


def params(context: ssl.SSLContext, credentials) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=HOST,
        port=int(AMQPS_PORT),
        virtual_host="/",
        credentials=credentials,
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
        connection_attempts=1,
        socket_timeout=5,
        stack_timeout=10,
    )


def trusting_test_ca() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=CA)
    return context


def round_trip(conn: pika.BlockingConnection) -> None:
    ch = conn.channel()
    q = f"tls-{uuid.uuid4().hex[:8]}"
    ch.queue_declare(q)
    ch.basic_publish("", q, b"over TLS")
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert method is not None and body == b"over TLS"
    ch.queue_delete(q)


def test_pika_over_amqps_with_plain_login():
    conn = pika.BlockingConnection(params(trusting_test_ca(), pika.PlainCredentials("guest", "guest")))
    try:
        round_trip(conn)
    finally:
        conn.close()


def test_pika_external_login_with_a_client_certificate():
    context = trusting_test_ca()
    context.load_cert_chain(CLIENT_CERT, CLIENT_KEY)
    conn = pika.BlockingConnection(params(context, pika.credentials.ExternalCredentials()))
    try:
        round_trip(conn)
    finally:
        conn.close()


def test_pika_refuses_a_broker_it_cannot_verify():
    # The system's roots only: the test CA is not among them, so the handshake fails on the client's side.
    context = ssl.create_default_context()
    # pika re-raises the last error of its connection workflow: here the ssl module's own.
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLCertVerificationError)):
        pika.BlockingConnection(params(context, pika.PlainCredentials("guest", "guest")))
