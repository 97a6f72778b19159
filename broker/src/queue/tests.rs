//! Unit tests of `Queue` that need no connection: deletion under conditions, and consumers meeting a deleted queue.

use std::sync::Arc;

use super::*;

fn queue() -> Arc<Queue> {
    Queue::for_tests("q")
}

fn consumer(tag: &str) -> QueueConsumer {
    QueueConsumer {
        tag: tag.into(),
        channel: 1,
        connection_id: 1,
        outbox: Arc::new(Outbox::default()),
        credit: Arc::new(ConsumerCredit::new(10, Arc::new(Credit::new(0)))),
        exclusive: false,
        priority: 0,
        ack_required: true,
    }
}

#[test]
fn a_consumer_cannot_join_a_deleted_queue() {
    let q = queue();
    q.mark_deleted();
    // Before: accepted, and the consumer waited forever on a queue nobody could reach.
    let refused = q.add_consumer(consumer("late")).err().map(|e| e.code);
    assert_eq!(refused, Some(crate::amqp::error::NOT_FOUND));
}

#[test]
fn delete_if_unused_checks_and_deletes_in_one_step() {
    let q = queue();
    q.add_consumer(consumer("c")).expect("consumer");
    assert_eq!(q.delete_if(true, false, || Ok::<(), ()>(())), Err(DeleteRefused::InUse));
    assert!(!q.is_deleted());
    q.remove_consumer(1, 1, "c");
    assert_eq!(
        q.delete_if(true, true, || Err("disk full")),
        Err(DeleteRefused::NotSaved("disk full"))
    );
    assert!(!q.is_deleted(), "a deletion that was not saved changes nothing");
    assert_eq!(q.delete_if(true, true, || Ok::<(), ()>(())), Ok(0));
    assert!(q.is_deleted());
    assert!(q.add_consumer(consumer("after")).is_err());
}

/// A stream queue whose appends go to a syncer that has not written them yet.
fn stream_with_idle_syncer(dir: &std::path::Path) -> Arc<Queue> {
    let settings = crate::stream::args::StreamSettings {
        max_bytes: None,
        max_age_ms: None,
        segment_bytes: crate::stream::log::DEFAULT_MAX_SEGMENT_BYTES,
    };
    let state = crate::stream::state::StreamState::open(dir, settings, 0).expect("open the stream");
    Queue::new_stream(
        QueueSpec {
            name: "log".into(),
            vhost: "/".into(),
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments: Default::default(),
            policy: None,
        },
        state,
        Some(SyncPolicy {
            mode: crate::store::FsyncMode::Batch,
            syncer: crate::store::Syncer::idle(),
        }),
        Weak::new(),
        Clock::system(),
        Timer::detached(),
    )
}

#[test]
fn a_stream_peek_sees_what_is_appended_but_not_yet_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = stream_with_idle_syncer(dir.path());
    for body in ["m0", "m1"] {
        let m = Message::new(
            "".into(),
            "log".into(),
            &Default::default(),
            bytes::Bytes::new(),
            bytes::Bytes::from(body),
        );
        assert!(q.publish(Arc::new(m)).routed);
    }
    let peeked = q
        .stream_peek(crate::stream::log::OffsetSpec::First, 0, 10, &|_| true)
        .expect("a stream")
        .expect("a read");
    // Before: a peek read the files only, so a dead letter appended a moment earlier was missing from it.
    let got: Vec<(u64, Vec<u8>)> = peeked.iter().map(|e| (e.seq, e.message.body.to_vec())).collect();
    assert_eq!(got, [(0, b"m0".to_vec()), (1, b"m1".to_vec())]);
    let skipped = q
        .stream_peek(crate::stream::log::OffsetSpec::Offset(1), 0, 10, &|_| true)
        .expect("a stream")
        .expect("a read");
    assert_eq!(skipped.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
}
