//! Loading: precedence of defaults, file and environment; the sample file;
//! error messages.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use fjord_config::{Config, ConfigError, Durability, LogFormat, TimestampType, env_key_for};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fjord.example.toml");

/// A TOML file in the temp directory, removed on drop.
struct TempToml(PathBuf);

impl TempToml {
    fn new(text: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fjord-config-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write temp config file");
        TempToml(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load_toml(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = TempToml::new(text);
    Config::load_from(Some(file.path()), &env(vars))
}

/// Dotted paths of every non-table value in `v`.
fn leaves(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(v, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn default_leaves() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    leaves(&toml::Value::try_from(Config::default()).expect("defaults serialize"), "", &mut out);
    out
}

fn lookup<'a>(v: &'a toml::Value, path: &str) -> &'a toml::Value {
    path.split('.').fold(v, |v, k| &v[k])
}

// --- the sample file --------------------------------------------------------

#[test]
fn example_file_equals_defaults() {
    let config = Config::load_from(Some(Path::new(EXAMPLE)), &[]).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn example_file_sets_every_setting() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let mut in_file = BTreeSet::new();
    leaves(&toml::Value::Table(text.parse().unwrap()), "", &mut in_file);
    assert_eq!(in_file, default_leaves());
}

#[test]
fn defaults_are_valid_and_as_documented() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.node.id, 0);
    assert_eq!(c.node.cluster_name, "fjord");
    assert_eq!(c.node.data_dir, PathBuf::from("./data"));
    assert_eq!(c.node.rack, None);
    let binds: Vec<_> =
        c.listeners.all().iter().map(|(n, l)| (*n, l.bind.as_str(), l.enabled, l.advertised.clone())).collect();
    assert_eq!(
        binds,
        [
            ("kafka", "0.0.0.0:9092", true, None),
            ("rocketmq_namesrv", "0.0.0.0:9876", true, None),
            ("rocketmq_broker", "0.0.0.0:10911", true, None),
            ("rocketmq_grpc", "0.0.0.0:8081", true, None),
            ("amqp", "0.0.0.0:5672", true, None),
            ("amqp_management", "0.0.0.0:15672", true, None),
            ("http", "0.0.0.0:9600", true, None),
        ]
    );
    assert_eq!(c.storage.segment_bytes, 1_073_741_824);
    assert_eq!(c.storage.segment_ms, 604_800_000);
    assert_eq!(c.storage.index_interval_bytes, 4096);
    assert_eq!(c.storage.max_message_bytes, 1_048_588);
    assert_eq!(c.storage.retention_ms, Some(604_800_000));
    assert_eq!(c.storage.retention_bytes, None);
    assert_eq!(c.storage.retention_check_interval_ms, 300_000);
    assert_eq!(c.storage.durability, Durability::GroupCommit);
    assert_eq!(c.storage.flush_interval_ms, 1000);
    assert!(!c.storage.key_index);
    assert_eq!(c.storage.key_index_headers, ["fjord.key", "fjord.id", "fjord.timer-ref"]);
    assert_eq!(c.storage.message_timestamp_type, TimestampType::CreateTime);
    assert!(c.topics.auto_create);
    assert_eq!(c.topics.default_partitions, 1);
    assert_eq!(c.topics.max_partitions, 10_000);
    assert_eq!(c.groups.session_timeout_min_ms, 6000);
    assert_eq!(c.groups.session_timeout_max_ms, 1_800_000);
    assert_eq!(c.groups.initial_rebalance_delay_ms, 3000);
    assert_eq!(c.groups.max_size, 1000);
    assert_eq!(c.groups.offsets_retention_ms, 604_800_000);
    assert_eq!(c.kafka.socket_request_max_bytes, 104_857_600);
    assert_eq!(c.kafka.control_request_max_bytes, 8_388_608);
    assert_eq!(c.kafka.connections_max_idle_ms, 600_000);
    assert_eq!(c.kafka.fetch_max_bytes, 57_671_680);
    assert_eq!(c.limits.max_connections, 10_000);
    assert_eq!(c.limits.max_connections_per_ip, 1_000);
    assert_eq!(c.limits.queued_max_request_bytes, 536_870_912);
    assert_eq!(c.limits.http_connections_max_idle_ms, 60_000);
    assert_eq!(c.limits.http_body_timeout_ms, 60_000);
    assert_eq!(c.messaging.max_delay_ms, 40 * 86_400_000);
    assert_eq!(c.messaging.timer_tick_ms, 100);
    assert_eq!(c.messaging.retry_backoff_ms.len(), 16);
    assert_eq!(c.messaging.retry_backoff_ms.first(), Some(&10_000));
    assert_eq!(c.messaging.retry_backoff_ms.last(), Some(&7_200_000));
    assert_eq!(c.messaging.max_attempts, 16);
    assert_eq!(c.messaging.order_lock_ttl_ms, 60_000);
    assert_eq!(c.messaging.max_held_per_queue, 10_000);
    assert_eq!(c.messaging.snapshot_interval_ms, 30_000);
    assert_eq!(c.rocketmq.transaction_timeout_ms, 6000);
    assert_eq!(c.rocketmq.transaction_check_interval_ms, 60_000);
    assert_eq!(c.rocketmq.transaction_check_max, 15);
    assert_eq!(c.rocketmq.max_long_poll_ms, 30_000);
    assert_eq!(c.rocketmq.connections_max_idle_ms, 120_000);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
}

