//! MQTT packets as the session sees them, for 3.1.1 and 5.0 alike: [`read`] frames and decodes one packet from the
//! socket's buffer with the `mqttbytes` crate (the protocol level comes from the CONNECT), [`write`] encodes one.
//! Pure: no I/O.
//!
//! Invariants: a packet larger than the limit given is refused before it is buffered whole (`mqttbytes` checks the
//! fixed header's remaining length first); anything `mqttbytes` cannot decode is a [`CodecError`] that closes the
//! connection with the protocol's error, never a panic. Properties that only MQTT 5 has are `None` / empty for 3.1.1.

use bytes::{Bytes, BytesMut};
use mqttbytes::{v4, v5, QoS};

/// The protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V311 => "MQTT 3.1.1",
            Version::V5 => "MQTT 5.0",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("malformed packet: {0:?}")]
    Malformed(mqttbytes::Error),
    #[error("packet of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    #[error("the first packet must be CONNECT")]
    NotConnect,
}

/// MQTT 5's message properties (all empty for 3.1.1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PubProps {
    pub payload_format: Option<u8>,
    pub message_expiry_s: Option<u32>,
    pub topic_alias: Option<u16>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub props: PubProps,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive_s: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub will: Option<Will>,
    pub session_expiry_s: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_max: Option<u16>,
    pub max_packet_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pkid: u16,
    pub payload: Bytes,
    pub props: PubProps,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
}

/// A packet from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum In {
    Connect(Box<Connect>),
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe { pkid: u16, filters: Vec<Filter> },
    Unsubscribe { pkid: u16, filters: Vec<String> },
    PingReq,
    Disconnect { reason: u8, session_expiry_s: Option<u32> },
}

/// A CONNACK's outcome, as both versions can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnCode {
    Accepted,
    BadCredentials,
    NotAuthorized,
    BadClientId,
    Unavailable,
}

/// A packet to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    ConnAck {
        session_present: bool,
        code: ConnCode,
        /// MQTT 5: the client id the server made up, the receive maximum and topic alias maximum it grants.
        assigned_client_id: Option<String>,
        receive_maximum: Option<u16>,
        topic_alias_max: Option<u16>,
        reason: Option<String>,
    },
    Publish(Publish),
    PubAck {
        pkid: u16,
        reason: u8,
    },
    PubRec(u16),
    PubComp(u16),
    /// One code per filter: the QoS granted, or 0x80 (and MQTT 5's reason codes) for a refusal.
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    UnsubAck {
        pkid: u16,
        count: usize,
    },
    PingResp,
    /// MQTT 5 only (3.1.1 has no server DISCONNECT: the connection is just closed).
    Disconnect {
        reason: u8,
        text: Option<String>,
    },
}

/// The protocol level in a CONNECT at the head of `buf`, once enough of it has arrived.
fn connect_level(buf: &[u8]) -> Result<Option<u8>, CodecError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first >> 4 != 1 {
        return Err(CodecError::NotConnect);
    }
    // The remaining length: 1 to 4 bytes.
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else { return Ok(None) };
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(CodecError::Malformed(mqttbytes::Error::MalformedRemainingLength));
        }
    }
    // Protocol name (length-prefixed), then the level.
    let (Some(&hi), Some(&lo)) = (buf.get(i), buf.get(i + 1)) else {
        return Ok(None);
    };
    let name_len = u16::from_be_bytes([hi, lo]) as usize;
    Ok(buf.get(i + 2 + name_len).copied())
}

fn qos(q: QoS) -> u8 {
    q as u8
}

fn to_qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Whether a whole packet (within `max_size`) is at the head of `buf`: only then may `mqttbytes` take it, since it
/// splits the packet off before it decodes the inside, so a packet whose inside is short must be an error, not a
/// wait for more bytes.
fn framed(buf: &BytesMut, max_size: usize) -> Result<bool, CodecError> {
    match mqttbytes::check(buf.iter(), max_size) {
        Ok(_) => Ok(true),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(false),
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => Err(CodecError::TooLarge(n)),
        Err(e) => Err(CodecError::Malformed(e)),
    }
}

