//! Wire compatibility with a real RocketMQ client's generated code.
//!
//! The `.hex` files in `tests/golden/` were written by `make_golden.py` with
//! the protobuf classes shipped in the official Python client
//! (`rocketmq-python-client` 5.1.2), which protoc generated from
//! apache/rocketmq-apis. Each is decoded here with Fjord's prost types, checked
//! field by field, and encoded again: the bytes must come back identical
//! (or, where a map has several entries and so no fixed order, decode to the
//! same value at the same length). The client's descriptors of the whole
//! interface are also compared, field by field, with Fjord's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::path::Path;

use fjord_rocketmq_proto::prost::Message as _;
use fjord_rocketmq_proto::prost_types::{
    DescriptorProto, Duration, EnumDescriptorProto, FileDescriptorSet, ServiceDescriptorProto, Timestamp,
};
use fjord_rocketmq_proto::{FILE_DESCRIPTOR_SET, v2};

/// Reads `tests/golden/<name>.hex` as bytes.
fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).expect("golden file is readable");
    let hex = text.trim();
    assert_eq!(hex.len() % 2, 0, "{name}: odd number of hex digits");
    hex.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex digit"))
        .collect()
}

/// Decodes a golden message and checks that re-encoding gives the same bytes.
fn decode_exact<M: fjord_rocketmq_proto::prost::Message + Default>(name: &str) -> M {
    let bytes = golden(name);
    let message = M::decode(bytes.as_slice()).expect("golden bytes decode");
    assert_eq!(message.encode_to_vec(), bytes, "{name}: re-encoding differs from the client's bytes");
    message
}

/// Decodes a golden message whose maps have several entries: prost's
/// `HashMap` may emit them in another order, so the re-encoding must have the
/// same length and decode to the same value.
fn decode_same<M: fjord_rocketmq_proto::prost::Message + Default + PartialEq + Debug>(name: &str) -> M {
    let bytes = golden(name);
    let message = M::decode(bytes.as_slice()).expect("golden bytes decode");
    let again = message.encode_to_vec();
    assert_eq!(again.len(), bytes.len(), "{name}: re-encoding has another length");
    assert_eq!(M::decode(again.as_slice()).expect("re-encoding decodes"), message, "{name}");
    message
}

fn resource(namespace: &str, name: &str) -> Option<v2::Resource> {
    Some(v2::Resource { resource_namespace: namespace.into(), name: name.into() })
}

fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos })
}

fn dur(seconds: i64, nanos: i32) -> Option<Duration> {
    Some(Duration { seconds, nanos })
}

fn ipv4(addresses: &[(&str, i32)]) -> Option<v2::Endpoints> {
    Some(v2::Endpoints {
        scheme: v2::AddressScheme::IPv4.into(),
        addresses: addresses.iter().map(|&(host, port)| v2::Address { host: host.into(), port }).collect(),
    })
}

fn python_user_agent() -> Option<v2::Ua> {
    Some(v2::Ua {
        language: v2::Language::Python.into(),
        version: "5.1.2".into(),
        platform: "Linux x86_64".into(),
        hostname: "client-host".into(),
    })
}

