//! A validating scan of a content header's property list that extracts only what the broker acts on.
//!
//! `amq-protocol`'s `parse_properties` builds a full `AMQPProperties` (a `String` per short string, a `BTreeMap`
//! for the headers, a flag lookup by name per field) for every published message, and the broker then keeps only
//! the encoded bytes and three fields. This scan walks the same wire layout once, checks it exactly as that parser
//! would (same field order and types, UTF-8 short strings, nothing left over, unknown flag bits ignored), and
//! returns a `PropertySummary`. The headers table, when present, is still checked by `amq-protocol` (behind the
//! nesting bound), because its grammar is the big one; everything else costs a few comparisons.
//!
//! Invariant: `scan(raw)` is `Ok` exactly when `parse_properties(raw)` consumes all of `raw`, and the summary
//! equals what `PropertySummary::of(&parsed)` gives. A unit test and the `content_header` fuzz target hold it to
//! that.
//!
//! The way back is here too: `encode_properties`, the one property-list encoder the broker has.

use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::generation::gen_value;
use amq_protocol::types::parsing::parse_field_table;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;

use crate::amqp::nesting::{self, NestingError};

/// The pseudo-queue for direct reply-to, as a `reply_to` property.
const REPLY_TO: &[u8] = b"amq.rabbitmq.reply-to";

/// The properties the broker acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PropertySummary {
    /// `delivery_mode` 2.
    pub persistent: bool,
    /// `priority`, 0 when absent.
    pub priority: u8,
    /// `expiration` in milliseconds, when present and a valid number.
    pub expiration_ms: Option<u64>,
    /// `reply_to` names the direct reply-to pseudo-queue.
    pub reply_to_pseudo: bool,
    /// A headers table is present (routing by headers, dedup and delay need the full parse).
    pub has_headers: bool,
}

/// Why a property list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    Syntax,
    TooDeep,
}

impl PropertySummary {
    /// The summary of properties the broker already holds decoded.
    pub fn of(p: &AMQPProperties) -> Self {
        PropertySummary {
            persistent: p.delivery_mode() == &Some(2),
            priority: p.priority().unwrap_or(0),
            expiration_ms: p.expiration().as_ref().and_then(|e| e.as_str().parse().ok()),
            reply_to_pseudo: p.reply_to().as_ref().is_some_and(|r| r.as_str().as_bytes() == REPLY_TO),
            has_headers: p.headers().is_some(),
        }
    }
}

/// Scans an encoded property list (flags, then the fields they announce).
pub fn scan(raw: &[u8]) -> Result<PropertySummary, ScanError> {
    let mut r = Reader(raw);
    let flags = r.u16()?;
    let has = |bit: u16| flags & (1 << bit) != 0;
    let mut s = PropertySummary::default();
    if has(15) {
        r.short_str()?; // content_type
    }
    if has(14) {
        r.short_str()?; // content_encoding
    }
    if has(13) {
        r.table()?;
        s.has_headers = true;
    }
    if has(12) {
        s.persistent = r.u8()? == 2;
    }
    if has(11) {
        s.priority = r.u8()?;
    }
    if has(10) {
        r.short_str()?; // correlation_id
    }
    if has(9) {
        s.reply_to_pseudo = r.short_str()? == REPLY_TO;
    }
    if has(8) {
        let e = r.short_str()?;
        s.expiration_ms = std::str::from_utf8(e).ok().and_then(|e| e.parse().ok());
    }
    if has(7) {
        r.short_str()?; // message_id
    }
    if has(6) {
        r.take(8)?; // timestamp
    }
    for bit in [5, 4, 3, 2] {
        if has(bit) {
            r.short_str()?; // type, user_id, app_id, cluster_id
        }
    }
    if !r.0.is_empty() {
        return Err(ScanError::Syntax);
    }
    Ok(s)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ScanError> {
        if self.0.len() < n {
            return Err(ScanError::Syntax);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ScanError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ScanError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn short_str(&mut self) -> Result<&'a [u8], ScanError> {
        let len = self.u8()? as usize;
        let s = self.take(len)?;
        // amq-protocol makes a `String` of it, so it must be UTF-8.
        if !s.is_ascii() && std::str::from_utf8(s).is_err() {
            return Err(ScanError::Syntax);
        }
        Ok(s)
    }

    fn table(&mut self) -> Result<(), ScanError> {
        let start = self.0;
        let b = self.take(4)?;
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        self.take(len)?;
        let whole = &start[..4 + len];
        if let Err(NestingError::TooDeep) = nesting::check_table(whole) {
            return Err(ScanError::TooDeep);
        }
        match parse_field_table(whole) {
            Ok(([], _)) => Ok(()),
            _ => Err(ScanError::Syntax),
        }
    }
}

/// The key order RabbitMQ writes inside each `x-death` table.
const X_DEATH_ORDER: &[&str] = &[
    "count",
    "reason",
    "queue",
    "time",
    "exchange",
    "routing-keys",
    "original-expiration",
];

/// Encodes a property list (flags + fields) as it appears in a content header: the broker's one encoder, for
/// every message whose properties it made or rewrote. The bytes are `amq-protocol`'s (`gen_properties`), except
/// that the tables inside `x-death` keep RabbitMQ's key order (amq-protocol's tables are sorted maps), so clients
/// see the same bytes RabbitMQ would send.
pub fn encode_properties(p: &AMQPProperties) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&p.bitmask().to_be_bytes());
    let short = |out: &mut Vec<u8>, s: &str| put_short_str(out, s);
    if let Some(v) = p.content_type() {
        short(&mut out, v.as_str());
    }
    if let Some(v) = p.content_encoding() {
        short(&mut out, v.as_str());
    }
    if let Some(h) = p.headers() {
        put_table(&mut out, h, None);
    }
    if let Some(v) = p.delivery_mode() {
        out.push(*v);
    }
    if let Some(v) = p.priority() {
        out.push(*v);
    }
    for v in [p.correlation_id(), p.reply_to(), p.expiration(), p.message_id()]
        .into_iter()
        .flatten()
    {
        short(&mut out, v.as_str());
    }
    if let Some(v) = p.timestamp() {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for v in [p.kind(), p.user_id(), p.app_id(), p.cluster_id()]
        .into_iter()
        .flatten()
    {
        short(&mut out, v.as_str());
    }
    Bytes::from(out)
}

