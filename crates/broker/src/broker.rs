//! The broker: topics, their partitions, committed offsets, groups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fjord_log::{Clock, Log, LogConfig};
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::error::{BrokerError, Result, blocking};
use crate::group::{ConsumerGroupConfig, ConsumerGroups, GroupConfig, GroupCoordinator, TopicMetadataSource};
use crate::offsets::OffsetStore;
use crate::partition::{Partition, Topic, TopicPartition};
use crate::topic::{TopicConfig, TopicRecord, validate_topic_name};

pub(crate) const TOPICS_DIR: &str = "topics";
const TRASH_DIR: &str = "trash";
pub(crate) const TOPIC_FILE: &str = "topic.json";
const CLUSTER_FILE: &str = "cluster.json";

/// Settings of the broker core.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This node's id.
    pub node_id: i32,
    /// Directory holding all data.
    pub data_dir: PathBuf,
    /// Rack of this node, for rack-aware clients.
    pub rack: Option<String>,
    /// Default log settings of every partition (topics override them).
    pub log_defaults: LogConfig,
    /// How often retention is enforced.
    pub retention_check_interval: Duration,
    /// Create unknown topics when clients produce to or ask for them.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: u32,
    /// Most partitions a topic may have.
    pub max_partitions: u32,
    /// Consumer group coordinator settings (classic protocol).
    pub groups: GroupConfig,
    /// Settings of KIP-848 `consumer` protocol groups.
    pub consumer_groups: ConsumerGroupConfig,
    /// Compact a `__fjord_offsets` partition when its log exceeds this size.
    pub offsets_compact_bytes: u64,
    /// Partitions of `__fjord_offsets` when a single node creates it (a
    /// cluster's controller places its own).
    pub offsets_partitions: u32,
    /// Partitions (timer shards) of `__fjord_timer`, on a single node and
    /// when a cluster's controller places it.
    pub timer_partitions: u32,
    /// Partitions (pop-state shards) of `__fjord_pop`, on a single node and
    /// when a cluster's controller places it.
    pub pop_partitions: u32,
    /// Committed offsets of a group without members expire this long after
    /// they were committed (Kafka's `offsets.retention.minutes`).
    pub offsets_retention: Duration,
    /// How often logs poisoned by a failed write or fsync (a full disk, an
    /// I/O error) are cut back to their durable point and reopened.
    pub log_recovery_interval: Duration,
    /// The process's open-file limit, when known. Loading topics at start
    /// stops short of it by [`BrokerConfig::open_files_reserve`]: topics
    /// that would not fit stay offline, so the broker's own state and its
    /// listeners can still open and the rest is served.
    pub open_files_limit: Option<u64>,
    /// File descriptors kept free for everything but topics when loading
    /// them (internal logs, listeners, connections).
    pub open_files_reserve: u64,
    /// The cluster's id when the node belongs to a cluster (the same on
    /// every node); a data directory that belongs to another cluster is
    /// refused. `None`: the id is made up once and kept.
    pub cluster_id: Option<String>,
}

impl BrokerConfig {
    /// Defaults with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: data_dir.into(),
            rack: None,
            log_defaults: LogConfig::default(),
            retention_check_interval: Duration::from_secs(300),
            auto_create_topics: true,
            default_partitions: 1,
            max_partitions: 10_000,
            groups: GroupConfig::default(),
            consumer_groups: ConsumerGroupConfig::default(),
            offsets_compact_bytes: 64 << 20,
            offsets_partitions: 16,
            timer_partitions: 4,
            pop_partitions: 4,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            log_recovery_interval: Duration::from_secs(5),
            open_files_limit: None,
            open_files_reserve: 256,
            cluster_id: None,
        }
    }
}

/// Identity of the cluster, created once and kept in `cluster.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ClusterFile {
    cluster_id: String,
}

