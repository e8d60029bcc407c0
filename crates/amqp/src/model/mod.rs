//! The AMQP model of one broker: virtual hosts, each with exchanges,
//! queues and bindings.
//!
//! Definitions are metadata; messages live in topics. Every queue is a
//! Fjord topic ([`queue_topic`]): a queue `q` of the default virtual host
//! `/` is the topic `q` when the name is a valid topic name, so Kafka and
//! RocketMQ clients read and write it by that name, and any existing topic
//! is a (durable) queue of `/` that can be consumed and published to
//! without declaring it. Deliveries and acks go through the messaging
//! layer's pop queues under one consumer group, [`AMQP_GROUP`].
//!
//! Definitions are kept in the broker's document scopes (see the `store` module):
//! on a single node a file rewritten atomically, in a cluster the
//! controller quorum's metadata, so every node routes with the same
//! exchanges, queues and bindings. A declare, bind or delete is durable
//! there before it is answered. Transient queues and exchanges are stored
//! too (other nodes route to them) and removed when the node that declared
//! them restarts, as RabbitMQ drops transient queues.

pub mod routing;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fjord_amqp_codec::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};

pub use store::Model;

/// The virtual host every broker has.
pub const DEFAULT_VHOST: &str = "/";
/// The consumer group whose pop queues hold every AMQP queue's deliveries.
pub const AMQP_GROUP: &str = "fjord-amqp";

/// Exchange types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExchangeKind {
    /// Routing key equals binding key.
    Direct,
    /// Every bound destination.
    Fanout,
    /// Dotted patterns with `*` and `#`.
    Topic,
    /// Header matching (`x-match`).
    Headers,
    /// The delayed-message plugin's type: routes as its `x-delayed-type`
    /// after the `x-delay` header's milliseconds.
    XDelayedMessage,
}

impl ExchangeKind {
    /// Parses an `exchange.declare` type.
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        Some(match s {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            "x-delayed-message" => ExchangeKind::XDelayedMessage,
            _ => return None,
        })
    }

    /// The name clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
            ExchangeKind::XDelayedMessage => "x-delayed-message",
        }
    }
}

/// An exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Name (unique in its virtual host).
    pub name: String,
    /// Type.
    pub kind: ExchangeKind,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last binding (as a source) goes.
    pub auto_delete: bool,
    /// Clients cannot publish to it directly.
    pub internal: bool,
    /// Declared arguments (`alternate-exchange`, `x-delayed-type`).
    pub arguments: FieldTable,
    /// The node that declared it, for a non-durable exchange: it goes when
    /// that node restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<i32>,
}

impl Exchange {
    /// A plain durable exchange (not auto-delete, not internal).
    pub fn durable(name: &str, kind: ExchangeKind, arguments: FieldTable) -> Exchange {
        Exchange { name: name.into(), kind, durable: true, auto_delete: false, internal: false, arguments, home: None }
    }

    /// The exchange's `alternate-exchange`, if any.
    pub fn alternate(&self) -> Option<String> {
        string_arg(&self.arguments, "alternate-exchange")
    }
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    /// Name (unique in its virtual host).
    pub name: String,
    /// The topic holding its messages.
    pub topic: String,
    /// Survives a restart.
    pub durable: bool,
    /// Used only by the connection that declared it (ids are unique in a
    /// cluster), deleted with it, or when that connection's node restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u64>,
    /// Declared exclusive.
    pub exclusive: bool,
    /// Deleted when its last consumer goes (after having had one).
    pub auto_delete: bool,
    /// Declared arguments (`x-message-ttl`, `x-dead-letter-exchange`, ...).
    pub arguments: FieldTable,
    /// True when the topic existed before (created by another protocol):
    /// deleting the queue then leaves the topic alone.
    #[serde(default)]
    pub adopted: bool,
}

/// A binding from an exchange to a queue or another exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// Source exchange.
    pub source: String,
    /// Destination queue or exchange name.
    pub destination: String,
    /// Whether the destination is an exchange.
    pub to_exchange: bool,
    /// Binding key.
    pub routing_key: String,
    /// Arguments (headers exchanges match on them).
    pub arguments: FieldTable,
}

impl Binding {
    /// A binding from the names a bind or unbind method carries.
    pub fn new(
        source: &str,
        destination: &str,
        to_exchange: bool,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Binding {
        Binding {
            source: source.to_string(),
            destination: destination.to_string(),
            to_exchange,
            routing_key: routing_key.to_string(),
            arguments,
        }
    }
}

/// One virtual host's definitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VHost {
    /// Exchanges by name.
    pub exchanges: BTreeMap<String, Exchange>,
    /// Queues by name.
    pub queues: BTreeMap<String, Queue>,
    /// Bindings, in declaration order. After changing them, call
    /// [`VHost::reindex`] ([`Model::update`] does).
    pub bindings: Vec<Binding>,
    /// Derived from `bindings`, never saved.
    #[serde(skip)]
    index: RouteIndex,
}

