//! `fjord serve`: open the broker, bind listeners, run until shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fjord_admin::AdminState;
use fjord_broker::{Broker, BrokerConfig};
use fjord_config::Config;
use fjord_log::{Clock, Durability, KeyIndexConfig, LogConfig, SystemClock, batch::TimestampType};
use tokio::net::TcpListener;

/// Options that are not configuration (they concern this process only).
#[derive(Debug, Default)]
pub struct Options {
    /// Where to write the bound addresses once ready.
    pub ready_file: Option<PathBuf>,
    /// Already-bound listeners by name (`http`, `kafka`, ...), used instead
    /// of binding the configured address (tests bind port 0 themselves).
    pub listeners: HashMap<String, TcpListener>,
    /// The clock; the system clock when `None`.
    pub clock: Option<Arc<dyn Clock>>,
}

/// Maps the configuration file's settings onto the broker core's.
pub fn broker_config(c: &Config) -> BrokerConfig {
    let s = &c.storage;
    let ms = Duration::from_millis;
    let mut b = BrokerConfig::new(&c.node.data_dir);
    b.node_id = c.node.id;
    b.rack = c.node.rack.clone();
    b.log_defaults = LogConfig {
        segment_bytes: s.segment_bytes,
        segment_ms: s.segment_ms as i64,
        index_interval_bytes: s.index_interval_bytes,
        max_message_bytes: s.max_message_bytes as usize,
        retention_ms: s.retention_ms.map(|v| v as i64),
        retention_bytes: s.retention_bytes,
        durability: match s.durability {
            fjord_config::Durability::EveryWrite => Durability::EveryWrite,
            fjord_config::Durability::GroupCommit => Durability::GroupCommit,
            fjord_config::Durability::Interval => Durability::Interval(ms(s.flush_interval_ms)),
        },
        timestamp_type: match s.message_timestamp_type {
            fjord_config::TimestampType::CreateTime => TimestampType::CreateTime,
            fjord_config::TimestampType::LogAppendTime => TimestampType::LogAppendTime,
        },
        key_index: KeyIndexConfig {
            enabled: s.key_index,
            header_keys: s.key_index_headers.iter().map(|h| h.as_bytes().to_vec()).collect(),
        },
        // Producers' codecs kept, any timestamp, no segment jitter.
        ..LogConfig::default()
    };
    b.retention_check_interval = ms(s.retention_check_interval_ms);
    b.auto_create_topics = c.topics.auto_create;
    b.default_partitions = c.topics.default_partitions;
    b.max_partitions = c.topics.max_partitions;
    b.groups.min_session_timeout = ms(c.groups.session_timeout_min_ms);
    b.groups.max_session_timeout = ms(c.groups.session_timeout_max_ms);
    b.groups.initial_rebalance_delay = ms(c.groups.initial_rebalance_delay_ms);
    b.groups.max_group_size = c.groups.max_size as usize;
    b.consumer_groups.heartbeat_interval = ms(c.groups.consumer_heartbeat_interval_ms.max(1));
    b.consumer_groups.session_timeout = ms(c.groups.consumer_session_timeout_ms.max(1));
    b.consumer_groups.max_group_size = c.groups.max_size as usize;
    b.offsets_retention = ms(c.groups.offsets_retention_ms);
    b.cluster_id = c.cluster.enabled().then(|| c.cluster.cluster_id.clone());
    b
}

