//! Publish a message and consume it back with lapin (the README's Rust snippet; `tests/tests/readme.rs` runs it).
use futures_lite::StreamExt;
use lapin::{options::*, types::FieldTable, BasicProperties, Connection, ConnectionProperties};

pub async fn hello(url: &str) -> Result<String, lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare("hello".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    channel
        .basic_publish(
            "".into(),
            "hello".into(),
            BasicPublishOptions::default(),
            b"hello, warren",
            BasicProperties::default(),
        )
        .await?
        .await?; // wait for the publisher confirm
    let mut consumer = channel
        .basic_consume(
            "hello".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut got = String::new();
    if let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        got = String::from_utf8_lossy(&delivery.data).into_owned();
        channel
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await?;
    }
    conn.close(200, "bye".into()).await?;
    Ok(got)
}

#[tokio::main]
async fn main() -> Result<(), lapin::Error> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@localhost:5672/%2f".into());
    println!("received: {}", hello(&url).await?);
    Ok(())
}
