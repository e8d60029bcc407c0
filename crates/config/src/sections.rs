//! The configuration sections. Their field docs are the configuration
//! reference: each states the unit, the default and the environment
//! variable that overrides it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::de;
use crate::error::ConfigError;

// ---------------------------------------------------------------------------
// node
// ---------------------------------------------------------------------------

/// `[node]`: identity of this broker and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Broker (node) id, as Kafka's `node.id` / `broker.id`; reported to
    /// clients in metadata responses. Must be `>= 0`.
    /// Default `0`. Env `FJORD_NODE__ID`.
    pub id: i32,
    /// Cluster name, reported to clients (e.g. as the RocketMQ cluster
    /// name) and used to tell clusters apart. Must not be empty.
    /// Default `"fjord"`. Env `FJORD_NODE__CLUSTER_NAME`.
    #[serde(deserialize_with = "de::string")]
    pub cluster_name: String,
    /// Directory holding all persistent state (partition logs, committed
    /// offsets, metadata); created if missing. Relative paths are resolved
    /// against the working directory of the server process.
    /// Default `"./data"`. Env `FJORD_NODE__DATA_DIR`.
    #[serde(deserialize_with = "de::path")]
    pub data_dir: PathBuf,
    /// Rack (failure domain) of this broker, as Kafka's `broker.rack`,
    /// reported to clients in metadata. `None` (an empty string in TOML or
    /// the environment) means no rack.
    /// Default none. Env `FJORD_NODE__RACK`.
    #[serde(deserialize_with = "de::opt_string", serialize_with = "de::ser_opt_string")]
    pub rack: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { id: 0, cluster_name: "fjord".to_owned(), data_dir: PathBuf::from("./data"), rack: None }
    }
}

// ---------------------------------------------------------------------------
// listeners
// ---------------------------------------------------------------------------

/// One network listener (a protocol gateway's socket).
///
/// In a file, each listener is a table whose keys are all optional: missing
/// ones keep that listener's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerConfig {
    /// Whether the server opens this listener. A gateway that is not built
    /// yet is simply not started, whatever this says.
    /// Default `true` for every listener.
    pub enabled: bool,
    /// Local socket address to bind, as `ip:port` text (`0.0.0.0:9092`,
    /// `[::]:9092`, `127.0.0.1:0`). Port `0` picks a free port at startup.
    /// The default depends on the listener (see [`ListenersConfig`]).
    pub bind: String,
    /// Address clients should use to reach this listener, as `host:port`
    /// (a hostname is allowed), when it differs from `bind` (NAT, containers,
    /// a wildcard bind address). `None` (an empty string in TOML or the
    /// environment) means: derive it from `bind`.
    /// Default none.
    #[serde(serialize_with = "de::ser_opt_string")]
    pub advertised: Option<String>,
}

impl ListenerConfig {
    /// An enabled listener bound to `bind`, with no advertised address.
    pub fn new(bind: impl Into<String>) -> Self {
        ListenerConfig { enabled: true, bind: bind.into(), advertised: None }
    }

    /// The parsed [`bind`](Self::bind) address.
    ///
    /// # Errors
    /// [`ConfigError::BadAddress`] if `bind` is not `ip:port` text.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind.trim().parse().map_err(|e: std::net::AddrParseError| ConfigError::BadAddress {
            value: self.bind.clone(),
            reason: format!("{e}; expected ip:port, e.g. 0.0.0.0:9092 or [::1]:9092"),
        })
    }
}

