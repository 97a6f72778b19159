//! Edit and redrive, the console's side: a peeked message as a document the operator edits in `$EDITOR` (its
//! properties and body; a JSON body as pretty-printed JSON, so it is edited as JSON), the document read back into
//! an [`EditRequest`], and a line diff of the two for the confirmation dialog.
//!
//! [`document`], [`parse`] and [`diff`] are pure. [`run_editor`] is the one function here that does I/O: it writes
//! the document to a private temporary file, runs `$VISUAL` or `$EDITOR` (else `vi`) on it through `sh -c` (so the
//! variable may carry arguments) with the terminal handed over, and reads the file back. The caller suspends the TUI
//! around it.
//!
//! Invariant: a document that does not parse (invalid JSON, a JSON body turned into something that is not JSON, a
//! property of the wrong type) is refused here, before anything is sent to the broker.

use std::io::Write;

use serde_json::{json, Map, Value};
use similar::{ChangeTag, TextDiff};
use warren_shared::edit::EditRequest;
use warren_shared::PeekedMessage;

/// What the operator gets to edit: `{"properties": {...}, "body": ...}`, pretty-printed. The body is a JSON value
/// when it is JSON, else a string (base64 for a binary body, said in `body_encoding`).
pub fn document(m: &PeekedMessage) -> String {
    let body = match (m.body_encoding.as_str(), serde_json::from_str::<Value>(&m.body)) {
        ("utf8", Ok(v)) if v.is_object() || v.is_array() => v,
        _ => Value::String(m.body.clone()),
    };
    let mut doc = Map::new();
    doc.insert("properties".into(), Value::Object(m.properties.clone()));
    if m.body_encoding != "utf8" {
        doc.insert("body_encoding".into(), json!(m.body_encoding));
    }
    doc.insert("body".into(), body);
    serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default() + "\n"
}

/// The edited document as the broker's request (its destination still to be chosen: `to` is "source"). An error
/// says what is wrong, in words, with the line and column for bad JSON.
pub fn parse(text: &str) -> Result<EditRequest, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "the edited message is not valid JSON (line {}, column {}): {e}; nothing was published",
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(mut doc) = doc else {
        return Err("the edited message must be a JSON object with \"properties\" and \"body\"".into());
    };
    let properties = match doc.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err("\"properties\" must be an object".into()),
    };
    let body_encoding = match doc.remove("body_encoding") {
        None => None,
        Some(Value::String(e)) if e == "utf8" || e == "base64" => Some(e),
        Some(other) => return Err(format!("\"body_encoding\" must be \"utf8\" or \"base64\", not {other}")),
    };
    let body = match doc.remove("body") {
        None => return Err("the edited message has no \"body\"".into()),
        Some(Value::String(s)) => s,
        Some(v @ (Value::Object(_) | Value::Array(_))) => serde_json::to_string(&v).unwrap_or_default(),
        Some(other) => other.to_string(),
    };
    if let Some(extra) = doc.keys().next() {
        return Err(format!(
            "unknown field \"{extra}\" (only \"properties\" and \"body\" are edited)"
        ));
    }
    Ok(EditRequest {
        body,
        body_encoding,
        properties: Some(properties),
        to: "source".into(),
        ..EditRequest::default()
    })
}

/// The changed lines of `before` → `after`: `- ` removed, `+ ` added, with `  ` context lines around each change
/// (`…` where unchanged lines are left out).
pub fn diff(before: &str, after: &str) -> Vec<String> {
    let d = TextDiff::from_lines(before, after);
    let mut out = Vec::new();
    for (i, group) in d.grouped_ops(1).iter().enumerate() {
        if i > 0 {
            out.push("  …".to_string());
        }
        for op in group {
            for change in d.iter_changes(op) {
                let sign = match change.tag() {
                    ChangeTag::Delete => "- ",
                    ChangeTag::Insert => "+ ",
                    ChangeTag::Equal => "  ",
                };
                out.push(format!("{sign}{}", change.value().trim_end_matches('\n')));
            }
        }
    }
    out
}

/// Writes `text` to a private temporary file, runs the operator's editor on it, and reads it back. Blocks until
/// the editor exits; the terminal must be handed over (not in raw mode, not on the alternate screen).
pub fn run_editor(text: &str) -> Result<String, String> {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    let mut file = tempfile::Builder::new()
        .prefix("warren-edit-")
        .suffix(".json")
        .tempfile()
        .map_err(|e| format!("cannot create a file to edit: {e}"))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| format!("cannot write the file to edit: {e}"))?;
    let path = file.path().to_path_buf();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("warren-edit")
        .arg(&path)
        .status()
        .map_err(|e| format!("cannot run the editor ({editor}): {e}"))?;
    if !status.success() {
        return Err(format!(
            "the editor ({editor}) exited with {status}; nothing was published"
        ));
    }
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read the edited file back: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(body: &str) -> PeekedMessage {
        let mut properties = Map::new();
        properties.insert("content_type".into(), json!("application/json"));
        properties.insert(
            "headers".into(),
            json!({"x-death": [{"queue": "orders", "reason": "rejected"}]}),
        );
        PeekedMessage {
            id: 4,
            exchange: "".into(),
            routing_key: "orders.dlq".into(),
            body_encoding: "utf8".into(),
            body: body.into(),
            properties,
            ..PeekedMessage::default()
        }
    }

    #[test]
    fn a_json_body_is_edited_as_json_and_read_back_compact() {
        let m = dead_letter(r#"{"order":1042,"qty":"two"}"#);
        let doc = document(&m);
        assert!(doc.contains("\"qty\": \"two\""), "pretty-printed: {doc}");
        let edited = doc.replace("\"qty\": \"two\"", "\"qty\": 2");
        let req = parse(&edited).expect("valid");
        assert_eq!(req.body, r#"{"order":1042,"qty":2}"#);
        assert_eq!(req.to, "source");
        assert_eq!(
            req.properties.as_ref().and_then(|p| p.get("content_type")),
            Some(&json!("application/json"))
        );
        let d = diff(&doc, &edited);
        assert!(d.contains(&"-     \"qty\": \"two\"".to_string()), "{d:?}");
        assert!(d.contains(&"+     \"qty\": 2".to_string()), "{d:?}");
    }

    #[test]
    fn invalid_json_is_caught_before_publishing() {
        let doc = document(&dead_letter(r#"{"order":1042}"#));
        let broken = doc.replace("1042", "1042,,");
        let err = parse(&broken).expect_err("refused");
        assert!(err.contains("not valid JSON (line"), "{err}");
        assert!(parse(r#"{"body": "x", "extra": 1}"#).is_err());
        assert!(parse(r#"{"properties": []}"#).is_err());
        assert!(parse("[]").is_err());
    }

    #[test]
    fn a_text_body_stays_a_string_and_binary_keeps_its_encoding() {
        let m = dead_letter("plain text, not JSON");
        let req = parse(&document(&m)).expect("valid");
        assert_eq!(req.body, "plain text, not JSON");
        let mut bin = dead_letter("AAEC");
        bin.body_encoding = "base64".into();
        let req = parse(&document(&bin)).expect("valid");
        assert_eq!(
            (req.body.as_str(), req.body_encoding.as_deref()),
            ("AAEC", Some("base64"))
        );
    }
}
