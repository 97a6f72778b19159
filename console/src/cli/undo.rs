//! `undo` and `trace`: looking back. `undo` lists what the broker keeps of recent purges and deletes, or puts one back;
//! `trace` shows a message's journey (`GET /api/trace/{vhost}/{id}`). The journey's shape is the broker's: with
//! `--json` it is printed as it came, and the human form lists its events one per line with whatever fields they
//! carry, so a richer journey needs no change here.

use serde_json::Value;

use super::args::{Output, Yes};
use super::{confirm, failed, print_json, table, Failure, Outcome};
use crate::client::{Api, ApiFailure};

fn local(ms: u64) -> String {
    crate::format::date_time(ms, chrono::Local::now().offset().local_minus_utc())
}

pub async fn undo(api: &Api, id: Option<u64>, yes: Yes, out: Output) -> Outcome {
    let Some(id) = id else {
        let batches = api.undo_list().await.map_err(failed("list what can be undone"))?;
        if out.json {
            return print_json(&batches);
        }
        let rows: Vec<Vec<String>> = batches
            .iter()
            .map(|b| {
                vec![
                    b.id.to_string(),
                    b.vhost.clone(),
                    b.queue.clone(),
                    b.action.clone(),
                    b.messages.to_string(),
                    b.user.clone(),
                    local(b.until_ms),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["ID", "VHOST", "QUEUE", "ACTION", "MESSAGES", "USER", "UNTIL"], &rows)
        );
        return Ok(());
    };
    // Say what it puts back, when the broker still has it (the restore itself says if it does not).
    let what = match api.undo_list().await {
        Ok(list) => list.iter().find(|b| b.id == id).map(|b| {
            format!(
                "the {} messages of the {} of {} on {}",
                b.messages, b.action, b.queue, b.vhost
            )
        }),
        Err(_) => None,
    };
    let question = format!("Put back {}?", what.unwrap_or_else(|| format!("what undo {id} keeps")));
    confirm(yes.yes, "undo", &question)?;
    let r = api.undo(id).await.map_err(failed(format!("undo {id}")))?;
    if out.json {
        return print_json(&r);
    }
    println!(
        "Put back {} message{} into {} on {}.",
        r.restored,
        if r.restored == 1 { "" } else { "s" },
        r.queue,
        r.vhost
    );
    Ok(())
}

pub async fn trace(api: &Api, vhost: &str, id: &str, out: Output) -> Outcome {
    let journey = match api.trace(vhost, id).await {
        Ok(j) => j,
        Err(ApiFailure::Refused { status: 404, reason }) => {
            // The broker's own words when it has them; otherwise (a broker without journeys) what it may mean.
            let why = if reason.starts_with("no journey") {
                reason
            } else {
                format!("the broker has none ({reason}): is tracing on for its queue or vhost?")
            };
            return Err(Failure::Failed(format!(
                "no journey for '{id}' in vhost '{vhost}': {why}"
            )));
        }
        Err(e) => return Err(failed(format!("trace {id}"))(e)),
    };
    if out.json {
        return print_json(&journey);
    }
    let events = journey
        .get("events")
        .or_else(|| journey.get("journey"))
        .and_then(Value::as_array);
    let Some(events) = events else {
        return print_json(&journey);
    };
    println!(
        "journey of {id} in {vhost}: {} event{}",
        events.len(),
        if events.len() == 1 { "" } else { "s" }
    );
    let mut previous: Option<u64> = None;
    for e in events {
        println!("{}", event_line(e, &mut previous));
    }
    Ok(())
}

/// One event: its time (and the time since the previous one), its kind, and its other fields as `key=value`.
fn event_line(e: &Value, previous: &mut Option<u64>) -> String {
    let Some(fields) = e.as_object() else {
        return e.to_string();
    };
    let at = ["at_ms", "time_ms", "timestamp_ms"]
        .iter()
        .find_map(|k| fields.get(*k).and_then(Value::as_u64));
    let kind = ["event", "kind", "type", "step"]
        .iter()
        .find_map(|k| fields.get(*k).and_then(Value::as_str))
        .unwrap_or("?");
    let mut line = match at {
        Some(t) => {
            let delta = previous.map(|p| format!(" (+{})", crate::format::duration_ms(t.saturating_sub(p))));
            *previous = Some(t);
            format!("{}{}  {kind}", local(t), delta.unwrap_or_default())
        }
        None => kind.to_string(),
    };
    for (k, v) in fields {
        if ["at_ms", "time_ms", "timestamp_ms", "event", "kind", "type", "step"].contains(&k.as_str()) {
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            Value::Null => continue,
            other => other.to_string(),
        };
        line.push_str(&format!("  {k}={v}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_has_its_time_kind_and_fields() {
        let mut previous = Some(1_000);
        let e = serde_json::json!({"at_ms": 4_000, "event": "dead-lettered", "reason": "rejected", "to": "orders.dlq"});
        let line = event_line(&e, &mut previous);
        assert!(
            line.ends_with("(+3.0s)  dead-lettered  reason=rejected  to=orders.dlq"),
            "{line}"
        );
        assert_eq!(previous, Some(4_000));
    }
}
