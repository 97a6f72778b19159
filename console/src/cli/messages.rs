//! `peek`, `export`, `import` and `publish`: messages in and out.
//!
//! `export` writes one JSON object per line per ready message, exactly as peek returns it (`PeekedMessage`: id,
//! routing key, properties with headers, body and its encoding); nothing is consumed. `import` reads that format
//! (only `routing_key`, `body`, `body_encoding`, `persistent` and `properties` are used; every other field may be
//! missing) and publishes each line through the admin API. The publish API takes scalar headers only, and no
//! `timestamp`: those are left out, and counted in a warning on stderr (a dead letter's `x-death` is one of them).

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warren_shared::{PeekRequest, PeekedMessage, PublishRequest};

use super::args::{Cmd, Filter, Output};
use super::{failed, print_json, table, Failure, Outcome};
use crate::app::messages::parse_filter;
use crate::client::Api;
use crate::event::QueueKey;

/// The most peek gives in one request.
const PAGE: u64 = 1000;

fn filter_of(f: &Filter) -> warren_shared::MessageFilter {
    f.filter.as_deref().map(parse_filter).unwrap_or_default()
}

/// A body for a table cell: the console's preview, at most 60 characters.
fn preview(m: &PeekedMessage) -> String {
    let text = crate::app::messages::preview(m);
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(59).collect::<String>())
    } else {
        text
    }
}

pub async fn peek(api: &Api, queue: &QueueKey, filter: &Filter, from: u64, count: u64, out: Output) -> Outcome {
    let request = PeekRequest {
        from,
        count: Some(count),
        filter: filter_of(filter),
        ..PeekRequest::default()
    };
    let messages = api
        .peek(queue, &request)
        .await
        .map_err(failed(format!("peek {}", queue.name)))?;
    if out.json {
        return print_json(&messages);
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.routing_key.clone(),
                m.priority.to_string(),
                m.delivery_count.to_string(),
                crate::app::messages::death(m).map_or(String::new(), |(reason, from)| format!("{reason} from {from}")),
                preview(m),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["ID", "ROUTING KEY", "PRIO", "DELIVERIES", "DEATH", "BODY"], &rows)
    );
    Ok(())
}

pub async fn export(
    api: &Api,
    queue: &QueueKey,
    filter: &Filter,
    limit: Option<u64>,
    output: Option<&Path>,
) -> Outcome {
    let mut sink: Box<dyn Write> = match output {
        Some(path) => {
            Box::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| {
                Failure::Usage(format!("cannot write {}: {e}", path.display()))
            })?))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let filter = filter_of(filter);
    let mut written = 0u64;
    loop {
        let want = limit.map_or(PAGE, |l| (l - written).min(PAGE));
        if want == 0 {
            break;
        }
        let request = PeekRequest {
            from: written,
            count: Some(want),
            filter: filter.clone(),
            ..PeekRequest::default()
        };
        let page = api
            .peek(queue, &request)
            .await
            .map_err(failed(format!("export {}", queue.name)))?;
        for m in &page {
            let line = serde_json::to_string(m).map_err(|e| Failure::Failed(format!("cannot write JSON: {e}")))?;
            writeln!(sink, "{line}").map_err(|e| Failure::Failed(format!("cannot write: {e}")))?;
        }
        written += page.len() as u64;
        if (page.len() as u64) < want {
            break;
        }
    }
    sink.flush()
        .map_err(|e| Failure::Failed(format!("cannot write: {e}")))?;
    eprintln!(
        "exported {written} message{} from {}",
        if written == 1 { "" } else { "s" },
        queue.name
    );
    Ok(())
}

/// One line of an export, as import reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Line {
    routing_key: String,
    body: String,
    body_encoding: String,
    persistent: bool,
    properties: Map<String, Value>,
}

/// What the publish API takes of a message's properties; the count of what it had to leave out.
fn publishable(mut properties: Map<String, Value>) -> (Map<String, Value>, usize) {
    let mut dropped = usize::from(properties.remove("timestamp").is_some());
    if let Some(Value::Object(headers)) = properties.get_mut("headers") {
        let before = headers.len();
        headers.retain(|_, v| v.is_string() || v.is_boolean() || v.is_i64() || v.is_u64());
        dropped += before - headers.len();
        if headers.is_empty() {
            properties.remove("headers");
        }
    }
    (properties, dropped)
}

#[derive(Debug, Serialize)]
struct Imported {
    published: u64,
    unroutable: u64,
    /// Properties or headers the publish API cannot take (timestamp, x-death and other tables or lists).
    left_out: u64,
}

