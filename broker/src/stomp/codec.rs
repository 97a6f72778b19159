//! STOMP frames (1.0, 1.1 and 1.2), decoded from and encoded into a connection's buffer. Pure: no I/O. No crate was
//! used: the frame format is a few lines of text and a body, and the crates on crates.io either bring their own
//! networking or do not bound what they buffer.
//!
//! A frame is `COMMAND EOL (name:value EOL)* EOL body NUL`, where EOL is `\n` or `\r\n`; a bare EOL between frames
//! is a heart-beat. A body runs to the `content-length` header's count (and may then hold NULs) or else to the
//! first NUL. Header names and values are escaped (`\\r`, `\\n`, `\\c`, `\\\\`) in 1.2, except in CONNECT and
//! CONNECTED frames; an undefined escape is an error. When a header repeats, the first value counts.
//!
//! Invariants: [`decode`] consumes nothing until a whole frame (or heart-beat) is there; it never buffers more
//! than [`Limits`] allow before it says so (the command and headers within `max_header_bytes` and `max_headers`,
//! the body within `max_body`), so a client cannot make a connection hold unbounded memory; malformed input is a
//! [`StompError`], never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What a connection accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The command line and the header lines together.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 128,
            max_body: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StompError {
    #[error("frame headers larger than {0} bytes")]
    HeadersTooLarge(usize),
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("header line without ':': {0:?}")]
    BadHeader(String),
    #[error("bad escape in a header: {0:?}")]
    BadEscape(String),
    #[error("content-length is not a number: {0:?}")]
    BadContentLength(String),
    #[error("the body is not followed by NUL")]
    MissingNul,
    #[error("frame is not UTF-8")]
    NotUtf8,
    #[error("empty command")]
    EmptyCommand,
    #[error("a command is letters only: {0:?}")]
    BadCommand(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: &str) -> Self {
        Frame {
            command: command.to_string(),
            ..Frame::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// CONNECT and CONNECTED frames carry their headers unescaped (for 1.0 clients).
    fn escaped(&self) -> bool {
        !matches!(self.command.as_str(), "CONNECT" | "CONNECTED")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    HeartBeat,
}

/// The next line of `buf` from `at`: (its text without EOL, the index after its EOL), or `None` if incomplete.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let nl = buf.get(at..)?.iter().position(|&b| b == b'\n')? + at;
    let end = if nl > at && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    Some((&buf[at..end], nl + 1))
}

fn unescape(s: &str) -> Result<String, StompError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            _ => return Err(StompError::BadEscape(s.to_string())),
        }
    }
    Ok(out)
}

fn escape(s: &str, out: &mut BytesMut) {
    for c in s.chars() {
        match c {
            '\r' => out.put_slice(b"\\r"),
            '\n' => out.put_slice(b"\\n"),
            ':' => out.put_slice(b"\\c"),
            '\\' => out.put_slice(b"\\\\"),
            c => {
                let mut b = [0u8; 4];
                out.put_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// Decodes the next frame or heart-beat at the head of `buf`, taking its bytes; `None` (taking nothing) until a
/// whole one has arrived.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Decoded>, StompError> {
    // Heart-beats: a bare EOL.
    match buf.first() {
        None => return Ok(None),
        Some(b'\n') => {
            buf.advance(1);
            return Ok(Some(Decoded::HeartBeat));
        }
        Some(b'\r') => {
            return match buf.get(1) {
                None => Ok(None),
                Some(b'\n') => {
                    buf.advance(2);
                    Ok(Some(Decoded::HeartBeat))
                }
                Some(_) => Err(StompError::EmptyCommand),
            }
        }
        Some(_) => {}
    }
    let too_large = |at: usize| at > limits.max_header_bytes;
    let Some((command, mut at)) = line(buf, 0) else {
        return if too_large(buf.len()) {
            Err(StompError::HeadersTooLarge(limits.max_header_bytes))
        } else {
            Ok(None)
        };
    };
    let command = std::str::from_utf8(command)
        .map_err(|_| StompError::NotUtf8)?
        .to_string();
    if command.is_empty() {
        return Err(StompError::EmptyCommand);
    }
    if !command.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(StompError::BadCommand(command.chars().take(40).collect()));
    }
    let escaped = !matches!(command.as_str(), "CONNECT" | "CONNECTED");
    let mut headers = Vec::new();
    loop {
        if too_large(at) {
            return Err(StompError::HeadersTooLarge(limits.max_header_bytes));
        }
        let Some((l, next)) = line(buf, at) else {
            return if too_large(buf.len()) {
                Err(StompError::HeadersTooLarge(limits.max_header_bytes))
            } else {
                Ok(None)
            };
        };
        at = next;
        if l.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(StompError::TooManyHeaders(limits.max_headers));
        }
        let text = std::str::from_utf8(l).map_err(|_| StompError::NotUtf8)?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| StompError::BadHeader(text.chars().take(80).collect()))?;
        let (name, value) = if escaped {
            (unescape(name)?, unescape(value)?)
        } else {
            (name.to_string(), value.to_string())
        };
        headers.push((name, value));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| StompError::BadContentLength(v.clone()))
        })
        .transpose()?;
    let body_end = match length {
        Some(n) => {
            if n > limits.max_body {
                return Err(StompError::BodyTooLarge(limits.max_body));
            }
            match buf.get(at + n) {
                None => return Ok(None),
                Some(0) => at + n,
                Some(_) => return Err(StompError::MissingNul),
            }
        }
        None => match buf[at..].iter().position(|&b| b == 0) {
            Some(i) if i > limits.max_body => return Err(StompError::BodyTooLarge(limits.max_body)),
            Some(i) => at + i,
            None if buf.len() - at > limits.max_body => return Err(StompError::BodyTooLarge(limits.max_body)),
            None => return Ok(None),
        },
    };
    let mut whole = buf.split_to(body_end + 1).freeze();
    let body = whole.split_off(at).slice(..body_end - at);
    Ok(Some(Decoded::Frame(Frame { command, headers, body })))
}

