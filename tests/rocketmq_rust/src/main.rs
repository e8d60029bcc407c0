//! Sends messages with the crates.io `rocketmq` client's Producer, then
//! receives and acks them with its SimpleConsumer (tag filter), through
//! Fjord's gRPC endpoint. Prints one line per received message,
//! `received <tag> <body>`, and exits non-zero on any client error or when
//! not every message came back within 30 s.
//!
//!     rocketmq-rust-client-check ENDPOINT TOPIC GROUP COUNT

use std::time::{Duration, Instant};

use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use rocketmq::{Producer, SimpleConsumer};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, topic, group, count] = &args[..] else {
        eprintln!("usage: rocketmq-rust-client-check ENDPOINT TOPIC GROUP COUNT");
        std::process::exit(64);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let mut client = ClientOption::default();
    client.set_access_url(endpoint);
    client.set_enable_tls(false);

    let mut po = ProducerOption::default();
    po.set_topics(vec![topic.as_str()]);
    let mut producer = Producer::new(po, client.clone()).expect("producer");
    producer.start().await.expect("producer start");
    for i in 0..count {
        // Odd messages carry another tag: the consumer's filter drops them.
        for tag in ["rust", "other"] {
            let m = MessageBuilder::builder()
                .set_topic(topic)
                .set_tag(tag)
                .set_keys(vec![format!("key-{i}")])
                .set_body(format!("{tag}-{i}").into_bytes())
                .build()
                .expect("message");
            let r = producer.send(m).await.expect("send");
            assert!(!r.message_id().is_empty(), "a message id");
        }
    }
    producer.shutdown().await.expect("producer shutdown");

    let mut co = SimpleConsumerOption::default();
    co.set_topics(vec![topic.as_str()]);
    co.set_consumer_group(group);
    let mut consumer = SimpleConsumer::new(co, client).expect("consumer");
    consumer.start().await.expect("consumer start");
    let filter = FilterExpression::new(FilterType::Tag, "rust");
    let (mut got, deadline) = (0, Instant::now() + Duration::from_secs(30));
    while got < count && Instant::now() < deadline {
        for m in consumer.receive(topic.clone(), &filter).await.expect("receive") {
            let body = String::from_utf8_lossy(m.body()).to_string();
            println!("received {} {}", m.tag().unwrap_or_default(), body);
            consumer.ack(&m).await.expect("ack");
            got += 1;
        }
    }
    consumer.shutdown().await.expect("consumer shutdown");
    if got < count {
        eprintln!("received {got} of {count} messages");
        std::process::exit(1);
    }
}