/// The bindings of each source exchange, and of each of its binding keys
/// (what direct routing looks up), as positions in [`VHost::bindings`]:
/// routing a publish costs what its exchange has bound, or what matches
/// its key, rather than every binding of the virtual host.
#[derive(Debug, Clone, Default)]
struct RouteIndex {
    by_source: HashMap<String, SourceBindings>,
    /// How many bindings it was built from (a stale index is not used).
    built_from: usize,
}

#[derive(Debug, Clone, Default)]
struct SourceBindings {
    all: Vec<usize>,
    by_key: HashMap<String, Vec<usize>>,
}

impl VHost {
    /// A new virtual host with the predeclared exchanges.
    pub fn with_predeclared() -> VHost {
        let mut v = VHost::default();
        for (name, kind) in [
            ("", ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            v.exchanges.insert(name.into(), Exchange::durable(name, kind, FieldTable::default()));
        }
        v
    }

    /// Rebuilds the routing index from `bindings`.
    pub fn reindex(&mut self) {
        let mut by_source: HashMap<String, SourceBindings> = HashMap::new();
        for (i, b) in self.bindings.iter().enumerate() {
            let s = by_source.entry(b.source.clone()).or_default();
            s.all.push(i);
            s.by_key.entry(b.routing_key.clone()).or_default().push(i);
        }
        self.index = RouteIndex { by_source, built_from: self.bindings.len() };
    }

    /// The bindings from exchange `x` that may match `key` (all of them
    /// unless `direct`), in declaration order.
    fn bindings_from<'a>(&'a self, x: &'a str, key: &str, direct: bool) -> Box<dyn Iterator<Item = &'a Binding> + 'a> {
        if self.index.built_from != self.bindings.len() {
            // Not rebuilt after a change: correct, only slower.
            return Box::new(self.bindings.iter().filter(move |b| b.source == x));
        }
        let Some(s) = self.index.by_source.get(x) else { return Box::new(std::iter::empty()) };
        let at = if direct { s.by_key.get(key).map_or(&[][..], Vec::as_slice) } else { s.all.as_slice() };
        Box::new(at.iter().filter_map(|i| self.bindings.get(*i)))
    }

    /// Removes the bindings `gone` selects. An auto-delete exchange whose
    /// last binding as a source goes is deleted too, with the bindings to
    /// it, and so on down the chain (as RabbitMQ).
    pub fn unbind_where(&mut self, gone: impl Fn(&Binding) -> bool) {
        let mut sources: Vec<String> = self.bindings.iter().filter(|b| gone(b)).map(|b| b.source.clone()).collect();
        self.bindings.retain(|b| !gone(b));
        while let Some(x) = sources.pop() {
            let auto = self.exchanges.get(&x).is_some_and(|e| e.auto_delete);
            if auto && !self.bindings.iter().any(|b| b.source == x) {
                self.exchanges.remove(&x);
                let to_it = |b: &Binding| b.to_exchange && b.destination == x;
                sources.extend(self.bindings.iter().filter(|b| to_it(b)).map(|b| b.source.clone()));
                self.bindings.retain(|b| !to_it(b));
            }
        }
        self.reindex();
    }

    /// The destinations of a message published to `exchange`: queue
    /// names, following exchange-to-exchange bindings (each exchange
    /// visited once) and alternate exchanges when nothing matched.
    pub fn route(&self, exchange: &str, key: &str, headers: Option<&FieldTable>) -> BTreeSet<String> {
        let mut queues = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![exchange.to_string()];
        while let Some(x) = todo.pop() {
            if !seen.insert(x.clone()) {
                continue;
            }
            let Some(e) = self.exchanges.get(&x) else { continue };
            let before = (queues.len(), todo.len());
            if x.is_empty() {
                // The default exchange: every queue, by its name.
                if self.queues.contains_key(key) {
                    queues.insert(key.to_string());
                }
                continue;
            }
            let kind = match e.kind {
                ExchangeKind::XDelayedMessage => string_arg(&e.arguments, "x-delayed-type")
                    .and_then(|t| ExchangeKind::parse(&t))
                    .unwrap_or(ExchangeKind::Direct),
                k => k,
            };
            let direct = kind == ExchangeKind::Direct;
            for b in self.bindings_from(&x, key, direct) {
                let hit = match kind {
                    ExchangeKind::Fanout => true,
                    ExchangeKind::Topic => routing::topic_matches(&b.routing_key, key),
                    ExchangeKind::Headers => routing::headers_match(&b.arguments, headers),
                    _ => b.routing_key == key,
                };
                if hit {
                    if b.to_exchange {
                        todo.push(b.destination.clone());
                    } else {
                        queues.insert(b.destination.clone());
                    }
                }
            }
            if (queues.len(), todo.len()) == before
                && let Some(alt) = e.alternate()
            {
                todo.push(alt);
            }
        }
        queues
    }
}

