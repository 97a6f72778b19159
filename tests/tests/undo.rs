//! Undo (issue 15, item 5): an operator's purge or delete through the admin API keeps what it removed for a window,
//! within a size bound; `POST /api/undo/{id}` puts it back (checked over AMQP: nothing lost, in order); after the
//! window, or past the bound, there is nothing to undo.

use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

async fn fill(ch: &lapin::Channel, queue: &str, n: usize) {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

async fn bodies(ch: &lapin::Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    out
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_and_a_delete_can_be_undone_within_the_window_and_nothing_is_lost() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    fill(&ch, "orders", 7).await;

    let (status, purged) = request(admin, "DELETE", "/api/queues/%2F/orders/contents", "guest:guest", "");
    assert_eq!((status, purged["purged"].clone()), (200, 7.into()), "{purged}");
    let id = purged["undo"]["id"].as_u64().expect("an undo ticket");
    assert_eq!(depth(&ch, "orders").await, 0, "the purge took effect at once");
    let (_, list) = request(admin, "GET", "/api/undo", "guest:guest", "");
    assert_eq!(list[0]["queue"], "orders", "{list}");
    assert_eq!(
        (list[0]["action"].clone(), list[0]["messages"].clone()),
        ("purge".into(), 7.into())
    );
    let (_, overview) = request(admin, "GET", "/api/overview", "guest:guest", "");
    assert_eq!(overview["undo_window_ms"], 600_000, "ten minutes by default");

    // Something arrives meanwhile; the undo puts the purged messages back after it, in their order.
    fill(&ch, "orders", 0).await;
    let (status, undone) = request(admin, "POST", &format!("/api/undo/{id}"), "guest:guest", "");
    assert_eq!((status, undone["restored"].clone()), (200, 7.into()), "{undone}");
    assert_eq!(bodies(&ch, "orders").await, numbered(7), "nothing lost, in order");
    let (status, _) = request(admin, "POST", &format!("/api/undo/{id}"), "guest:guest", "");
    assert_eq!(status, 404, "an undo happens once");

    // A delete by id, undone.
    fill(&ch, "orders", 3).await;
    let (_, page) = request(admin, "POST", "/api/queues/%2F/orders/peek", "guest:guest", "{}");
    let first = page[0]["id"].as_u64().expect("id");
    let (status, deleted) = request(
        admin,
        "POST",
        "/api/queues/%2F/orders/delete",
        "guest:guest",
        &format!(r#"{{"ids": [{first}]}}"#),
    );
    assert_eq!((status, deleted["deleted"].clone()), (200, 1.into()), "{deleted}");
    let id = deleted["undo"]["id"].as_u64().expect("an undo ticket");
    assert_eq!(depth(&ch, "orders").await, 2);
    let (status, _) = request(admin, "POST", &format!("/api/undo/{id}"), "guest:guest", "");
    assert_eq!(status, 200);
    assert_eq!(
        bodies(&ch, "orders").await,
        vec!["m1", "m2", "m0"],
        "put back at the tail"
    );

    // After the window there is nothing to undo, and the space is reclaimed.
    fill(&ch, "orders", 2).await;
    let (_, purged) = request(admin, "DELETE", "/api/queues/%2F/orders/contents", "guest:guest", "");
    let id = purged["undo"]["id"].as_u64().expect("an undo ticket");
    broker.advance(Duration::from_secs(11 * 60));
    let (status, body) = request(admin, "POST", &format!("/api/undo/{id}"), "guest:guest", "");
    assert_eq!(status, 404, "{body}");
    let (_, list) = request(admin, "GET", "/api/undo", "guest:guest", "");
    assert_eq!(list, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_a_purge_cannot_be_undone_and_an_undo_into_a_deleted_queue_waits() {
    let broker = TestBroker::start_with(|c| c.undo_max_bytes = 1000);
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    fill(&ch, "big", 50).await;
    let (status, purged) = request(admin, "DELETE", "/api/queues/%2F/big/contents", "guest:guest", "");
    assert_eq!((status, purged["purged"].clone()), (200, 50.into()), "{purged}");
    assert!(purged.get("undo").is_none(), "larger than the bound: no undo: {purged}");

    fill(&ch, "small", 1).await;
    let (_, purged) = request(admin, "DELETE", "/api/queues/%2F/small/contents", "guest:guest", "");
    let id = purged["undo"]["id"].as_u64().expect("an undo ticket");
    ch.queue_delete("small".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let (status, body) = request(admin, "POST", &format!("/api/undo/{id}"), "guest:guest", "");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| r.contains("declare it again")),
        "{body}"
    );
    fill(&ch, "small", 0).await;
    let (status, _) = request(admin, "POST", &format!("/api/undo/{id}"), "guest:guest", "");
    assert_eq!(status, 200, "once the queue is back, the undo goes through");
    assert_eq!(bodies(&ch, "small").await, numbered(1));
}