/// Decodes the next packet in `buf` (taking its bytes), or `None` until a whole one has arrived. `version` is
/// `None` before the CONNECT, which must come first.
pub fn read(buf: &mut BytesMut, version: Option<Version>, max_size: usize) -> Result<Option<In>, CodecError> {
    let version = match version {
        Some(v) => v,
        None => match connect_level(buf)? {
            None => return Ok(None),
            Some(3 | 4) => Version::V311,
            Some(5) => Version::V5,
            Some(l) => return Err(CodecError::UnsupportedLevel(l)),
        },
    };
    if !framed(buf, max_size)? {
        return Ok(None);
    }
    match version {
        Version::V311 => match v4::read(buf, max_size) {
            Ok(p) => Ok(Some(from_v4(p)?)),
            Err(e) => Err(CodecError::Malformed(e)),
        },
        // MQTT 5 lets a DISCONNECT (and PUBACK and friends) leave out a reason code of 0, which `mqttbytes` wants.
        Version::V5 if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 => {
            let _ = buf.split_to(2);
            Ok(Some(In::Disconnect {
                reason: 0,
                session_expiry_s: None,
            }))
        }
        Version::V5 => match v5::read(buf, max_size) {
            Ok(p) => Ok(Some(from_v5(p)?)),
            Err(e) => Err(CodecError::Malformed(e)),
        },
    }
}

fn unexpected() -> CodecError {
    CodecError::Malformed(mqttbytes::Error::IncorrectPacketFormat)
}

fn from_v4(p: v4::Packet) -> Result<In, CodecError> {
    Ok(match p {
        v4::Packet::Connect(c) => In::Connect(Box::new(Connect {
            version: Version::V311,
            client_id: c.client_id,
            clean_start: c.clean_session,
            keep_alive_s: c.keep_alive,
            username: c.login.as_ref().map(|l| l.username.clone()),
            password: c.login.map(|l| l.password),
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: qos(w.qos),
                retain: w.retain,
                props: PubProps::default(),
            }),
            session_expiry_s: None,
            receive_maximum: None,
            topic_alias_max: None,
            max_packet_size: None,
        })),
        v4::Packet::Publish(p) => In::Publish(Publish {
            topic: p.topic,
            qos: qos(p.qos),
            retain: p.retain,
            dup: p.dup,
            pkid: p.pkid,
            payload: p.payload,
            props: PubProps::default(),
        }),
        v4::Packet::PubAck(a) => In::PubAck(a.pkid),
        v4::Packet::PubRec(a) => In::PubRec(a.pkid),
        v4::Packet::PubRel(a) => In::PubRel(a.pkid),
        v4::Packet::PubComp(a) => In::PubComp(a.pkid),
        v4::Packet::Subscribe(s) => In::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter {
                    filter: f.path,
                    qos: qos(f.qos),
                    no_local: false,
                })
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => In::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => In::PingReq,
        v4::Packet::Disconnect => In::Disconnect {
            reason: 0,
            session_expiry_s: None,
        },
        // What only a server sends.
        v4::Packet::ConnAck(_) | v4::Packet::SubAck(_) | v4::Packet::UnsubAck(_) | v4::Packet::PingResp => {
            return Err(unexpected())
        }
    })
}

fn props5(p: Option<v5::PublishProperties>) -> PubProps {
    match p {
        None => PubProps::default(),
        Some(p) => PubProps {
            payload_format: p.payload_format_indicator,
            message_expiry_s: p.message_expiry_interval,
            topic_alias: p.topic_alias,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            content_type: p.content_type,
        },
    }
}