/// `[listeners]`: the socket of each protocol gateway. Each is a table
/// `[listeners.<name>]` with `enabled`, `bind` and `advertised`; env
/// `FJORD_LISTENERS__<NAME>__ENABLED`, `..__BIND`, `..__ADVERTISED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ListenersPatch")]
pub struct ListenersConfig {
    /// Kafka wire protocol. Default bind `0.0.0.0:9092`.
    /// Env `FJORD_LISTENERS__KAFKA__BIND` (etc.).
    pub kafka: ListenerConfig,
    /// RocketMQ name server (remoting protocol). Default bind
    /// `0.0.0.0:9876`. Env `FJORD_LISTENERS__ROCKETMQ_NAMESRV__BIND` (etc.).
    pub rocketmq_namesrv: ListenerConfig,
    /// RocketMQ broker (remoting protocol). Default bind `0.0.0.0:10911`.
    /// Env `FJORD_LISTENERS__ROCKETMQ_BROKER__BIND` (etc.).
    pub rocketmq_broker: ListenerConfig,
    /// RocketMQ 5.x gRPC proxy protocol. Default bind `0.0.0.0:8081`.
    /// Env `FJORD_LISTENERS__ROCKETMQ_GRPC__BIND` (etc.).
    pub rocketmq_grpc: ListenerConfig,
    /// AMQP 0-9-1. Default bind `0.0.0.0:5672`.
    /// Env `FJORD_LISTENERS__AMQP__BIND` (etc.).
    pub amqp: ListenerConfig,
    /// The part of RabbitMQ's management HTTP API that AMQP clients' tools
    /// and test suites use (connections, queues, vhosts), where RabbitMQ
    /// serves it. Default bind `0.0.0.0:15672`.
    /// Env `FJORD_LISTENERS__AMQP_MANAGEMENT__BIND` (etc.).
    pub amqp_management: ListenerConfig,
    /// HTTP admin API, health and metrics. Default bind `0.0.0.0:9600`.
    /// Env `FJORD_LISTENERS__HTTP__BIND` (etc.).
    pub http: ListenerConfig,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            kafka: ListenerConfig::new("0.0.0.0:9092"),
            rocketmq_namesrv: ListenerConfig::new("0.0.0.0:9876"),
            rocketmq_broker: ListenerConfig::new("0.0.0.0:10911"),
            rocketmq_grpc: ListenerConfig::new("0.0.0.0:8081"),
            amqp: ListenerConfig::new("0.0.0.0:5672"),
            amqp_management: ListenerConfig::new("0.0.0.0:15672"),
            http: ListenerConfig::new("0.0.0.0:9600"),
        }
    }
}

impl ListenersConfig {
    /// Every listener with its name (the key under `[listeners]`), in a
    /// fixed order.
    pub fn all(&self) -> [(&'static str, &ListenerConfig); 7] {
        [
            ("kafka", &self.kafka),
            ("rocketmq_namesrv", &self.rocketmq_namesrv),
            ("rocketmq_broker", &self.rocketmq_broker),
            ("rocketmq_grpc", &self.rocketmq_grpc),
            ("amqp", &self.amqp),
            ("amqp_management", &self.amqp_management),
            ("http", &self.http),
        ]
    }
}

/// What a `[listeners.<name>]` table may say: every key optional, missing
/// ones keep that listener's own defaults (not some generic listener's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerPatch {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "patch_string")]
    bind: Option<String>,
    #[serde(default, deserialize_with = "patch_opt_string")]
    advertised: Option<Option<String>>,
}

fn patch_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de::string(d).map(Some)
}

fn patch_opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    de::opt_string(d).map(Some)
}

impl ListenerPatch {
    fn apply(self, to: &mut ListenerConfig) {
        if let Some(enabled) = self.enabled {
            to.enabled = enabled;
        }
        if let Some(bind) = self.bind {
            to.bind = bind;
        }
        if let Some(advertised) = self.advertised {
            to.advertised = advertised;
        }
    }
}

/// What `[listeners]` may say: any subset of the listeners.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenersPatch {
    kafka: Option<ListenerPatch>,
    rocketmq_namesrv: Option<ListenerPatch>,
    rocketmq_broker: Option<ListenerPatch>,
    rocketmq_grpc: Option<ListenerPatch>,
    amqp: Option<ListenerPatch>,
    amqp_management: Option<ListenerPatch>,
    http: Option<ListenerPatch>,
}

