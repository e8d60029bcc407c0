//! # fjord-metrics-testing: checking instrumentation in tests
//!
//! A test-only `metrics::Recorder` that keeps every operation, so tests can
//! check what the instrumentation recorded (installed per thread with
//! `metrics::with_local_recorder`; no global recorder is ever set).
//! Used as a dev-dependency only; no crate ships it.

use std::sync::{Arc, Mutex};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

/// One operation on one metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A counter went up by this much.
    Increment(u64),
    /// A counter was set to this value.
    Absolute(u64),
    /// A gauge changed by this much (decrements are negative).
    GaugeAdd(f64),
    /// A gauge was set to this value.
    GaugeSet(f64),
    /// A histogram observed this value.
    Record(f64),
}

/// A recorded operation: metric name, labels (sorted) and what was done.
#[derive(Debug, Clone)]
pub struct Event {
    /// Metric name.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// What was done.
    pub op: Op,
}

/// Keeps every operation of every metric, in order.
#[derive(Debug, Default, Clone)]
pub struct TestRecorder {
    events: Arc<Mutex<Vec<Event>>>,
}

struct Handle {
    name: String,
    labels: Vec<(String, String)>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Handle {
    fn push(&self, op: Op) {
        let event = Event { name: self.name.clone(), labels: self.labels.clone(), op };
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event);
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.push(Op::Increment(value));
    }
    fn absolute(&self, value: u64) {
        self.push(Op::Absolute(value));
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.push(Op::GaugeAdd(value));
    }
    fn decrement(&self, value: f64) {
        self.push(Op::GaugeAdd(-value));
    }
    fn set(&self, value: f64) {
        self.push(Op::GaugeSet(value));
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.push(Op::Record(value));
    }
}

impl TestRecorder {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        let mut labels: Vec<(String, String)> =
            key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect();
        labels.sort();
        Arc::new(Handle { name: key.name().to_string(), labels, events: self.events.clone() })
    }

    /// Every operation so far on `name` with exactly `labels`.
    pub fn ops(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Op> {
        let mut want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        want.sort();
        let events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        events.iter().filter(|e| e.name == name && e.labels == want).map(|e| e.op.clone()).collect()
    }

    /// Histogram observations of `name` with exactly `labels`.
    pub fn observations(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.ops(name, labels)
            .into_iter()
            .filter_map(|op| if let Op::Record(v) = op { Some(v) } else { None })
            .collect()
    }

    /// The sum of counter increments of `name` with exactly `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.ops(name, labels).into_iter().map(|op| if let Op::Increment(v) = op { v } else { 0 }).sum()
    }

    /// The gauge's successive values, starting from 0.
    pub fn gauge_history(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let mut value = 0.0;
        let mut out = Vec::new();
        for op in self.ops(name, labels) {
            match op {
                Op::GaugeAdd(d) => value += d,
                Op::GaugeSet(v) => value = v,
                _ => continue,
            }
            out.push(value);
        }
        out
    }

    /// Every recorded operation.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

impl TestRecorder {
    /// Waits (up to 5 s, polling every 10 ms on the current tokio runtime)
    /// until the gauge `name{labels}` was last set back to 0, e.g. once
    /// every connection closed; returns its whole history.
    ///
    /// # Panics
    /// When it does not get there in time, showing the history.
    pub async fn gauge_back_to_zero(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        for _ in 0..500 {
            let history = self.gauge_history(name, labels);
            if history.last() == Some(&0.0) {
                return history;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{name}{labels:?} did not return to 0: {:?}", self.gauge_history(name, labels));
    }
}
