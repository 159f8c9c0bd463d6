//! A local HTTP target for the relay: records every request (method, path and
//! query, headers, body, arrival and answer time) and answers as the test
//! tells it, after an optional delay or once released, so failures, slowness
//! and concurrency can be observed. [`TestTarget::flaky`] answers like a real
//! endpoint under load: random latency, and some first attempts refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::path::FullPath;

use crate::broker::{TestMessage, Topology};
use crate::process::Handler;

/// One request the target received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The HTTP method.
    pub method: Method,
    /// Path and query, e.g. `/hook.php?type=product`.
    pub path_and_query: String,
    /// Every header.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
    /// When it arrived.
    pub arrived: Instant,
    /// When the answer was about to leave (the relay reads it after that).
    pub answered: Instant,
    /// What the target answered (known once answered).
    pub status: u16,
}

impl Seen {
    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// `X-Webhook-Message-Id`.
    pub fn message_id(&self) -> &str {
        self.header("x-webhook-message-id")
            .expect("every relayed request has a message id")
    }

    /// `X-Webhook-Attempt`.
    pub fn attempt(&self) -> u32 {
        self.header("x-webhook-attempt").unwrap().parse().unwrap()
    }

    /// Whether the target answered 2xx.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How the target answers one request.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Wait this long first.
    pub delay: Duration,
    /// The status (0 means 200).
    pub status: u16,
    /// Headers to send, e.g. `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
    /// Answer only once this is released (after the delay).
    pub release: Option<Release>,
}

/// Holds answers back until the test releases them.
#[derive(Debug, Clone)]
pub struct Release(tokio::sync::watch::Sender<bool>);

impl Default for Release {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(false))
    }
}

impl Release {
    /// Lets every answer held by this (and every later one) go.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn wait(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Answer {
    /// This status at once, no headers.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// Held until `release` is opened.
    pub fn held_by(mut self, release: &Release) -> Self {
        self.release = Some(release.clone());
        self
    }

    /// These headers too.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// How the target answers a request.
pub type Behaviour = dyn Fn(&Seen) -> Answer + Send + Sync;

struct State {
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    behaviour: Box<Behaviour>,
}

/// An address on this machine where nothing listens (yet): a target that is
/// down, which [`TestTarget::answering_at`] can bring up later.
pub fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The running target.
pub struct TestTarget {
    addr: SocketAddr,
    state: Arc<State>,
}

impl TestTarget {
    /// A target answering 200 at once to everything.
    pub async fn accepting() -> Self {
        Self::start(|_| (Duration::ZERO, 200)).await
    }

    /// A target answering as `behaviour` says: after this delay, this status.
    pub async fn start(behaviour: impl Fn(&Seen) -> (Duration, u16) + Send + Sync + 'static) -> Self {
        Self::answering(move |seen| {
            let (delay, status) = behaviour(seen);
            Answer {
                delay,
                status,
                ..Answer::default()
            }
        })
        .await
    }

    /// A target like a real one under load: each answer after a random
    /// delay up to `max_delay`; a message's first request refused with
    /// `status` in about one case in `refuse_one_in` (0: never), later ones
    /// accepted.
    pub async fn flaky(max_delay: Duration, refuse_one_in: u32, status: u16) -> Self {
        let max_ms = u64::try_from(max_delay.as_millis()).unwrap_or(u64::MAX);
        Self::answering(move |seen| {
            let delay = Duration::from_millis(fastrand::u64(0..=max_ms));
            let refused = refuse_one_in > 0 && seen.attempt() == 1 && fastrand::u32(0..refuse_one_in) == 0;
            Answer {
                delay,
                status: if refused { status } else { 200 },
                ..Answer::default()
            }
        })
        .await
    }

    /// A target answering 200 at once, except to message `message_id`,
    /// whose answer waits until `release` is opened.
    pub async fn holding_back(message_id: &str, release: &Release) -> Self {
        let (message_id, release) = (message_id.to_owned(), release.clone());
        Self::answering(move |seen| {
            let answer = Answer::status(200);
            if seen.message_id() == message_id {
                answer.held_by(&release)
            } else {
                answer
            }
        })
        .await
    }

    /// A target answering as `behaviour` says, headers included.
    pub async fn answering(behaviour: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Box::new(behaviour))
    }