/// Appends `frame` to `out`, with a `content-length` when it has a body (so a body may hold NULs).
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    out.put_slice(frame.command.as_bytes());
    out.put_u8(b'\n');
    let escaped = frame.escaped();
    for (n, v) in &frame.headers {
        if n == "content-length" {
            continue;
        }
        if escaped {
            escape(n, out);
            out.put_u8(b':');
            escape(v, out);
        } else {
            out.put_slice(n.as_bytes());
            out.put_u8(b':');
            out.put_slice(v.as_bytes());
        }
        out.put_u8(b'\n');
    }
    if !frame.body.is_empty() {
        out.put_slice(format!("content-length:{}\n", frame.body.len()).as_bytes());
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Decoded>, StompError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(d) = decode(&mut buf, &Limits::default())? {
            out.push(d);
        }
        Ok(out)
    }

    #[test]
    fn frames_round_trip_with_escapes_and_nuls_in_the_body() {
        let f = Frame {
            command: "MESSAGE".into(),
            headers: vec![
                ("destination".into(), "/queue/a:b".into()),
                ("note".into(), "two\nlines\\and\rmore".into()),
            ],
            body: Bytes::from_static(b"bin\0ary"),
        };
        let mut out = BytesMut::new();
        encode(&f, &mut out);
        let mut with_length = f.clone();
        with_length.headers.push(("content-length".into(), "7".into()));
        assert_eq!(decode_all(&out), Ok(vec![Decoded::Frame(with_length)]));
    }

    #[test]
    fn a_frame_arriving_in_pieces_consumes_nothing_until_whole_and_heart_beats_are_told_apart() {
        let wire = b"\nSEND\r\ndestination:/queue/q\r\n\r\nhello\0\r\n";
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in wire {
            buf.put_u8(b);
            loop {
                let before = buf.len();
                match decode(&mut buf, &Limits::default()) {
                    Ok(Some(d)) => got.push(d),
                    Ok(None) => {
                        assert_eq!(buf.len(), before, "None consumes nothing");
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Decoded::HeartBeat);
        let Decoded::Frame(f) = &got[1] else { panic!("a frame") };
        assert_eq!(
            (f.command.as_str(), f.get("destination"), &f.body[..]),
            ("SEND", Some("/queue/q"), &b"hello"[..])
        );
        assert_eq!(got[2], Decoded::HeartBeat);
    }

    #[test]
    fn connect_headers_are_not_unescaped_and_the_first_repeat_wins() {
        let got = decode_all(b"CONNECT\nlogin:a\\b\naccept-version:1.2\nlogin:other\n\n\0").expect("valid");
        let [Decoded::Frame(f)] = &got[..] else {
            panic!("one frame")
        };
        assert_eq!(f.get("login"), Some("a\\b"));
    }

    #[test]
    fn bad_input_is_an_error_and_limits_hold_before_buffering() {
        assert!(matches!(
            decode_all(b"SEND\nno-colon\n\n\0"),
            Err(StompError::BadHeader(_))
        ));
        assert!(matches!(
            decode_all(b"SEND\nk:\\x\n\n\0"),
            Err(StompError::BadEscape(_))
        ));
        assert!(matches!(decode_all(b"SEND\r\r\n\n\0"), Err(StompError::BadCommand(_))));
        assert!(matches!(
            decode_all(b"SEND\ncontent-length:x\n\n\0"),
            Err(StompError::BadContentLength(_))
        ));
        assert_eq!(
            decode_all(b"SEND\ncontent-length:2\n\nabc\0"),
            Err(StompError::MissingNul)
        );
        let limits = Limits {
            max_header_bytes: 32,
            max_headers: 2,
            max_body: 4,
        };
        let mut endless = BytesMut::from(&[b'A'; 40][..]);
        assert_eq!(decode(&mut endless, &limits), Err(StompError::HeadersTooLarge(32)));
        let mut many = BytesMut::from(&b"SEND\na:1\nb:2\nc:3\n\n\0"[..]);
        assert_eq!(decode(&mut many, &limits), Err(StompError::TooManyHeaders(2)));
        let mut big = BytesMut::from(&b"SEND\ncontent-length:5\n\n"[..]);
        assert_eq!(decode(&mut big, &limits), Err(StompError::BodyTooLarge(4)));
        let mut unbounded = BytesMut::from(&b"SEND\n\n123456"[..]);
        assert_eq!(decode(&mut unbounded, &limits), Err(StompError::BodyTooLarge(4)));
    }
}