#[test]
fn zero_rocketmq_check_settings_are_refused_by_name() {
    let vars = [("FJORD_ROCKETMQ__TRANSACTION_CHECK_MAX".to_string(), "0".to_string())];
    let err = Config::load_from(None, &vars).unwrap_err().to_string();
    assert!(err.contains("rocketmq.transaction_check_max"), "{err}");
}

#[test]
fn kafka_control_limit_may_not_exceed_the_request_limit() {
    let vars =
        env(&[("FJORD_KAFKA__SOCKET_REQUEST_MAX_BYTES", "1000"), ("FJORD_KAFKA__CONTROL_REQUEST_MAX_BYTES", "2000")]);
    let err = Config::load_from(None, &vars).unwrap_err().to_string();
    assert!(err.contains("kafka.control_request_max_bytes"), "{err}");
}

#[test]
fn limits_are_refused_by_name_when_out_of_range() {
    for (var, value, key) in [
        ("FJORD_LIMITS__MAX_CONNECTIONS", "0", "limits.max_connections"),
        ("FJORD_LIMITS__MAX_CONNECTIONS_PER_IP", "0", "limits.max_connections_per_ip"),
        ("FJORD_LIMITS__QUEUED_MAX_REQUEST_BYTES", "1000", "limits.queued_max_request_bytes"),
        ("FJORD_LIMITS__QUEUED_MAX_REQUEST_BYTES", "4294967296", "limits.queued_max_request_bytes"),
        ("FJORD_LIMITS__HTTP_BODY_TIMEOUT_MS", "0", "limits.http_body_timeout_ms"),
        ("FJORD_KAFKA__FETCH_MAX_BYTES", "0", "kafka.fetch_max_bytes"),
    ] {
        let err = Config::load_from(None, &env(&[(var, value)])).unwrap_err().to_string();
        assert!(err.contains(key), "{var}={value}: {err}");
    }
}

#[test]
fn retry_backoff_must_list_positive_steps() {
    for (value, problem) in [("", "at least one step"), ("1000,0", "entry 1 must be more than 0"), ("1000,x", "x")] {
        let vars = [("FJORD_MESSAGING__RETRY_BACKOFF_MS".to_string(), value.to_string())];
        let err = Config::load_from(None, &vars).unwrap_err().to_string();
        assert!(err.contains("retry_backoff_ms") || err.contains("RETRY_BACKOFF_MS"), "{value}: {err}");
        assert!(err.contains(problem), "{value}: {err}");
    }
}

#[test]
fn no_file_no_env_gives_defaults() {
    assert_eq!(Config::load_from(None, &[]).unwrap(), Config::default());
}

