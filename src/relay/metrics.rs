//! What the relay counts: one set of counters and gauges, read two ways: the
//! progress lines ([`super::progress`]) and, with `--metrics`, Prometheus
//! text at `/metrics` ([`super::metrics_server`]). The metric types are the
//! Prometheus client's own, so each count is one atomic however it is read.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::circuit;

/// The `Content-Type` of [`Metrics::encode`]'s text: Prometheus text 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A count that one delivery task adds to.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    /// See [`Snapshot::delivered`].
    Delivered,
    /// See [`Snapshot::retried`].
    Retried,
    /// See [`Snapshot::dead_lettered`].
    DeadLettered,
    /// See [`Snapshot::returned`].
    Returned,
    /// See [`Snapshot::coalesced`].
    Coalesced,
}

/// How a request to the target ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values, as Prometheus shows them
pub enum RequestOutcome {
    /// A 2xx.
    accepted,
    /// A 3xx or a 4xx other than 408 and 429.
    refused,
    /// A 5xx other than 502, 503 and 504.
    server_error,
    /// No answer (connection, reset, timeout) or 408, 429, 502, 503, 504.
    outage,
}

impl RequestOutcome {
    /// Every outcome, in declaration order (their index).
    pub const ALL: [Self; 4] = [Self::accepted, Self::refused, Self::server_error, Self::outage];

    /// The label for what the circuit made of a request.
    pub fn of(outcome: circuit::Outcome) -> Self {
        match outcome {
            circuit::Outcome::Accepted => Self::accepted,
            circuit::Outcome::Refused => Self::refused,
            circuit::Outcome::ServerError => Self::server_error,
            circuit::Outcome::Outage { .. } => Self::outage,
        }
    }
}

/// The circuit's state, as the `state` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values, as Prometheus shows them
pub enum CircuitState {
    /// Requests flow.
    closed,
    /// Paused, waiting for the next probe.
    open,
    /// Paused, one probe under way.
    probing,
}

impl CircuitState {
    /// The label for a circuit's state.
    pub fn of(state: circuit::State) -> Self {
        match state {
            circuit::State::Closed { .. } => Self::closed,
            circuit::State::Open { probing: false, .. } => Self::open,
            circuit::State::Open { probing: true, .. } => Self::probing,
        }
    }

    /// As the progress line shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::closed => "closed",
            Self::open => "open",
            Self::probing => "probing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: RequestOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: CircuitState,
}

/// The counts at one moment, for the progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Messages the target answered 2xx (then acknowledged).
    pub delivered: u64,
    /// Failed requests whose message stays to be tried again.
    pub retried: u64,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Messages handed back to the queue undelivered (shutdown).
    pub returned: u64,
    /// Older copies acknowledged because a newer identical copy is held (`--coalesce`).
    pub coalesced: u64,
    /// Messages this relay holds unacknowledged now: in flight or waiting.
    pub held: u64,
    /// Held messages waiting behind earlier messages of their keys (`--order-by`).
    pub behind_keys: u64,
    /// Ready messages in the queue at the last look, if looked yet.
    pub queue_depth: Option<u64>,
    /// The circuit's state.
    pub circuit: CircuitState,
    /// Messages out of attempts that could not be dead-lettered (the
    /// dead-letter exchange is missing), kept and tried again.
    pub undead_letterable: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            delivered: 0,
            retried: 0,
            dead_lettered: 0,
            returned: 0,
            coalesced: 0,
            held: 0,
            behind_keys: 0,
            queue_depth: None,
            circuit: CircuitState::closed,
            undead_letterable: 0,
        }
    }
}

