//! Rules checked after loading: ranges and relations between settings.

use std::net::SocketAddr;

use crate::error::InvalidSetting;
use crate::sections::{Durability, ListenerConfig};
use crate::{Config, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};

/// Largest value of a signed 32-bit field on the wire (sizes and timeouts
/// that Kafka clients carry as `int32`).
const I32_MAX: u64 = i32::MAX as u64;

/// Every problem with `c`, in a stable order.
pub(crate) fn problems(c: &Config) -> Vec<InvalidSetting> {
    let mut p = Problems(Vec::new());
    node(c, &mut p);
    listeners(c, &mut p);
    storage(c, &mut p);
    topics(c, &mut p);
    groups(c, &mut p);
    kafka(c, &mut p);
    limits(c, &mut p);
    messaging(c, &mut p);
    rocketmq(c, &mut p);
    amqp(c, &mut p);
    cluster(c, &mut p);
    log(c, &mut p);
    p.0
}

struct Problems(Vec<InvalidSetting>);

impl Problems {
    fn check(&mut self, ok: bool, key: &str, reason: impl FnOnce() -> String) {
        if !ok {
            self.0.push(InvalidSetting::new(key, reason()));
        }
    }
}

fn node(c: &Config, p: &mut Problems) {
    let n = &c.node;
    p.check(n.id >= 0, "node.id", || format!("must be 0 or more, got {}", n.id));
    p.check(!n.cluster_name.trim().is_empty(), "node.cluster_name", || "must not be empty".to_owned());
    p.check(!n.data_dir.as_os_str().is_empty(), "node.data_dir", || "must not be empty".to_owned());
}

fn listeners(c: &Config, p: &mut Problems) {
    let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
    for (name, l) in c.listeners.all() {
        if !l.enabled {
            continue;
        }
        let key = format!("listeners.{name}.bind");
        match l.bind_addr() {
            Ok(addr) => {
                if addr.port() != 0 {
                    if let Some((other, _)) = bound.iter().find(|(_, b)| conflicts(*b, addr)) {
                        p.check(false, &key, || {
                            format!("`{}` uses port {} already bound by listeners.{other}", l.bind, addr.port())
                        });
                    }
                    bound.push((name, addr));
                }
            }
            Err(e) => p.check(false, &key, || e.to_string()),
        }
        advertised(name, l, p);
    }
}

/// Whether two bind addresses on the same port would clash.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn advertised(name: &str, l: &ListenerConfig, p: &mut Problems) {
    let Some(adv) = &l.advertised else { return };
    let key = format!("listeners.{name}.advertised");
    let ok = match adv.trim().rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok_and(|port| port != 0)
        }
        None => false,
    };
    p.check(ok, &key, || {
        format!("`{adv}` is not host:port with a port from 1 to 65535, e.g. broker1.example.com:9092")
    });
}

fn storage(c: &Config, p: &mut Problems) {
    let s = &c.storage;
    p.check((MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&s.segment_bytes), "storage.segment_bytes", || {
        format!("must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES} bytes, got {}", s.segment_bytes)
    });
    p.check(s.segment_ms > 0, "storage.segment_ms", || "must be more than 0 ms".to_owned());
    p.check(s.max_message_bytes > 0 && u64::from(s.max_message_bytes) <= I32_MAX, "storage.max_message_bytes", || {
        format!("must be between 1 and {I32_MAX} bytes, got {}", s.max_message_bytes)
    });
    p.check(s.retention_check_interval_ms > 0, "storage.retention_check_interval_ms", || {
        "must be more than 0 ms".to_owned()
    });
    p.check(s.durability != Durability::Interval || s.flush_interval_ms > 0, "storage.flush_interval_ms", || {
        "must be more than 0 ms when storage.durability is \"interval\"".to_owned()
    });
    for (i, h) in s.key_index_headers.iter().enumerate() {
        p.check(!h.trim().is_empty(), "storage.key_index_headers", || format!("entry {i} is empty"));
        p.check(!s.key_index_headers[..i].contains(h), "storage.key_index_headers", || {
            format!("`{h}` is listed more than once")
        });
    }
}

fn topics(c: &Config, p: &mut Problems) {
    let t = &c.topics;
    p.check(t.max_partitions > 0 && u64::from(t.max_partitions) <= I32_MAX, "topics.max_partitions", || {
        format!("must be between 1 and {I32_MAX}, got {}", t.max_partitions)
    });
    p.check(
        t.default_partitions > 0 && t.default_partitions <= t.max_partitions.max(1),
        "topics.default_partitions",
        || format!("must be between 1 and topics.max_partitions ({}), got {}", t.max_partitions, t.default_partitions),
    );
}

