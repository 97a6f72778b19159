//! RabbitMQ's list query parameters, for every list endpoint that takes them: `name` (a substring, or a regular
//! expression with `use_regex=true`, matched against each item's name), `sort` (a field, dotted for nested ones:
//! `message_stats.publish`) with `sort_reverse`, `columns` (the fields to keep, dotted), and `page` with
//! `page_size` (default 100, at most 500). With `page`, the answer is RabbitMQ's page object (`items`, `page`,
//! `page_count`, `page_size`, `filtered_count`, `item_count`, `total_count`); without, the list itself, as before.
//!
//! Other parameters are ignored (RabbitMQ's UI and Flower send `pagination`; Warren pages whenever `page` is given).
//!
//! Invariant: with no parameters the answer is exactly the unpaged list, so Warren's console and older clients
//! see no change. A bad parameter is a 400 naming it.
//!
//! The answer is built as JSON (columns pick fields out of the items), so it is a [`Paged<T>`]: the JSON, and the
//! item type for the OpenAPI document, which describes all four shapes (list or page, whole items or columns).

use std::marker::PhantomData;

use aide::generate::GenContext;
use aide::openapi::{Operation, Response};
use aide::OperationOutput;
use axum::response::IntoResponse;
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Error;

const MAX_PAGE_SIZE: usize = 500;

/// The list query parameters (see the module doc).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// The page to answer with, from 1; with it the answer is a page object, without it the whole list.
    #[schemars(range(min = 1))]
    pub page: Option<usize>,
    /// Items per page, with `page` (default 100).
    #[schemars(range(min = 1, max = 500))]
    pub page_size: Option<usize>,
    /// Only the items whose name contains this (or matches it, with `use_regex`).
    pub name: Option<String>,
    /// `name` is a regular expression.
    pub use_regex: Option<bool>,
    /// The field to sort by, dotted for nested fields (`message_stats.publish`).
    pub sort: Option<String>,
    /// Sort in descending order.
    pub sort_reverse: Option<bool>,
    /// The fields to keep in each item, comma-separated, dotted for nested fields.
    pub columns: Option<String>,
}

/// RabbitMQ's page object.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Page<T> {
    pub filtered_count: usize,
    pub item_count: usize,
    pub items: Vec<T>,
    pub page: usize,
    pub page_count: usize,
    pub page_size: usize,
    pub total_count: usize,
}

/// A list endpoint's answer: the JSON that [`respond`] built from a list of `T`.
pub struct Paged<T>(Value, PhantomData<T>);

impl<T> IntoResponse for Paged<T> {
    fn into_response(self) -> axum::response::Response {
        Json(self.0).into_response()
    }
}

/// Items with only the chosen `columns`.
type Columns = Map<String, Value>;

impl<T: JsonSchema> OperationOutput for Paged<T> {
    type Inner = Value;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<Response> {
        let mut res = Json::<Vec<T>>::operation_response(ctx, operation)?;
        let any_of = vec![
            ctx.schema.subschema_for::<Vec<T>>(),
            ctx.schema.subschema_for::<Page<T>>(),
            ctx.schema.subschema_for::<Vec<Columns>>(),
            ctx.schema.subschema_for::<Page<Columns>>(),
        ];
        let schema = schemars::schema::SchemaObject {
            subschemas: Some(Box::new(schemars::schema::SubschemaValidation {
                any_of: Some(any_of),
                ..Default::default()
            })),
            ..Default::default()
        };
        res.description =
            "The list; a page of it with `page`; only the chosen fields of each item with `columns`".into();
        for media in res.content.values_mut() {
            media.schema = Some(aide::openapi::SchemaObject {
                json_schema: schema.clone().into(),
                example: None,
                external_docs: None,
            });
        }
        Some(res)
    }

    fn inferred_responses(ctx: &mut GenContext, operation: &mut Operation) -> Vec<(Option<u16>, Response)> {
        Self::operation_response(ctx, operation)
            .map(|r| vec![(Some(200), r)])
            .unwrap_or_default()
    }
}

/// Applies the query to `items` (see the module doc).
pub fn respond<T: Serialize>(items: Vec<T>, q: &ListQuery) -> Result<Paged<T>, Error> {
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect();
    let total = items.len();
    let mut items = match q.name.as_ref().filter(|n| !n.is_empty()) {
        None => items,
        Some(name) => {
            let regex = q.use_regex == Some(true);
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
    if let Some(field) = q.sort.as_ref().filter(|s| !s.is_empty()) {
        items.sort_by(|a, b| compare(path(a, field), path(b, field)));
        if q.sort_reverse == Some(true) {
            items.reverse();
        }
    }
    if let Some(columns) = q.columns.as_ref().filter(|c| !c.is_empty()) {
        let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
        items = items.into_iter().map(|i| keep(&i, &columns)).collect();
    }
    let paged = |v: Value| Ok(Paged(v, PhantomData));
    let Some(page) = q.page else {
        return paged(Value::Array(items));
    };
    if page < 1 {
        return Err(Error::bad_request("page must be a whole number from 1, not 0"));
    }
    let size = q.page_size.unwrap_or(100);
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(Error::bad_request(format!(
            "page_size must be from 1 to {MAX_PAGE_SIZE}, not {size}"
        )));
    }
    let filtered = items.len();
    let page_count = filtered.div_ceil(size).max(1);
    if page > page_count {
        return Err(Error::bad_request(format!(
            "page {page} is past the last page, {page_count}"
        )));
    }
    let shown: Vec<Value> = items.into_iter().skip((page - 1) * size).take(size).collect();
    paged(
        serde_json::to_value(Page {
            filtered_count: filtered,
            item_count: shown.len(),
            items: shown,
            page,
            page_count,
            page_size: size,
            total_count: total,
        })
        .unwrap_or(Value::Null),
    )
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
    use serde_json::json;

    /// The query string `pairs` make, parsed as the handlers parse it.
    fn q(pairs: &[(&str, &str)]) -> ListQuery {
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_urlencoded::from_str(&text.join("&")).expect("a valid query")
    }

    fn respond(items: Vec<Value>, q: &ListQuery) -> Result<Json<Value>, Error> {
        super::respond(items, q).map(|Paged(v, _)| Json(v))
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
        assert!(serde_urlencoded::from_str::<ListQuery>("use_regex=maybe").is_err());
    }
}
