//! Validation rules.

use fjord_config::{Config, ConfigError, Durability, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};

/// The keys `c` is rejected for (empty if valid).
fn bad_keys(c: &Config) -> Vec<String> {
    match c.validate() {
        Ok(()) => Vec::new(),
        Err(e) => {
            assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
            let msg = e.to_string();
            for p in e.problems() {
                assert!(msg.contains(&p.key), "{msg}");
                assert!(!p.reason.is_empty());
            }
            e.problems().iter().map(|p| p.key.clone()).collect()
        }
    }
}

fn with(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

#[test]
fn segment_bytes_range() {
    let c = with(|c| c.storage.segment_bytes = 100);
    assert_eq!(bad_keys(&c), ["storage.segment_bytes"]);
    let msg = c.validate().unwrap_err().to_string();
    assert!(msg.contains("100"), "{msg}");
    assert!(msg.contains("FJORD_STORAGE__SEGMENT_BYTES"), "{msg}");

    assert!(bad_keys(&with(|c| c.storage.segment_bytes = MIN_SEGMENT_BYTES)).is_empty());
    assert!(bad_keys(&with(|c| c.storage.segment_bytes = MAX_SEGMENT_BYTES)).is_empty());
    assert_eq!(bad_keys(&with(|c| c.storage.segment_bytes = MAX_SEGMENT_BYTES + 1)), ["storage.segment_bytes"]);
}

#[test]
fn flush_interval_zero_only_rejected_in_interval_mode() {
    let c = with(|c| {
        c.storage.durability = Durability::Interval;
        c.storage.flush_interval_ms = 0;
    });
    assert_eq!(bad_keys(&c), ["storage.flush_interval_ms"]);
    assert!(c.validate().unwrap_err().to_string().contains("interval"));

    for d in [Durability::EveryWrite, Durability::GroupCommit] {
        let c = with(|c| {
            c.storage.durability = d;
            c.storage.flush_interval_ms = 0;
        });
        assert!(bad_keys(&c).is_empty());
    }
}

#[test]
fn session_timeout_min_above_max() {
    let c = with(|c| {
        c.groups.session_timeout_min_ms = 10_000;
        c.groups.session_timeout_max_ms = 5_000;
    });
    assert_eq!(bad_keys(&c), ["groups.session_timeout_min_ms"]);
    let msg = c.validate().unwrap_err().to_string();
    assert!(msg.contains("session_timeout_max_ms"), "{msg}");

    let equal = with(|c| {
        c.groups.session_timeout_min_ms = 5_000;
        c.groups.session_timeout_max_ms = 5_000;
    });
    assert!(bad_keys(&equal).is_empty());
}

#[test]
fn duplicate_listener_ports() {
    let c = with(|c| c.listeners.amqp.bind = "127.0.0.1:9092".into());
    assert_eq!(bad_keys(&c), ["listeners.amqp.bind"]);
    let msg = c.validate().unwrap_err().to_string();
    assert!(msg.contains("listeners.kafka"), "{msg}");

    // Port 0 may repeat: each gets its own free port.
    let c = with(|c| {
        for l in [
            &mut c.listeners.kafka,
            &mut c.listeners.rocketmq_namesrv,
            &mut c.listeners.rocketmq_broker,
            &mut c.listeners.rocketmq_grpc,
            &mut c.listeners.amqp,
            &mut c.listeners.http,
        ] {
            l.bind = "127.0.0.1:0".into();
        }
    });
    assert!(bad_keys(&c).is_empty());

    // A disabled listener does not hold its port.
    let c = with(|c| {
        c.listeners.amqp.enabled = false;
        c.listeners.amqp.bind = "0.0.0.0:9092".into();
    });
    assert!(bad_keys(&c).is_empty());

    // Same port on two distinct specific addresses is fine.
    let c = with(|c| {
        c.listeners.kafka.bind = "127.0.0.1:7000".into();
        c.listeners.amqp.bind = "127.0.0.2:7000".into();
    });
    assert!(bad_keys(&c).is_empty());
}

#[test]
fn bad_socket_addresses() {
    let c = with(|c| c.listeners.kafka.bind = "localhost:9092".into());
    assert_eq!(bad_keys(&c), ["listeners.kafka.bind"]);
    assert!(c.listeners.kafka.bind_addr().is_err());
    assert_eq!(Config::default().listeners.kafka.bind_addr().unwrap(), "0.0.0.0:9092".parse().unwrap());
    assert_eq!(
        with(|c| c.listeners.http.bind = "[::1]:80".into()).listeners.http.bind_addr().unwrap(),
        "[::1]:80".parse().unwrap()
    );

    for bad in ["nohost", "host:", ":9092", "host:0", "host:70000", "two words:1"] {
        let c = with(|c| c.listeners.kafka.advertised = Some(bad.into()));
        assert_eq!(bad_keys(&c), ["listeners.kafka.advertised"], "{bad}");
    }
    for good in ["broker1.example.com:9092", "10.0.0.1:9092", "[::1]:9092"] {
        let c = with(|c| c.listeners.kafka.advertised = Some(good.into()));
        assert!(bad_keys(&c).is_empty(), "{good}");
    }
}

#[test]
fn other_ranges() {
    let cases: Vec<(Config, &str)> = vec![
        (with(|c| c.node.id = -1), "node.id"),
        (with(|c| c.node.cluster_name = " ".into()), "node.cluster_name"),
        (with(|c| c.node.data_dir = "".into()), "node.data_dir"),
        (with(|c| c.storage.segment_ms = 0), "storage.segment_ms"),
        (with(|c| c.storage.max_message_bytes = 0), "storage.max_message_bytes"),
        (with(|c| c.storage.max_message_bytes = u32::MAX), "storage.max_message_bytes"),
        (with(|c| c.storage.retention_check_interval_ms = 0), "storage.retention_check_interval_ms"),
        (with(|c| c.storage.key_index_headers = vec!["".into()]), "storage.key_index_headers"),
        (with(|c| c.storage.key_index_headers = vec!["a".into(), "a".into()]), "storage.key_index_headers"),
        (with(|c| c.topics.default_partitions = 0), "topics.default_partitions"),
        (with(|c| c.topics.default_partitions = 10_001), "topics.default_partitions"),
        (with(|c| c.topics.max_partitions = u32::MAX), "topics.max_partitions"),
        (with(|c| c.groups.session_timeout_min_ms = 0), "groups.session_timeout_min_ms"),
        (with(|c| c.groups.session_timeout_max_ms = 1 << 40), "groups.session_timeout_max_ms"),
        (with(|c| c.groups.initial_rebalance_delay_ms = 1 << 40), "groups.initial_rebalance_delay_ms"),
        (with(|c| c.groups.max_size = 0), "groups.max_size"),
        (with(|c| c.groups.offsets_retention_ms = 0), "groups.offsets_retention_ms"),
        (with(|c| c.log.level = "".into()), "log.level"),
    ];
    for (c, key) in cases {
        assert_eq!(bad_keys(&c), [key]);
    }
}

#[test]
fn every_problem_is_listed() {
    let c = with(|c| {
        c.storage.segment_bytes = 1;
        c.groups.max_size = 0;
        c.log.level = String::new();
    });
    assert_eq!(bad_keys(&c), ["storage.segment_bytes", "groups.max_size", "log.level"]);
}

#[test]
fn invalid_values_from_a_file_are_rejected() {
    let path = std::env::temp_dir().join(format!("fjord-config-validate-{}.toml", std::process::id()));
    std::fs::write(&path, "[groups]\nsession_timeout_min_ms = 9000\nsession_timeout_max_ms = 8000\n").unwrap();
    let err = Config::load_from(Some(&path), &[]).unwrap_err();
    let _ = std::fs::remove_file(&path);
    assert_eq!(err.problems().iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), ["groups.session_timeout_min_ms"]);
}