/// The protocol-agnostic broker core shared by every gateway.
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) clock: Arc<dyn Clock>,
    cluster_id: String,
    pub(crate) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Topics whose data could not be loaded at start: name → reason.
    offline: RwLock<BTreeMap<String, String>>,
    /// Serialises topic creation, deletion and partition changes.
    admin: tokio::sync::Mutex<()>,
    pub(crate) offsets: Arc<OffsetStore>,
    pub(crate) groups: Arc<GroupCoordinator>,
    pub(crate) consumer_groups: Arc<ConsumerGroups>,
    pub(crate) listeners: RwLock<BTreeMap<String, String>>,
    pub(crate) shutdown: watch::Sender<bool>,
    started_ms: i64,
    producer_ids: crate::producers::ProducerIds,
    pub(crate) traffic: crate::traffic::Traffic,
    /// Called with a topic's name once it is deleted (see
    /// [`Broker::on_topic_deleted`]).
    deleted_hooks: DeletedHooks,
    /// The cluster's placement; `None` on a single node (see
    /// [`crate::placement`]).
    pub(crate) placement: RwLock<Option<Arc<crate::placement::Placement>>>,
    /// Until when the cluster's lease on this node's roles runs (see
    /// [`Broker::renew_lease`]); `None`: no lease (a single node).
    pub(crate) lease_until: parking_lot::Mutex<Option<tokio::time::Instant>>,
    /// Bumped by every installed placement (see [`Broker::joined`]).
    pub(crate) placement_changes: watch::Sender<u64>,
    /// Partitions whose lead this node resigned (see [`crate::resign`]).
    pub(crate) resigned: crate::resign::Resignations,
    /// Leader elections this node won (see [`Broker::elections_won`]).
    pub(crate) elections: std::sync::atomic::AtomicU64,
    /// Decides topic changes in a cluster.
    pub(crate) authority: std::sync::OnceLock<Arc<dyn crate::placement::MetadataAuthority>>,
    /// Consumer groups' own settings (see [`crate::group_config`]).
    pub(crate) group_configs: crate::group_config::GroupConfigs,
    /// Definitions kept for the layers above (see [`crate::documents`]).
    pub(crate) documents: crate::documents::Documents,
    /// Handlers of node-to-node services (see [`crate::services`]).
    pub(crate) services: crate::services::Services,
}

/// What a layer above runs when a topic is deleted: it drops its own state
/// of that topic. Runs on a blocking thread, before the deletion returns.
pub type TopicDeletedHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct DeletedHooks(RwLock<Vec<TopicDeletedHook>>);

impl std::fmt::Debug for DeletedHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} topic-deleted hooks", self.0.read().len())
    }
}