impl From<ListenersPatch> for ListenersConfig {
    fn from(p: ListenersPatch) -> Self {
        let mut c = ListenersConfig::default();
        let pairs = [
            (p.kafka, &mut c.kafka),
            (p.rocketmq_namesrv, &mut c.rocketmq_namesrv),
            (p.rocketmq_broker, &mut c.rocketmq_broker),
            (p.rocketmq_grpc, &mut c.rocketmq_grpc),
            (p.amqp, &mut c.amqp),
            (p.amqp_management, &mut c.amqp_management),
            (p.http, &mut c.http),
        ];
        for (patch, listener) in pairs {
            if let Some(patch) = patch {
                patch.apply(listener);
            }
        }
        c
    }
}

// ---------------------------------------------------------------------------
// storage
// ---------------------------------------------------------------------------

/// When an append is made durable (fsynced) relative to when it is
/// acknowledged to the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// `"every-write"`: each append is fsynced (`fdatasync`) before it is
    /// acknowledged. Nothing acknowledged is ever lost, even on a machine
    /// crash; the slowest mode, one fsync per append.
    EveryWrite,
    /// `"group-commit"`: appends are written to the page cache and
    /// acknowledged only after an fsync that covers them; concurrent appends
    /// share one fsync. Nothing acknowledged is lost on a machine crash, at a
    /// fraction of `every-write`'s fsync cost under concurrency.
    #[default]
    GroupCommit,
    /// `"interval"`: appends are acknowledged once written to the OS page
    /// cache and fsynced every `flush_interval_ms`, so a machine crash (not a
    /// process crash) can lose up to that window of acknowledged appends.
    Interval,
}

/// Which timestamp a stored message carries, as Kafka's
/// `log.message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampType {
    /// `"create-time"`: the timestamp the producer set.
    #[default]
    CreateTime,
    /// `"log-append-time"`: the broker's clock when the message was
    /// appended, overwriting the producer's.
    LogAppendTime,
}