#[test]
fn consumer_group_timeouts_must_be_positive_and_ordered() {
    assert!(bad_keys(&with(|_| {})).is_empty());
    assert_eq!(
        bad_keys(&with(|c| c.groups.consumer_heartbeat_interval_ms = 0)),
        vec!["groups.consumer_heartbeat_interval_ms"]
    );
    assert_eq!(
        bad_keys(&with(|c| c.groups.consumer_session_timeout_ms = c.groups.consumer_heartbeat_interval_ms)),
        vec!["groups.consumer_session_timeout_ms"]
    );
}

#[test]
fn cluster_settings_are_checked_only_in_a_cluster() {
    let cluster = |f: fn(&mut Config)| {
        with(move |c| {
            c.node.id = 1;
            c.cluster.controllers = vec!["1@127.0.0.1:9700".into(), "2@127.0.0.1:9701".into(), "3@h:9702".into()];
            c.cluster.cluster_id = "c".into();
            f(c);
        })
    };
    assert!(bad_keys(&cluster(|_| {})).is_empty());
    // Alone, nothing about [cluster] matters.
    assert!(bad_keys(&with(|c| c.cluster.cluster_id = String::new())).is_empty());
    assert_eq!(bad_keys(&cluster(|c| c.cluster.cluster_id = String::new())), ["cluster.cluster_id"]);
    assert_eq!(bad_keys(&cluster(|c| c.node.id = 0)), ["node.id"]);
    for bad in ["1-127.0.0.1:9700", "x@h:1", "0@h:1", "1@h", "1@h:0"] {
        let mut c = with(|c| {
            c.node.id = 1;
            c.cluster.cluster_id = "c".into();
        });
        c.cluster.controllers = vec![bad.into()];
        assert_eq!(bad_keys(&c), ["cluster.controllers"], "{bad}");
    }
    assert_eq!(
        bad_keys(&cluster(|c| c.cluster.controllers = vec!["1@a:1".into(), "1@b:2".into()])),
        ["cluster.controllers"]
    );
    assert_eq!(bad_keys(&cluster(|c| c.cluster.lease_ms = 2000)), ["cluster.lease_ms"]);
    // Longer than two heartbeats but not than a controller failover
    // (3 x 1000 ms elections + a 1000 ms heartbeat): every node would stop
    // serving whenever the controller leader is lost.
    assert_eq!(bad_keys(&cluster(|c| c.cluster.lease_ms = 4000)), ["cluster.lease_ms"]);
    assert!(bad_keys(&cluster(|c| c.cluster.lease_ms = 4001)).is_empty());
    assert_eq!(
        bad_keys(&cluster(|c| {
            c.cluster.lease_ms = 2000;
            c.cluster.heartbeat_interval_ms = 300;
            c.cluster.election_timeout_ms = 600;
        })),
        ["cluster.lease_ms"]
    );
    assert_eq!(bad_keys(&cluster(|c| c.cluster.bind = "nowhere".into())), ["cluster.bind"]);
    let voters = cluster(|_| {}).cluster.voters().unwrap();
    assert_eq!(voters[2], (3, "h:9702".to_string()));
}
