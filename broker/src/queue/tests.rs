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