fn put_short_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_value(out: &mut Vec<u8>, v: &AMQPValue) {
    match gen_value(v)(WriteContext::from(Vec::new())) {
        Ok(ctx) => out.extend_from_slice(&ctx.write),
        Err(e) => tracing::error!(error = ?e, "failed to encode a header value"),
    }
}

/// A table with its 4-byte length; `order` puts those keys first, in that order.
fn put_table(out: &mut Vec<u8>, t: &FieldTable, order: Option<&[&str]>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let first: &[&str] = order.unwrap_or(&[]);
    let keys = first
        .iter()
        .filter_map(|k| t.inner().get_key_value(*k))
        .chain(t.inner().iter().filter(|(k, _)| !first.contains(&k.as_str())));
    for (k, v) in keys {
        put_short_str(out, k.as_str());
        match (k.as_str(), v) {
            ("x-death", AMQPValue::FieldArray(a)) if order.is_none() => {
                out.push(b'A');
                let arr_at = out.len();
                out.extend_from_slice(&[0; 4]);
                for item in a.as_slice() {
                    match item {
                        AMQPValue::FieldTable(entry) => {
                            out.push(b'F');
                            put_table(out, entry, Some(X_DEATH_ORDER));
                        }
                        other => put_value(out, other),
                    }
                }
                let len = (out.len() - arr_at - 4) as u32;
                out[arr_at..arr_at + 4].copy_from_slice(&len.to_be_bytes());
            }
            _ => put_value(out, v),
        }
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::basic::{gen_properties, parse_properties};
    use amq_protocol::types::{AMQPValue, FieldTable};

    fn encode(p: &AMQPProperties) -> Vec<u8> {
        let ctx = gen_properties(p)(amq_protocol::frame::WriteContext::from(Vec::new())).expect("encodes");
        ctx.write
    }

    fn full() -> AMQPProperties {
        let mut headers = FieldTable::default();
        headers.insert("k".into(), AMQPValue::LongString("v".into()));
        AMQPProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("gzip".into())
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_priority(7)
            .with_correlation_id("c".into())
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_expiration("1500".into())
            .with_message_id("m".into())
            .with_timestamp(12345)
            .with_type("t".into())
            .with_user_id("guest".into())
            .with_app_id("a".into())
            .with_cluster_id("cl".into())
    }

    /// The one encoder writes `amq-protocol`'s bytes for everything but the tables inside `x-death` (whose keys
    /// keep RabbitMQ's order; `queue/dead_letter.rs` checks those against a capture).
    #[test]
    fn encoding_matches_amq_protocol_outside_x_death() {
        let mut nested = FieldTable::default();
        nested.insert("z".into(), AMQPValue::LongLongInt(-3));
        nested.insert("a".into(), AMQPValue::Boolean(true));
        let mut headers = FieldTable::default();
        headers.insert("t".into(), AMQPValue::FieldTable(nested.clone()));
        headers.insert(
            "arr".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(nested)].into()),
        );
        let cases = [
            AMQPProperties::default(),
            AMQPProperties::default().with_delivery_mode(2).with_priority(9),
            AMQPProperties::default().with_headers(headers),
            full(),
        ];
        for p in cases {
            assert_eq!(&encode_properties(&p)[..], &encode(&p)[..], "{p:?}");
        }
    }

    #[test]
    fn summary_matches_the_full_parse() {
        let cases = [
            AMQPProperties::default(),
            AMQPProperties::default().with_delivery_mode(2),
            AMQPProperties::default().with_expiration("not a number".into()),
            AMQPProperties::default().with_reply_to("other".into()).with_priority(3),
            full(),
        ];
        for p in cases {
            let raw = encode(&p);
            assert_eq!(scan(&raw), Ok(PropertySummary::of(&p)), "{p:?}");
        }
    }

    #[test]
    fn every_truncation_and_extension_agrees_with_amq_protocol() {
        let raw = encode(&full());
        for cut in 0..raw.len() {
            let ours = scan(&raw[..cut]).is_ok();
            let theirs = matches!(parse_properties(&raw[..cut]), Ok((rest, _)) if rest.is_empty());
            assert_eq!(ours, theirs, "cut at {cut}");
        }
        let mut longer = raw.clone();
        longer.push(0);
        assert_eq!(scan(&longer), Err(ScanError::Syntax));
    }

    #[test]
    fn unknown_flag_bits_are_ignored_and_bad_utf8_refused() {
        assert_eq!(scan(&[0, 0b11]), Ok(PropertySummary::default()));
        // content_type of one byte that is not UTF-8.
        let bad = [0x80, 0, 1, 0xFF];
        assert_eq!(scan(&bad), Err(ScanError::Syntax));
        assert!(parse_properties(&bad[..]).is_err());
    }
}
