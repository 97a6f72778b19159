//! Fuzz target `content_header`: arbitrary bytes as the property list of a content header (flags, then the fields
//! they announce), through the nesting check (`nesting::check_properties`), the bounded parser the broker uses for
//! properties from a peer or the disk (`nesting::parse_properties_bounded`), and the frame decoder's content-header
//! path (the same bytes wrapped in a header frame, through `codec::decode_frame`).
//!
//! What must hold, besides never panicking or overflowing the stack:
//! - the bounded parser refuses what the check refuses, with the same error;
//! - parsed properties carry headers at most `MAX_DEPTH` deep, re-encode with `properties::encode_properties` into bytes
//!   the check accepts and the parser consumes whole, parse back to the same properties (floats by their bits), and
//!   re-encode to the same bytes;
//! - the frame decoder answers a header frame with `TooDeep` exactly when the check does, and otherwise decodes it
//!   exactly when `amq-protocol` parses the whole property list, to the same properties, keeping the raw bytes.

#![no_main]

use amq_protocol::protocol::basic::{parse_properties, AMQPProperties};
use amq_protocol::types::FieldTable;
use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren_broker::amqp::codec::{decode_frame, Frame, FrameError, FRAME_END, FRAME_HEADER};
use warren_broker::amqp::properties::encode_properties;
use warren_broker::amqp::nesting::{check_properties, parse_properties_bounded, NestingError, MAX_DEPTH};
use warren_broker::amqp::properties::PropertySummary;
use warren_fuzz::{same_table, table_depth};

fuzz_target!(|data: &[u8]| {
    let checked = check_properties(data);
    let parsed = parse_properties_bounded(data);
    if let Err(e) = checked {
        assert_eq!(
            parsed.as_ref().err(),
            Some(&e),
            "the parser must refuse what the check refuses"
        );
    }
    if let Ok(p) = &parsed {
        round_trip(p);
    }
    through_decoder(data, checked);
});

/// Whether two property lists are the same, with the headers compared floats by their bits.
fn same_properties(a: &AMQPProperties, b: &AMQPProperties) -> bool {
    let headers_match = match (a.headers(), b.headers()) {
        (Some(x), Some(y)) => same_table(x, y),
        (None, None) => true,
        _ => false,
    };
    let without = |p: &AMQPProperties| p.clone().with_headers(FieldTable::default());
    headers_match && without(a) == without(b)
}

fn round_trip(p: &AMQPProperties) {
    if let Some(h) = p.headers() {
        assert!(
            table_depth(h) <= MAX_DEPTH,
            "headers {} deep got past the bound",
            table_depth(h)
        );
    }
    let raw = encode_properties(p);
    assert_eq!(check_properties(&raw), Ok(()), "the check refuses encoded properties");
    match parse_properties(&raw[..]) {
        Ok((rest, _)) => assert!(rest.is_empty(), "encoded properties have {} trailing bytes", rest.len()),
        Err(e) => panic!("encoded properties do not parse: {e:?}"),
    }
    let again = match parse_properties_bounded(&raw) {
        Ok(again) => again,
        Err(e) => panic!("encoded properties do not parse back: {e}"),
    };
    assert!(
        same_properties(p, &again),
        "round trip changed the properties:\n{p:?}\n{again:?}"
    );
    assert_eq!(encode_properties(&again), raw, "re-encoding is not stable");
}

fn through_decoder(props: &[u8], checked: Result<(), NestingError>) {
    let mut buf = BytesMut::new();
    buf.put_u8(FRAME_HEADER);
    buf.put_u16(1);
    buf.put_u32(12 + props.len() as u32);
    buf.put_u16(60); // class basic
    buf.put_u16(0); // weight
    buf.put_u64(5); // body size
    buf.put_slice(props);
    buf.put_u8(FRAME_END);
    let decoded = decode_frame(&mut buf, u32::MAX);
    if checked == Err(NestingError::TooDeep) {
        assert!(
            matches!(decoded, Err(FrameError::TooDeep { .. })),
            "headers nested too deep were not refused: {decoded:?}"
        );
        return;
    }
    // The unbounded parser is safe to call now: the check found nothing too deep (a malformed table stops the
    // parser where it stopped the check), and the decoder calls it in this case too.
    let whole = match parse_properties(props) {
        Ok((rest, p)) if rest.is_empty() => Some(p),
        _ => None,
    };
    match (decoded, whole) {
        (Ok(Some(Frame::Header(1, h))), Some(p)) => {
            assert!(buf.is_empty(), "the frame was not consumed whole");
            assert_eq!(h.class_id, 60);
            assert_eq!(h.body_size, 5);
            assert!(same_properties(&h.properties(), &p));
            assert_eq!(h.summary, PropertySummary::of(&p), "the scan's summary differs from the full parse");
            assert_eq!(&h.raw_properties[..], props, "raw properties are kept as received");
        }
        (Err(FrameError::Syntax { .. }), None) => {}
        (decoded, whole) => panic!("decode_frame answered {decoded:?} where amq-protocol parses {whole:?}"),
    }
}
