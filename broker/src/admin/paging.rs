//! RabbitMQ's list query parameters, for every list endpoint that takes them: `name` (a substring, or a regular
//! expression with `use_regex=true`, matched against each item's name), `sort` (a field, dotted for nested ones:
//! `message_stats.publish`) with `sort_reverse`, `columns` (the fields to keep, dotted), and `page` with
//! `page_size` (default 100, at most 500). With `page`, the answer is RabbitMQ's page object (`items`, `page`,
//! `page_count`, `page_size`, `filtered_count`, `item_count`, `total_count`); without, the list itself, as before.
//!
//! Invariant: with no parameters the answer is exactly the unpaged list, so Warren's console and older clients
//! see no change. A bad parameter is a 400 naming it.

use std::collections::HashMap;

use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::Error;

const MAX_PAGE_SIZE: usize = 500;

/// Applies the query to `items` (see the module doc).
pub fn respond<T: Serialize>(items: Vec<T>, q: &HashMap<String, String>) -> Result<Json<Value>, Error> {
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect();
    let total = items.len();
    let mut items = match q.get("name").filter(|n| !n.is_empty()) {
        None => items,
        Some(name) => {
            let regex = q.get("use_regex").is_some_and(|v| v == "true");
            let matcher: Box<dyn Fn(&str) -> bool> = if regex {
                let re = regex::RegexBuilder::new(name)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| Error::bad_request(format!("name is not a valid regular expression: {e}")))?;
                Box::new(move |s| re.is_match(s))
            } else {
                let name = name.clone();
                Box::new(move |s| s.contains(name.as_str()))
            };
            items
                .into_iter()
                .filter(|i| i.get("name").and_then(Value::as_str).is_some_and(&matcher))
                .collect()
        }
    };
    if let Some(field) = q.get("sort").filter(|s| !s.is_empty()) {
        items.sort_by(|a, b| compare(path(a, field), path(b, field)));
        if q.get("sort_reverse").is_some_and(|v| v == "true") {
            items.reverse();
        }
    }
    if let Some(columns) = q.get("columns").filter(|c| !c.is_empty()) {
        let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
        items = items.into_iter().map(|i| keep(&i, &columns)).collect();
    }
    let Some(page) = q.get("page") else {
        return Ok(Json(Value::Array(items)));
    };
    let page: usize = page
        .parse()
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| Error::bad_request(format!("page must be a whole number from 1, not '{page}'")))?;
    let size: usize = match q.get("page_size") {
        None => 100,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| Error::bad_request(format!("page_size must be from 1 to {MAX_PAGE_SIZE}, not '{s}'")))?,
    };
    let filtered = items.len();
    let page_count = filtered.div_ceil(size).max(1);
    if page > page_count {
        return Err(Error::bad_request(format!(
            "page {page} is past the last page, {page_count}"
        )));
    }
    let shown: Vec<Value> = items.into_iter().skip((page - 1) * size).take(size).collect();
    Ok(Json(json!({
        "filtered_count": filtered,
        "item_count": shown.len(),
        "items": shown,
        "page": page,
        "page_count": page_count,
        "page_size": size,
        "total_count": total,
    })))
}

fn path<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

/// Numbers by value, strings by text, missing and null first.
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

/// Only `columns` of `item` (dotted paths keep their nesting).
fn keep(item: &Value, columns: &[&str]) -> Value {
    let mut out = Map::new();
    for c in columns {
        let Some(v) = path(item, c) else { continue };
        let mut keys = c.split('.').peekable();
        let mut at = &mut out;
        while let Some(k) = keys.next() {
            if keys.peek().is_none() {
                at.insert(k.to_string(), v.clone());
                break;
            }
            let next = at.entry(k.to_string()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = next else { break };
            at = m;
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn items() -> Vec<Value> {
        (0..7)
            .map(|i| json!({"name": format!("q{i}"), "messages": 10 - i, "message_stats": {"publish": i}}))
            .collect()
    }

    #[test]
    fn no_parameters_is_the_plain_list() {
        let Json(v) = respond(items(), &q(&[])).expect("ok");
        assert_eq!(v, Value::Array(items()));
    }

    #[test]
    fn pages_filters_sorts_and_columns() {
        let Json(v) = respond(
            items(),
            &q(&[
                ("page", "2"),
                ("page_size", "3"),
                ("sort", "messages"),
                ("columns", "name,message_stats.publish"),
            ]),
        )
        .expect("ok");
        assert_eq!(v["page_count"], 3);
        assert_eq!(v["filtered_count"], 7);
        assert_eq!(v["item_count"], 3);
        assert_eq!(v["items"][0], json!({"name": "q3", "message_stats": {"publish": 3}}));
        let Json(v) = respond(items(), &q(&[("name", "^q[12]$"), ("use_regex", "true")])).expect("ok");
        assert_eq!(v.as_array().map(Vec::len), Some(2));
        let Json(v) = respond(
            items(),
            &q(&[("sort", "message_stats.publish"), ("sort_reverse", "true")]),
        )
        .expect("ok");
        assert_eq!(v[0]["name"], "q6");
        assert!(respond(items(), &q(&[("page", "0")])).is_err());
        assert!(respond(items(), &q(&[("page", "9")])).is_err());
        assert!(respond(items(), &q(&[("page", "1"), ("page_size", "501")])).is_err());
        assert!(respond(items(), &q(&[("name", "("), ("use_regex", "true")])).is_err());
    }
}