impl Broker {
    /// Opens the broker: recovers every topic's partitions and the committed
    /// offsets. Must run inside a tokio runtime.
    pub async fn open(config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<Arc<Broker>> {
        let cfg = config.clone();
        let clk = clock.clone();
        let (cluster_id, loaded, producer_ids, group_configs, documents) = blocking(move || -> Result<_> {
            let dir = &cfg.data_dir;
            std::fs::create_dir_all(dir.join(TOPICS_DIR)).map_err(|e| io_err("create data directory", dir, e))?;
            let _ = std::fs::remove_dir_all(dir.join(TRASH_DIR));
            let cluster_id = load_cluster_id(dir, cfg.cluster_id.as_deref())?;
            let topics = crate::load::load_topics(&cfg, &clk)?;
            // Cluster nodes allocate from ranges of their own.
            let node = cfg.cluster_id.is_some().then_some(cfg.node_id);
            let producer_ids = crate::producers::ProducerIds::open(dir, node)?;
            let group_configs = crate::group_config::GroupConfigs::load(dir, cfg.cluster_id.is_some())?;
            let documents = crate::documents::Documents::load(dir, cfg.cluster_id.is_some())?;
            Ok((cluster_id, topics, producer_ids, group_configs, documents))
        })
        .await??;
        let (shutdown, _) = watch::channel(false);
        let groups = Arc::new(GroupCoordinator::new(config.groups.clone()));
        let started_ms = clock.now_ms();
        let crate::load::Loaded { topics, offline } = loaded;
        tracing::info!(topics = topics.len(), offline = offline.len(), cluster_id, data_dir = %config.data_dir.display(), "broker opened");
        let consumer_config = config.consumer_groups.clone();
        let offsets = Arc::new(OffsetStore::new(config.offsets_compact_bytes));
        let broker = Arc::new_cyclic(|me| Broker {
            consumer_groups: Arc::new(ConsumerGroups::new(consumer_config, Arc::new(UserTopics(me.clone())))),
            config,
            clock,
            cluster_id,
            topics: RwLock::new(topics),
            offline: RwLock::new(offline),
            deleted_hooks: DeletedHooks::default(),
            admin: tokio::sync::Mutex::new(()),
            offsets,
            groups,
            listeners: RwLock::new(BTreeMap::new()),
            shutdown,
            started_ms,
            producer_ids,
            traffic: Default::default(),
            placement: RwLock::new(None),
            lease_until: parking_lot::Mutex::new(None),
            placement_changes: watch::Sender::new(0),
            resigned: Default::default(),
            elections: Default::default(),
            authority: std::sync::OnceLock::new(),
            group_configs,
            documents,
            services: Default::default(),
        });
        broker.open_offsets().await?;
        Ok(broker)
    }

    /// A new idempotent-producer id (epoch 0), never handed out before.
    pub async fn allocate_producer_id(self: &Arc<Self>) -> Result<i64> {
        let me = self.clone();
        blocking(move || me.producer_ids.allocate()).await?
    }

    /// The broker configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id (stable across restarts).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// When the broker started (ms since epoch).
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// Records and bytes produced and fetched on this node since it started
    /// (all topics, including deleted ones).
    pub fn traffic(&self) -> crate::traffic::TrafficSnapshot {
        self.traffic.snapshot()
    }

    /// The injected clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The consumer group coordinator (classic protocol).
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// The coordinator of KIP-848 `consumer` protocol groups.
    pub fn consumer_groups(&self) -> &ConsumerGroups {
        &self.consumer_groups
    }

    /// The committed offsets store.
    pub fn offsets(&self) -> &Arc<OffsetStore> {
        &self.offsets
    }

    /// Topics whose data could not be loaded at start (a partition that
    /// cannot be opened, a corrupt `topic.json`): name → reason. They are
    /// served by no one and never created over; deleting one removes its
    /// data.
    pub fn offline_topics(&self) -> BTreeMap<String, String> {
        self.offline.read().clone()
    }

    fn offline_error(&self, name: &str) -> Option<BrokerError> {
        let reason = self.offline.read().get(name).cloned()?;
        Some(BrokerError::TopicOffline { topic: name.to_string(), reason })
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// The topic with this id (ids are stable across renames and never
    /// reused, unlike names).
    pub fn topic_by_id(&self, id: &uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id() == *id).cloned()
    }

    /// Whether unknown topics are created when clients ask for them.
    pub fn auto_create_topics(&self) -> bool {
        self.config.auto_create_topics
    }

    /// A partition, or the precise reason it is not there.
    pub fn partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>> {
        let topic = self.topic(&tp.topic).ok_or_else(|| {
            self.offline_error(&tp.topic).unwrap_or_else(|| BrokerError::UnknownTopic(tp.topic.clone()))
        })?;
        topic
            .partition(tp.partition)
            .ok_or_else(|| BrokerError::UnknownPartition { topic: tp.topic.clone(), partition: tp.partition })
    }

    /// A partition, creating its topic first when auto-creation is on.
    pub async fn partition_or_create(&self, tp: &TopicPartition) -> Result<Arc<Partition>> {
        match self.partition(tp) {
            Err(BrokerError::UnknownTopic(_)) if self.config.auto_create_topics => {
                match self.create_topic(&tp.topic, self.config.default_partitions, TopicConfig::default()).await {
                    Ok(_) | Err(BrokerError::TopicExists(_)) => self.partition(tp),
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    fn check_partitions(&self, n: u32) -> Result<()> {
        if n == 0 || n > self.config.max_partitions {
            return Err(BrokerError::InvalidPartitions(format!(
                "{n} is outside 1..={} (topics.max_partitions)",
                self.config.max_partitions
            )));
        }
        Ok(())
    }

    /// Creates a topic with `partitions` partitions (in a cluster, through
    /// the controller quorum; it exists on this node when this returns).
    pub async fn create_topic(&self, name: &str, partitions: u32, config: TopicConfig) -> Result<Arc<Topic>> {
        self.create_topic_placed(name, partitions, None, config, false).await
    }

    /// [`Broker::create_topic`] with `replication_factor` replicas per
    /// partition (`None`: the cluster's default; a single node has one).
    pub async fn create_topic_replicated(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        config: TopicConfig,
    ) -> Result<Arc<Topic>> {
        self.create_topic_placed(name, partitions, replication_factor, config, false).await
    }

    /// Replicas per partition of a topic created without saying: the
    /// cluster's setting (capped by the serving nodes at creation), 1 alone.
    pub fn default_replication_factor(&self) -> u16 {
        self.authority().map_or(1, |a| a.default_replication_factor())
    }

    /// [`Broker::create_topic`] with every partition led by this node (in
    /// a cluster; the same thing alone): for queues a client uses through
    /// the node it is connected to (AMQP).
    pub async fn create_topic_here(&self, name: &str, partitions: u32, config: TopicConfig) -> Result<Arc<Topic>> {
        self.create_topic_placed(name, partitions, None, config, true).await
    }

    async fn create_topic_placed(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        config: TopicConfig,
        here: bool,
    ) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        self.check_partitions(partitions)?;
        if replication_factor == Some(0) {
            return Err(BrokerError::InvalidReplicationFactor("a partition needs at least one replica".into()));
        }
        if let Some(authority) = self.authority() {
            authority.create_topic(name, partitions, replication_factor, &config, here).await?;
            return self.topic(name).ok_or_else(|| {
                BrokerError::internal(format!("topic '{name}' was created in the cluster but not on this node"))
            });
        }
        if replication_factor.is_some_and(|r| r > 1) {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {} is larger than the 1 available node",
                replication_factor.unwrap_or_default()
            )));
        }
        let record =
            TopicRecord { id: uuid::Uuid::new_v4(), name: name.to_string(), partitions, config, internal: false };
        self.create_topic_local(record).await
    }

    /// Creates a topic on this node's disk as `record` describes it (its id
    /// included): what [`Broker::create_topic`] does on a single node, and
    /// what the cluster layer does on every node once a creation commits.
    pub async fn create_topic_local(&self, record: TopicRecord) -> Result<Arc<Topic>> {
        let (name, partitions) = (record.name.clone(), record.partitions);
        let name = name.as_str();
        validate_topic_name(name)?;
        self.check_partitions(partitions)?;
        let _admin = self.admin.lock().await;
        if self.topic(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        if let Some(e) = self.offline_error(name) {
            // Its data is still on disk: creating over it would destroy it.
            return Err(e);
        }
        let cfg = self.config.clone();
        let clock = self.clock.clone();
        let topic = blocking(move || -> Result<Topic> {
            let dir = topic_dir(&cfg.data_dir, &record.name);
            match dir.join(TOPIC_FILE).try_exists() {
                // Loaded topics and offline ones were refused above; a topic
                // record nobody loaded is data we must not guess about.
                Ok(true) => {
                    return Err(BrokerError::TopicOffline {
                        topic: record.name.clone(),
                        reason: format!("{} exists but was not loaded; restart or remove it", dir.display()),
                    });
                }
                Ok(false) if dir.exists() => {
                    // Left over from a creation that failed and could not be
                    // cleaned up: never acknowledged, and its logs must not
                    // leak into the new topic.
                    std::fs::remove_dir_all(&dir).map_err(|e| io_err("remove stale topic directory", &dir, e))?;
                }
                Ok(false) => {}
                Err(e) => return Err(io_err("check topic directory", &dir, e)),
            }
            let created = create_topic_files(&dir, &record, &cfg, &clock);
            if created.is_err() {
                // Opened partitions were dropped (closing their files) when
                // `created` was built; remove everything so a failed creation
                // leaves nothing behind to reappear after a restart.
                crate::load::remove_logged(&dir, "removing the directory of a failed topic creation");
            }
            let parts = created?;
            Ok(Topic { dir, record: RwLock::new(record), partitions: RwLock::new(parts) })
        })
        .await??;
        let topic = Arc::new(topic);
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "topic created");
        self.adopt_leader_epochs(&topic);
        self.topic_added(&topic).await?;
        Ok(topic)
    }

    /// Deletes a topic and all its data (in a cluster, on every node).
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        refuse_internal(name, "an internal topic cannot be deleted")?;
        match self.authority() {
            Some(authority) => authority.delete_topic(name).await,
            None => self.delete_topic_local(name).await,
        }
    }