pub async fn import(
    api: &Api,
    vhost: &str,
    queue: Option<String>,
    exchange: Option<String>,
    file: Option<&Path>,
    out: Output,
) -> Outcome {
    let reader: Box<dyn BufRead> = match file {
        Some(path) => {
            Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(|e| {
                Failure::Usage(format!("cannot read {}: {e}", path.display()))
            })?))
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let source = file.map_or("stdin".to_string(), |p| p.display().to_string());
    // Every line is read and checked before the first publish: a bad file publishes nothing.
    let mut lines = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let text = text.map_err(|e| Failure::Usage(format!("cannot read {source}: {e}")))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&text)
            .map_err(|e| Failure::Usage(format!("{source} line {}: not a message: {e}", i + 1)))?;
        lines.push(line);
    }
    let (exchange, fixed_key) = match (&queue, exchange) {
        (Some(q), _) => ("amq.default".to_string(), Some(q.clone())),
        (None, Some(x)) => (x, None),
        (None, None) => return Err(Failure::Usage("give a QUEUE or --exchange".into())),
    };
    let mut result = Imported {
        published: 0,
        unroutable: 0,
        left_out: 0,
    };
    for line in lines {
        let (properties, dropped) = publishable(line.properties);
        result.left_out += dropped as u64;
        let request = PublishRequest {
            routing_key: fixed_key.clone().unwrap_or(line.routing_key),
            payload: line.body,
            payload_encoding: (!line.body_encoding.is_empty()).then_some(line.body_encoding),
            persistent: line.persistent,
            properties,
            ..PublishRequest::default()
        };
        let r = api
            .publish(vhost, &exchange, &request)
            .await
            .map_err(failed(format!("import (after {} published)", result.published)))?;
        if r.routed {
            result.published += 1;
        } else {
            result.unroutable += 1;
        }
    }
    if result.left_out > 0 {
        eprintln!(
            "warning: left out {} timestamp or non-scalar header value{} (x-death and the like): the publish API \
             cannot take them",
            result.left_out,
            if result.left_out == 1 { "" } else { "s" }
        );
    }
    if out.json {
        print_json(&result)?;
    } else {
        println!(
            "Published {} message{}.",
            result.published,
            if result.published == 1 { "" } else { "s" }
        );
    }
    if result.unroutable > 0 {
        return Err(Failure::Failed(format!(
            "{} message{} reached no queue",
            result.unroutable,
            if result.unroutable == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

pub async fn publish(api: &Api, command: Cmd) -> Outcome {
    let Cmd::Publish {
        queue,
        exchange,
        routing_key,
        body,
        headers,
        message_id,
        content_type,
        priority,
        persistent,
        vhost,
        out,
    } = command
    else {
        return Ok(());
    };
    let payload = if body == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::Usage(format!("cannot read the body from stdin: {e}")))?;
        text
    } else {
        body
    };
    let (exchange, routing_key, to) = match (queue, exchange) {
        (Some(q), _) => ("amq.default".to_string(), q.clone(), format!("queue {q}")),
        (None, Some(x)) => (
            x.clone(),
            routing_key.clone(),
            format!("exchange {x} with key '{routing_key}'"),
        ),
        (None, None) => return Err(Failure::Usage("give a QUEUE or --exchange".into())),
    };
    let mut properties = Map::new();
    if let Some(t) = content_type {
        properties.insert("content_type".into(), Value::String(t));
    }
    let request = PublishRequest {
        routing_key,
        payload,
        persistent,
        priority,
        message_id,
        headers: headers.into_iter().collect(),
        properties,
        ..PublishRequest::default()
    };
    let r = api
        .publish(&vhost.vhost, &exchange, &request)
        .await
        .map_err(failed(format!("publish to {to}")))?;
    if out.json {
        print_json(&r)?;
    } else if r.routed {
        println!("Published to {to}.");
    }
    if !r.routed {
        return Err(Failure::Failed(format!("published to {to}, but no queue took it")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_leaves_out_what_the_publish_api_cannot_take() {
        let props: Map<String, Value> = serde_json::from_str(
            r#"{"message_id":"m1","timestamp":1700000000,"delivery_mode":2,
                "headers":{"tenant":"a","n":3,"ok":true,"x-death":[{"queue":"orders"}],"f":1.5}}"#,
        )
        .expect("json");
        let (kept, dropped) = publishable(props);
        assert_eq!(dropped, 3);
        assert_eq!(
            Value::Object(kept),
            serde_json::json!({"message_id":"m1","delivery_mode":2,"headers":{"tenant":"a","n":3,"ok":true}})
        );
    }
}
