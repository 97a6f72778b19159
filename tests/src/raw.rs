//! A raw AMQP peer for tests that must send what no well-behaved client would: bad headers, oversized or garbage
//! frames, out-of-order content. Frames are built and parsed with `amq-protocol`. It speaks over any blocking
//! `Read + Write` stream: plain TCP by default, or a rustls client stream for the TLS tests (`from_stream`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::{channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};

pub struct RawClient<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

/// What the broker sent before it hung up, as far as a test cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Connection(u16, String),
    Channel(u16, u16, String),
    /// The socket closed without a close method.
    Eof,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        RawClient::from_stream(stream)
    }

    /// Runs the handshake as guest on vhost `/` with the given heartbeat, and opens channel 1.
    pub fn handshake(addr: SocketAddr, heartbeat: u16) -> Self {
        Self::handshake_with_caps(addr, heartbeat, &[])
    }

    /// `handshake`, also advertising the given client capabilities (such as `connection.blocked`).
    pub fn handshake_with_caps(addr: SocketAddr, heartbeat: u16, extra_caps: &[&str]) -> Self {
        let mut c = Self::connect(addr);
        c.open_as(heartbeat, extra_caps, "PLAIN", "\0guest\0guest")
            .unwrap_or_else(|closed| panic!("the handshake failed: {closed:?}"));
        c
    }
}

impl<S: Read + Write> RawClient<S> {
    /// A client over an already-connected stream (whose reads should time out, so a test cannot hang).
    pub fn from_stream(stream: S) -> Self {
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed; a failed write shows up as Eof on the next read.
        let _ = self.stream.write_all(bytes);
    }

    pub fn send(&mut self, frame: AMQPFrame) {
        let v: Vec<u8> = Vec::new();
        let ctx = gen_frame(&frame)(WriteContext::from(v)).expect("encode");
        self.send_raw(&ctx.write);
    }

    pub fn send_method(&mut self, channel: u16, m: AMQPClass) {
        self.send(AMQPFrame::Method(channel, m));
    }

    /// Reads raw bytes until at least `n` are buffered or the socket closes.
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let mut tmp = [0u8; 4096];
        while self.buf.len() < n {
            match self.stream.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// The next frame, or None when the socket closed.
    pub fn recv(&mut self) -> Option<AMQPFrame> {
        let mut tmp = [0u8; 65536];
        loop {
            if !self.buf.is_empty() {
                if let Ok((rest, frame)) = parse_frame(&self.buf[..]) {
                    let used = self.buf.len() - rest.len();
                    self.buf.drain(..used);
                    return Some(frame);
                }
            }
            match self.stream.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
            }
        }
    }

    /// The next method frame, skipping heartbeats.
    pub fn recv_method(&mut self) -> Option<(u16, AMQPClass)> {
        loop {
            match self.recv()? {
                AMQPFrame::Method(ch, m) => return Some((ch, m)),
                AMQPFrame::Heartbeat => continue,
                _ => continue,
            }
        }
    }

    /// Sends the protocol header and runs the handshake with `mechanism` and `response`, on vhost `/`, then opens
    /// channel 1. Returns the mechanisms the broker offered; Err with what the broker sent if it refused.
    pub fn open_as(
        &mut self,
        heartbeat: u16,
        extra_caps: &[&str],
        mechanism: &str,
        response: &str,
    ) -> Result<String, Closed> {
        self.send_raw(b"AMQP\x00\x00\x09\x01");
        let offered = match self.recv_method() {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::Start(s)))) => s.mechanisms.to_string(),
            None => return Err(Closed::Eof),
            other => panic!("expected connection.start, got {other:?}"),
        };
        let mut caps = FieldTable::default();
        caps.insert("authentication_failure_close".into(), AMQPValue::Boolean(true));
        caps.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
        for c in extra_caps {
            caps.insert((*c).into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: mechanism.into(),
                response: response.into(),
                locale: "en_US".into(),
            })),
        );
        let tune = match self.recv_method() {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::Tune(t)))) => t,
            Some((0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                return Err(Closed::Connection(c.reply_code, c.reply_text.to_string()))
            }
            None => return Err(Closed::Eof),
            other => panic!("expected connection.tune, got {other:?}"),
        };
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat,
            })),
        );
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: "/".into(),
            })),
        );
        match self.recv_method() {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))) => {}
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
        self.send_method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
        match self.recv_method() {
            Some((1, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
        Ok(offered)
    }

    /// Reads until the broker closes the channel or connection (answering a connection.close with close-ok).
    pub fn expect_close(&mut self) -> Closed {
        loop {
            match self.recv_method() {
                None => return Closed::Eof,
                Some((0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                    self.send_method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                    );
                    return Closed::Connection(c.reply_code, c.reply_text.to_string());
                }
                Some((ch, AMQPClass::Channel(channel::AMQPMethod::Close(c)))) => {
                    return Closed::Channel(ch, c.reply_code, c.reply_text.to_string());
                }
                Some(_) => continue,
            }
        }
    }

    /// Sends a basic.publish of `body` to the default exchange with `routing_key`, on channel 1.
    pub fn publish(&mut self, routing_key: &str, body: &[u8]) {
        use amq_protocol::frame::AMQPContentHeader;
        use amq_protocol::protocol::{basic, BasicProperties};
        self.send_method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                routing_key: routing_key.into(),
                ..Default::default()
            })),
        );
        self.send(AMQPFrame::Header(
            1,
            AMQPContentHeader {
                class_id: 60,
                body_size: body.len() as u64,
                properties: BasicProperties::default(),
            },
        ));
        self.send(AMQPFrame::Body(1, body.to_vec()));
    }
}