    /// Deletes a topic from this node's disk.
    pub async fn delete_topic_local(&self, name: &str) -> Result<()> {
        let _admin = self.admin.lock().await;
        let topic = self.topics.write().remove(name);
        let dir = match topic {
            Some(t) => t.dir.clone(),
            // An offline topic can be deleted: that is how an operator gives
            // up on its data.
            None if self.offline.read().contains_key(name) => topic_dir(&self.config.data_dir, name),
            None => return Err(BrokerError::UnknownTopic(name.to_string())),
        };
        let trash = self.config.data_dir.join(TRASH_DIR);
        blocking(move || -> Result<()> {
            // Rename first so a crash never leaves a half-deleted topic that
            // would be loaded again; the trash is emptied on the next start.
            std::fs::create_dir_all(&trash).map_err(|e| io_err("create trash directory", &trash, e))?;
            let target = trash.join(uuid::Uuid::new_v4().to_string());
            std::fs::rename(&dir, &target).map_err(|e| io_err("move topic to trash", &dir, e))?;
            std::fs::remove_dir_all(&target).map_err(|e| io_err("delete topic", &target, e))
        })
        .await??;
        self.offline.write().remove(name);
        // Committed offsets go with the topic (as in Kafka): a topic created
        // again under this name starts unconsumed for every group.
        let keys = self.offsets.keys_of_topic(name);
        if !keys.is_empty() {
            self.offsets.put(keys.into_iter().map(|k| (k, None)).collect(), self.clock.now_ms()).await?;
        }
        let hooks = self.deleted_hooks.0.read().clone();
        if !hooks.is_empty() {
            let topic = name.to_string();
            blocking(move || hooks.iter().for_each(|h| h(&topic))).await?;
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Runs `hook` with the name of every topic deleted from now on, before
    /// the deletion returns (so a topic created again under the name starts
    /// without the old one's state in the layers above: pop queues, say).
    pub fn on_topic_deleted(&self, hook: TopicDeletedHook) {
        self.deleted_hooks.0.write().push(hook);
    }

    /// Grows a topic to `total` partitions (in a cluster, on every node).
    pub async fn create_partitions(&self, name: &str, total: u32) -> Result<()> {
        refuse_internal(name, "an internal topic cannot be given more partitions")?;
        self.check_partitions(total)?;
        match self.authority() {
            Some(authority) => authority.create_partitions(name, total).await,
            None => self.create_partitions_local(name, total).await,
        }
    }

    /// Grows a topic on this node's disk.
    pub async fn create_partitions_local(&self, name: &str, total: u32) -> Result<()> {
        self.check_partitions(total)?;
        let _admin = self.admin.lock().await;
        let topic = self.topic(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let mut record = topic.record();
        if total <= record.partitions {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic '{name}' has {} partitions; the count can only grow",
                record.partitions
            )));
        }
        let cfg = self.config.clone();
        let clock = self.clock.clone();
        let t = topic.clone();
        blocking(move || -> Result<()> {
            let log_cfg = record.config.apply(&cfg.log_defaults);
            let old = record.partitions;
            // Leftovers of an earlier failed growth were never acknowledged.
            crate::load::remove_partitions_from(&t.dir, old);
            record.partitions = total;
            let created = (old..total)
                .map(|p| open_partition(&t.dir, &record.name, p, &log_cfg, &clock))
                .collect::<Result<Vec<_>>>()
                .and_then(|new| write_topic_record(&t.dir, &record).map(|()| new));
            let new = match created {
                Ok(new) => new,
                Err(e) => {
                    // The opened logs were dropped with the error; without
                    // their directories nothing of the growth remains.
                    crate::load::remove_partitions_from(&t.dir, old);
                    return Err(e);
                }
            };
            t.partitions.write().extend(new);
            *t.record.write() = record;
            Ok(())
        })
        .await??;
        if let Some(t) = self.topic(name) {
            self.adopt_leader_epochs(&t);
        }
        Ok(())
    }

