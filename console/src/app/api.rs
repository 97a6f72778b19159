//! What the broker's answers do to the app: `on_api` folds each `ApiEvent` (snapshots, listings, peeks, the outcome
//! of every action) into `App`, and returns the reads or re-reads they call for. Split from `app.rs` by concern;
//! the state it changes is `App`'s.

use super::*;

pub(super) fn on_api(app: &mut App, event: ApiEvent) -> Vec<Command> {
    let now = app.now_ms;
    let mut commands = Vec::new();
    match event {
        ApiEvent::StreamUp => {
            if let Link::Stale { since_ms, .. } = app.link {
                let since = crate::format::clock(since_ms, app.settings.utc_offset_s);
                app.flash(
                    Level::Info,
                    format!("reconnected to {} (stale since {since})", app.settings.url),
                );
            }
            app.link = Link::Live;
            // Who leads may have changed while the stream was down: the header's cluster badge reads it again.
            commands.extend(app.fetch(Resource::Nodes));
        }
        ApiEvent::Snapshot(s) => {
            app.link = Link::Live;
            app.last_data_ms = Some(now);
            app.history.record(&s.overview, &s.queues, now);
            // A mark on a deleted queue would be purged (and fail) with the next `P`.
            let present: HashSet<(&str, &str)> = s.queues.iter().map(|q| (q.vhost.as_str(), q.name.as_str())).collect();
            app.queue_table
                .marked
                .retain(|k| present.contains(&(k.vhost.as_str(), k.name.as_str())));
            app.overview = Some(s.overview);
            app.queues = s.queues;
        }
        ApiEvent::CredentialsRefused { error } => {
            app.flash(
                Level::Error,
                format!(
                    "{} refused these credentials ({error}); start warren-console again with the right --user and \
                     --password",
                    app.settings.url
                ),
            );
            app.link = Link::Refused { error };
            app.exchanges.pending = false;
            app.bindings.pending = false;
            app.connections.pending = false;
            app.consumers.pending = false;
            app.audit.list.pending = false;
            app.scheduled.pending = false;
        }
        ApiEvent::StreamDown { error, retry_in_ms } => {
            let since_ms = match &app.link {
                Link::Stale { since_ms, .. } => *since_ms,
                _ => app.last_data_ms.unwrap_or(now),
            };
            if !app.is_stale() {
                app.flash(Level::Warn, format!("lost the broker: {error}"));
            }
            app.link = Link::Stale {
                since_ms,
                retry_at_ms: now + retry_in_ms,
                error,
            };
            // Reads in flight will fail; let them be asked again after reconnecting.
            app.exchanges.pending = false;
            app.bindings.pending = false;
            app.connections.pending = false;
            app.consumers.pending = false;
            app.audit.list.pending = false;
            app.scheduled.pending = false;
            if let Some(m) = &mut app.messages {
                m.loading = false;
            }
        }
        ApiEvent::Exchanges(v) => app.exchanges.load(v, now),
        ApiEvent::Bindings(v) => app.bindings.load(v, now),
        ApiEvent::Connections(v) => app.connections.load(v, now),
        ApiEvent::Consumers(v) => app.consumers.load(v, now),
        ApiEvent::Cluster(c) => {
            app.nodes.load(c.nodes.clone(), now);
            app.cluster = Some(*c);
        }
        ApiEvent::LeaderMoved { url, cluster } => {
            let took = match &app.link {
                Link::Stale { since_ms, .. } => {
                    format!(" after {:.1} s", now.saturating_sub(*since_ms) as f64 / 1000.0)
                }
                _ => String::new(),
            };
            app.flash(
                Level::Info,
                format!(
                    "{} leads (term {}){took}: following it at {url}",
                    cluster.node, cluster.term
                ),
            );
            app.nodes.load(cluster.nodes.clone(), now);
            app.cluster = Some(*cluster);
            // The feed reconnects there at once (the link no longer being stale, its `StreamUp` leaves this flash).
            app.settings.url = url;
            app.link = Link::Connecting;
        }
        ApiEvent::Peeked {
            seq,
            queue,
            from,
            messages,
        } => {
            // An answer to an older peek (a slow page, or one read before the filter changed) is dropped.
            if let Some(m) = app.messages.as_mut().filter(|m| m.awaits(&queue, seq)) {
                m.load(from, messages, now);
            }
        }
        ApiEvent::PeekFailed { seq, queue, error } => {
            if let Some(m) = app.messages.as_mut().filter(|m| m.awaits(&queue, seq)) {
                m.loading = false;
                m.loaded_ms = Some(now);
                app.flash(Level::Error, format!("reading messages of {}: {error}", queue.name));
            }
        }
        ApiEvent::Purged {
            request_id,
            queue,
            purged,
        } => {
            match app.dialog.as_mut() {
                Some(d) if d.sent(request_id) && d.phase == Phase::Running => d.on_purged(&queue, purged),
                _ => app.flash(Level::Info, format!("purged {purged} from {}", queue.name)),
            }
            // The queue is done with; a mark left on it would purge it again with the next `P`.
            app.queue_table.marked.remove(&queue);
            commands.extend(reload_messages(app, &queue));
        }
        ApiEvent::Move { request_id, task } => {
            let finished = task.state != "running";
            let queue = QueueKey::new(&task.vhost, &task.queue);
            match app.dialog.as_mut() {
                Some(d) if d.follows(request_id, task.id) => d.on_move(task),
                // Hidden (esc) or replaced by another dialog: the end still gets reported.
                _ if finished => app.flash(
                    Level::Info,
                    format!("move from {} {}: {} moved", task.queue, task.state, task.moved),
                ),
                _ => {}
            }
            if finished {
                if let Some(m) = app.messages.as_mut().filter(|m| m.queue == queue) {
                    m.marked.clear();
                }
                commands.extend(reload_messages(app, &queue));
            }
        }
        ApiEvent::Deleted {
            request_id,
            queue,
            deleted,
        } => {
            finish(
                app,
                request_id,
                format!("Deleted {deleted} message{}.", if deleted == 1 { "" } else { "s" }),
            );
            if let Some(m) = app.messages.as_mut().filter(|m| m.queue == queue) {
                m.marked.clear();
            }
            commands.extend(reload_messages(app, &queue));
        }
        ApiEvent::PriorityChanged {
            request_id,
            queue,
            changed,
        } => {
            finish(
                app,
                request_id,
                format!(
                    "Changed the priority of {changed} message{}.",
                    if changed == 1 { "" } else { "s" }
                ),
            );
            commands.extend(reload_messages(app, &queue));
        }
        ApiEvent::Published {
            request_id,
            queue,
            routed,
        } => {
            let text = if routed {
                format!("Published to {}.", queue.name)
            } else {
                format!("Published, but no queue took it (is {} still there?).", queue.name)
            };
            finish(app, request_id, text);
            commands.extend(reload_messages(app, &queue));
        }
        ApiEvent::ConnectionClosed { request_id, connection } => {
            finish(app, request_id, format!("Closed connection {connection}."));
            commands.extend(app.fetch(Resource::Connections));
        }
        ApiEvent::Undoable {
            request_id,
            queue,
            action,
            count,
            ticket,
        } => {
            let until = crate::format::clock(ticket.until_ms, app.settings.utc_offset_s);
            if let Some(d) = app.dialog.as_mut().filter(|d| d.sent(request_id)) {
                d.note_undo(format!("u undoes it until {until}."));
            }
            app.last_undo = Some(UndoRef {
                id: ticket.id,
                queue,
                action,
                count,
                until_ms: ticket.until_ms,
            });
        }
        ApiEvent::Undone { request_id, result } => {
            if app.last_undo.as_ref().is_some_and(|u| u.queue.name == result.queue) {
                app.last_undo = None;
            }
            let queue = QueueKey::new(&result.vhost, &result.queue);
            finish(
                app,
                request_id,
                format!(
                    "Put back {} message{} into {}.",
                    crate::format::count(result.restored),
                    if result.restored == 1 { "" } else { "s" },
                    result.queue
                ),
            );
            commands.extend(reload_messages(app, &queue));
        }
        ApiEvent::Paused {
            request_id,
            queue,
            paused,
            changed,
        } => {
            let text = match (paused, changed) {
                (true, true) => format!("Paused {}: nothing is delivered until it is resumed.", queue.name),
                (false, true) => format!("Resumed {}.", queue.name),
                (true, false) => format!("{} was already paused.", queue.name),
                (false, false) => format!("{} was not paused.", queue.name),
            };
            finish(app, request_id, text);
        }
        ApiEvent::StreamActed {
            request_id,
            queue,
            result,
        } => {
            let first = crate::format::count(result.first_offset);
            let text = match (result.offset, result.segments_removed) {
                (Some(o), _) => format!(
                    "It reads from offset {} next ({} starts at offset {first}).",
                    crate::format::count(o),
                    queue.name
                ),
                (None, Some(n)) => format!(
                    "Removed {n} segment{}; {} now starts at offset {first}.",
                    if n == 1 { "" } else { "s" },
                    queue.name
                ),
                (None, None) => format!("Done; {} starts at offset {first}.", queue.name),
            };
            finish(app, request_id, text);
            commands.extend(reload_messages(app, &queue));
        }
        ApiEvent::Edited {
            request_id,
            queue,
            result,
        } => {
            finish(
                app,
                request_id,
                format!(
                    "Published the edited copy to {}; removed message {} from {}.",
                    result.destination, result.original, queue.name
                ),
            );
            commands.extend(reload_messages(app, &queue));
        }
        ApiEvent::Scheduled { total, messages } => app.scheduled.load(total, messages, now),
        ApiEvent::ScheduledFailed { error } => {
            app.scheduled.pending = false;
            app.scheduled.fetched_ms = Some(now);
            app.flash(Level::Error, format!("reading scheduled messages: {error}"));
        }
        ApiEvent::ScheduledActed {
            request_id,
            op,
            affected,
        } => {
            let done = match op.as_str() {
                "cancel" => "Cancelled",
                "deliver" => "Delivered",
                _ => "Rescheduled",
            };
            let text = format!(
                "{done} {} held message{}.",
                crate::format::count(affected),
                if affected == 1 { "" } else { "s" }
            );
            finish(app, request_id, text);
            app.scheduled.marked.clear();
            app.scheduled.fetched_ms = None;
            commands.extend(app.read_scheduled());
        }
        ApiEvent::ActionFailed { request_id, error } => match app.dialog.as_mut() {
            Some(d) if d.sent(request_id) && matches!(d.phase, Phase::Running | Phase::Progress(_)) => {
                d.on_failed(error)
            }
            _ => app.flash(Level::Error, error),
        },
        ApiEvent::FetchFailed { resource, error } => {
            *app.listing_state(resource).0 = false;
            app.flash(Level::Error, format!("reading {}: {error}", resource.name()));
        }
        ApiEvent::Audit { before, entries } => app.audit.load(before, entries, now),
        ApiEvent::Traced { seq, result } => trace::loaded(app, seq, result),
        ApiEvent::AuditFailed { denied, error, .. } => {
            app.audit.failed(denied, now);
            if denied {
                app.flash(Level::Warn, audit::DENIED);
            } else {
                app.flash(Level::Error, format!("reading the audit trail: {error}"));
            }
        }
    }
    commands
}

/// Action `request_id` succeeded: show it in its dialog, or in the flash line if that dialog was closed (or another
/// one opened since).
fn finish(app: &mut App, request_id: RequestId, text: String) {
    match app.dialog.as_mut() {
        Some(d) if d.sent(request_id) && d.phase == Phase::Running => d.finish(true, vec![text]),
        _ => app.flash(Level::Info, text),
    }
}

/// After an action on `queue`, the messages view (if it shows that queue) reads its page again.
fn reload_messages(app: &mut App, queue: &QueueKey) -> Option<Command> {
    let m = app.messages.as_mut().filter(|m| &m.queue == queue)?;
    Some(m.peek(m.from, next_id(&mut app.last_id)))
}