fn from_v5(p: v5::Packet) -> Result<In, CodecError> {
    Ok(match p {
        v5::Packet::Connect(c) => {
            let props = c.properties.clone();
            In::Connect(Box::new(Connect {
                version: Version::V5,
                client_id: c.client_id,
                clean_start: c.clean_session,
                keep_alive_s: c.keep_alive,
                username: c.login.as_ref().map(|l| l.username.clone()),
                password: c.login.map(|l| l.password),
                will: c.last_will.map(|w| {
                    let p = w.properties.unwrap_or_else(|| v5::WillProperties {
                        delay_interval: None,
                        payload_format_indicator: None,
                        message_expiry_interval: None,
                        content_type: None,
                        response_topic: None,
                        correlation_data: None,
                        user_properties: Vec::new(),
                    });
                    Will {
                        topic: w.topic,
                        payload: w.message,
                        qos: qos(w.qos),
                        retain: w.retain,
                        props: PubProps {
                            payload_format: p.payload_format_indicator,
                            message_expiry_s: p.message_expiry_interval,
                            topic_alias: None,
                            response_topic: p.response_topic,
                            correlation_data: p.correlation_data,
                            user_properties: p.user_properties,
                            content_type: p.content_type,
                        },
                    }
                }),
                session_expiry_s: props.as_ref().and_then(|p| p.session_expiry_interval),
                receive_maximum: props.as_ref().and_then(|p| p.receive_maximum),
                topic_alias_max: props.as_ref().and_then(|p| p.topic_alias_max),
                max_packet_size: props.as_ref().and_then(|p| p.max_packet_size),
            }))
        }
        v5::Packet::Publish(p) => In::Publish(Publish {
            topic: p.topic,
            qos: qos(p.qos),
            retain: p.retain,
            dup: p.dup,
            pkid: p.pkid,
            payload: p.payload,
            props: props5(p.properties),
        }),
        v5::Packet::PubAck(a) => In::PubAck(a.pkid),
        v5::Packet::PubRec(a) => In::PubRec(a.pkid),
        v5::Packet::PubRel(a) => In::PubRel(a.pkid),
        v5::Packet::PubComp(a) => In::PubComp(a.pkid),
        v5::Packet::Subscribe(s) => In::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter {
                    filter: f.path,
                    qos: qos(f.qos),
                    no_local: f.nolocal,
                })
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => In::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq => In::PingReq,
        v5::Packet::Disconnect(d) => In::Disconnect {
            reason: d.reason_code as u8,
            session_expiry_s: d.properties.and_then(|p| p.session_expiry_interval),
        },
        v5::Packet::ConnAck(_) | v5::Packet::SubAck(_) | v5::Packet::UnsubAck(_) | v5::Packet::PingResp => {
            return Err(unexpected())
        }
    })
}

/// Encodes `out` for a connection at `version`. A packet `mqttbytes` cannot encode (a topic too long) is dropped
/// and reported.
pub fn write(out: &Out, version: Version, buf: &mut BytesMut) -> Result<(), CodecError> {
    let r = match version {
        Version::V311 => write_v4(out, buf),
        Version::V5 => write_v5(out, buf),
    };
    r.map(|_| ()).map_err(CodecError::Malformed)
}

