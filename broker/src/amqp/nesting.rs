//! The nesting bound on field tables and arrays, checked before anything recursive touches them.
//!
//! `amq-protocol` parses, encodes and drops field tables recursively, one stack frame (or several) per level, and a
//! peer controls the depth: a 7 KB `connection.start-ok` nesting tables 1,200 deep overflowed a worker's stack and
//! aborted the process before login. Everything a peer or the disk hands us is therefore scanned first by
//! `check_table`, which walks the length-prefixed encoding iteratively (an explicit stack of end offsets, itself
//! bounded by `MAX_DEPTH`) and only then lets the recursive parser at it.
//!
//! Invariants:
//! - No table or array deeper than `MAX_DEPTH` reaches `amq-protocol`'s parser, our JSON conversion or a queue.
//! - The scan allocates at most `MAX_DEPTH` stack entries and reads every byte at most once, whatever the input.
//! - The scan accepts exactly the type tags `amq-protocol` accepts (including RabbitMQ's `s` for a short int), so a
//!   payload it passes is judged by the parser alone.

use amq_protocol::protocol::basic::{parse_properties, AMQPProperties};
use amq_protocol::types::FieldTable;

/// How deep tables and arrays may nest (a table inside a table is depth 2). rabbitmq-c settled on 100 after fuzzing;
/// real headers (`x-death` is an array of tables: depth 3) never come close.
pub const MAX_DEPTH: usize = 100;

/// Why a field table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NestingError {
    #[error("field tables or arrays nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("malformed field table")]
    Malformed,
}

/// Scans one encoded field table (its u32 length first) at the front of `buf`, checking its nesting. Returns the
/// number of bytes it spans.
pub fn check_table(buf: &[u8]) -> Result<usize, NestingError> {
    let len = read_u32(buf, 0)? as usize;
    let end = 4usize.checked_add(len).ok_or(NestingError::Malformed)?;
    if end > buf.len() {
        return Err(NestingError::Malformed);
    }
    // Each entry: where the enclosing table or array ends, and whether its entries carry keys.
    let mut stack: Vec<(usize, bool)> = Vec::with_capacity(8);
    stack.push((end, true));
    let mut pos = 4;
    while let Some(&(end, keyed)) = stack.last() {
        if pos == end {
            stack.pop();
            continue;
        }
        if keyed {
            let key_len = *buf.get(pos).ok_or(NestingError::Malformed)? as usize;
            pos += 1 + key_len;
        }
        let tag = *buf.get(pos).ok_or(NestingError::Malformed)?;
        pos += 1;
        let fixed = match tag {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'S' | b'x' => 4 + read_u32(buf, pos)? as usize,
            b'F' | b'A' => {
                let inner_end = pos + 4 + read_u32(buf, pos)? as usize;
                if inner_end > end {
                    return Err(NestingError::Malformed);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(NestingError::TooDeep);
                }
                stack.push((inner_end, tag == b'F'));
                4
            }
            _ => return Err(NestingError::Malformed),
        };
        pos += fixed;
        if pos > end {
            return Err(NestingError::Malformed);
        }
    }
    Ok(end)
}

