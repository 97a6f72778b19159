//! Fuzz target `field_table`: arbitrary bytes as an encoded AMQP field table, through the nesting scan
//! (`nesting::check_table`) and the bounded parser (`nesting::parse_table_bounded`) every table from a peer or the
//! disk goes through.
//!
//! The first input byte picks the mode. Below 0xC0 the rest is the table itself. From 0xC0 up the rest is a little
//! program that builds a well-formed table of a chosen depth (tables and arrays mixed, with scalar siblings at every
//! level), to test the depth bound where random bytes rarely reach: around `MAX_DEPTH`, and thousands deep.
//!
//! What must hold, besides never panicking or overflowing the stack:
//! - `check_table` answering `Ok(n)` means `4 <= n <= input length`, and the bounded parser says the same as the scan
//!   (same error, or success consuming exactly `n` bytes), failing only on a key that is not UTF-8, the one thing the
//!   scan leaves to the parser;
//! - what `amq-protocol`'s own parser accepts, the scan accepts too, unless it nests too deep;
//! - a parsed table nests at most `MAX_DEPTH` deep, re-encodes with `gen_field_table` into bytes the scan accepts
//!   whole, parses back to the same table (floats by their bits), and re-encodes to the same bytes;
//! - a built table deeper than `MAX_DEPTH` is refused as `TooDeep`; one within it is accepted with its depth intact.

#![no_main]

use amq_protocol::types::parsing::parse_field_table;
use libfuzzer_sys::fuzz_target;
use warren_broker::amqp::nesting::{check_table, parse_table_bounded, NestingError, MAX_DEPTH};
use warren_fuzz::{encode_table, keys_are_utf8, same_table, table_depth};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode >= 0xC0 {
        built(rest);
    } else {
        raw(rest);
    }
});

fn raw(buf: &[u8]) {
    let checked = check_table(buf);
    let parsed = parse_table_bounded(buf);
    match checked {
        Ok(n) => {
            assert!(
                (4..=buf.len()).contains(&n),
                "check_table spans {n} of {} bytes",
                buf.len()
            );
            let utf8 = keys_are_utf8(buf).expect("the scan accepted bytes a second walk cannot follow");
            match &parsed {
                Ok(t) => {
                    assert!(utf8, "a table with a non-UTF-8 key parsed");
                    let consumed = match parse_field_table(buf) {
                        Ok((rest, _)) => buf.len() - rest.len(),
                        Err(e) => panic!("parse_table_bounded succeeded where parse_field_table fails: {e:?}"),
                    };
                    assert_eq!(consumed, n, "scan and parser disagree on the table's length");
                    round_trip(t);
                }
                Err(e) => {
                    assert_eq!(*e, NestingError::Malformed);
                    assert!(
                        !utf8,
                        "the scan accepted a table with UTF-8 keys that the parser refused"
                    );
                }
            }
        }
        Err(e) => {
            assert_eq!(
                parsed,
                Err(e),
                "parse_table_bounded must refuse what check_table refuses"
            );
            // The parser recurses once per level: only let it at input the scan found shallow enough.
            if e == NestingError::Malformed {
                if let Ok((_, t)) = parse_field_table(buf) {
                    panic!("check_table refused a table that amq-protocol parses: {t:?}");
                }
            }
        }
    }
}

fn round_trip(t: &amq_protocol::types::FieldTable) {
    assert!(
        table_depth(t) <= MAX_DEPTH,
        "a table {} deep got past the bound",
        table_depth(t)
    );
    let bytes = encode_table(t);
    assert_eq!(
        check_table(&bytes),
        Ok(bytes.len()),
        "the scan refuses an encoded table"
    );
    let again = match parse_table_bounded(&bytes) {
        Ok(again) => again,
        Err(e) => panic!("an encoded table does not parse back: {e}"),
    };
    assert!(same_table(t, &again), "round trip changed the table:\n{t:?}\n{again:?}");
    assert_eq!(encode_table(&again), bytes, "re-encoding is not stable");
}

/// Builds a table `depth` deep from the program as bytes, outermost level first, patching each length when its
/// level closes (no recursion and no copying, so thousands of levels cost little). Every level is a table or an
/// array (the outermost always a table) holding the next level plus up to three scalar siblings, before or after
/// it. Returns the bytes and the depth they reach.
fn build(program: &[u8]) -> (Vec<u8>, usize) {
    let mut p = program.iter().copied();
    let mut next = || p.next().unwrap_or(0);
    let first = next();
    let depth = if first < 0xE0 {
        MAX_DEPTH - 10 + usize::from(first % 21) // MAX_DEPTH - 10 ..= MAX_DEPTH + 10
    } else {
        1 + usize::from(u16::from_be_bytes([next(), next()])) % 5000
    };
    let mut out = Vec::new();
    // The depth reached: one per level, plus one where an (empty) array sibling sits in the innermost level.
    let mut reached = depth;
    // Per open level: where its length goes, whether it is keyed, and the siblings that follow its child.
    let mut open: Vec<(usize, bool, Vec<u8>)> = Vec::with_capacity(depth);
    for level in 0..depth {
        let ctl = next();
        let is_table = level == 0 || ctl & 1 == 0;
        if let Some((_, parent_keyed, _)) = open.last() {
            if *parent_keyed {
                out.extend_from_slice(&[1, b'n']);
            }
            out.push(if is_table { b'F' } else { b'A' });
        }
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut siblings = Vec::new();
        for (i, key) in [&b"a"[..], b"b", b"c"]
            .iter()
            .take(usize::from((ctl >> 1) & 3))
            .enumerate()
        {
            if is_table {
                siblings.push(key.len() as u8);
                siblings.extend_from_slice(key);
            }
            let v = next();
            match (usize::from(v) + i) % 6 {
                0 => siblings.extend_from_slice(&[b'I', v, 0, 0, 1]),
                1 => siblings.extend_from_slice(&[b'S', 0, 0, 0, 2, v, v]),
                2 => siblings.extend_from_slice(&[b't', v & 1]),
                3 => siblings.extend_from_slice(&[b'd', 0x7F, 0xF8, 0, 0, 0, 0, 0, v]), // a NaN
                4 => siblings.push(b'V'),
                _ => {
                    siblings.extend_from_slice(&[b'A', 0, 0, 0, 0]);
                    reached = reached.max(level + 2);
                }
            }
        }
        if ctl & 0x08 == 0 {
            out.append(&mut siblings);
        }
        open.push((len_at, is_table, siblings));
    }
    while let Some((len_at, _, siblings)) = open.pop() {
        out.extend_from_slice(&siblings);
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    }
    (out, reached)
}

fn built(program: &[u8]) {
    let (bytes, depth) = build(program);
    let checked = check_table(&bytes);
    if depth > MAX_DEPTH {
        assert_eq!(
            checked,
            Err(NestingError::TooDeep),
            "a table {depth} deep was not refused"
        );
        assert_eq!(parse_table_bounded(&bytes), Err(NestingError::TooDeep));
        return;
    }
    assert_eq!(checked, Ok(bytes.len()), "a well-formed table {depth} deep was refused");
    let t = match parse_table_bounded(&bytes) {
        Ok(t) => t,
        Err(e) => panic!("a well-formed table {depth} deep does not parse: {e}"),
    };
    assert_eq!(table_depth(&t), depth, "the parsed table lost levels");
    round_trip(&t);
}