/// `[storage]`: the partition log store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Bytes. Maximum size of one log segment file; a new segment is rolled
    /// when an append would exceed it. As Kafka's `log.segment.bytes`.
    /// Between [`MIN_SEGMENT_BYTES`](crate::MIN_SEGMENT_BYTES) and
    /// [`MAX_SEGMENT_BYTES`](crate::MAX_SEGMENT_BYTES).
    /// Default `1073741824` (1 GiB). Env `FJORD_STORAGE__SEGMENT_BYTES`.
    pub segment_bytes: u64,
    /// Milliseconds. Maximum age of the active segment before it is rolled
    /// even if not full, so retention can delete old data. As Kafka's
    /// `log.roll.ms`. Must be `> 0`.
    /// Default `604800000` (7 days). Env `FJORD_STORAGE__SEGMENT_MS`.
    pub segment_ms: u64,
    /// Bytes. Appended bytes between two entries of a segment's sparse
    /// offset/time index; smaller means faster lookups and larger indexes.
    /// As Kafka's `log.index.interval.bytes`. `0` indexes every batch.
    /// Default `4096`. Env `FJORD_STORAGE__INDEX_INTERVAL_BYTES`.
    pub index_interval_bytes: u32,
    /// Bytes. Largest record batch (after compression) a producer may append;
    /// also the default per-topic limit. As Kafka's `message.max.bytes`.
    /// Between 1 and 2147483647.
    /// Default `1048588`. Env `FJORD_STORAGE__MAX_MESSAGE_BYTES`.
    pub max_message_bytes: u32,
    /// Milliseconds. How long a sealed segment is kept after its newest
    /// message; older segments are deleted. As Kafka's `log.retention.ms`.
    /// `None` (`-1` in TOML or the environment) keeps data forever.
    /// Default `604800000` (7 days). Env `FJORD_STORAGE__RETENTION_MS`.
    #[serde(deserialize_with = "de::limit", serialize_with = "de::ser_limit")]
    pub retention_ms: Option<u64>,
    /// Bytes. Maximum size of one partition's log; the oldest sealed segments
    /// are deleted while it is larger. As Kafka's `log.retention.bytes`.
    /// `None` (`-1` in TOML or the environment) means no size limit.
    /// Default none (`-1`). Env `FJORD_STORAGE__RETENTION_BYTES`.
    #[serde(deserialize_with = "de::limit", serialize_with = "de::ser_limit")]
    pub retention_bytes: Option<u64>,
    /// Milliseconds. How often retention limits are checked. As Kafka's
    /// `log.retention.check.interval.ms`. Must be `> 0`.
    /// Default `300000` (5 minutes).
    /// Env `FJORD_STORAGE__RETENTION_CHECK_INTERVAL_MS`.
    pub retention_check_interval_ms: u64,
    /// When appends are fsynced relative to their acknowledgement:
    /// `"every-write"`, `"group-commit"` or `"interval"` (see [`Durability`]).
    /// Default `"group-commit"`. Env `FJORD_STORAGE__DURABILITY`.
    pub durability: Durability,
    /// Milliseconds. In `"interval"` durability mode, the time between
    /// fsyncs, i.e. the most acknowledged data a machine crash can lose.
    /// Ignored by the other modes. As Kafka's `log.flush.interval.ms`.
    /// Must be `> 0` in interval mode.
    /// Default `1000`. Env `FJORD_STORAGE__FLUSH_INTERVAL_MS`.
    pub flush_interval_ms: u64,
    /// Whether each partition keeps an index from message key to offsets,
    /// enabling lookups by key (e.g. RocketMQ's query by key).
    /// Default `false`. Env `FJORD_STORAGE__KEY_INDEX`.
    pub key_index: bool,
    /// Header names whose values are also indexed as message keys when
    /// `key_index` is on (e.g. RocketMQ's `KEYS` property carried as a
    /// header). Names are matched exactly; must be non-empty and distinct.
    /// In the environment, a comma-separated list or `[a, b]`.
    /// Default: the messaging layer's `["fjord.key", "fjord.id",
    /// "fjord.timer-ref"]`, which query by key and by id need.
    /// Env `FJORD_STORAGE__KEY_INDEX_HEADERS`.
    #[serde(deserialize_with = "de::string_list")]
    pub key_index_headers: Vec<String>,
    /// Which timestamp stored messages carry: `"create-time"` (the
    /// producer's) or `"log-append-time"` (the broker's at append). As
    /// Kafka's `log.message.timestamp.type`.
    /// Default `"create-time"`. Env `FJORD_STORAGE__MESSAGE_TIMESTAMP_TYPE`.
    pub message_timestamp_type: TimestampType,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: Some(604_800_000),
            retention_bytes: None,
            retention_check_interval_ms: 300_000,
            durability: Durability::GroupCommit,
            flush_interval_ms: 1000,
            key_index: false,
            key_index_headers: ["fjord.key", "fjord.id", "fjord.timer-ref"].map(String::from).to_vec(),
            message_timestamp_type: TimestampType::CreateTime,
        }
    }
}

// ---------------------------------------------------------------------------
// topics
// ---------------------------------------------------------------------------

/// `[topics]`: defaults for topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaults {
    /// Whether a topic that a client produces to or asks metadata for is
    /// created on first use. As Kafka's `auto.create.topics.enable`.
    /// Default `true`. Env `FJORD_TOPICS__AUTO_CREATE`.
    pub auto_create: bool,
    /// Partition count of auto-created topics and of created topics that do
    /// not say. As Kafka's `num.partitions`. Between 1 and `max_partitions`.
    /// Default `1`. Env `FJORD_TOPICS__DEFAULT_PARTITIONS`.
    pub default_partitions: u32,
    /// Largest partition count a topic may have; creating or growing a topic
    /// beyond it fails. Between 1 and 2147483647.
    /// Default `10000`. Env `FJORD_TOPICS__MAX_PARTITIONS`.
    pub max_partitions: u32,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults { auto_create: true, default_partitions: 1, max_partitions: 10_000 }
    }
}

// ---------------------------------------------------------------------------
// groups
// ---------------------------------------------------------------------------