    /// Like [`TestTarget::answering`], at `addr` (one from [`free_address`]:
    /// the relay was sending there while nothing listened).
    pub async fn answering_at(addr: SocketAddr, behaviour: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, Box::new(behaviour))
    }

    fn serve(listener: tokio::net::TcpListener, behaviour: Box<Behaviour>) -> Self {
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            behaviour,
        });
        let shared = state.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method: Method, path: FullPath, query: String, headers: HeaderMap, body: Bytes| {
                    let state = shared.clone();
                    async move {
                        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        let path_and_query = if query.is_empty() {
                            path.as_str().to_owned()
                        } else {
                            format!("{}?{query}", path.as_str())
                        };
                        let now = Instant::now();
                        let mut seen = Seen {
                            method,
                            path_and_query,
                            headers,
                            body,
                            arrived: now,
                            answered: now,
                            status: 0,
                        };
                        let answer = (state.behaviour)(&seen);
                        tokio::time::sleep(answer.delay).await;
                        if let Some(release) = &answer.release {
                            release.wait().await;
                        }
                        seen.answered = Instant::now();
                        let status = if answer.status == 0 { 200 } else { answer.status };
                        seen.status = status;
                        state.seen.lock().expect("seen lock").push(seen);
                        // Out of flight before the answer leaves: the relay can only
                        // start its next request after reading this answer.
                        state.in_flight.fetch_sub(1, Ordering::SeqCst);
                        let mut reply = warp::http::Response::builder().status(StatusCode::from_u16(status).unwrap());
                        for (name, value) in answer.headers {
                            reply = reply.header(name, value);
                        }
                        reply.body(String::new()).unwrap()
                    }
                },
            );
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { addr, state }
    }

    /// The URL of `path` on this target.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request answered so far, in the order they were answered.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen lock").clone()
    }

    /// How many requests were answered 2xx so far.
    pub fn accepted_count(&self) -> usize {
        self.state
            .seen
            .lock()
            .expect("seen lock")
            .iter()
            .filter(|s| s.accepted())
            .count()
    }

    /// Requests answered 2xx so far, per message id.
    pub fn accepted_by_id(&self) -> HashMap<String, usize> {
        let mut accepted = HashMap::new();
        for seen in self.seen().iter().filter(|s| s.accepted()) {
            *accepted.entry(seen.message_id().to_owned()).or_default() += 1;
        }
        accepted
    }

    /// How many requests were answered so far.
    pub fn count(&self) -> usize {
        self.state.seen.lock().expect("seen lock").len()
    }

    /// The most requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `count` requests have been in flight at once (whether
    /// answered since or not); panics after `limit`.
    pub async fn wait_until_in_flight(&self, count: usize, limit: Duration) {
        assert!(
            poll(limit, || self.max_in_flight() >= count).await,
            "timed out after {limit:?} waiting for {count} requests in flight"
        );
    }

    /// Waits until `done` holds for the requests seen, polling; panics after `limit`.
    pub async fn wait_until(&self, limit: Duration, what: &str, done: impl Fn(&[Seen]) -> bool) {
        assert!(
            self.waited_until(limit, done).await,
            "timed out after {limit:?} waiting for {what}"
        );
    }

    /// Waits until `done` holds for the requests seen, polling; says
    /// whether it did within `limit`.
    pub async fn waited_until(&self, limit: Duration, done: impl Fn(&[Seen]) -> bool) -> bool {
        poll(limit, || done(&self.state.seen.lock().expect("seen lock"))).await
    }
}

/// Polls `done` every 20 ms; says whether it held within `limit`.
async fn poll(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every one of `count` messages was accepted at least once, the
/// queue is empty and the relay holds nothing: all delivered, acknowledged,
/// nothing left anywhere. Repeats after a lost connection may still be in
/// play when the last new id arrives, hence the two last conditions.
pub async fn wait_until_drained(topology: &Topology, target: &TestTarget, relay: &Handler, count: usize) {
    let limit = Duration::from_secs(120);
    let drained = target
        .waited_until(limit, |seen| {
            let accepted: HashSet<&str> = seen.iter().filter(|s| s.accepted()).map(|s| s.message_id()).collect();
            accepted.len() >= count
        })
        .await;
    assert!(
        drained,
        "timed out after {limit:?} waiting for {count} messages accepted; {} requests seen, queue depth {}; the relay said:\n{}",
        target.count(),
        topology.depth().await,
        relay.output()
    );
    wait_until_empty_holding(topology, relay, 0).await;
}

/// Waits (up to 60 s) until the queue has no ready message and the relay's
/// last progress line says it holds exactly `held`: every other message
/// was acknowledged.
pub async fn wait_until_empty_holding(topology: &Topology, relay: &Handler, held: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = relay.output();
        let last_progress = output.lines().rfind(|l| l.starts_with("progress: ")).unwrap_or("");
        if topology.depth().await == 0 && last_progress.contains(&format!(" held={held} ")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain down to {held} held:\n{output}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that the target accepted every one of `messages` exactly once.
pub fn assert_each_accepted_once(messages: &[TestMessage], target: &TestTarget) {
    let accepted = target.accepted_by_id();
    for message in messages {
        assert_eq!(
            accepted.get(&message.id).copied().unwrap_or(0),
            1,
            "times {} was accepted",
            message.id
        );
    }
}

/// Every message reached the target, and no two requests for one message
/// carried the same `X-Webhook-Attempt`: a repeat after a lost connection
/// says it is one. (An attempt cut off with the connection may never have
/// been recorded, so the numbers can start above 1.)
pub fn assert_each_arrived_with_distinct_attempts(messages: &[TestMessage], seen: &[Seen]) {
    let mut attempts: HashMap<&str, Vec<u32>> = HashMap::new();
    for request in seen {
        attempts
            .entry(request.message_id())
            .or_default()
            .push(request.attempt());
    }
    for message in messages {
        let made = attempts.get(message.id.as_str()).expect("every message arrives");
        let distinct: HashSet<&u32> = made.iter().collect();
        assert_eq!(
            distinct.len(),
            made.len(),
            "attempt numbers of {}: {made:?}",
            message.id
        );
    }
}
