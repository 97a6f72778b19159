//! `queues`, `purge`, `pause` and `resume`: the queue-level subcommands.

use warren_shared::QueueInfo;

use super::args::{Output, Yes};
use super::{confirm, failed, print_json, table, Outcome};
use crate::client::Api;
use crate::event::QueueKey;

/// A queue's state in one word: paused, idle (no consumers) or running.
fn state(q: &QueueInfo) -> &'static str {
    if q.paused {
        "paused"
    } else if q.consumers == 0 {
        "idle"
    } else {
        "running"
    }
}

pub async fn list(api: &Api, vhost: Option<&str>, out: Output) -> Outcome {
    let mut queues = api.queues(vhost).await.map_err(failed("list queues"))?;
    queues.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    if out.json {
        return print_json(&queues);
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.vhost.clone(),
                q.name.clone(),
                crate::app::queues::kind(q).to_string(),
                q.messages_ready.to_string(),
                q.messages_unacked.to_string(),
                q.consumers.to_string(),
                state(q).to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["VHOST", "NAME", "TYPE", "READY", "UNACKED", "CONSUMERS", "STATE"],
            &rows
        )
    );
    Ok(())
}

pub async fn purge(api: &Api, queue: &QueueKey, yes: Yes, out: Output) -> Outcome {
    confirm(
        yes.yes,
        "purge",
        &format!("Purge every ready message of {} on {}?", queue.name, queue.vhost),
    )?;
    let r = api
        .purge(queue)
        .await
        .map_err(failed(format!("purge {}", queue.name)))?;
    if out.json {
        return print_json(&r);
    }
    let undo = match &r.undo {
        Some(t) => format!(
            " Undo with: warren-console undo {} (until {}).",
            t.id,
            crate::format::clock(t.until_ms, chrono::Local::now().offset().local_minus_utc())
        ),
        None => String::new(),
    };
    println!(
        "Purged {} message{} from {}.{undo}",
        r.purged,
        if r.purged == 1 { "" } else { "s" },
        queue.name
    );
    Ok(())
}

pub async fn pause(api: &Api, queue: &QueueKey, paused: bool, out: Output) -> Outcome {
    let verb = if paused { "pause" } else { "resume" };
    let r = api
        .pause(queue, paused)
        .await
        .map_err(failed(format!("{verb} {}", queue.name)))?;
    if out.json {
        return print_json(&r);
    }
    let text = match (paused, r.changed) {
        (true, true) => format!("Paused {}: nothing is delivered until it is resumed.", queue.name),
        (false, true) => format!("Resumed {}.", queue.name),
        (true, false) => format!("{} was already paused.", queue.name),
        (false, false) => format!("{} was not paused.", queue.name),
    };
    println!("{text}");
    Ok(())
}
