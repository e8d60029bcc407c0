//! lapin (the Rust RabbitMQ client, from crates.io) against a real
//! `fjord serve`: a topic exchange with a binding, publisher confirms,
//! typed headers and properties round-tripping, prefetch-limited
//! consumption with acks, a nack with requeue coming back redelivered, and
//! a refused login. Every step checks what the broker sent back.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

const T: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_publishes_with_confirms_and_consumes_with_acks() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let addr = server.listeners["amqp"].as_str().unwrap().to_string();
    let uri = format!("amqp://guest:guest@{addr}/%2f");

    let conn = Connection::connect(&uri, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch.exchange_declare(
        "lapin.orders".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = ch
        .queue_declare(
            "lapin-eu".into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    ch.queue_bind(
        "lapin-eu".into(),
        "lapin.orders".into(),
        "order.*.eu".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
    headers.insert("attempt".into(), AMQPValue::LongInt(3));
    headers.insert("urgent".into(), AMQPValue::Boolean(true));
    for i in 0..20u32 {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(format!("id-{i}").into())
            .with_headers(headers.clone());
        // Every other message matches no binding (routed nowhere, still acked).
        let key = if i % 2 == 0 { "order.created.eu" } else { "order.created.us" };
        let body = format!("{{\"n\":{i}}}");
        let confirm = ch
            .basic_publish("lapin.orders".into(), key.into(), BasicPublishOptions::default(), body.as_bytes(), props)
            .await
            .unwrap();
        assert!(tokio::time::timeout(T, confirm).await.unwrap().unwrap().is_ack(), "message {i} confirmed");
    }

    let consumer_ch = conn.create_channel().await.unwrap();
    consumer_ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consumer_ch
        .basic_consume("lapin-eu".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut nacked = false;
    while got.len() < 10 {
        let d = tokio::time::timeout(T, consumer.next()).await.unwrap().unwrap().unwrap();
        let text = String::from_utf8(d.data.clone()).unwrap();
        if text == "{\"n\":4}" && !nacked {
            // Requeued: it comes back, flagged redelivered.
            assert!(!d.redelivered);
            d.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.unwrap();
            nacked = true;
            continue;
        }
        assert_eq!(d.exchange.as_str(), "lapin.orders");
        assert_eq!(d.routing_key.as_str(), "order.created.eu");
        assert_eq!(d.properties.content_type().as_ref().unwrap().as_str(), "application/json");
        let h = d.properties.headers().as_ref().unwrap();
        assert_eq!(h.inner().get("tenant"), Some(&AMQPValue::LongString("acme".into())));
        assert_eq!(h.inner().get("attempt"), Some(&AMQPValue::LongInt(3)));
        assert_eq!(h.inner().get("urgent"), Some(&AMQPValue::Boolean(true)));
        got.push((text, d.redelivered, d.properties.message_id().as_ref().unwrap().to_string()));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    let mut bodies: Vec<&str> = got.iter().map(|(b, _, _)| b.as_str()).collect();
    bodies.sort();
    let mut want: Vec<String> = (0..20).step_by(2).map(|i| format!("{{\"n\":{i}}}")).collect();
    want.sort();
    assert_eq!(bodies, want);
    let again = got.iter().find(|(b, _, _)| b == "{\"n\":4}").unwrap();
    assert!(again.1, "the requeued message is redelivered");
    assert_eq!(again.2, "id-4");
    // Everything was acked: nothing is left.
    let left = ch.basic_get("lapin-eu".into(), BasicGetOptions::default()).await.unwrap();
    assert!(left.is_none());
    conn.close(200, "done".into()).await.unwrap();

    let refused = Connection::connect(&format!("amqp://guest:wrong@{addr}/%2f"), ConnectionProperties::default()).await;
    assert!(refused.is_err(), "a wrong password is refused");
}