/// Every count and gauge of one relay, and the registry that serves them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    delivered: Counter,
    retried: Counter,
    dead_lettered: Counter,
    returned: Counter,
    coalesced: Counter,
    requests: Family<OutcomeLabel, Counter>,
    /// The family's counters, fetched once: no lookup per request.
    by_outcome: [Counter; 4],
    latency: Histogram,
    held: Gauge,
    behind_keys: Gauge,
    in_flight: Gauge,
    queue_depth: Gauge<i64, AtomicI64>,
    message_ttl: Gauge<f64, AtomicU64>,
    oldest_message: Gauge<i64, AtomicI64>,
    circuit: Family<StateLabel, Gauge>,
    circuit_opened: Counter,
    undead_letterable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Everything at zero, the queue depth, message TTL and oldest message
    /// unknown (-1), the circuit closed.
    pub fn new() -> Self {
        let requests = Family::<OutcomeLabel, Counter>::default();
        let by_outcome = RequestOutcome::ALL.map(|outcome| requests.get_or_create_owned(&OutcomeLabel { outcome }));
        let metrics = Self {
            registry: Registry::with_prefix("relay"),
            delivered: Counter::default(),
            retried: Counter::default(),
            dead_lettered: Counter::default(),
            returned: Counter::default(),
            coalesced: Counter::default(),
            requests,
            by_outcome,
            // 5 ms to about 82 s: a fast local endpoint to one at --timeout's default and past it.
            latency: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            held: Gauge::default(),
            behind_keys: Gauge::default(),
            in_flight: Gauge::default(),
            queue_depth: Gauge::default(),
            message_ttl: Gauge::default(),
            oldest_message: Gauge::default(),
            circuit: Family::default(),
            circuit_opened: Counter::default(),
            undead_letterable: Gauge::default(),
        };
        metrics.queue_depth.set(-1);
        metrics.message_ttl.set(-1.0);
        metrics.oldest_message.set(-1);
        metrics.set_circuit(CircuitState::closed);
        metrics.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "delivered",
            "Messages the target answered 2xx, then acknowledged",
            self.delivered.clone(),
        );
        r.register(
            "retried",
            "Failed requests whose message stays to be tried again",
            self.retried.clone(),
        );
        r.register(
            "dead_lettered",
            "Messages moved to the dead-letter queue",
            self.dead_lettered.clone(),
        );
        r.register(
            "returned",
            "Messages handed back to the queue undelivered (shutdown)",
            self.returned.clone(),
        );
        r.register(
            "coalesced",
            "Older copies acknowledged undelivered because a newer identical copy is held (--coalesce)",
            self.coalesced.clone(),
        );
        r.register(
            "requests",
            "Requests to the target, by what their outcome says",
            self.requests.clone(),
        );
        r.register(
            "target_latency_seconds",
            "Time from sending a request to the target to its whole answer",
            self.latency.clone(),
        );
        r.register(
            "held",
            "Messages held unacknowledged: in flight, backing off or waiting for the circuit",
            self.held.clone(),
        );
        r.register(
            "waiting_behind_keys",
            "Held messages waiting behind earlier messages of their ordering keys (--order-by)",
            self.behind_keys.clone(),
        );
        r.register("in_flight", "Requests to the target under way", self.in_flight.clone());
        r.register(
            "queue_depth",
            "Ready messages in the queue at the last look (-1 before the first)",
            self.queue_depth.clone(),
        );
        r.register(
            "queue_message_ttl_seconds",
            "The queue's message TTL, from the management API (-1: none, or not read; only with --metrics)",
            self.message_ttl.clone(),
        );
        r.register(
            "queue_oldest_message_timestamp_seconds",
            "The timestamp property of the queue's oldest ready message, from the management API \
             (-1: the queue is empty, does not say (a quorum queue), or was not read; only with --metrics)",
            self.oldest_message.clone(),
        );
        r.register(
            "circuit_state",
            "1 for the circuit's state now: closed (flowing), open (paused), probing",
            self.circuit.clone(),
        );
        r.register(
            "circuit_opened",
            "Times the circuit opened (the target seemed down)",
            self.circuit_opened.clone(),
        );
        r.register(
            "undead_letterable",
            "Messages out of attempts kept because the dead-letter exchange is missing",
            self.undead_letterable.clone(),
        );
        self
    }

    /// Adds one to `count`.
    pub fn add(&self, count: Count) {
        let counter = match count {
            Count::Delivered => &self.delivered,
            Count::Retried => &self.retried,
            Count::DeadLettered => &self.dead_lettered,
            Count::Returned => &self.returned,
            Count::Coalesced => &self.coalesced,
        };
        counter.inc();
    }

    /// Records one request's outcome and how long it took.
    pub fn request(&self, outcome: RequestOutcome, took: Duration) {
        self.by_outcome[outcome as usize].inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Counts a message as held until the guard drops.
    pub fn hold(&self) -> Tally {
        Tally::new(&self.held)
    }

    /// Counts a request as in flight until the guard drops.
    pub fn in_flight(&self) -> Tally {
        Tally::new(&self.in_flight)
    }

    /// Counts a message as kept for want of a dead-letter exchange until the guard drops.
    pub fn undead_letterable(&self) -> Tally {
        Tally::new(&self.undead_letterable)
    }

    /// Records how many held messages wait behind their keys now.
    pub fn set_waiting_behind_keys(&self, waiting: usize) {
        self.behind_keys.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Records the queue depth just read from the broker.
    pub fn set_queue_depth(&self, depth: u32) {
        self.queue_depth.set(i64::from(depth));
    }

    /// Records the queue's message TTL just read from the management API.
    pub fn set_message_ttl(&self, ttl: Option<Duration>) {
        self.message_ttl.set(ttl.map_or(-1.0, |t| t.as_secs_f64()));
    }

    /// Records the timestamp (seconds since the Unix epoch) of the queue's
    /// oldest ready message just read from the management API.
    pub fn set_oldest_message(&self, timestamp: Option<u64>) {
        self.oldest_message
            .set(timestamp.and_then(|t| i64::try_from(t).ok()).unwrap_or(-1));
    }

    /// Records the circuit's state, and counts an opening.
    pub fn set_circuit(&self, state: CircuitState) {
        let was_closed = self.circuit_state() == CircuitState::closed;
        for each in [CircuitState::closed, CircuitState::open, CircuitState::probing] {
            let value = i64::from(each == state);
            self.circuit.get_or_create(&StateLabel { state: each }).set(value);
        }
        if was_closed && state != CircuitState::closed {
            self.circuit_opened.inc();
        }
    }

    fn circuit_state(&self) -> CircuitState {
        [CircuitState::open, CircuitState::probing]
            .into_iter()
            .find(|&state| self.circuit.get(&StateLabel { state }).is_some_and(|g| g.get() == 1))
            .unwrap_or(CircuitState::closed)
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            delivered: self.delivered.get(),
            retried: self.retried.get(),
            dead_lettered: self.dead_lettered.get(),
            returned: self.returned.get(),
            coalesced: self.coalesced.get(),
            held: u64::try_from(self.held.get()).unwrap_or(0),
            behind_keys: u64::try_from(self.behind_keys.get()).unwrap_or(0),
            queue_depth: u64::try_from(self.queue_depth.get()).ok(),
            circuit: self.circuit_state(),
            undead_letterable: u64::try_from(self.undead_letterable.get()).unwrap_or(0),
        }
    }

    /// Everything as Prometheus text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// One added to a gauge while this lives.
#[derive(Debug)]
pub struct Tally(Gauge);

impl Tally {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_while_it_lives() {
        let metrics = Metrics::new();
        {
            let _a = metrics.hold();
            let _b = metrics.hold();
            assert_eq!(metrics.snapshot().held, 2);
        }
        assert_eq!(metrics.snapshot().held, 0);
    }

    #[test]
    fn the_circuit_state_is_one_label_at_a_time_and_openings_are_counted() {
        let metrics = Metrics::new();
        assert_eq!(metrics.snapshot().circuit, CircuitState::closed);
        metrics.set_circuit(CircuitState::open);
        metrics.set_circuit(CircuitState::probing);
        metrics.set_circuit(CircuitState::open);
        assert_eq!(metrics.snapshot().circuit, CircuitState::open);
        metrics.set_circuit(CircuitState::closed);
        metrics.set_circuit(CircuitState::open);
        let text = metrics.encode();
        assert!(text.contains("relay_circuit_opened_total 2\n"), "{text}");
        assert!(text.contains("relay_circuit_state{state=\"open\"} 1\n"), "{text}");
        assert!(text.contains("relay_circuit_state{state=\"closed\"} 0\n"), "{text}");
    }

    #[test]
    fn the_queue_expiry_gauges_read_as_seconds_and_minus_one_when_unknown() {
        let metrics = Metrics::new();
        metrics.set_message_ttl(Some(Duration::from_millis(604_800_000)));
        metrics.set_oldest_message(Some(1_700_000_000));
        let text = metrics.encode();
        assert!(text.contains("relay_queue_message_ttl_seconds 604800.0\n"), "{text}");
        assert!(
            text.contains("relay_queue_oldest_message_timestamp_seconds 1700000000\n"),
            "{text}"
        );
        metrics.set_message_ttl(None);
        metrics.set_oldest_message(None);
        let text = metrics.encode();
        assert!(text.contains("relay_queue_message_ttl_seconds -1.0\n"), "{text}");
        assert!(
            text.contains("relay_queue_oldest_message_timestamp_seconds -1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_text_names_every_metric_with_its_type() {
        let metrics = Metrics::new();
        metrics.add(Count::Delivered);
        metrics.request(RequestOutcome::accepted, Duration::from_millis(3));
        metrics.set_queue_depth(7);
        let text = metrics.encode();
        for line in [
            "# TYPE relay_delivered_total counter",
            "relay_delivered_total 1",
            "relay_requests_total{outcome=\"accepted\"} 1",
            "# TYPE relay_target_latency_seconds histogram",
            "relay_target_latency_seconds_bucket{le=\"0.005\"} 1",
            "relay_target_latency_seconds_count 1",
            "relay_queue_depth 7",
            "# TYPE relay_in_flight gauge",
            "relay_undead_letterable 0",
            "# TYPE relay_coalesced_total counter",
            "relay_coalesced_total 0",
            "# TYPE relay_waiting_behind_keys gauge",
            "relay_waiting_behind_keys 0",
            "# TYPE relay_queue_message_ttl_seconds gauge",
            "relay_queue_message_ttl_seconds -1.0",
            "# TYPE relay_queue_oldest_message_timestamp_seconds gauge",
            "relay_queue_oldest_message_timestamp_seconds -1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