    /// Replaces a topic's configuration overrides (validated) and applies
    /// them to its open logs (in a cluster, on every node).
    pub async fn set_topic_config(&self, name: &str, config: TopicConfig) -> Result<()> {
        for (k, v) in &config.0 {
            TopicConfig::validate_entry(k, v)?;
        }
        match self.authority() {
            Some(authority) => authority.set_topic_config(name, &config).await,
            None => self.set_topic_config_local(name, config).await,
        }
    }

    /// Replaces a topic's configuration overrides on this node.
    pub async fn set_topic_config_local(&self, name: &str, config: TopicConfig) -> Result<()> {
        for (k, v) in &config.0 {
            TopicConfig::validate_entry(k, v)?;
        }
        let _admin = self.admin.lock().await;
        let topic = self.topic(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let mut record = topic.record();
        record.config = config;
        let dir = topic.dir.clone();
        let rec = record.clone();
        blocking(move || write_topic_record(&dir, &rec)).await??;
        let log_cfg = record.config.apply(&self.config.log_defaults);
        for p in topic.partitions() {
            p.log().set_config(log_cfg.clone());
        }
        *topic.record.write() = record;
        Ok(())
    }

    /// Records the address clients should use for a listener (after bind).
    pub fn set_advertised_listener(&self, name: &str, address: String) {
        self.listeners.write().insert(name.to_string(), address);
    }

    /// A signal that turns `true` when shutdown starts.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops background work, then flushes and cleanly closes every log.
    /// Appends racing with shutdown either complete durably or fail.
    pub async fn shutdown(&self) -> Result<()> {
        self.shutdown.send_replace(true);
        self.groups.shutdown();
        self.consumer_groups.shutdown();
        let topics = self.topics();
        blocking(move || -> Result<()> {
            for t in topics {
                for p in t.partitions() {
                    // The next open loads the producer state without a
                    // replay (appends raced by shutdown may pass it: they
                    // are replayed).
                    if let Err(e) = p.producers.save_at_end(p.log()) {
                        tracing::warn!(partition = %p.id(), error = %e, "saving the producer state at shutdown failed");
                    }
                    p.log().close().map_err(|e| BrokerError::log(p.id().to_string(), e))?;
                }
            }
            Ok(())
        })
        .await??;
        tracing::info!("broker closed cleanly");
        Ok(())
    }
}

/// What the KIP-848 coordinator may assign and match regexes against: user
/// topics only (internal topics are never assigned to consumers). Weak, as
/// the broker owns the coordinator.
#[derive(Debug)]
struct UserTopics(std::sync::Weak<Broker>);

impl TopicMetadataSource for UserTopics {
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, u32)> {
        let r = self.0.upgrade()?.topic(name)?.record();
        (!r.internal).then_some((r.id, r.partitions))
    }