#[test]
fn serialized_config_loads_back() {
    let mut c = Config::default();
    c.node.rack = Some("r1".into());
    c.listeners.kafka.advertised = Some("kafka.example.com:9092".into());
    c.storage.retention_ms = None;
    c.storage.retention_bytes = Some(1 << 30);
    c.storage.durability = Durability::Interval;
    c.storage.key_index_headers = vec!["KEYS".into()];
    c.log.format = LogFormat::Json;
    for c in [Config::default(), c] {
        let text = toml::to_string(&c).unwrap();
        assert_eq!(load_toml(&text, &[]).unwrap(), c, "{text}");
    }
}

// --- precedence ---------------------------------------------------------------

#[test]
fn partial_file_keeps_other_defaults() {
    let c = load_toml("[storage]\nsegment_bytes = 2048\n\n[listeners.amqp]\nenabled = false\n", &[]).unwrap();
    let mut expected = Config::default();
    expected.storage.segment_bytes = 2048;
    expected.listeners.amqp.enabled = false;
    assert_eq!(c, expected);
    // The partial listener table kept *its own* port.
    assert_eq!(c.listeners.amqp.bind, "0.0.0.0:5672");
}

#[test]
fn env_overrides_nested_keys_and_wins_over_file() {
    let c = load_toml(
        "[storage]\nsegment_bytes = 2048\nsegment_ms = 5\n\n[listeners.kafka]\nbind = \"127.0.0.1:19092\"\n",
        &[
            ("FJORD_STORAGE__SEGMENT_BYTES", "1048576"),
            ("FJORD_LISTENERS__KAFKA__BIND", "127.0.0.1:0"),
            ("FJORD_NODE__DATA_DIR", "/tmp/x"),
        ],
    )
    .unwrap();
    assert_eq!(c.storage.segment_bytes, 1_048_576); // env over file
    assert_eq!(c.storage.segment_ms, 5); // file over default
    assert_eq!(c.listeners.kafka.bind, "127.0.0.1:0"); // env over file, 3 levels
    assert!(c.listeners.kafka.enabled); // sibling keeps default
    assert_eq!(c.node.data_dir, PathBuf::from("/tmp/x")); // env over default
    assert_eq!(c.storage.retention_ms, Some(604_800_000));
}

#[test]
fn env_names_are_case_insensitive_and_later_pairs_win() {
    let c = Config::load_from(
        None,
        &env(&[("fjord_topics__default_partitions", "3"), ("FJORD_TOPICS__DEFAULT_PARTITIONS", "4")]),
    )
    .unwrap();
    assert_eq!(c.topics.default_partitions, 4);
}