#[test]
fn send_message_request() {
    let request: v2::SendMessageRequest = decode_same("send_message_request");
    assert_eq!(request.messages.len(), 2);

    let fifo = &request.messages[0];
    assert_eq!(fifo.topic, resource("ns1", "orders"));
    assert_eq!(
        fifo.user_properties,
        HashMap::from([("trace".to_owned(), "on".to_owned()), ("region".to_owned(), "eu-north".to_owned())])
    );
    assert_eq!(fifo.body, b"hello fjord");
    let sp = fifo.system_properties.as_ref().expect("system properties");
    assert_eq!(sp.tag.as_deref(), Some("TagA"));
    assert_eq!(sp.keys, ["order-1", "customer-7"]);
    assert_eq!(sp.message_id, "01C0A80001000100000000000000000001");
    assert_eq!(sp.body_digest, Some(v2::Digest { r#type: v2::DigestType::Crc32.into(), checksum: "A7AB5079".into() }));
    assert_eq!(sp.body_encoding(), v2::Encoding::Identity);
    assert_eq!(sp.message_type(), v2::MessageType::Fifo);
    assert_eq!(sp.born_timestamp, ts(1_700_000_000, 123_000_000));
    assert_eq!(sp.born_host, "producer-host-1");
    assert_eq!(sp.queue_id, 3);
    assert_eq!(sp.message_group.as_deref(), Some("customer-7"));
    assert_eq!(sp.trace_context.as_deref(), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
    // Fields a publisher leaves out stay absent.
    assert_eq!(sp.delivery_timestamp, None);
    assert_eq!(sp.store_timestamp, None);
    assert_eq!(sp.receipt_handle, None);
    assert_eq!(sp.queue_offset, None);
    assert_eq!(sp.delivery_attempt, None);

    let delay = &request.messages[1];
    assert_eq!(delay.topic, resource("", "reminders"));
    assert!(delay.user_properties.is_empty());
    assert_eq!(delay.body, [0x1f, 0x8b, 0x08, 0x00]);
    let sp = delay.system_properties.as_ref().expect("system properties");
    assert_eq!(sp.tag, None);
    assert!(sp.keys.is_empty());
    assert_eq!(sp.body_digest.as_ref().map(v2::Digest::r#type), Some(v2::DigestType::Md5));
    assert_eq!(sp.body_encoding(), v2::Encoding::Gzip);
    assert_eq!(sp.message_type(), v2::MessageType::Delay);
    assert_eq!(sp.born_timestamp, ts(1_700_000_001, 0));
    assert_eq!(sp.delivery_timestamp, ts(1_700_003_600, 5));
    assert_eq!(sp.message_group, None);

    // The message without a map is byte-identical on its own as well.
    let bytes = golden("send_message_request");
    let delay_bytes = delay.encode_to_vec();
    assert!(bytes.windows(delay_bytes.len()).any(|w| w == delay_bytes.as_slice()));
}

#[test]
fn receive_message_request() {
    let request: v2::ReceiveMessageRequest = decode_exact("receive_message_request");
    let expected = v2::ReceiveMessageRequest {
        group: resource("ns1", "billing"),
        message_queue: Some(v2::MessageQueue {
            topic: resource("ns1", "orders"),
            id: 2,
            permission: v2::Permission::ReadWrite.into(),
            broker: Some(v2::Broker { name: "broker-a".into(), id: 0, endpoints: ipv4(&[("192.0.2.10", 8081)]) }),
            accept_message_types: vec![v2::MessageType::Normal.into(), v2::MessageType::Fifo.into()],
        }),
        filter_expression: Some(v2::FilterExpression {
            r#type: v2::FilterType::Sql.into(),
            expression: "amount > 100 AND region = 'eu'".into(),
        }),
        batch_size: 32,
        invisible_duration: dur(30, 0),
        auto_renew: true,
        long_polling_timeout: dur(20, 500_000_000),
        attempt_id: Some("6f1c2d3e-0000-4000-8000-000000000001".into()),
    };
    assert_eq!(request, expected);
    assert_eq!(expected.encode_to_vec(), golden("receive_message_request"));
}

#[test]
fn telemetry_consumer_settings() {
    let command: v2::TelemetryCommand = decode_exact("telemetry_consumer_settings");
    assert_eq!(command.status, None);
    let Some(v2::telemetry_command::Command::Settings(settings)) = &command.command else {
        panic!("expected settings, got {:?}", command.command);
    };
    assert_eq!(settings.client_type(), v2::ClientType::PushConsumer);
    assert_eq!(settings.access_point, ipv4(&[("192.0.2.1", 8081), ("192.0.2.2", 8081)]));
    assert_eq!(
        settings.backoff_policy,
        Some(v2::RetryPolicy {
            max_attempts: 16,
            strategy: Some(v2::retry_policy::Strategy::CustomizedBackoff(v2::CustomizedBackoff {
                next: vec![
                    Duration { seconds: 1, nanos: 0 },
                    Duration { seconds: 5, nanos: 0 },
                    Duration { seconds: 10, nanos: 0 }
                ],
            })),
        })
    );
    assert_eq!(settings.request_timeout, dur(3, 0));
    let Some(v2::settings::PubSub::Subscription(subscription)) = &settings.pub_sub else {
        panic!("expected a subscription, got {:?}", settings.pub_sub);
    };
    assert_eq!(subscription.group, resource("ns1", "billing"));
    assert_eq!(
        subscription.subscriptions,
        [v2::SubscriptionEntry {
            topic: resource("ns1", "orders"),
            expression: Some(v2::FilterExpression {
                r#type: v2::FilterType::Tag.into(),
                expression: "TagA || TagB".into()
            }),
        }]
    );
    assert_eq!(subscription.fifo, Some(true));
    assert_eq!(subscription.receive_batch_size, Some(32));
    assert_eq!(subscription.long_polling_timeout, dur(30, 0));
    assert_eq!(subscription.lite_subscription_quota, None);
    assert_eq!(settings.user_agent, python_user_agent());
    // An explicitly set, all-default sub-message stays present.
    assert_eq!(settings.metric, Some(v2::Metric { on: false, endpoints: None }));
    // Newer than the 5.1.2 client: absent.
    assert!(settings.client_properties.is_empty());
}

#[test]
fn telemetry_producer_settings() {
    let command: v2::TelemetryCommand = decode_exact("telemetry_producer_settings");
    assert_eq!(command.status, Some(v2::Status { code: v2::Code::Ok.into(), message: "OK".into() }));
    let Some(v2::telemetry_command::Command::Settings(settings)) = &command.command else {
        panic!("expected settings, got {:?}", command.command);
    };
    assert_eq!(settings.client_type(), v2::ClientType::Producer);
    assert_eq!(
        settings.access_point,
        Some(v2::Endpoints {
            scheme: v2::AddressScheme::DomainName.into(),
            addresses: vec![v2::Address { host: "rocketmq.example".into(), port: 8081 }],
        })
    );
    assert_eq!(
        settings.backoff_policy,
        Some(v2::RetryPolicy {
            max_attempts: 3,
            strategy: Some(v2::retry_policy::Strategy::ExponentialBackoff(v2::ExponentialBackoff {
                initial: dur(0, 10_000_000),
                max: dur(1, 0),
                multiplier: 2.0,
            })),
        })
    );
    assert_eq!(
        settings.pub_sub,
        Some(v2::settings::PubSub::Publishing(v2::Publishing {
            topics: vec![
                v2::Resource { resource_namespace: "ns1".into(), name: "orders".into() },
                v2::Resource { resource_namespace: String::new(), name: "reminders".into() }
            ],
            max_body_size: 4 * 1024 * 1024,
            validate_message_type: true,
        }))
    );
    assert_eq!(settings.user_agent, python_user_agent());
    assert_eq!(settings.metric, Some(v2::Metric { on: true, endpoints: ipv4(&[("192.0.2.3", 4317)]) }));
}

#[test]
fn query_route_response() {
    let response: v2::QueryRouteResponse = decode_exact("query_route_response");
    assert_eq!(response.status, Some(v2::Status { code: v2::Code::Ok.into(), message: "OK".into() }));
    assert_eq!(response.message_queues.len(), 2);

    let first = &response.message_queues[0];
    assert_eq!(first.topic, resource("ns1", "orders"));
    assert_eq!(first.id, 0);
    assert_eq!(first.permission(), v2::Permission::ReadWrite);
    let broker = first.broker.as_ref().expect("broker");
    assert_eq!((broker.name.as_str(), broker.id), ("broker-a", 0));
    assert_eq!(broker.endpoints, ipv4(&[("192.0.2.10", 8081), ("192.0.2.11", 8081)]));
    assert_eq!(broker.endpoints.as_ref().map(v2::Endpoints::scheme), Some(v2::AddressScheme::IPv4));
    assert_eq!(
        first.accept_message_types().collect::<Vec<_>>(),
        [v2::MessageType::Normal, v2::MessageType::Fifo, v2::MessageType::Delay, v2::MessageType::Transaction]
    );

    let second = &response.message_queues[1];
    assert_eq!(second.id, 1);
    assert_eq!(second.permission(), v2::Permission::Read);
    let broker = second.broker.as_ref().expect("broker");
    assert_eq!((broker.name.as_str(), broker.id), ("broker-b", 1));
    assert_eq!(broker.endpoints, ipv4(&[("192.0.2.20", 8081)]));
    assert_eq!(second.accept_message_types().collect::<Vec<_>>(), [v2::MessageType::Normal]);
}

#[test]
fn recover_orphaned_transaction_command() {
    // One map entry: the order is fixed, so the bytes must match exactly.
    let command: v2::TelemetryCommand = decode_exact("recover_orphaned_transaction");
    assert_eq!(command.status, None);
    let Some(v2::telemetry_command::Command::RecoverOrphanedTransactionCommand(recover)) = &command.command else {
        panic!("expected recover_orphaned_transaction_command, got {:?}", command.command);
    };
    assert_eq!(recover.transaction_id, "tx-0001");
    let message = recover.message.as_ref().expect("message");
    assert_eq!(message.topic, resource("ns1", "payments"));
    assert_eq!(message.user_properties, HashMap::from([("attempt".to_owned(), "1".to_owned())]));
    assert!(message.body.is_empty());
    let sp = message.system_properties.as_ref().expect("system properties");
    assert_eq!(sp.message_id, "01C0A80001000100000000000000000003");
    assert_eq!(sp.body_digest.as_ref().map(v2::Digest::r#type), Some(v2::DigestType::Sha1));
    assert_eq!(sp.message_type(), v2::MessageType::Transaction);
    assert_eq!(sp.born_host, "producer-host-2");
    assert_eq!(sp.store_timestamp, ts(1_700_000_101, 7));
    assert_eq!(sp.store_host, "broker-a");
    assert_eq!(sp.queue_id, 0);
    // proto3 `optional`: present although zero.
    assert_eq!(sp.queue_offset, Some(0));
    assert_eq!(sp.orphaned_transaction_recovery_duration, dur(5, 0));
}

/// A message built in Rust with fields newer than the Python client
/// (`Settings.client_properties`) survives a round trip, and a decoder that
/// does not know field 9 (modelled by clearing it) sees the rest unchanged.
#[test]
fn round_trip_with_newer_fields() {
    let settings = v2::Settings {
        client_type: Some(v2::ClientType::LitePushConsumer.into()),
        request_timeout: dur(3, 0),
        pub_sub: Some(v2::settings::PubSub::Subscription(v2::Subscription {
            group: resource("", "lite-group"),
            lite_subscription_quota: Some(100),
            max_lite_topic_size: Some(64),
            ..Default::default()
        })),
        client_properties: HashMap::from([("app".to_owned(), "fjord-test".to_owned())]),
        ..Default::default()
    };
    let command =
        v2::TelemetryCommand { status: None, command: Some(v2::telemetry_command::Command::Settings(settings)) };
    let bytes = command.encode_to_vec();
    assert_eq!(v2::TelemetryCommand::decode(bytes.as_slice()).expect("decodes"), command);

    let change = v2::ChangeInvisibleDurationRequest {
        group: resource("", "g"),
        topic: resource("", "t"),
        receipt_handle: "rh".into(),
        invisible_duration: dur(10, 0),
        message_id: "id".into(),
        lite_topic: Some("lt".into()),
        suspend: Some(false),
    };
    let bytes = change.encode_to_vec();
    let decoded = v2::ChangeInvisibleDurationRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, change);
    assert_eq!(decoded.suspend, Some(false), "explicit false keeps its presence");
}

/// Every message, field, enum value and RPC the Python client's generated code
/// knows exists in Fjord's descriptors with the same number, type, label and
/// oneof; Fjord's only additions to those are the known newer ones.
#[test]
fn descriptors_cover_the_python_client() {
    let ours = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("our descriptor set decodes");
    let theirs =
        FileDescriptorSet::decode(golden("python_client_descriptors").as_slice()).expect("client descriptors decode");

    let our_files: BTreeSet<&str> = ours.file.iter().map(|f| f.name()).collect();
    for name in [
        "apache/rocketmq/v2/definition.proto",
        "apache/rocketmq/v2/service.proto",
        "apache/rocketmq/v2/admin.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/duration.proto",
    ] {
        assert!(our_files.contains(name), "{name} missing from FILE_DESCRIPTOR_SET");
    }

    let (our_messages, our_enums, our_services) = index(&ours, |_| true);
    let (their_messages, their_enums, their_services) = index(&theirs, |_| true);
    let mut extras = BTreeSet::new();

    for (name, theirs) in &their_messages {
        let ours = our_messages.get(name).unwrap_or_else(|| panic!("message {name} missing"));
        let oneof = |m: &DescriptorProto, i: Option<i32>| {
            i.map(|i| m.oneof_decl[usize::try_from(i).expect("index")].name().to_owned())
        };
        for field in &theirs.field {
            let mine = ours
                .field
                .iter()
                .find(|f| f.number() == field.number())
                .unwrap_or_else(|| panic!("{name}: field {} ({}) missing", field.name(), field.number()));
            let what = format!("{name}.{}", field.name());
            assert_eq!(mine.name(), field.name(), "{what}: name");
            assert_eq!(mine.r#type(), field.r#type(), "{what}: type");
            assert_eq!(mine.label(), field.label(), "{what}: label");
            assert_eq!(mine.type_name(), field.type_name(), "{what}: type name");
            assert_eq!(mine.proto3_optional(), field.proto3_optional(), "{what}: proto3 optional");
            assert_eq!(oneof(ours, mine.oneof_index), oneof(theirs, field.oneof_index), "{what}: oneof");
        }
        for field in &ours.field {
            if !theirs.field.iter().any(|f| f.number() == field.number()) {
                extras.insert(format!("{name}.{}", field.name()));
            }
        }
        let map_entry = |m: &DescriptorProto| m.options.as_ref().is_some_and(|o| o.map_entry());
        assert_eq!(map_entry(ours), map_entry(theirs), "{name}: map entry");
    }
    for name in our_messages.keys().filter(|n| !their_messages.contains_key(*n)) {
        extras.insert((*name).to_owned());
    }

    for (name, theirs) in &their_enums {
        let ours = our_enums.get(name).unwrap_or_else(|| panic!("enum {name} missing"));
        for value in &theirs.value {
            assert!(
                ours.value.iter().any(|v| v.name() == value.name() && v.number() == value.number()),
                "{name}.{} = {} missing",
                value.name(),
                value.number()
            );
        }
        for value in &ours.value {
            if !theirs.value.iter().any(|v| v.name() == value.name()) {
                extras.insert(format!("{name}.{}", value.name()));
            }
        }
    }

    for (name, theirs) in &their_services {
        let ours = our_services.get(name).unwrap_or_else(|| panic!("service {name} missing"));
        for method in &theirs.method {
            let mine = ours
                .method
                .iter()
                .find(|m| m.name() == method.name())
                .unwrap_or_else(|| panic!("{name}/{} missing", method.name()));
            let what = format!("{name}/{}", method.name());
            assert_eq!(mine.input_type(), method.input_type(), "{what}: input");
            assert_eq!(mine.output_type(), method.output_type(), "{what}: output");
            assert_eq!(mine.client_streaming(), method.client_streaming(), "{what}: client streaming");
            assert_eq!(mine.server_streaming(), method.server_streaming(), "{what}: server streaming");
        }
        for method in &ours.method {
            if !theirs.method.iter().any(|m| m.name() == method.name()) {
                extras.insert(format!("{name}/{}", method.name()));
            }
        }
    }

    // Additions of apache/rocketmq-apis after the 5.1.2 client was generated,
    // outside admin.proto's control plane (which that client barely knows).
    let (admin_messages, _, _) = index(&ours, |file| file == "apache/rocketmq/v2/admin.proto");
    let data_plane_extras: Vec<&str> = extras
        .iter()
        .map(String::as_str)
        .filter(|e| !e.starts_with("apache.rocketmq.v2.Admin/") && !admin_messages.contains_key(*e))
        .collect();
    assert_eq!(
        data_plane_extras,
        [
            "apache.rocketmq.v2.Code.INVALID_CLIENT_PROPERTIES",
            "apache.rocketmq.v2.Settings.ClientPropertiesEntry",
            "apache.rocketmq.v2.Settings.client_properties",
        ]
    );
    assert!(extras.contains("apache.rocketmq.v2.Admin/DescribeTopicStatus"));
}

type Index<'a> = (
    BTreeMap<String, &'a DescriptorProto>,
    BTreeMap<String, &'a EnumDescriptorProto>,
    BTreeMap<String, &'a ServiceDescriptorProto>,
);

/// Messages (nested ones included), enums and services of the
/// `apache.rocketmq.v2` files accepted by `file_filter`, by full name.
fn index(set: &FileDescriptorSet, file_filter: impl Fn(&str) -> bool) -> Index<'_> {
    fn walk<'a>(
        prefix: &str,
        message: &'a DescriptorProto,
        messages: &mut BTreeMap<String, &'a DescriptorProto>,
        enums: &mut BTreeMap<String, &'a EnumDescriptorProto>,
    ) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            walk(&name, nested, messages, enums);
        }
        for e in &message.enum_type {
            enums.insert(format!("{name}.{}", e.name()), e);
        }
        messages.insert(name, message);
    }
    let (mut messages, mut enums, mut services) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for file in set.file.iter().filter(|f| f.package() == "apache.rocketmq.v2" && file_filter(f.name())) {
        for message in &file.message_type {
            walk(file.package(), message, &mut messages, &mut enums);
        }
        for e in &file.enum_type {
            enums.insert(format!("{}.{}", file.package(), e.name()), e);
        }
        for service in &file.service {
            services.insert(format!("{}.{}", file.package(), service.name()), service);
        }
    }
    (messages, enums, services)
}