/// `[groups]`: consumer groups and committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Milliseconds. Smallest session timeout a consumer may ask for. As
    /// Kafka's `group.min.session.timeout.ms`. Must be `> 0` and
    /// `<= session_timeout_max_ms`.
    /// Default `6000` (6 s). Env `FJORD_GROUPS__SESSION_TIMEOUT_MIN_MS`.
    pub session_timeout_min_ms: u64,
    /// Milliseconds. Largest session timeout a consumer may ask for. As
    /// Kafka's `group.max.session.timeout.ms`. At most 2147483647.
    /// Default `1800000` (30 min). Env `FJORD_GROUPS__SESSION_TIMEOUT_MAX_MS`.
    pub session_timeout_max_ms: u64,
    /// Milliseconds. How long the first rebalance of an empty group waits
    /// for more members to join. As Kafka's
    /// `group.initial.rebalance.delay.ms`. `0` disables the wait.
    /// Default `3000` (3 s). Env `FJORD_GROUPS__INITIAL_REBALANCE_DELAY_MS`.
    pub initial_rebalance_delay_ms: u64,
    /// Members a group may have; further joins are rejected. As Kafka's
    /// `group.max.size`. Must be `> 0`.
    /// Default `1000`. Env `FJORD_GROUPS__MAX_SIZE`.
    pub max_size: u32,
    /// Milliseconds. How long the committed offsets of a group that has
    /// become empty are kept. As Kafka's `offsets.retention.minutes`, in ms.
    /// Must be `> 0`.
    /// Default `604800000` (7 days). Env `FJORD_GROUPS__OFFSETS_RETENTION_MS`.
    pub offsets_retention_ms: u64,
    /// Milliseconds. How often members of KIP-848 (`group.protocol=consumer`)
    /// groups heartbeat. As Kafka's `group.consumer.heartbeat.interval.ms`.
    /// Must be `> 0`, at most 2147483647.
    /// Default `5000` (5 s). Env `FJORD_GROUPS__CONSUMER_HEARTBEAT_INTERVAL_MS`.
    pub consumer_heartbeat_interval_ms: u64,
    /// Milliseconds. A KIP-848 member that has not heartbeated for this long
    /// is removed and its partitions reassigned. As Kafka's
    /// `group.consumer.session.timeout.ms`. Must be more than
    /// `consumer_heartbeat_interval_ms`, at most 2147483647.
    /// Default `45000` (45 s). Env `FJORD_GROUPS__CONSUMER_SESSION_TIMEOUT_MS`.
    pub consumer_session_timeout_ms: u64,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            session_timeout_min_ms: 6000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            max_size: 1000,
            offsets_retention_ms: 604_800_000,
            consumer_heartbeat_interval_ms: 5000,
            consumer_session_timeout_ms: 45_000,
        }
    }
}

// ---------------------------------------------------------------------------
// kafka
// ---------------------------------------------------------------------------

/// `[kafka]`: limits of the Kafka gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Largest request frame accepted (Produce); bigger frames close the
    /// connection before their body is read. As Kafka's
    /// `socket.request.max.bytes`. Must be 1..=2147483647.
    /// Default `104857600` (100 MiB). Env `FJORD_KAFKA__SOCKET_REQUEST_MAX_BYTES`.
    pub socket_request_max_bytes: u64,
    /// Largest frame of every other API (they carry no records), checked
    /// once the API key is read. Must be 1..=`socket_request_max_bytes`.
    /// Default `8388608` (8 MiB). Env `FJORD_KAFKA__CONTROL_REQUEST_MAX_BYTES`.
    pub control_request_max_bytes: u64,
    /// Milliseconds. A connection that sends no request for this long is
    /// closed; time spent handling a request (long-poll fetches, rebalances)
    /// does not count. As Kafka's `connections.max.idle.ms`. Must be `> 0`.
    /// Default `600000` (10 min). Env `FJORD_KAFKA__CONNECTIONS_MAX_IDLE_MS`.
    pub connections_max_idle_ms: u64,
    /// Most record bytes one Fetch response carries, whatever the request
    /// asks (a first batch larger than this is still returned whole). As
    /// Kafka's broker-side `fetch.max.bytes`. Must be 1..=2147483647.
    /// Default `57671680` (55 MiB). Env `FJORD_KAFKA__FETCH_MAX_BYTES`.
    pub fetch_max_bytes: u64,
    /// Which replica a consumer reads from, as Kafka's
    /// `replica.selector.class` (KIP-392): `"leader"`, or `"rack-aware"`
    /// (Kafka's `RackAwareReplicaSelector`: a consumer whose `client.rack`
    /// names the rack of an in-sync follower, and not the leader's, is sent
    /// to that follower, which serves reads up to its high watermark).
    /// Default `"leader"`. Env `FJORD_KAFKA__REPLICA_SELECTOR`.
    pub replica_selector: ReplicaSelector,
}