#[test]
fn every_setting_is_overridable_by_env() {
    // (key, environment value, expected value as TOML)
    let overrides: &[(&str, &str, &str)] = &[
        ("node.id", "7", "7"),
        ("node.cluster_name", "prod", "\"prod\""),
        ("node.data_dir", "/var/lib/fjord", "\"/var/lib/fjord\""),
        ("node.rack", "1", "\"1\""),
        ("storage.segment_bytes", "1048576", "1048576"),
        ("storage.segment_ms", "1000", "1000"),
        ("storage.index_interval_bytes", "0", "0"),
        ("storage.max_message_bytes", "100", "100"),
        ("storage.retention_ms", "-1", "-1"),
        ("storage.retention_bytes", "123456", "123456"),
        ("storage.retention_check_interval_ms", "10", "10"),
        ("storage.durability", "interval", "\"interval\""),
        ("storage.flush_interval_ms", "20", "20"),
        ("storage.key_index", "true", "true"),
        ("storage.key_index_headers", "KEYS, x-id", "[\"KEYS\", \"x-id\"]"),
        ("storage.message_timestamp_type", "log-append-time", "\"log-append-time\""),
        ("topics.auto_create", "false", "false"),
        ("topics.default_partitions", "8", "8"),
        ("topics.max_partitions", "16", "16"),
        ("groups.session_timeout_min_ms", "100", "100"),
        ("groups.session_timeout_max_ms", "200", "200"),
        ("groups.initial_rebalance_delay_ms", "0", "0"),
        ("groups.max_size", "2", "2"),
        ("groups.offsets_retention_ms", "60000", "60000"),
        ("groups.consumer_heartbeat_interval_ms", "1000", "1000"),
        ("groups.consumer_session_timeout_ms", "9000", "9000"),
        ("kafka.socket_request_max_bytes", "2000000", "2000000"),
        ("kafka.control_request_max_bytes", "100000", "100000"),
        ("kafka.connections_max_idle_ms", "1000", "1000"),
        ("kafka.fetch_max_bytes", "1048576", "1048576"),
        ("kafka.replica_selector", "rack-aware", "\"rack-aware\""),
        ("limits.max_connections", "50", "50"),
        ("limits.max_connections_per_ip", "5", "5"),
        ("limits.queued_max_request_bytes", "2097152", "2097152"),
        ("limits.http_connections_max_idle_ms", "3000", "3000"),
        ("limits.http_body_timeout_ms", "4000", "4000"),
        ("messaging.max_delay_ms", "86400000", "86400000"),
        ("messaging.timer_tick_ms", "10", "10"),
        ("messaging.retry_backoff_ms", "1000, 5000", "[1000, 5000]"),
        ("messaging.max_attempts", "3", "3"),
        ("messaging.order_lock_ttl_ms", "15000", "15000"),
        ("messaging.max_held_per_queue", "50", "50"),
        ("messaging.snapshot_interval_ms", "5000", "5000"),
        ("rocketmq.transaction_timeout_ms", "1000", "1000"),
        ("rocketmq.transaction_check_interval_ms", "2000", "2000"),
        ("rocketmq.transaction_check_max", "3", "3"),
        ("rocketmq.max_long_poll_ms", "500", "500"),
        ("rocketmq.connections_max_idle_ms", "5000", "5000"),
        ("amqp.default_user", "admin", "\"admin\""),
        ("amqp.default_pass", "s3cret", "\"s3cret\""),
        ("amqp.loopback_users", "guest, admin", "[\"guest\", \"admin\"]"),
        ("amqp.disk_free_limit", "1000000", "1000000"),
        ("cluster.controllers", "1@a:1, 2@b:2", "[\"1@a:1\", \"2@b:2\"]"),
        ("cluster.cluster_id", "c1", "\"c1\""),
        ("cluster.bind", "127.0.0.1:9701", "\"127.0.0.1:9701\""),
        ("cluster.advertised", "n1:9700", "\"n1:9700\""),
        ("cluster.heartbeat_interval_ms", "500", "500"),
        ("cluster.lease_ms", "3000", "3000"),
        ("cluster.election_timeout_ms", "700", "700"),
        ("cluster.default_replication_factor", "2", "2"),
        ("cluster.replica_lag_ms", "2000", "2000"),
        ("metrics.per_partition", "true", "true"),
        ("log.format", "json", "\"json\""),
        ("log.level", "warn,fjord_broker=debug", "\"warn,fjord_broker=debug\""),
    ];
    let listeners: &[(&str, u16)] = &[
        ("kafka", 1),
        ("rocketmq_namesrv", 2),
        ("rocketmq_broker", 3),
        ("rocketmq_grpc", 4),
        ("amqp", 5),
        ("amqp_management", 7),
        ("http", 6),
    ];
    let mut all: Vec<(String, String, String)> =
        overrides.iter().map(|(k, v, t)| (k.to_string(), v.to_string(), t.to_string())).collect();
    for (name, port) in listeners {
        let key = |f: &str| format!("listeners.{name}.{f}");
        all.push((key("enabled"), "false".into(), "false".into()));
        all.push((key("bind"), format!("127.0.0.1:{port}"), format!("\"127.0.0.1:{port}\"")));
        all.push((key("advertised"), format!("h{port}.example.com:{port}"), format!("\"h{port}.example.com:{port}\"")));
    }

    let covered: BTreeSet<String> = all.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(covered, default_leaves(), "a setting is missing from this test");

    let vars: Vec<(String, String)> = all.iter().map(|(k, v, _)| (env_key_for(k), v.clone())).collect();
    let c = Config::load_from(None, &vars).unwrap();
    let got = toml::Value::try_from(&c).unwrap();
    let default = toml::Value::try_from(Config::default()).unwrap();
    for (key, _, expected) in &all {
        let expected: toml::Value = format!("v = {expected}").parse::<toml::Table>().unwrap()["v"].clone();
        assert_eq!(lookup(&got, key), &expected, "{key}");
        assert_ne!(lookup(&default, key), &expected, "{key}: pick a non-default value");
    }
}