/// A string argument (long or short string).
pub fn string_arg(args: &FieldTable, name: &str) -> Option<String> {
    match args.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The value of an integer field of any width (timestamps included).
pub fn value_int(v: &AMQPValue) -> Option<i128> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => i128::from(*n),
        AMQPValue::ShortShortUInt(n) => i128::from(*n),
        AMQPValue::ShortInt(n) => i128::from(*n),
        AMQPValue::ShortUInt(n) => i128::from(*n),
        AMQPValue::LongInt(n) => i128::from(*n),
        AMQPValue::LongUInt(n) => i128::from(*n),
        AMQPValue::LongLongInt(n) => i128::from(*n),
        AMQPValue::Timestamp(n) => i128::from(*n),
        _ => return None,
    })
}

/// An integer argument of any width, or a string holding one (as some
/// clients send numbers).
pub fn int_arg(args: &FieldTable, name: &str) -> Option<i64> {
    match args.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        v => i64::try_from(value_int(v)?).ok(),
    }
}

/// Who leads the queue over `topic`: the leader of its one partition (this
/// node, always, on a single node). The one place the gateway asks.
pub(crate) fn queue_leadership(broker: &fjord_broker::Broker, topic: &str) -> fjord_broker::Leadership {
    broker.leadership(&fjord_broker::TopicPartition::new(topic, 0))
}

/// Whether a queue's home is this node: its preferred replica in a cluster
/// (queues are placed on the node their declaring client is connected
/// to), every queue on a single node. Unlike the lead, the home stays
/// with a node across its restart: registering hands what it led on in a
/// new epoch, and the lead comes back only later.
pub(crate) fn queue_home_here(broker: &fjord_broker::Broker, topic: &str) -> bool {
    let Some(placement) = broker.placement() else { return true };
    let me = broker.config().node_id;
    placement.partition(&fjord_broker::TopicPartition::new(topic, 0)).is_some_and(|a| a.replicas.first() == Some(&me))
}

