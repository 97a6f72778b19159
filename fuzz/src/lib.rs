//! Oracles shared by the codec fuzz targets (`frame_decoder`, `content_header`, `field_table`).
//!
//! They are written independently of the broker's code under test, so that a target compares the broker against
//! a second opinion rather than against itself:
//! - `same_*` compare decoded values with floats by their bits, because a NaN in a header is legal and is not equal
//!   to itself, which would make `==` call a faithful round trip a failure;
//! - `*_depth` measure how deep tables and arrays nest in a decoded value, to check that nothing deeper than
//!   `nesting::MAX_DEPTH` got past the bound;
//! - `keys_are_utf8` re-walks an encoded table to tell whether its keys are UTF-8, the one thing the nesting scan
//!   does not judge and `amq-protocol`'s parser does.
//!
//! The recursive helpers only ever see values that were decoded (so at most a few hundred levels deep for the
//! fuzzers' input sizes), never raw input.

use amq_protocol::frame::{gen_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, connection, exchange, queue, AMQPClass};
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable};

/// Whether two values are the same, comparing floats by their bits.
pub fn same_value(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (a, b) {
        (AMQPValue::Float(x), AMQPValue::Float(y)) => x.to_bits() == y.to_bits(),
        (AMQPValue::Double(x), AMQPValue::Double(y)) => x.to_bits() == y.to_bits(),
        (AMQPValue::FieldTable(x), AMQPValue::FieldTable(y)) => same_table(x, y),
        (AMQPValue::FieldArray(x), AMQPValue::FieldArray(y)) => same_array(x, y),
        _ => a == b,
    }
}

/// Whether two tables hold the same keys with the same values (floats by their bits).
pub fn same_table(a: &FieldTable, b: &FieldTable) -> bool {
    a.inner().len() == b.inner().len()
        && a.inner()
            .iter()
            .zip(b.inner())
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

/// Whether two arrays hold the same values in the same order (floats by their bits).
pub fn same_array(a: &FieldArray, b: &FieldArray) -> bool {
    a.as_slice().len() == b.as_slice().len() && a.as_slice().iter().zip(b.as_slice()).all(|(x, y)| same_value(x, y))
}

/// How deep a table nests: a table of scalars is 1, a table holding a table or an array is 2, and so on (the
/// counting `nesting::MAX_DEPTH` uses).
pub fn table_depth(t: &FieldTable) -> usize {
    1 + t.inner().values().map(value_depth).max().unwrap_or(0)
}

fn value_depth(v: &AMQPValue) -> usize {
    match v {
        AMQPValue::FieldTable(t) => table_depth(t),
        AMQPValue::FieldArray(a) => 1 + a.as_slice().iter().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The field tables a method carries (the methods whose arguments include a table, per the AMQP 0-9-1 spec).
pub fn method_tables(m: &AMQPClass) -> Vec<&FieldTable> {
    match m {
        AMQPClass::Connection(connection::AMQPMethod::Start(s)) => vec![&s.server_properties],
        AMQPClass::Connection(connection::AMQPMethod::StartOk(s)) => vec![&s.client_properties],
        AMQPClass::Exchange(exchange::AMQPMethod::Declare(d)) => vec![&d.arguments],
        AMQPClass::Exchange(exchange::AMQPMethod::Bind(b)) => vec![&b.arguments],
        AMQPClass::Exchange(exchange::AMQPMethod::Unbind(u)) => vec![&u.arguments],
        AMQPClass::Queue(queue::AMQPMethod::Declare(d)) => vec![&d.arguments],
        AMQPClass::Queue(queue::AMQPMethod::Bind(b)) => vec![&b.arguments],
        AMQPClass::Queue(queue::AMQPMethod::Unbind(u)) => vec![&u.arguments],
        AMQPClass::Basic(basic::AMQPMethod::Consume(c)) => vec![&c.arguments],
        _ => Vec::new(),
    }
}

/// Encodes a table with `amq-protocol`'s generator (what the broker uses to write tables).
pub fn encode_table(t: &FieldTable) -> Vec<u8> {
    match gen_field_table(t)(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.write,
        Err(e) => panic!("gen_field_table failed on a decoded table: {e:?}"),
    }
}

/// Encodes a whole method frame with `amq-protocol`'s generator.
pub fn encode_method_frame(channel: u16, m: &AMQPClass) -> Vec<u8> {
    match gen_frame(&AMQPFrame::Method(channel, m.clone()))(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.write,
        Err(e) => panic!("gen_frame failed on a decoded method: {e:?}"),
    }
}

/// Re-walks an encoded table that the nesting scan accepted and says whether every key in it (at any depth) is
/// UTF-8. `None` if the bytes do not have the shape the scan accepted, which is itself a finding.
pub fn keys_are_utf8(buf: &[u8]) -> Option<bool> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let mut ends: Vec<(usize, bool)> = vec![(4 + len, true)];
    let mut pos = 4;
    let mut utf8 = true;
    let u32_at = |p: usize| -> Option<usize> { Some(u32::from_be_bytes(buf.get(p..p + 4)?.try_into().ok()?) as usize) };
    while let Some(&(end, keyed)) = ends.last() {
        if pos == end {
            ends.pop();
            continue;
        }
        if keyed {
            let n = usize::from(*buf.get(pos)?);
            utf8 &= std::str::from_utf8(buf.get(pos + 1..pos + 1 + n)?).is_ok();
            pos += 1 + n;
        }
        let tag = *buf.get(pos)?;
        pos += 1;
        pos += match tag {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'S' | b'x' => 4 + u32_at(pos)?,
            b'F' | b'A' => {
                ends.push((pos + 4 + u32_at(pos)?, tag == b'F'));
                4
            }
            _ => return None,
        };
        if pos > end {
            return None;
        }
    }
    Some(utf8)
}