#[test]
fn env_accepts_lists_and_empty_values() {
    let c = load_toml(
        "[node]\nrack = \"r1\"\n[listeners.kafka]\nadvertised = \"a:1\"\n[storage]\nkey_index_headers = [\"a\"]\n",
        &[
            ("FJORD_NODE__RACK", ""),
            ("FJORD_LISTENERS__KAFKA__ADVERTISED", ""),
            ("FJORD_STORAGE__KEY_INDEX_HEADERS", "[KEYS, x-id]"),
        ],
    )
    .unwrap();
    assert_eq!(c.node.rack, None);
    assert_eq!(c.listeners.kafka.advertised, None);
    assert_eq!(c.storage.key_index_headers, ["KEYS", "x-id"]);

    let c = Config::load_from(None, &env(&[("FJORD_STORAGE__KEY_INDEX_HEADERS", "")])).unwrap();
    assert!(c.storage.key_index_headers.is_empty());
}

#[test]
fn variables_without_a_section_are_ignored() {
    let c = Config::load_from(
        None,
        &env(&[
            ("FJORD_CONFIG", "/etc/fjord.toml"),
            ("FJORD_LOG", "debug"),
            ("FJORD", "x"),
            ("PATH", "/bin"),
            ("STORAGE__SEGMENT_BYTES", "1"),
            ("NOT_FJORD_STORAGE__SEGMENT_BYTES", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(c, Config::default());
}

// --- retention -1 ------------------------------------------------------------

#[test]
fn minus_one_retention_means_forever() {
    let c = load_toml("[storage]\nretention_ms = -1\nretention_bytes = -1\n", &[]).unwrap();
    assert_eq!(c.storage.retention_ms, None);
    assert_eq!(c.storage.retention_bytes, None);

    let c =
        load_toml("[storage]\nretention_ms = 1000\nretention_bytes = 5000\n", &[("FJORD_STORAGE__RETENTION_MS", "-1")])
            .unwrap();
    assert_eq!(c.storage.retention_ms, None);
    assert_eq!(c.storage.retention_bytes, Some(5000));

    let c = Config::load_from(None, &env(&[("FJORD_STORAGE__RETENTION_BYTES", "0")])).unwrap();
    assert_eq!(c.storage.retention_bytes, Some(0));
}

#[test]
fn other_negative_retention_is_rejected() {
    let err = load_toml("[storage]\nretention_ms = -2\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Load(_)), "{msg}");
    assert!(msg.contains("storage.retention_ms"), "{msg}");
    assert!(msg.contains("-1"), "{msg}");
}

// --- errors from loading ------------------------------------------------------

#[test]
fn unknown_key_in_file_is_rejected_with_its_name() {
    let file = TempToml::new("[storage]\nsegment_bytes = 2048\nsegmnet_ms = 5\n");
    let err = Config::load_from(Some(file.path()), &[]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Load(_)), "{msg}");
    assert!(msg.contains("segmnet_ms"), "{msg}");
    assert!(msg.contains("storage.segmnet_ms"), "{msg}");
    assert!(msg.contains("TOML file"), "{msg}");
    let name = file.path().file_name().unwrap().to_string_lossy().into_owned();
    assert!(msg.contains(&name), "{msg}");
}

#[test]
fn unknown_section_and_nested_key_are_rejected() {
    let msg = load_toml("[stroage]\nsegment_bytes = 1\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("stroage"), "{msg}");

    let msg = load_toml("[listeners.kafka]\nport = 1\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("port"), "{msg}");

    let msg = load_toml("[listeners.kafak]\nbind = \"0.0.0.0:1\"\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("kafak"), "{msg}");

    let msg = load_toml("node = 1\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("node"), "{msg}");
}

#[test]
fn unknown_env_key_is_rejected_with_the_variable_name() {
    let err = Config::load_from(None, &env(&[("FJORD_STORAGE__SEGMENT_BYTE", "1")])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("segment_byte"), "{msg}");
    assert!(msg.contains("FJORD_STORAGE__SEGMENT_BYTE"), "{msg}");
}

#[test]
fn wrong_type_names_key_and_source() {
    let msg = Config::load_from(None, &env(&[("FJORD_STORAGE__SEGMENT_BYTES", "big")])).unwrap_err().to_string();
    assert!(msg.contains("storage.segment_bytes"), "{msg}");
    assert!(msg.contains("FJORD_STORAGE__SEGMENT_BYTES"), "{msg}");

    let msg = load_toml("[storage]\ndurability = \"sometimes\"\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("storage.durability"), "{msg}");
    assert!(msg.contains("group-commit"), "{msg}");

    let msg = load_toml("[storage]\nsegment_bytes = -5\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("storage.segment_bytes"), "{msg}");
}

#[test]
fn toml_syntax_error_is_reported() {
    let err = load_toml("[storage\nsegment_bytes = 1\n", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Load(_)), "{err}");
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let path = Path::new("/nonexistent/fjord-config-test.toml");
    let err = Config::load_from(Some(path), &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/fjord-config-test.toml"), "{err}");
}

#[test]
fn load_validates() {
    let err = Config::load_from(None, &env(&[("FJORD_STORAGE__SEGMENT_BYTES", "10")])).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("FJORD_STORAGE__SEGMENT_BYTES"), "{err}");
}

#[test]
fn env_key_for_joins_with_double_underscores() {
    assert_eq!(env_key_for("storage.segment_bytes"), "FJORD_STORAGE__SEGMENT_BYTES");
    assert_eq!(env_key_for("listeners.kafka.bind"), "FJORD_LISTENERS__KAFKA__BIND");
    assert_eq!(env_key_for("node.data_dir"), "FJORD_NODE__DATA_DIR");
}

// --- process environment --------------------------------------------------------

/// `Config::load` reads the process environment the same way figment's own
/// `Env::prefixed("FJORD_").split("__")` provider would.
#[test]
#[allow(clippy::result_large_err)] // figment::Jail's closure returns figment::Error
fn load_reads_process_env_like_figment_env() {
    use figment::providers::{Env, Format, Serialized};
    figment::Jail::expect_with(|jail| {
        jail.create_file("fjord.toml", "[storage]\nsegment_bytes = 4096\nsegment_ms = 9\n")?;
        jail.set_env("FJORD_STORAGE__SEGMENT_BYTES", 1_048_576);
        jail.set_env("FJORD_LISTENERS__KAFKA__BIND", "127.0.0.1:0");
        jail.set_env("FJORD_NODE__DATA_DIR", "/tmp/x");
        jail.set_env("FJORD_STORAGE__DURABILITY", "every-write");
        jail.set_env("FJORD_STORAGE__RETENTION_MS", -1);

        let ours = Config::load(Some(Path::new("fjord.toml"))).map_err(|e| e.to_string())?;
        let theirs: Config = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(figment::providers::Toml::file("fjord.toml"))
            .merge(Env::prefixed("FJORD_").split("__"))
            .extract()?;
        assert_eq!(ours, theirs);
        assert_eq!(ours.storage.segment_bytes, 1_048_576);
        assert_eq!(ours.storage.segment_ms, 9);
        assert_eq!(ours.listeners.kafka.bind, "127.0.0.1:0");
        assert_eq!(ours.node.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(ours.storage.durability, Durability::EveryWrite);
        assert_eq!(ours.storage.retention_ms, None);
        Ok(())
    });
}