/// The cluster runtime's settings from `[cluster]` (validated).
fn cluster_config(c: &Config, advertised: String) -> anyhow::Result<fjord_cluster::ClusterConfig> {
    let k = &c.cluster;
    let voters = k.voters().map_err(|e| anyhow::anyhow!("cluster.controllers: {e}"))?;
    let ms = Duration::from_millis;
    Ok(fjord_cluster::ClusterConfig {
        node_id: c.node.id as u64,
        cluster_id: k.cluster_id.clone(),
        controllers: voters.into_iter().collect(),
        advertised,
        rack: c.node.rack.clone(),
        dir: c.node.data_dir.join("controller"),
        heartbeat_interval: ms(k.heartbeat_interval_ms),
        lease: ms(k.lease_ms),
        election_timeout: ms(k.election_timeout_ms),
        offsets_partitions: 16,
        snapshot_every: 1000,
        default_replication_factor: k.default_replication_factor,
        replica_lag: ms(k.replica_lag_ms),
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs a node until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish, flushes and closes every log.
pub async fn run(
    config: Config,
    mut opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let clock = opts.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
    // Before any log or socket is opened: segments and connections each
    // hold a file descriptor.
    let open_files = crate::limits::raise_open_files();
    let broker_config = BrokerConfig { open_files_limit: open_files, ..broker_config(&config) };
    let broker = Broker::open(broker_config, clock)
        .await
        .with_context(|| format!("opening data directory {}", config.node.data_dir.display()))?;
    if let Some(limit) = open_files {
        let partitions: u64 = broker.topics().iter().map(|t| t.partitions().len() as u64).sum();
        crate::limits::check_open_files(limit, partitions, u64::from(config.limits.max_connections));
    }
    let background = broker.start_background_tasks();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut bound = serde_json::Map::new();
    // In a cluster, topic changes go through the controller quorum from
    // here on, and nothing is served until this node has the metadata.
    let cluster = if config.cluster.enabled() {
        let listener = match opts.listeners.remove("cluster") {
            Some(l) => l,
            None => {
                let addr: std::net::SocketAddr = config.cluster.bind.parse().context("cluster.bind")?;
                TcpListener::bind(addr).await.with_context(|| format!("binding the cluster listener to {addr}"))?
            }
        };
        let local = listener.local_addr()?;
        let advertised = config.cluster.advertised.clone().unwrap_or_else(|| advertise(local));
        bound.insert("cluster".into(), serde_json::Value::String(advertised.clone()));
        let node =
            fjord_cluster::start(cluster_config(&config, advertised)?, broker.clone(), listener, stop_rx.clone())
                .await
                .context("starting the cluster node")?;
        Some(node)
    } else {
        None
    };
    // The messaging layer (delayed messages, pop, retry): recovered before
    // any listener opens, so overdue messages go out and in-flight pops
    // resume as they were.
    let messaging_config = messaging_config(&config.messaging, broker.config().log_defaults.durability);
    let messaging = fjord_messaging::Messaging::open(broker.clone(), messaging_config)
        .await
        .context("opening the messaging state (timer, pop queues)")?;
    messaging.start();

    fjord_admin::metrics::install();
    // Shared by every listener: the per-IP connection table and the
    // request-memory budget.
    let limits = &config.limits;
    let ips = fjord_net::IpLimits::new(limits.max_connections_per_ip as usize);
    let budget = fjord_net::RequestBudget::new(limits.queued_max_request_bytes);
    let admin_config = fjord_admin::AdminConfig {
        per_partition_metrics: config.metrics.per_partition,
        connections_max_idle: Duration::from_millis(limits.http_connections_max_idle_ms),
        body_timeout: Duration::from_millis(limits.http_body_timeout_ms),
        request_budget: budget.clone(),
    };
    let http_state = AdminState::new(messaging.clone(), admin_config);
    let sampler = http_state.start();
    let mut servers = Vec::new();
    let (mut rocketmq_listeners, mut rocketmq_broker_addr) = (Vec::new(), None);
    for (name, l) in config.listeners.all() {
        if !l.enabled {
            continue;
        }
        if !matches!(
            name,
            "http" | "kafka" | "rocketmq_namesrv" | "rocketmq_broker" | "rocketmq_grpc" | "amqp" | "amqp_management"
        ) {
            tracing::info!(listener = name, "protocol gateway not available in this build; listener not started");
            continue;
        }
        let listener = match opts.listeners.remove(name) {
            Some(l) => l,
            None => {
                let addr = l.bind_addr()?;
                TcpListener::bind(addr).await.with_context(|| format!("binding the {name} listener to {addr}"))?
            }
        };
        let local = listener.local_addr()?;
        let advertised = l.advertised.clone().unwrap_or_else(|| advertise(local));
        broker.set_advertised_listener(name, advertised.clone());
        bound.insert(name.to_string(), serde_json::Value::String(advertised.clone()));
        tracing::info!(listener = name, %local, "listening");
        let protocol = match name {
            "rocketmq_namesrv" | "rocketmq_broker" => "rocketmq",
            "amqp_management" => "http",
            other => other,
        };
        let acceptor = fjord_net::Acceptor::new(listener, protocol, limits.max_connections as usize, ips.clone());
        let mut stop = stop_rx.clone();
        if name == "rocketmq_grpc" {
            let r = &config.rocketmq;
            let grpc = fjord_rocketmq_grpc::GrpcConfig {
                endpoint: advertised,
                broker_name: format!("broker-{}", config.node.id),
                max_long_poll: Duration::from_millis(r.max_long_poll_ms),
                transaction_timeout: Duration::from_millis(r.transaction_timeout_ms),
                transaction_check_interval: Duration::from_millis(r.transaction_check_interval_ms),
                transaction_check_max: r.transaction_check_max,
                connection_max_idle: Duration::from_millis(r.connections_max_idle_ms),
                request_budget: budget.clone(),
                ..Default::default()
            };
            let gateway = fjord_rocketmq_grpc::GrpcGateway::new(messaging.clone(), grpc);
            servers.push(tokio::spawn(async move { Ok(fjord_rocketmq_grpc::serve(acceptor, gateway, stop).await?) }));
            continue;
        }
        if name.starts_with("rocketmq_") {
            // Both remoting ports share one gateway, started below.
            if name == "rocketmq_broker" {
                rocketmq_broker_addr = Some(advertised.clone());
            }
            rocketmq_listeners.push(acceptor);
            continue;
        }
        let server: tokio::task::JoinHandle<anyhow::Result<()>> = match name {
            "amqp" => {
                let a = &config.amqp;
                let amqp = fjord_amqp::AmqpConfig {
                    request_budget: budget.clone(),
                    default_user: (a.default_user.clone(), a.default_pass.clone()),
                    loopback_users: a.loopback_users.clone(),
                    disk_free_limit: a.disk_free_limit,
                    ..Default::default()
                };
                let gateway = fjord_amqp::AmqpGateway::open(messaging.clone(), amqp)
                    .await
                    .context("opening the AMQP definitions")?;
                http_state.set_amqp(gateway.clone());
                tokio::spawn(async move { Ok(fjord_amqp::serve(acceptor, gateway, stop).await?) })
            }
            "kafka" => {
                let kafka = fjord_kafka::KafkaConfig { request_budget: budget.clone(), ..kafka_config(&config.kafka) };
                let gateway = fjord_kafka::KafkaGateway::new(broker.clone(), kafka);
                tokio::spawn(async move { Ok(fjord_kafka::serve(acceptor, gateway, stop).await?) })
            }
            _ => {
                // The admin API, or RabbitMQ's management API: listed after
                // `amqp` in `all()`, so the gateway is set by now (503 when
                // the AMQP listener is off).
                let (state, rabbit) = (http_state.clone(), name == "amqp_management");
                tokio::spawn(async move {
                    let stop = async move {
                        let _ = stop.changed().await;
                    };
                    if rabbit {
                        fjord_admin::serve_rabbitmq_management(acceptor, state, stop).await?;
                    } else {
                        fjord_admin::serve(acceptor, state, stop).await?;
                    }
                    Ok(())
                })
            }
        };
        servers.push(server);
    }
    if !rocketmq_listeners.is_empty() {
        let r = &config.rocketmq;
        let rmq = fjord_rocketmq::RocketMqConfig {
            max_long_poll: Duration::from_millis(r.max_long_poll_ms),
            transaction_timeout: Duration::from_millis(r.transaction_timeout_ms),
            transaction_check_interval: Duration::from_millis(r.transaction_check_interval_ms),
            transaction_check_max: r.transaction_check_max,
            connection_max_idle: Duration::from_millis(r.connections_max_idle_ms),
            cluster_name: config.node.cluster_name.clone(),
            broker_name: format!("broker-{}", config.node.id),
            // Without a broker port, routes send clients to the name server
            // port, which serves broker commands too.
            broker_addr: rocketmq_broker_addr
                .or_else(|| bound.get("rocketmq_namesrv").and_then(|v| v.as_str()).map(str::to_string))
                .unwrap_or_default(),
            request_budget: budget.clone(),
            ..Default::default()
        };
        let gateway = fjord_rocketmq::RocketMqGateway::new(messaging.clone(), rmq);
        let stop = stop_rx.clone();
        servers.push(tokio::spawn(async move { Ok(fjord_rocketmq::serve(rocketmq_listeners, gateway, stop).await?) }));
    }
    if let Some(node) = &cluster {
        let listeners = broker.node().listeners;
        node.join(listeners, stop_rx.clone()).await.context("joining the cluster")?;
    }
    if let Some(path) = &opts.ready_file {
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, serde_json::to_vec(&bound)?).await?;
        tokio::fs::rename(&tmp, path).await?;
    }
    http_state.set_ready(true);
    tracing::info!(node = config.node.id, "fjord is ready");

    shutdown.await;
    if let Some(node) = &cluster {
        // Leaders elsewhere first, while this node still answers: clients
        // move on being told so, instead of timing out on it (bounded by
        // the lease: without a controller quorum it stops anyway).
        if let Err(e) = node.controlled_shutdown().await {
            tracing::warn!(error = %e, "controlled shutdown failed; stopping anyway (the lease will fence this node)");
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    http_state.set_ready(false);
    let _ = stop_tx.send(true);
    // The listeners drain side by side (each task runs on its own), within
    // one bound for all: the whole stop must fit in the 30 s an
    // orchestrator gives (Kubernetes' default).
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for s in servers {
        match tokio::time::timeout_at(drain_deadline, s).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "listener ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "listener task failed"),
            Err(_) => tracing::warn!("listener did not drain within 10 s"),
        }
    }
    tracing::info!("listeners closed; closing the messaging state");
    messaging.shutdown().await.context("closing the messaging state")?;
    if let Some(node) = &cluster {
        tracing::info!("messaging state closed; leaving the cluster");
        node.shutdown().await;
    }
    tracing::info!("closing the logs");
    broker.shutdown().await.context("closing the logs")?;
    for t in background {
        t.abort();
    }
    sampler.abort();
    Ok(())
}

/// The address to tell clients when none is configured: the bound one,
/// with an unspecified IP replaced by loopback (fine for a single node;
/// multi-host deployments set `advertised`).
fn advertise(local: std::net::SocketAddr) -> String {
    if local.ip().is_unspecified() {
        let ip: std::net::IpAddr =
            if local.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() };
        std::net::SocketAddr::new(ip, local.port()).to_string()
    } else {
        local.to_string()
    }
}

/// The Kafka gateway's settings from `[kafka]` (validated: the sizes fit
/// an `i32`), with a budget of its own (`run` gives it the shared one).
fn kafka_config(k: &fjord_config::KafkaSettings) -> fjord_kafka::KafkaConfig {
    fjord_kafka::KafkaConfig {
        max_request_bytes: usize::try_from(k.socket_request_max_bytes).unwrap_or(usize::MAX),
        max_control_request_bytes: usize::try_from(k.control_request_max_bytes).unwrap_or(usize::MAX),
        connections_max_idle: Duration::from_millis(k.connections_max_idle_ms),
        fetch_max_bytes: usize::try_from(k.fetch_max_bytes).unwrap_or(usize::MAX),
        rack_aware_reads: k.replica_selector == fjord_config::ReplicaSelector::RackAware,
        ..fjord_kafka::KafkaConfig::default()
    }
}

/// The messaging layer's settings from `[messaging]`; its journals are as
/// durable as the logs.
fn messaging_config(m: &fjord_config::MessagingSettings, durability: Durability) -> fjord_messaging::MessagingConfig {
    let ms = Duration::from_millis;
    fjord_messaging::MessagingConfig {
        max_delay: ms(m.max_delay_ms),
        timer_tick: ms(m.timer_tick_ms),
        retry_backoff: m.retry_backoff_ms.iter().copied().map(ms).collect(),
        max_attempts: m.max_attempts,
        order_lock_ttl: ms(m.order_lock_ttl_ms),
        max_held_per_queue: m.max_held_per_queue as usize,
        snapshot_interval: ms(m.snapshot_interval_ms),
        durability,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messaging_settings_reach_the_messaging_layer() {
        let m = fjord_config::MessagingSettings {
            max_delay_ms: 86_400_000,
            timer_tick_ms: 10,
            retry_backoff_ms: vec![1000, 5000],
            max_attempts: 3,
            order_lock_ttl_ms: 25_000,
            max_held_per_queue: 50,
            snapshot_interval_ms: 5000,
        };
        let c = messaging_config(&m, Durability::EveryWrite);
        assert_eq!(c.max_delay, Duration::from_secs(86_400));
        assert_eq!(c.timer_tick, Duration::from_millis(10));
        assert_eq!(c.retry_backoff, [Duration::from_secs(1), Duration::from_secs(5)]);
        assert_eq!(c.backoff(7), Duration::from_secs(5), "the last step repeats");
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.order_lock_ttl, Duration::from_secs(25));
        assert_eq!(c.max_held_per_queue, 50);
        assert_eq!(c.snapshot_interval, Duration::from_secs(5));
        assert_eq!(c.durability, Durability::EveryWrite);
        let kafka = kafka_config(&fjord_config::KafkaSettings::default());
        assert_eq!(kafka, fjord_kafka::KafkaConfig::default(), "the configuration's defaults are the gateway's");
        let defaults = messaging_config(&fjord_config::MessagingSettings::default(), Durability::GroupCommit);
        let core = fjord_messaging::MessagingConfig::default();
        assert_eq!(
            (defaults.max_delay, defaults.retry_backoff, defaults.max_attempts, defaults.order_lock_ttl),
            (core.max_delay, core.retry_backoff, core.max_attempts, core.order_lock_ttl),
            "the configuration's defaults are the messaging layer's"
        );
    }
}