/// `kafka.replica_selector`: where consumers read from (KIP-392).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaSelector {
    /// `"leader"`: every read goes to the partition's leader.
    #[default]
    Leader,
    /// `"rack-aware"`: the in-sync replica in the consumer's rack, the
    /// leader if it is in that rack or none is.
    RackAware,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            socket_request_max_bytes: 100 * 1024 * 1024,
            control_request_max_bytes: 8 * 1024 * 1024,
            connections_max_idle_ms: 600_000,
            fetch_max_bytes: 55 * 1024 * 1024,
            replica_selector: ReplicaSelector::Leader,
        }
    }
}

// ---------------------------------------------------------------------------
// limits
// ---------------------------------------------------------------------------

/// `[limits]`: what every listener bounds, against hostile or stalled
/// clients (see `docs/reliability.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections per listener. At the cap the listener stops
    /// accepting until one closes (clients wait in the backlog). As
    /// Kafka's `max.connections`, per listener. Must be `> 0`.
    /// Default `10000`. Env `FJORD_LIMITS__MAX_CONNECTIONS`.
    pub max_connections: u32,
    /// Open connections from one client IP address, all listeners
    /// together; the surplus connection is closed at once. As Kafka's
    /// `max.connections.per.ip`. Must be `> 0`.
    /// Default `1000`. Env `FJORD_LIMITS__MAX_CONNECTIONS_PER_IP`.
    pub max_connections_per_ip: u32,
    /// Bytes of requests being read or handled, across all connections of
    /// all listeners; when spent, connections stop reading until memory is
    /// released. As Kafka's `queued.max.request.bytes`. Must be at least
    /// 1 MiB and below 4 GiB.
    /// Default `536870912` (512 MiB). Env `FJORD_LIMITS__QUEUED_MAX_REQUEST_BYTES`.
    pub queued_max_request_bytes: u64,
    /// Milliseconds. An admin HTTP connection from which no byte arrives
    /// for this long while it is being read is closed. Must be `> 0`.
    /// Default `60000` (60 s). Env `FJORD_LIMITS__HTTP_CONNECTIONS_MAX_IDLE_MS`.
    pub http_connections_max_idle_ms: u64,
    /// Milliseconds. An admin HTTP request body must arrive whole within
    /// this long (408 after it). Must be `> 0`.
    /// Default `60000` (60 s). Env `FJORD_LIMITS__HTTP_BODY_TIMEOUT_MS`.
    pub http_body_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            queued_max_request_bytes: 512 * 1024 * 1024,
            http_connections_max_idle_ms: 60_000,
            http_body_timeout_ms: 60_000,
        }
    }
}

// ---------------------------------------------------------------------------
// messaging
// ---------------------------------------------------------------------------

