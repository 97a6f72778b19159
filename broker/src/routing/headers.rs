//! The headers exchange: a binding's arguments are matched against the message's headers. `x-match` chooses
//! `all` (the default) or `any`; `all-with-x` / `any-with-x` also compare arguments that start with `x-`, which
//! the plain forms ignore. A binding argument with a void value matches on the header's presence alone.

use amq_protocol::types::{AMQPValue, FieldTable};

use super::{Binding, Destination, Router};

#[derive(Default)]
pub struct HeadersBindings {
    bindings: Vec<Binding>,
}

#[derive(Clone, Copy, PartialEq)]
enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

fn x_match(args: &FieldTable) -> XMatch {
    let v = match args.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => return XMatch::All,
    };
    match v.as_str() {
        "any" => XMatch::Any,
        "all-with-x" => XMatch::AllWithX,
        "any-with-x" => XMatch::AnyWithX,
        _ => XMatch::All,
    }
}

/// Is `x-match` (if present) one of the four known values? Checked at bind time.
pub fn valid_x_match(args: &FieldTable) -> bool {
    match args.inner().get("x-match") {
        None => true,
        Some(AMQPValue::LongString(s)) => matches!(s.as_bytes(), b"all" | b"any" | b"all-with-x" | b"any-with-x"),
        Some(AMQPValue::ShortString(s)) => {
            matches!(s.as_str(), "all" | "any" | "all-with-x" | "any-with-x")
        }
        _ => false,
    }
}

fn same_value(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (a, b) {
        (AMQPValue::LongString(x), AMQPValue::ShortString(y))
        | (AMQPValue::ShortString(y), AMQPValue::LongString(x)) => x.as_bytes() == y.as_str().as_bytes(),
        _ => a == b,
    }
}

/// Does a binding with `args` match a message with `headers`?
pub fn headers_match(args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = x_match(args);
    let with_x = matches!(mode, XMatch::AllWithX | XMatch::AnyWithX);
    let any = matches!(mode, XMatch::Any | XMatch::AnyWithX);
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty);
    for (k, v) in args.inner() {
        let key = k.as_str();
        if key == "x-match" || (!with_x && key.starts_with("x-")) {
            continue;
        }
        let hit = match (v, headers.inner().get(key)) {
            (AMQPValue::Void, Some(_)) => true,
            (v, Some(h)) => same_value(v, h),
            (_, None) => false,
        };
        if any && hit {
            return true;
        }
        if !any && !hit {
            return false;
        }
    }
    // all: every considered argument matched (vacuously true with none); any: nothing matched.
    !any
}

impl Router for HeadersBindings {
    fn bind(&mut self, binding: Binding) -> bool {
        if self.bindings.contains(&binding) {
            return false;
        }
        self.bindings.push(binding);
        true
    }

    fn unbind(&mut self, binding: &Binding) -> bool {
        let before = self.bindings.len();
        self.bindings.retain(|b| b != binding);
        before != self.bindings.len()
    }

    fn route<'a>(&'a self, _routing_key: &str, headers: Option<&FieldTable>, out: &mut Vec<&'a Destination>) {
        for b in &self.bindings {
            if headers_match(&b.arguments, headers) {
                out.push(&b.destination);
            }
        }
    }

    fn bindings(&self) -> Vec<&Binding> {
        self.bindings.iter().collect()
    }

    fn remove_destination(&mut self, destination: &Destination) {
        self.bindings.retain(|b| &b.destination != destination);
    }

    fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }
    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    #[test]
    fn all_and_any() {
        let all = table(&[("x-match", s("all")), ("a", s("1")), ("b", s("2"))]);
        let any = table(&[("x-match", s("any")), ("a", s("1")), ("b", s("2"))]);
        let both = table(&[("a", s("1")), ("b", s("2"))]);
        let one = table(&[("a", s("1"))]);
        assert!(headers_match(&all, Some(&both)));
        assert!(!headers_match(&all, Some(&one)));
        assert!(headers_match(&any, Some(&one)));
        assert!(!headers_match(&any, None));
        assert!(headers_match(&table(&[]), None), "no arguments: all matches vacuously");
    }

    #[test]
    fn with_x_compares_x_arguments() {
        let plain = table(&[("x-match", s("all")), ("x-k", s("v"))]);
        let withx = table(&[("x-match", s("all-with-x")), ("x-k", s("v"))]);
        let h = table(&[("x-k", s("other"))]);
        assert!(headers_match(&plain, Some(&h)), "x- arguments are ignored by plain all");
        assert!(!headers_match(&withx, Some(&h)));
        let anyx = table(&[("x-match", s("any-with-x")), ("x-k", s("v"))]);
        assert!(headers_match(&anyx, Some(&table(&[("x-k", s("v"))]))));
    }

    #[test]
    fn void_matches_presence() {
        let args = table(&[("a", AMQPValue::Void)]);
        assert!(headers_match(&args, Some(&table(&[("a", s("anything"))]))));
        assert!(!headers_match(&args, Some(&table(&[]))));
    }
}