/// The topic holding a queue's messages: the queue's own name in the
/// default virtual host when that is a valid topic name (so other
/// protocols see it by name); otherwise bytes outside `[A-Za-z0-9._-]` are
/// written `%XX`, and other virtual hosts prefix their (escaped) name and
/// `%%`, which no escaped name contains.
pub fn queue_topic(vhost: &str, queue: &str) -> String {
    let plain = vhost == DEFAULT_VHOST && fjord_broker::validate_topic_name(queue).is_ok() && !queue.contains('%');
    if plain {
        return queue.to_string();
    }
    let esc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    if vhost == DEFAULT_VHOST { esc(queue) } else { format!("{}%%{}", esc(vhost), esc(queue)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(v: &mut VHost, source: &str, dest: &str, key: &str, to_exchange: bool) {
        v.bindings.push(Binding {
            source: source.into(),
            destination: dest.into(),
            to_exchange,
            routing_key: key.into(),
            arguments: FieldTable::default(),
        });
        v.reindex();
    }

    fn exchange(v: &mut VHost, name: &str, kind: ExchangeKind, alternate: Option<&str>) {
        let mut arguments = FieldTable::default();
        if let Some(a) = alternate {
            arguments.insert("alternate-exchange".into(), AMQPValue::LongString(a.into()));
        }
        v.exchanges.insert(name.into(), Exchange::durable(name, kind, arguments));
    }

    fn queue(v: &mut VHost, name: &str) {
        let q = Queue {
            name: name.into(),
            topic: name.into(),
            durable: true,
            owner: None,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
            adopted: false,
        };
        v.queues.insert(name.into(), q);
    }

    #[test]
    fn routes_through_exchange_bindings_and_alternates() {
        let mut v = VHost::with_predeclared();
        for q in ["a", "b", "unrouted"] {
            queue(&mut v, q);
        }
        exchange(&mut v, "logs", ExchangeKind::Topic, Some("ae"));
        exchange(&mut v, "ae", ExchangeKind::Fanout, None);
        exchange(&mut v, "copy", ExchangeKind::Fanout, None);
        bind(&mut v, "logs", "a", "kern.*", false);
        bind(&mut v, "logs", "copy", "#.crit", true);
        bind(&mut v, "copy", "b", "", false);
        // A cycle back to the source is followed once.
        bind(&mut v, "copy", "logs", "", true);
        bind(&mut v, "ae", "unrouted", "", false);
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(v.route("logs", "kern.crit", None), set(&["a", "b"]));
        assert_eq!(v.route("logs", "kern.info", None), set(&["a"]));
        assert_eq!(v.route("logs", "user.info", None), set(&["unrouted"]));
        assert_eq!(v.route("", "a", None), set(&["a"]));
        assert_eq!(v.route("", "nope", None), set(&[]));
        assert_eq!(v.route("missing", "a", None), set(&[]));
    }

    proptest::proptest! {
        /// Routing through the index finds what scanning every binding finds.
        #[test]
        fn indexed_routing_matches_a_scan(
            kinds in proptest::collection::vec(0usize..4, 4),
            binds in proptest::collection::vec((0usize..4, 0usize..6, 0usize..5, proptest::bool::ANY), 0..40),
            unbind in proptest::collection::vec(0usize..40, 0..5),
            key in 0usize..5,
        ) {
            let keys = ["a", "b", "a.b", "*.b", "#"];
            let kinds_all = [ExchangeKind::Direct, ExchangeKind::Fanout, ExchangeKind::Topic, ExchangeKind::Headers];
            let mut v = VHost::with_predeclared();
            for q in 0..6 {
                queue(&mut v, &format!("q{q}"));
            }
            for (i, k) in kinds.iter().enumerate() {
                exchange(&mut v, &format!("x{i}"), kinds_all[*k], None);
            }
            for (src, dest, k, to_exchange) in binds {
                let dest = if to_exchange { format!("x{}", dest % 4) } else { format!("q{dest}") };
                bind(&mut v, &format!("x{src}"), &dest, keys[k], to_exchange);
            }
            for i in unbind {
                if let Some(b) = v.bindings.get(i).cloned() {
                    v.unbind_where(|x| *x == b);
                }
            }
            let mut scan = v.clone();
            scan.index = RouteIndex::default();
            scan.index.built_from = usize::MAX;
            for x in 0..4 {
                let x = format!("x{x}");
                proptest::prop_assert_eq!(v.route(&x, keys[key], None), scan.route(&x, keys[key], None));
            }
        }
    }

    #[test]
    fn auto_delete_exchanges_go_with_their_last_binding() {
        let mut v = VHost::with_predeclared();
        queue(&mut v, "q");
        exchange(&mut v, "keep", ExchangeKind::Fanout, None);
        exchange(&mut v, "auto", ExchangeKind::Fanout, None);
        exchange(&mut v, "upstream", ExchangeKind::Fanout, None);
        for name in ["auto", "upstream"] {
            if let Some(e) = v.exchanges.get_mut(name) {
                e.auto_delete = true;
            }
        }
        bind(&mut v, "keep", "q", "", false);
        bind(&mut v, "auto", "q", "a", false);
        bind(&mut v, "auto", "q", "b", false);
        bind(&mut v, "upstream", "auto", "", true);
        v.unbind_where(|b| b.source == "auto" && b.routing_key == "a");
        assert!(v.exchanges.contains_key("auto"), "one binding is left");
        v.unbind_where(|b| !b.to_exchange && b.destination == "q");
        assert!(v.exchanges.contains_key("keep"), "not auto-delete");
        assert!(!v.exchanges.contains_key("auto"));
        // `upstream` lost its only binding (to `auto`) with it.
        assert!(!v.exchanges.contains_key("upstream"));
        assert!(v.bindings.is_empty());
    }

    #[test]
    fn queue_topics_are_unique_and_valid() {
        assert_eq!(queue_topic("/", "hello"), "hello");
        assert_eq!(queue_topic("/", "task queue"), "task%20queue");
        assert_eq!(queue_topic("/", "50%"), "50%25");
        assert_eq!(queue_topic("prod", "hello"), "prod%%hello");
        assert_eq!(queue_topic("/a", "b"), "%2Fa%%b");
        assert_ne!(queue_topic("a%%b", "c"), queue_topic("a", "b%%c"));
        for t in [queue_topic("/", "ü/ñ"), queue_topic("vh", "x y")] {
            assert!(fjord_broker::validate_topic_name(&t).is_ok(), "{t}");
        }
    }
}
