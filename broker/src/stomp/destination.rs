//! STOMP destinations as RabbitMQ's STOMP plugin names them, and where each leads in AMQP terms. Pure.
//!
//! | destination | SEND goes to | SUBSCRIBE reads |
//! |---|---|---|
//! | `/queue/<name>` | the default exchange, key `<name>` (the queue is declared durable if missing) | queue `<name>` (declared if missing) |
//! | `/amq/queue/<name>` | the default exchange, key `<name>` | queue `<name>`, which must exist |
//! | `/topic/<key>` | `amq.topic`, key `<key>` | a queue of the subscription's own, bound to `amq.topic` with `<key>` |
//! | `/exchange/<name>[/<key>]` | exchange `<name>`, key `<key>` | a queue of the subscription's own, bound to `<name>` with `<key>` |
//! | `/reply-queue/<name>` | the default exchange, key `<name>` | (not subscribable) |
//!
//! Names may be percent-encoded (`%2F` for a `/` in a queue name), as RabbitMQ allows. A MESSAGE frame's
//! `destination` is written back in the same forms from the message's exchange and routing key.

/// A parsed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `/queue/<name>`: a queue the STOMP gateway declares when it is missing.
    Queue(String),
    /// `/amq/queue/<name>`: a queue declared elsewhere.
    AmqQueue(String),
    /// `/topic/<key>`: `amq.topic`.
    Topic(String),
    /// `/exchange/<name>[/<key>]`.
    Exchange { name: String, key: String },
    /// `/reply-queue/<name>`: where a reply to a temporary queue goes (send only).
    ReplyQueue(String),
}

/// Why a destination was refused: the text of the ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("Unknown destination '{0}': use /queue/NAME, /amq/queue/NAME, /topic/KEY, /exchange/NAME/KEY or /reply-queue/NAME")]
    Unknown(String),
    #[error("Invalid destination '{0}': {1}")]
    Invalid(String, &'static str),
}

/// The longest queue, exchange or routing key name AMQP allows.
const MAX_NAME: usize = 255;

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn unescape(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `%`-escapes what would change a destination's meaning in a name: `%` and `/`.
fn escape(s: &str) -> String {
    if !s.contains(['%', '/']) {
        return s.to_string();
    }
    s.replace('%', "%25").replace('/', "%2F")
}

impl Destination {
    pub fn parse(s: &str) -> Result<Destination, DestinationError> {
        let name = |rest: &str, what: &'static str| -> Result<String, DestinationError> {
            let n = unescape(rest).ok_or_else(|| DestinationError::Invalid(s.to_string(), "a bad %-escape"))?;
            if n.is_empty() {
                return Err(DestinationError::Invalid(s.to_string(), what));
            }
            if n.len() > MAX_NAME {
                return Err(DestinationError::Invalid(s.to_string(), "a name longer than 255 bytes"));
            }
            Ok(n)
        };
        if let Some(rest) = s.strip_prefix("/queue/") {
            return Ok(Destination::Queue(name(rest, "no queue name")?));
        }
        if let Some(rest) = s.strip_prefix("/amq/queue/") {
            return Ok(Destination::AmqQueue(name(rest, "no queue name")?));
        }
        if let Some(rest) = s.strip_prefix("/topic/") {
            return Ok(Destination::Topic(name(rest, "no routing key")?));
        }
        if let Some(rest) = s.strip_prefix("/reply-queue/") {
            return Ok(Destination::ReplyQueue(name(rest, "no queue name")?));
        }
        if let Some(rest) = s.strip_prefix("/exchange/") {
            let (x, key) = rest.split_once('/').unwrap_or((rest, ""));
            let key = unescape(key).ok_or_else(|| DestinationError::Invalid(s.to_string(), "a bad %-escape"))?;
            if key.len() > MAX_NAME {
                return Err(DestinationError::Invalid(
                    s.to_string(),
                    "a routing key longer than 255 bytes",
                ));
            }
            return Ok(Destination::Exchange {
                name: name(x, "no exchange name")?,
                key,
            });
        }
        Err(DestinationError::Unknown(s.chars().take(200).collect()))
    }

    /// Where a SEND goes: (exchange, routing key).
    pub fn target(&self) -> (&str, &str) {
        match self {
            Destination::Queue(q) | Destination::AmqQueue(q) | Destination::ReplyQueue(q) => ("", q),
            Destination::Topic(k) => ("amq.topic", k),
            Destination::Exchange { name, key } => (name, key),
        }
    }

    /// The destination a message published to `exchange` with `key` is shown under in a MESSAGE frame.
    pub fn of_message(exchange: &str, key: &str) -> String {
        match exchange {
            "" => format!("/queue/{}", escape(key)),
            "amq.topic" => format!("/topic/{}", escape(key)),
            x => format!("/exchange/{}/{}", escape(x), escape(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_destination_forms_parse_and_lead_where_rabbitmq_sends_them() {
        let q = Destination::parse("/queue/orders").expect("valid");
        assert_eq!(
            (q.clone(), q.target()),
            (Destination::Queue("orders".into()), ("", "orders"))
        );
        assert_eq!(
            Destination::parse("/amq/queue/a%2Fb").expect("valid"),
            Destination::AmqQueue("a/b".into())
        );
        assert_eq!(
            Destination::parse("/topic/sensors.*").expect("valid").target(),
            ("amq.topic", "sensors.*")
        );
        assert_eq!(
            Destination::parse("/exchange/logs/app.error").expect("valid"),
            Destination::Exchange {
                name: "logs".into(),
                key: "app.error".into()
            }
        );
        assert_eq!(
            Destination::parse("/exchange/fan").expect("valid").target(),
            ("fan", "")
        );
        assert_eq!(
            Destination::parse("/reply-queue/amq.gen-1").expect("valid").target(),
            ("", "amq.gen-1")
        );
    }

    #[test]
    fn bad_destinations_are_named_in_the_error() {
        assert!(matches!(
            Destination::parse("/bogus/x"),
            Err(DestinationError::Unknown(_))
        ));
        assert!(matches!(
            Destination::parse("orders"),
            Err(DestinationError::Unknown(_))
        ));
        assert!(matches!(
            Destination::parse("/queue/"),
            Err(DestinationError::Invalid(..))
        ));
        assert!(matches!(
            Destination::parse("/queue/%zz"),
            Err(DestinationError::Invalid(..))
        ));
        assert!(matches!(
            Destination::parse("/queue/%F"),
            Err(DestinationError::Invalid(..))
        ));
        assert!(matches!(
            Destination::parse(&format!("/queue/{}", "x".repeat(256))),
            Err(DestinationError::Invalid(..))
        ));
        assert!(Destination::parse("/bogus/x")
            .expect_err("unknown")
            .to_string()
            .contains("'/bogus/x'"));
    }

    #[test]
    fn message_destinations_read_back_as_the_same_target() {
        for (x, k) in [
            ("", "orders"),
            ("amq.topic", "a.b"),
            ("logs", "app/error"),
            ("", "100%"),
        ] {
            let d = Destination::of_message(x, k);
            let parsed = Destination::parse(&d).expect("valid");
            assert_eq!(parsed.target(), (x, k), "{d}");
        }
    }
}