fn kafka(c: &Config, p: &mut Problems) {
    let k = &c.kafka;
    p.check((1..=I32_MAX).contains(&k.socket_request_max_bytes), "kafka.socket_request_max_bytes", || {
        format!("must be between 1 and {I32_MAX}, got {}", k.socket_request_max_bytes)
    });
    p.check(
        (1..=k.socket_request_max_bytes.max(1)).contains(&k.control_request_max_bytes),
        "kafka.control_request_max_bytes",
        || {
            format!(
                "must be between 1 and kafka.socket_request_max_bytes ({}), got {}",
                k.socket_request_max_bytes, k.control_request_max_bytes
            )
        },
    );
    p.check(k.connections_max_idle_ms > 0, "kafka.connections_max_idle_ms", || "must be more than 0 ms".to_owned());
    p.check((1..=I32_MAX).contains(&k.fetch_max_bytes), "kafka.fetch_max_bytes", || {
        format!("must be between 1 and {I32_MAX}, got {}", k.fetch_max_bytes)
    });
}

fn limits(c: &Config, p: &mut Problems) {
    let l = &c.limits;
    p.check(l.max_connections > 0, "limits.max_connections", || "must be more than 0".to_owned());
    p.check(l.max_connections_per_ip > 0, "limits.max_connections_per_ip", || "must be more than 0".to_owned());
    let (min, max) = (1u64 << 20, u64::from(u32::MAX));
    p.check((min..=max).contains(&l.queued_max_request_bytes), "limits.queued_max_request_bytes", || {
        format!("must be between {min} and {max}, got {}", l.queued_max_request_bytes)
    });
    p.check(l.http_connections_max_idle_ms > 0, "limits.http_connections_max_idle_ms", || {
        "must be more than 0 ms".to_owned()
    });
    p.check(l.http_body_timeout_ms > 0, "limits.http_body_timeout_ms", || "must be more than 0 ms".to_owned());
}

fn messaging(c: &Config, p: &mut Problems) {
    let m = &c.messaging;
    p.check(m.max_delay_ms > 0, "messaging.max_delay_ms", || "must be more than 0 ms".to_owned());
    p.check((1..=60_000).contains(&m.timer_tick_ms), "messaging.timer_tick_ms", || {
        format!("must be between 1 and 60000 ms, got {}", m.timer_tick_ms)
    });
    p.check(!m.retry_backoff_ms.is_empty(), "messaging.retry_backoff_ms", || "must list at least one step".to_owned());
    for (i, step) in m.retry_backoff_ms.iter().enumerate() {
        p.check(*step > 0, "messaging.retry_backoff_ms", || format!("entry {i} must be more than 0 ms"));
    }
    p.check(m.max_attempts > 0, "messaging.max_attempts", || "must be more than 0".to_owned());
    p.check(m.order_lock_ttl_ms > 0, "messaging.order_lock_ttl_ms", || "must be more than 0 ms".to_owned());
    p.check(m.max_held_per_queue > 0, "messaging.max_held_per_queue", || "must be more than 0".to_owned());
    p.check(m.snapshot_interval_ms > 0, "messaging.snapshot_interval_ms", || "must be more than 0 ms".to_owned());
}

fn amqp(c: &Config, p: &mut Problems) {
    let a = &c.amqp;
    let len = a.default_user.len();
    p.check((1..=255).contains(&len), "amqp.default_user", || "must be 1 to 255 bytes".to_owned());
}