/// `[messaging]`: delayed delivery, consumer retries and dead-letter queues,
/// ordered-consumption locks (the messaging layer every gateway shares).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingSettings {
    /// Milliseconds. Furthest ahead a message may be scheduled; later
    /// delivery times are refused. RocketMQ's `timerMaxDelaySec`. Must be
    /// `> 0`. Default `3456000000` (40 days).
    /// Env `FJORD_MESSAGING__MAX_DELAY_MS`.
    pub max_delay_ms: u64,
    /// Milliseconds. Resolution of the delivery timer: a delayed message
    /// becomes visible at most about this much after its time. Must be
    /// 1..=60000. Default `100`. Env `FJORD_MESSAGING__TIMER_TICK_MS`.
    pub timer_tick_ms: u64,
    /// Milliseconds. Back-off before each redelivery of a message a
    /// consumer failed; the last step repeats. RocketMQ's
    /// `messageDelayLevel` from level 3 on. Each must be `> 0`, at least
    /// one. Default 10 s, 30 s, 1-10 min, 20 min, 30 min, 1 h, 2 h.
    /// Env `FJORD_MESSAGING__RETRY_BACKOFF_MS` (comma-separated).
    #[serde(deserialize_with = "de::u64_list")]
    pub retry_backoff_ms: Vec<u64>,
    /// Deliveries of one message before it goes to the group's dead-letter
    /// queue, unless the group sets its own. RocketMQ's
    /// `maxReconsumeTimes` + 1. Must be `> 0`.
    /// Default `16`. Env `FJORD_MESSAGING__MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// Milliseconds. How long an ordered consumer's partition lock lasts
    /// without renewal; a crashed consumer's partitions move on after it.
    /// RocketMQ's `rebalanceLockMaxLiveTime`. Must be `> 0`.
    /// Default `60000` (60 s). Env `FJORD_MESSAGING__ORDER_LOCK_TTL_MS`.
    pub order_lock_ttl_ms: u64,
    /// Most messages one pop queue holds back at once for busy ordered
    /// (FIFO) message groups. Must be `> 0`.
    /// Default `10000`. Env `FJORD_MESSAGING__MAX_HELD_PER_QUEUE`.
    pub max_held_per_queue: u32,
    /// Milliseconds between snapshots of the timer and pop state (which
    /// also trim their journals). Must be `> 0`.
    /// Default `30000` (30 s). Env `FJORD_MESSAGING__SNAPSHOT_INTERVAL_MS`.
    pub snapshot_interval_ms: u64,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        let min = |n: u64| n * 60_000;
        MessagingSettings {
            max_delay_ms: 40 * 86_400_000,
            timer_tick_ms: 100,
            retry_backoff_ms: vec![
                10_000,
                30_000,
                min(1),
                min(2),
                min(3),
                min(4),
                min(5),
                min(6),
                min(7),
                min(8),
                min(9),
                min(10),
                min(20),
                min(30),
                min(60),
                min(120),
            ],
            max_attempts: 16,
            order_lock_ttl_ms: 60_000,
            max_held_per_queue: 10_000,
            snapshot_interval_ms: 30_000,
        }
    }
}

// ---------------------------------------------------------------------------
// rocketmq
// ---------------------------------------------------------------------------

/// `[rocketmq]`: behaviour of the RocketMQ gateways (remoting and gRPC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RocketMqSettings {
    /// Milliseconds. A transaction still open this long after its half
    /// message was stored is checked back with its producer. RocketMQ's
    /// `transactionTimeOut`. Must be `> 0`.
    /// Default `6000` (6 s). Env `FJORD_ROCKETMQ__TRANSACTION_TIMEOUT_MS`.
    pub transaction_timeout_ms: u64,
    /// Milliseconds between two check-backs of one open transaction.
    /// RocketMQ's `transactionCheckInterval`. Must be `> 0`.
    /// Default `60000` (60 s). Env `FJORD_ROCKETMQ__TRANSACTION_CHECK_INTERVAL_MS`.
    pub transaction_check_interval_ms: u64,
    /// Check-backs after which an unresolved transaction is rolled back.
    /// RocketMQ's `transactionCheckMax`. Must be `> 0`.
    /// Default `15`. Env `FJORD_ROCKETMQ__TRANSACTION_CHECK_MAX`.
    pub transaction_check_max: u32,
    /// Milliseconds. Longest a pull or receive waits for messages, whatever
    /// the client asks (clients ask 15-30 s). Must be `> 0`.
    /// Default `30000` (30 s). Env `FJORD_ROCKETMQ__MAX_LONG_POLL_MS`.
    pub max_long_poll_ms: u64,
    /// Milliseconds. A remoting connection from which no byte arrives for
    /// this long while none of its requests is being handled is closed
    /// (also halfway through a frame); a gRPC connection, pinged every
    /// 30 s, when no byte arrives for this long. RocketMQ's
    /// `serverChannelMaxIdleTimeSeconds`, in ms (clients heartbeat every
    /// 30 s). Must be `> 0`.
    /// Default `120000` (120 s). Env `FJORD_ROCKETMQ__CONNECTIONS_MAX_IDLE_MS`.
    pub connections_max_idle_ms: u64,
}