fn write_v4(out: &Out, buf: &mut BytesMut) -> Result<usize, mqttbytes::Error> {
    match out {
        Out::ConnAck {
            session_present, code, ..
        } => {
            let code = match code {
                ConnCode::Accepted => v4::ConnectReturnCode::Success,
                ConnCode::BadCredentials => v4::ConnectReturnCode::BadUserNamePassword,
                ConnCode::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
                ConnCode::BadClientId => v4::ConnectReturnCode::BadClientId,
                ConnCode::Unavailable => v4::ConnectReturnCode::ServiceUnavailable,
            };
            v4::ConnAck::new(code, *session_present).write(buf)
        }
        Out::Publish(p) => {
            let mut m = v4::Publish::from_bytes(p.topic.clone(), to_qos(p.qos), p.payload.clone());
            m.pkid = p.pkid;
            m.retain = p.retain;
            m.dup = p.dup;
            m.write(buf)
        }
        Out::PubAck { pkid, .. } => v4::PubAck::new(*pkid).write(buf),
        Out::PubRec(pkid) => v4::PubRec::new(*pkid).write(buf),
        Out::PubComp(pkid) => v4::PubComp::new(*pkid).write(buf),
        Out::SubAck { pkid, codes } => {
            let codes = codes
                .iter()
                .map(|c| match c {
                    0..=2 => v4::SubscribeReasonCode::Success(to_qos(*c)),
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect();
            v4::SubAck::new(*pkid, codes).write(buf)
        }
        Out::UnsubAck { pkid, .. } => v4::UnsubAck::new(*pkid).write(buf),
        Out::PingResp => v4::PingResp.write(buf),
        Out::Disconnect { .. } => Ok(0),
    }
}

fn write_v5(out: &Out, buf: &mut BytesMut) -> Result<usize, mqttbytes::Error> {
    match out {
        Out::ConnAck {
            session_present,
            code,
            assigned_client_id,
            receive_maximum,
            topic_alias_max,
            reason,
        } => {
            let code = match code {
                ConnCode::Accepted => v5::ConnectReturnCode::Success,
                ConnCode::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
                ConnCode::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
                ConnCode::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
                ConnCode::Unavailable => v5::ConnectReturnCode::ServerUnavailable,
            };
            let mut ack = v5::ConnAck::new(code, *session_present);
            let mut props = v5::ConnAckProperties::new();
            props.assigned_client_identifier = assigned_client_id.clone();
            props.receive_max = *receive_maximum;
            props.topic_alias_max = *topic_alias_max;
            props.reason_string = reason.clone();
            props.shared_subscription_available = Some(1);
            props.subscription_identifiers_available = Some(0);
            props.max_qos = Some(1);
            ack.properties = Some(props);
            ack.write(buf)
        }
        Out::Publish(p) => {
            let mut m = v5::Publish::from_bytes(p.topic.clone(), to_qos(p.qos), p.payload.clone());
            m.pkid = p.pkid;
            m.retain = p.retain;
            m.dup = p.dup;
            let pp = &p.props;
            if pp != &PubProps::default() {
                m.properties = Some(v5::PublishProperties {
                    payload_format_indicator: pp.payload_format,
                    message_expiry_interval: pp.message_expiry_s,
                    topic_alias: pp.topic_alias,
                    response_topic: pp.response_topic.clone(),
                    correlation_data: pp.correlation_data.clone(),
                    user_properties: pp.user_properties.clone(),
                    subscription_identifiers: Vec::new(),
                    content_type: pp.content_type.clone(),
                });
            }
            m.write(buf)
        }
        Out::PubAck { pkid, reason } => {
            let mut a = v5::PubAck::new(*pkid);
            a.reason = match reason {
                0 => v5::PubAckReason::Success,
                16 => v5::PubAckReason::NoMatchingSubscribers,
                135 => v5::PubAckReason::NotAuthorized,
                144 => v5::PubAckReason::TopicNameInvalid,
                151 => v5::PubAckReason::QuotaExceeded,
                _ => v5::PubAckReason::UnspecifiedError,
            };
            a.write(buf)
        }
        Out::PubRec(pkid) => v5::PubRec::new(*pkid).write(buf),
        Out::PubComp(pkid) => v5::PubComp::new(*pkid).write(buf),
        Out::SubAck { pkid, codes } => {
            let codes = codes
                .iter()
                .map(|c| match c {
                    0 => v5::SubscribeReasonCode::QoS0,
                    1 => v5::SubscribeReasonCode::QoS1,
                    2 => v5::SubscribeReasonCode::QoS2,
                    135 => v5::SubscribeReasonCode::NotAuthorized,
                    143 => v5::SubscribeReasonCode::TopicFilterInvalid,
                    _ => v5::SubscribeReasonCode::Unspecified,
                })
                .collect();
            v5::SubAck::new(*pkid, codes).write(buf)
        }
        Out::UnsubAck { pkid, count } => {
            let mut a = v5::UnsubAck::new(*pkid);
            a.reasons = vec![v5::UnsubAckReason::Success; *count];
            a.write(buf)
        }
        Out::PingResp => v5::PingResp.write(buf),
        Out::Disconnect { reason, text } => {
            let mut d = v5::Disconnect::new();
            d.reason_code = match reason {
                0x04 => v5::DisconnectReasonCode::DisconnectWithWillMessage,
                0x81 => v5::DisconnectReasonCode::MalformedPacket,
                0x82 => v5::DisconnectReasonCode::ProtocolError,
                0x87 => v5::DisconnectReasonCode::NotAuthorized,
                0x8B => v5::DisconnectReasonCode::ServerShuttingDown,
                0x8D => v5::DisconnectReasonCode::KeepAliveTimeout,
                0x8E => v5::DisconnectReasonCode::SessionTakenOver,
                0x90 => v5::DisconnectReasonCode::TopicNameInvalid,
                0x93 => v5::DisconnectReasonCode::ReceiveMaximumExceeded,
                0x94 => v5::DisconnectReasonCode::TopicAliasInvalid,
                0x95 => v5::DisconnectReasonCode::PacketTooLarge,
                0 => v5::DisconnectReasonCode::NormalDisconnection,
                _ => v5::DisconnectReasonCode::UnspecifiedError,
            };
            if let Some(t) = text {
                let mut p = v5::DisconnectProperties::new();
                p.reason_string = Some(t.clone());
                d.properties = Some(p);
            }
            d.write(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_v311() -> Vec<u8> {
        let mut p = vec![0x10, 14, 0, 4];
        p.extend_from_slice(b"MQTT");
        p.extend_from_slice(&[4, 2, 0, 60, 0, 2]);
        p.extend_from_slice(b"c1");
        p
    }

    #[test]
    fn packets_round_trip_and_partial_ones_wait() {
        let whole = connect_v311();
        let mut buf = BytesMut::from(&whole[..5]);
        assert_eq!(read(&mut buf, None, 1024), Ok(None));
        assert_eq!(buf.len(), 5, "waiting consumes nothing");
        buf.extend_from_slice(&whole[5..]);
        let Ok(Some(In::Connect(c))) = read(&mut buf, None, 1024) else {
            panic!("a CONNECT")
        };
        assert_eq!(
            (c.version, c.client_id.as_str(), c.clean_start),
            (Version::V311, "c1", true)
        );
        let publish = Publish {
            topic: "a/b".into(),
            qos: 1,
            retain: true,
            dup: false,
            pkid: 9,
            payload: Bytes::from_static(b"hi"),
            props: PubProps {
                content_type: Some("text/plain".into()),
                ..PubProps::default()
            },
        };
        for v in [Version::V311, Version::V5] {
            let mut out = BytesMut::new();
            write(&Out::Publish(publish.clone()), v, &mut out).expect("encode");
            let Ok(Some(In::Publish(back))) = read(&mut out, Some(v), 1024) else {
                panic!("a PUBLISH")
            };
            assert_eq!((back.topic.as_str(), back.pkid, back.retain), ("a/b", 9, true));
            let want = if v == Version::V5 {
                publish.props.clone()
            } else {
                PubProps::default()
            };
            assert_eq!(back.props, want);
        }
    }

    /// Found by the fuzz target: a packet whose declared length arrived but whose inside is short (a CONNECT whose
    /// flags promise a will and a login it does not carry) was taken off the buffer and answered "wait for more",
    /// losing its bytes and the framing. It is an error now.
    #[test]
    fn a_whole_packet_with_a_short_inside_is_malformed_not_incomplete() {
        let mut p = vec![0x10, 15, 0, 4];
        p.extend_from_slice(b"MQTT");
        p.extend_from_slice(&[5, 0x2f, 0, 60, 0, 0, 2]);
        p.extend_from_slice(b"c1");
        let mut buf = BytesMut::from(&p[..]);
        assert!(matches!(read(&mut buf, None, 1024), Err(CodecError::Malformed(_))));
        let mut big = BytesMut::from(&connect_v311()[..]);
        assert!(matches!(read(&mut big, None, 8), Err(CodecError::TooLarge(_))));
    }
}