fn cluster(c: &Config, p: &mut Problems) {
    let k = &c.cluster;
    if !k.enabled() {
        return;
    }
    match k.voters() {
        Ok(v) => {
            let mut ids: Vec<u64> = v.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            p.check(ids.len() == v.len(), "cluster.controllers", || "lists a node id twice".to_owned());
        }
        Err(e) => p.check(false, "cluster.controllers", || e),
    }
    p.check((1..=255).contains(&k.cluster_id.len()), "cluster.cluster_id", || {
        "must be set (1 to 255 bytes, the same on every node) when cluster.controllers is".to_owned()
    });
    p.check(c.node.id >= 1, "node.id", || "must be 1 or more in a cluster".to_owned());
    p.check(k.bind.parse::<SocketAddr>().is_ok(), "cluster.bind", || format!("`{}` is not ip:port", k.bind));
    p.check(k.heartbeat_interval_ms > 0, "cluster.heartbeat_interval_ms", || "must be more than 0 ms".to_owned());
    // A node stops serving once its lease runs out without an answer from
    // the controller leader: the lease must outlast two heartbeats, and a
    // controller failover (openraft waits out the old leader's lease, 1.5
    // election timeouts, then up to 1.5 more) plus the heartbeat that
    // finds the new leader.
    let failover = 3 * k.election_timeout_ms.max(300) + k.heartbeat_interval_ms;
    let floor = failover.max(2 * k.heartbeat_interval_ms);
    p.check(k.lease_ms > floor, "cluster.lease_ms", || {
        format!(
            "must exceed two heartbeat intervals and a controller failover \
             (3 x election_timeout_ms + heartbeat_interval_ms): more than {floor} ms"
        )
    });
    p.check(k.election_timeout_ms >= 300, "cluster.election_timeout_ms", || "must be 300 ms or more".to_owned());
    p.check(k.default_replication_factor >= 1, "cluster.default_replication_factor", || "must be 1 or more".to_owned());
    p.check(k.replica_lag_ms > 0, "cluster.replica_lag_ms", || "must be more than 0 ms".to_owned());
}

fn rocketmq(c: &Config, p: &mut Problems) {
    let r = &c.rocketmq;
    p.check(r.transaction_timeout_ms > 0, "rocketmq.transaction_timeout_ms", || "must be more than 0 ms".to_owned());
    p.check(r.transaction_check_interval_ms > 0, "rocketmq.transaction_check_interval_ms", || {
        "must be more than 0 ms".to_owned()
    });
    p.check(r.transaction_check_max > 0, "rocketmq.transaction_check_max", || "must be more than 0".to_owned());
    p.check(r.max_long_poll_ms > 0, "rocketmq.max_long_poll_ms", || "must be more than 0 ms".to_owned());
    p.check(r.connections_max_idle_ms > 0, "rocketmq.connections_max_idle_ms", || "must be more than 0 ms".to_owned());
}

fn groups(c: &Config, p: &mut Problems) {
    let g = &c.groups;
    p.check(g.session_timeout_min_ms > 0, "groups.session_timeout_min_ms", || "must be more than 0 ms".to_owned());
    p.check(g.session_timeout_min_ms <= g.session_timeout_max_ms, "groups.session_timeout_min_ms", || {
        format!(
            "must not exceed groups.session_timeout_max_ms ({} ms), got {} ms",
            g.session_timeout_max_ms, g.session_timeout_min_ms
        )
    });
    p.check(g.session_timeout_max_ms <= I32_MAX, "groups.session_timeout_max_ms", || {
        format!("must be at most {I32_MAX} ms, got {}", g.session_timeout_max_ms)
    });
    p.check(g.initial_rebalance_delay_ms <= I32_MAX, "groups.initial_rebalance_delay_ms", || {
        format!("must be at most {I32_MAX} ms, got {}", g.initial_rebalance_delay_ms)
    });
    p.check(g.max_size > 0, "groups.max_size", || "must be more than 0".to_owned());
    p.check(g.offsets_retention_ms > 0, "groups.offsets_retention_ms", || "must be more than 0 ms".to_owned());
    p.check(
        g.consumer_heartbeat_interval_ms > 0 && g.consumer_heartbeat_interval_ms <= I32_MAX,
        "groups.consumer_heartbeat_interval_ms",
        || format!("must be 1..=2147483647 ms, got {}", g.consumer_heartbeat_interval_ms),
    );
    p.check(
        g.consumer_session_timeout_ms > g.consumer_heartbeat_interval_ms && g.consumer_session_timeout_ms <= I32_MAX,
        "groups.consumer_session_timeout_ms",
        || {
            format!(
                "must be more than groups.consumer_heartbeat_interval_ms ({} ms) and at most 2147483647 ms, got {}",
                g.consumer_heartbeat_interval_ms, g.consumer_session_timeout_ms
            )
        },
    );
}

fn log(c: &Config, p: &mut Problems) {
    p.check(!c.log.level.trim().is_empty(), "log.level", || {
        "must not be empty; use e.g. \"info\" or \"warn,fjord_broker=debug\"".to_owned()
    });
}