impl Default for RocketMqSettings {
    fn default() -> Self {
        RocketMqSettings {
            transaction_timeout_ms: 6000,
            transaction_check_interval_ms: 60_000,
            transaction_check_max: 15,
            max_long_poll_ms: 30_000,
            connections_max_idle_ms: 120_000,
        }
    }
}

// ---------------------------------------------------------------------------
// amqp
// ---------------------------------------------------------------------------

/// `[amqp]`: the AMQP 0-9-1 gateway's default user (RabbitMQ's
/// `default_user`, `default_pass`, `loopback_users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// User created, with every permission on vhost `/`, when the data
    /// directory has no AMQP users yet. Default `guest`.
    /// Env `FJORD_AMQP__DEFAULT_USER`.
    #[serde(deserialize_with = "de::string")]
    pub default_user: String,
    /// That user's password (stored hashed). Default `guest`.
    /// Env `FJORD_AMQP__DEFAULT_PASS`.
    #[serde(deserialize_with = "de::string")]
    pub default_pass: String,
    /// Users who may log in from loopback addresses only.
    /// Default `["guest"]`. Env `FJORD_AMQP__LOOPBACK_USERS`.
    #[serde(deserialize_with = "de::string_list")]
    pub loopback_users: Vec<String>,
    /// Bytes. Publishers are blocked (`connection.blocked`) while the data
    /// directory's file system has less free space; `0` never blocks.
    /// RabbitMQ's `disk_free_limit`. Default `50000000` (50 MB).
    /// Env `FJORD_AMQP__DISK_FREE_LIMIT`.
    pub disk_free_limit: u64,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            default_user: "guest".into(),
            default_pass: "guest".into(),
            loopback_users: vec!["guest".into()],
            disk_free_limit: 50_000_000,
        }
    }
}

// ---------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------

/// `[metrics]`: what the admin listener's `/metrics` exports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Export per-partition series (offsets, sizes, group lag per
    /// partition). Off by default: with many partitions they are thousands
    /// of series. Default `false`. Env `FJORD_METRICS__PER_PARTITION`.
    pub per_partition: bool,
}

// ---------------------------------------------------------------------------
// log
// ---------------------------------------------------------------------------

/// Format of the server's own log output (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `"text"`: human-readable lines.
    #[default]
    Text,
    /// `"json"`: one JSON object per line, for log collectors.
    Json,
}

/// `[log]`: the server's own diagnostic log (not the message log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogOutputConfig {
    /// Output format: `"text"` or `"json"`.
    /// Default `"text"`. Env `FJORD_LOG__FORMAT`.
    pub format: LogFormat,
    /// Which events are logged: a `tracing` `EnvFilter` directive such as
    /// `"info"` or `"warn,fjord_broker=debug"`. Must not be empty.
    /// Default `"info"`. Env `FJORD_LOG__LEVEL`.
    #[serde(deserialize_with = "de::string")]
    pub level: String,
}

impl Default for LogOutputConfig {
    fn default() -> Self {
        LogOutputConfig { format: LogFormat::Text, level: "info".to_owned() }
    }
}