    fn topic_names(&self) -> Vec<String> {
        let Some(b) = self.0.upgrade() else { return Vec::new() };
        b.topics().iter().map(|t| t.record()).filter(|r| !r.internal).map(|r| r.name).collect()
    }

    fn group_setting(&self, group: &str, name: &str) -> Option<String> {
        self.0.upgrade()?.group_setting(group, name)
    }
}

/// Internal topics are the broker's own: clients may read them only;
/// `reason` says what they may not do.
pub(crate) fn refuse_internal(name: &str, reason: &'static str) -> Result<()> {
    if crate::offsets::is_internal_topic(name) {
        return Err(BrokerError::InvalidTopicName { name: name.to_string(), reason });
    }
    Ok(())
}

pub(crate) fn io_err(op: &str, path: &Path, e: std::io::Error) -> BrokerError {
    BrokerError::internal_from(format!("{op} {}", path.display()), e)
}

fn topic_dir(data: &Path, name: &str) -> PathBuf {
    data.join(TOPICS_DIR).join(name)
}

fn write_topic_record(dir: &Path, record: &TopicRecord) -> Result<()> {
    write_json_atomic(dir, TOPIC_FILE, record)
}

/// Replaces `dir/name` with `value` as JSON, atomically: a crash leaves the
/// old or the new file, never a torn one.
fn write_json_atomic(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| BrokerError::internal_from("encoding a JSON file", e))?;
    fjord_log::write_atomic(&dir.join(name), &json).map_err(|e| BrokerError::log(name, e))
}