fn read_u32(buf: &[u8], at: usize) -> Result<u32, NestingError> {
    let b = buf.get(at..at + 4).ok_or(NestingError::Malformed)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Skips one short string (length octet + bytes) at `pos`.
fn skip_short_str(buf: &[u8], pos: usize) -> Result<usize, NestingError> {
    let len = *buf.get(pos).ok_or(NestingError::Malformed)? as usize;
    Ok(pos + 1 + len)
}

/// What precedes the field table in a method's arguments.
#[derive(Clone, Copy)]
enum Field {
    Octet,
    Short,
    ShortStr,
}

/// Checks the field tables of a method payload (class id, method id, arguments). Methods without a table pass.
pub fn check_method(payload: &[u8]) -> Result<(), NestingError> {
    use Field::*;
    if payload.len() < 4 {
        return Ok(());
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    // The fields before the one table, for every method that carries one (amq-protocol's generated parsers).
    let before: &[Field] = match (class, method) {
        (10, 10) => &[Octet, Octet],                                          // connection.start
        (10, 11) => &[],                                                      // connection.start-ok
        (40, 10) => &[Short, ShortStr, ShortStr, Octet],                      // exchange.declare
        (40, 30) | (40, 40) => &[Short, ShortStr, ShortStr, ShortStr, Octet], // exchange.bind, unbind
        (50, 10) => &[Short, ShortStr, Octet],                                // queue.declare
        (50, 20) => &[Short, ShortStr, ShortStr, ShortStr, Octet],            // queue.bind
        (50, 50) => &[Short, ShortStr, ShortStr, ShortStr],                   // queue.unbind
        (60, 20) => &[Short, ShortStr, ShortStr, Octet],                      // basic.consume
        _ => return Ok(()),
    };
    let mut pos = 4;
    for f in before {
        pos = match f {
            Octet => pos + 1,
            Short => pos + 2,
            ShortStr => skip_short_str(payload, pos)?,
        };
    }
    check_table(payload.get(pos..).ok_or(NestingError::Malformed)?).map(|_| ())
}

/// Checks the headers table of an encoded property list (flags, then the fields they announce).
pub fn check_properties(raw: &[u8]) -> Result<(), NestingError> {
    let Some(flags) = raw.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Ok(());
    };
    if flags & (1 << 13) == 0 {
        return Ok(());
    }
    let mut pos = 2;
    if flags & (1 << 15) != 0 {
        pos = skip_short_str(raw, pos)?; // content-type
    }
    if flags & (1 << 14) != 0 {
        pos = skip_short_str(raw, pos)?; // content-encoding
    }
    check_table(raw.get(pos..).ok_or(NestingError::Malformed)?).map(|_| ())
}

/// Parses an encoded property list after checking its nesting: the only way the broker decodes properties that came
/// from a peer or from disk.
pub fn parse_properties_bounded(raw: &[u8]) -> Result<AMQPProperties, NestingError> {
    check_properties(raw)?;
    match parse_properties(raw) {
        Ok((_, p)) => Ok(p),
        Err(_) => Err(NestingError::Malformed),
    }
}

/// Parses a bare field table (its u32 length first) after checking its nesting.
pub fn parse_table_bounded(buf: &[u8]) -> Result<FieldTable, NestingError> {
    check_table(buf)?;
    match amq_protocol::types::parsing::parse_field_table(buf) {
        Ok((_, t)) => Ok(t),
        Err(_) => Err(NestingError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::{gen_frame, AMQPFrame, WriteContext};
    use amq_protocol::protocol::{connection, queue, AMQPClass};
    use amq_protocol::types::generation::gen_field_table;
    use amq_protocol::types::AMQPValue;

    fn nested_table(depth: usize) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("leaf".into(), AMQPValue::LongInt(1));
        for _ in 1..depth {
            let mut outer = FieldTable::default();
            outer.insert("n".into(), AMQPValue::FieldTable(t));
            t = outer;
        }
        t
    }

    fn encode_table(t: &FieldTable) -> Vec<u8> {
        gen_field_table(t)(WriteContext::from(Vec::new()))
            .expect("encode")
            .write
    }

    /// A table nested `depth` deep, encoded by hand (no recursion, so any depth can be built).
    fn deep_bytes(depth: usize, array: bool) -> Vec<u8> {
        // Innermost: an empty table. Each level wraps the previous in a table entry "n" (or an array).
        let mut inner = 0u32.to_be_bytes().to_vec();
        for _ in 1..depth {
            let mut v = Vec::with_capacity(inner.len() + 8);
            if array {
                // A table whose one entry "n" is an array holding the inner table: two levels per step.
                v.extend_from_slice(&(inner.len() as u32 + 8).to_be_bytes());
                v.extend_from_slice(&[1, b'n', b'A']);
                v.extend_from_slice(&(inner.len() as u32 + 1).to_be_bytes());
                v.push(b'F');
            } else {
                v.extend_from_slice(&(inner.len() as u32 + 3).to_be_bytes());
                v.extend_from_slice(&[1, b'n', b'F']);
            }
            v.extend_from_slice(&inner[..]);
            inner = v;
        }
        inner
    }

    #[test]
    fn real_tables_pass_and_span_their_bytes() {
        let mut t = nested_table(5);
        t.insert("s".into(), AMQPValue::LongString("x".into()));
        t.insert(
            "a".into(),
            AMQPValue::FieldArray(vec![AMQPValue::Boolean(true), AMQPValue::Double(1.0)].into()),
        );
        t.insert(
            "d".into(),
            AMQPValue::DecimalValue(amq_protocol::types::DecimalValue { scale: 2, value: 5 }),
        );
        t.insert("ts".into(), AMQPValue::Timestamp(3));
        t.insert("v".into(), AMQPValue::Void);
        t.insert("bytes".into(), AMQPValue::ByteArray(vec![1u8, 2, 3].into()));
        let bytes = encode_table(&t);
        assert_eq!(check_table(&bytes), Ok(bytes.len()));
        assert_eq!(parse_table_bounded(&bytes), Ok(t.clone()));
    }

    #[test]
    fn the_limit_is_exact() {
        assert!(check_table(&deep_bytes(MAX_DEPTH, false)).is_ok());
        assert_eq!(
            check_table(&deep_bytes(MAX_DEPTH + 1, false)),
            Err(NestingError::TooDeep)
        );
        assert_eq!(check_table(&deep_bytes(20_000, true)), Err(NestingError::TooDeep));
        assert_eq!(check_table(&deep_bytes(20_000, false)), Err(NestingError::TooDeep));
    }

    #[test]
    fn truncations_and_garbage_are_malformed_never_a_panic() {
        let bytes = encode_table(&nested_table(4));
        for cut in 0..bytes.len() {
            assert!(check_table(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = check_table(&b);
            }
        }
        assert_eq!(check_table(&[0, 0, 0, 3, 1, b'k', b'?']), Err(NestingError::Malformed));
    }

    fn method_payload(m: AMQPClass) -> Vec<u8> {
        let frame = AMQPFrame::Method(1, m);
        let v = gen_frame(&frame)(WriteContext::from(Vec::new())).expect("encode").write;
        v[7..v.len() - 1].to_vec()
    }

    #[test]
    fn methods_are_checked_where_their_table_is() {
        let deep = nested_table(MAX_DEPTH + 1);
        let ok = nested_table(3);
        let declare = |arguments| {
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: "q".into(),
                arguments,
                ..Default::default()
            }))
        };
        let unbind = |arguments| {
            AMQPClass::Queue(queue::AMQPMethod::Unbind(queue::Unbind {
                queue: "q".into(),
                exchange: "x".into(),
                routing_key: "k".into(),
                arguments,
            }))
        };
        let start_ok = |client_properties| {
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties,
                mechanism: "PLAIN".into(),
                response: "\0a\0b".into(),
                locale: "en_US".into(),
            }))
        };
        for make in [&declare as &dyn Fn(FieldTable) -> AMQPClass, &unbind, &start_ok] {
            assert_eq!(check_method(&method_payload(make(ok.clone()))), Ok(()));
            assert_eq!(
                check_method(&method_payload(make(deep.clone()))),
                Err(NestingError::TooDeep)
            );
        }
    }

    #[test]
    fn properties_headers_are_checked() {
        let props = AMQPProperties::default()
            .with_content_type("a".into())
            .with_headers(nested_table(MAX_DEPTH + 1));
        let raw = crate::amqp::properties::encode_properties(&props);
        assert_eq!(check_properties(&raw), Err(NestingError::TooDeep));
        let props = props.with_headers(nested_table(3)).with_priority(4);
        let raw = crate::amqp::properties::encode_properties(&props);
        assert_eq!(parse_properties_bounded(&raw), Ok(props));
    }
}