/// Opens the partitions of a new topic and then writes its `topic.json`
/// (last, so a crash before it leaves a directory the next start removes).
fn create_topic_files(
    dir: &Path,
    record: &TopicRecord,
    cfg: &BrokerConfig,
    clock: &Arc<dyn Clock>,
) -> Result<Vec<Arc<Partition>>> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create topic directory", dir, e))?;
    let log_cfg = record.config.apply(&cfg.log_defaults);
    let parts =
        (0..record.partitions).map(|p| open_partition(dir, &record.name, p, &log_cfg, clock)).collect::<Result<_>>()?;
    write_topic_record(dir, record)?;
    Ok(parts)
}

/// Test hook: opening partition `.1` of topic `.0` fails (as with EMFILE).
/// Keyed by topic name so tests running in parallel do not interfere.
#[cfg(test)]
pub(crate) static FAIL_PARTITION_OPEN: parking_lot::Mutex<Vec<(String, u32)>> = parking_lot::Mutex::new(Vec::new());

pub(crate) fn open_partition(
    dir: &Path,
    topic: &str,
    p: u32,
    cfg: &LogConfig,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<Partition>> {
    let tp = TopicPartition::new(topic, p);
    #[cfg(test)]
    if FAIL_PARTITION_OPEN.lock().iter().any(|(t, n)| t == topic && *n == p) {
        return Err(BrokerError::internal(format!("{tp}: injected failure: Too many open files")));
    }
    let log = Log::open(dir.join(p.to_string()), cfg.clone(), clock.clone())
        .map_err(|e| BrokerError::log(tp.to_string(), e))?;
    Ok(Arc::new(Partition::new(tp, log, 0)))
}

fn load_cluster_id(dir: &Path, wanted: Option<&str>) -> Result<String> {
    let path = dir.join(CLUSTER_FILE);
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(f) = serde_json::from_slice::<ClusterFile>(&bytes)
    {
        return match wanted {
            Some(w) if w != f.cluster_id => Err(BrokerError::internal(format!(
                "{} belongs to cluster '{}', not '{w}': a node never mixes clusters' data \
                 (point node.data_dir elsewhere, or remove the directory)",
                dir.display(),
                f.cluster_id
            ))),
            _ => Ok(f.cluster_id),
        };
    }
    // Kafka cluster ids are 22-character URL-safe base64 UUIDs; a simple
    // hex UUID without dashes is accepted by clients as an opaque string.
    if path.exists() {
        // Never replace an identity we cannot read: clients and replicas
        // would silently see a different cluster.
        return Err(BrokerError::internal(format!("{} is unreadable; restore it or remove it", path.display())));
    }
    let id = wanted.map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string);
    write_json_atomic(dir, CLUSTER_FILE, &ClusterFile { cluster_id: id.clone() })?;
    Ok(id)
}

/// A topic as stored in a data directory, for offline tools.
#[derive(Debug, Clone)]
pub struct StoredTopic {
    /// Its directory.
    pub dir: PathBuf,
    /// Its `topic.json`.
    pub record: TopicRecord,
    /// Each partition's log directory, in partition order.
    pub partition_dirs: Vec<PathBuf>,
}

/// The topics stored under `data_dir`, read without opening any log (no
/// recovery, nothing written): what `fjord topic list --data-dir` shows.
pub fn stored_topics(data_dir: &Path) -> Result<Vec<StoredTopic>> {
    let root = data_dir.join(TOPICS_DIR);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| io_err("list topics", &root, e))? {
        let dir = entry.map_err(|e| io_err("list topics", &root, e))?.path();
        let Ok(bytes) = std::fs::read(dir.join(TOPIC_FILE)) else {
            tracing::warn!(dir = %dir.display(), "ignoring topic directory without topic.json (interrupted creation)");
            continue;
        };
        let record: TopicRecord = serde_json::from_slice(&bytes)
            .map_err(|e| BrokerError::internal_from(format!("corrupt {}", dir.join(TOPIC_FILE).display()), e))?;
        let partition_dirs = (0..record.partitions).map(|p| dir.join(p.to_string())).collect();
        out.push(StoredTopic { dir, record, partition_dirs });
    }
    out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    Ok(out)
}
