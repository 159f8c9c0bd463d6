//! A node of a three-node cluster lost with SIGKILL (`scripts/cluster-up`,
//! HAProxy in front as CloudAMQP's hostname is), with quorum queues as
//! `handler setup --quorum` declares them: mid-burst under the forwarder
//! over each transport, under a draining relay, and during a dead-letter
//! replay; and `handler check` naming the queue's members. Its own test
//! binary (`test = false`): `scripts/test` runs it as a step of its own with
//! HAProxy's ports, under `flock /tmp/cluster.lock`; one kill at a time.
//!
//! The node killed is the one leading the queue, and for AMQP also holding
//! the client's connection (steered there first). Over HTTP the handler's
//! requests reach every node through HAProxy, the killed one too. Counting
//! is by reading every message back once the node is back, never by a
//! message count taken during the failover.
//!
//! `CLUSTER_REPORT=1` makes the burst tests print their figures as one line
//! each (`scripts/bench-cluster` collects them for docs/reliability.md).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use test_support::AppSettings;
use test_support::broker::{TestMessage, reject_one};
use test_support::cluster::{
    Cluster, leader_of, members_of, node_of_connection, quorum_topology, read_back, steer_connection,
};
use test_support::host::{Burst, Sent};
use test_support::process::{Handler, Served, run_to_end};
use test_support::target::{TestTarget, wait_until_empty_holding};

/// The tests kill nodes of the one cluster: one at a time.
static ONE_KILL_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Webhooks in flight at once, as many host instances' requests would be.
const SENDERS: usize = 32;
/// How long the burst goes on before the kill.
const BEFORE_THE_KILL: Duration = Duration::from_secs(4);
/// How long the burst goes on after the kill, at least.
const AFTER_THE_KILL: Duration = Duration::from_secs(12);
/// How long it goes on after the first 2xx of a webhook sent after the kill.
const AFTER_RECOVERY: Duration = Duration::from_secs(3);
/// Bound on the handler's recovery: a 2xx again, by itself, within this.
/// Usually it takes milliseconds, but in about one AMQP run in three here
/// the broker refused (basic.nack) every publish for more than 27 s after
/// the handler had reconnected (docs/clusters.md), so the bound is loose.
const RECOVERED_WITHIN: Duration = Duration::from_secs(90);
/// How often a probe webhook is sent after the kill, until one gets 2xx.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// The window after the kill whose latencies the report gives.
const AROUND_THE_KILL: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_quorum_on_the_cluster_replicates_the_queue_on_three_nodes_and_check_names_them() {
    let _alone = ONE_KILL_AT_A_TIME.lock().await;
    let _cluster = Cluster::under_test().await;
    let topology = quorum_topology().await;
    let all = ["rc1@localhost", "rc2@localhost", "rc3@localhost"];
    assert_eq!(members_of(&topology.queue).await, all);
    assert_eq!(members_of(&topology.dead_letter()).await, all);

    let check = run_to_end(&["check"], &topology.settings(), "").await;

    assert!(check.status.success(), "{}", check.output());
    assert!(
        check
            .stdout
            .contains("quorum queue with 3 members: rc1@localhost, rc2@localhost, rc3@localhost"),
        "{}",
        check.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_leaders_node_killed_mid_burst_over_http_loses_no_2xx_and_the_handler_recovers() {
    let _alone = ONE_KILL_AT_A_TIME.lock().await;
    let cluster = Cluster::under_test().await;
    let topology = quorum_topology().await;
    let app = Served::start(&topology.settings()).await;
    let leader = leader_of(&topology.queue).await;

    node_lost_mid_burst("http", &cluster, &app, &topology.queue, &leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_holding_the_connection_and_the_leader_killed_mid_burst_over_amqp_loses_no_2xx_and_it_reconnects() {
    let _alone = ONE_KILL_AT_A_TIME.lock().await;
    let cluster = Cluster::under_test().await;
    let topology = quorum_topology().await;
    let site = format!("cluster-{}", uuid::Uuid::new_v4().simple());
    let settings: AppSettings = topology
        .amqp_transport_settings()
        .with("WEBSITE_SITE_NAME", site.as_str())
        .with("WEBSITE_INSTANCE_ID", "0");
    let app = Served::start(&settings).await;
    let leader = leader_of(&topology.queue).await;
    let connection = format!("webhook-forwarder: {site} instance 0");
    steer_connection(&connection, &leader).await;

    node_lost_mid_burst("amqp", &cluster, &app, &topology.queue, &leader).await;

    let output = app.process.output();
    assert!(output.contains("lost the connection to"), "{output}");
    assert_ne!(
        node_of_connection(&connection).await,
        leader,
        "the handler reconnected to a surviving node while {leader} was down"
    );
}

/// A burst from `SENDERS` senders; `node` killed once it has run
/// `BEFORE_THE_KILL`; probe webhooks beside the burst until one gets 2xx;
/// the burst going on for `AFTER_THE_KILL` or `AFTER_RECOVERY` after that,
/// whichever ends later; the node started again; then every answer checked
/// against what is read back from the queue.
async fn node_lost_mid_burst(transport: &str, cluster: &Cluster, app: &Served, queue: &str, node: &str) {
    let started = Instant::now();
    let burst = Burst::start(app, usize::MAX, SENDERS, "application/x-www-form-urlencoded", |i| {
        format!("old={i}&new={i}")
    });
    tokio::time::sleep(BEFORE_THE_KILL).await;
    let killed_node = cluster.kill(node).await;
    let killed = Instant::now();
    let answered_at_kill = burst.answered();
    // The burst's answers are only known at its end: probes tell when the
    // handler answers 2xx again.
    let probes = probe_until_2xx(app).await;
    if !probes.iter().any(|p| p.status == 200) {
        // Whether the cluster takes a publish from a fresh connection while
        // the handler's are refused: tells a stuck channel from a stuck queue.
        println!(
            "no 2xx again; a fresh connection's publish to the queue: {}",
            fresh_publish(queue).await
        );
    }
    tokio::time::sleep(AFTER_RECOVERY.max(AFTER_THE_KILL.saturating_sub(killed.elapsed()))).await;
    burst.stop();
    let mut sent = burst.finish().await;
    sent.extend(probes);
    killed_node.start().await;
    let queued = read_back(queue).await;

    let report = Report::of(&sent, &queued, started, killed);
    println!("node loss over {transport} ({node} killed): {}", report.line());
    // The handler's connection events, to read beside the figures.
    let output = app.process.output();
    for line in output
        .lines()
        .filter(|l| !l.contains("publish attempt failed"))
        .filter(|l| l.contains("connect") || l.contains("WARN") || l.contains("ERROR"))
        .take(30)
    {
        println!("  handler: {line}");
    }
    if std::env::var_os("CLUSTER_REPORT").is_some() {
        println!("CLUSTER_REPORT {transport} {}", report.line());
    }

    assert!(answered_at_kill >= 100, "the burst had barely started at the kill");
    assert!(
        sent.iter().filter(|w| w.started > killed).count() >= 10,
        "too few webhooks sent after the kill to judge"
    );
    assert_eq!(report.lost, 0, "answered 2xx but not on the queue");
    assert!(
        sent.iter().all(|w| w.status == 200 || w.status == 503),
        "only 2xx and 503 (for the sender to retry): {:?}",
        report.statuses
    );
    let recovered = report
        .first_2xx_after_kill
        .expect("a 2xx for a webhook sent after the kill");
    assert!(
        recovered <= RECOVERED_WITHIN,
        "the first 2xx of a webhook sent after the kill came {recovered:?} after it"
    );
}

/// Sends a webhook every `PROBE_EVERY` until one is answered 2xx, or for
/// `RECOVERED_WITHIN`; returns what each got, once all are answered.
async fn probe_until_2xx(app: &Served) -> Vec<Sent> {
    let host = (**app).clone();
    let deadline = Instant::now() + RECOVERED_WITHIN;
    let mut probes = tokio::task::JoinSet::new();
    let mut answered = Vec::new();
    let mut index = 0;
    while Instant::now() < deadline && !answered.iter().any(|p: &Sent| p.status == 200) {
        let (host, body) = (host.clone(), format!("probe={index}"));
        probes.spawn(async move {
            let started = Instant::now();
            let response = host
                .forward(
                    "/api/WebhookForwarder",
                    "application/x-www-form-urlencoded",
                    body.as_bytes(),
                )
                .await;
            Sent {
                index: usize::MAX - index,
                body,
                status: response.status().as_u16(),
                retry_after: None,
                started,
                latency: started.elapsed(),
            }
        });
        index += 1;
        tokio::time::sleep(PROBE_EVERY).await;
        while let Some(done) = probes.try_join_next() {
            answered.push(done.expect("a probe panicked"));
        }
    }
    answered.extend(probes.join_all().await);
    answered
}

/// Publishes one message to `queue` on a new connection and channel with
/// confirms: what the broker said.
async fn fresh_publish(queue: &str) -> String {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let connection = test_support::broker::connect().await;
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"fresh=1",
            lapin::BasicProperties::default(),
        )
        .await
        .expect("basic.publish");
    let outcome = tokio::time::timeout(Duration::from_secs(10), confirm).await;
    let _ = connection.close(200, "done".into()).await;
    format!("{outcome:?}")
}

/// What a burst through a node loss got.
#[derive(Debug)]
struct Report {
    answered: usize,
    answered_2xx: usize,
    statuses: HashMap<u16, usize>,
    /// Read back from the queue, and how many of those were copies.
    queued: usize,
    duplicates: usize,
    /// Answered 2xx, not on the queue (must be 0).
    lost: usize,
    /// Answered other than 2xx, on the queue anyway.
    refused_but_queued: usize,
    /// From the kill to the answer of the first webhook sent after it that got 2xx.
    first_2xx_after_kill: Option<Duration>,
    /// p99 and slowest answer of the webhooks sent before the kill, and of
    /// those sent in the `AROUND_THE_KILL` after it.
    p99_before: Duration,
    p99_around: Duration,
    slowest_around: Duration,
    /// Webhooks answered per second over the whole burst.
    per_second: f64,
}

impl Report {
    fn of(sent: &[Sent], queued: &[test_support::broker::QueuedMessage], started: Instant, killed: Instant) -> Self {
        let bodies: HashSet<&[u8]> = queued.iter().map(|m| m.body.as_slice()).collect();
        let on_queue = |w: &&Sent| bodies.contains(w.body.as_bytes());
        let mut statuses = HashMap::new();
        for webhook in sent {
            *statuses.entry(webhook.status).or_default() += 1;
        }
        let before: Vec<Duration> = sent.iter().filter(|w| w.started < killed).map(|w| w.latency).collect();
        let around: Vec<Duration> = sent
            .iter()
            .filter(|w| w.answered() >= killed && w.started < killed + AROUND_THE_KILL)
            .map(|w| w.latency)
            .collect();
        let ended = sent.iter().map(Sent::answered).max().unwrap_or(started);
        Self {
            answered: sent.len(),
            answered_2xx: sent.iter().filter(|w| w.status == 200).count(),
            statuses,
            queued: queued.len(),
            duplicates: queued.len() - bodies.len(),
            lost: sent.iter().filter(|w| w.status == 200).filter(|w| !on_queue(w)).count(),
            refused_but_queued: sent.iter().filter(|w| w.status != 200).filter(on_queue).count(),
            first_2xx_after_kill: sent
                .iter()
                .filter(|w| w.status == 200 && w.started >= killed)
                .map(|w| w.answered() - killed)
                .min(),
            p99_before: p99(before),
            p99_around: p99(around.clone()),
            slowest_around: around.into_iter().max().unwrap_or_default(),
            per_second: sent.len() as f64 / (ended - started).as_secs_f64(),
        }
    }

    /// The figures docs/reliability.md quotes.
    fn line(&self) -> String {
        format!(
            "answered={} 2xx={} other={} statuses={:?} queued={} duplicates={} lost={} refused_but_queued={} \
             first_2xx_after_kill_ms={} p99_before_ms={} p99_around_ms={} slowest_around_ms={} per_second={:.0}",
            self.answered,
            self.answered_2xx,
            self.answered - self.answered_2xx,
            self.statuses,
            self.queued,
            self.duplicates,
            self.lost,
            self.refused_but_queued,
            self.first_2xx_after_kill.map_or(-1, |d| d.as_millis() as i128),
            self.p99_before.as_millis(),
            self.p99_around.as_millis(),
            self.slowest_around.as_millis(),
            self.per_second
        )
    }
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_leaders_node_killed_under_a_draining_relay_delivers_everything_and_dead_letters_nothing() {
    const COUNT: usize = 3_000;
    let _alone = ONE_KILL_AT_A_TIME.lock().await;
    let cluster = Cluster::under_test().await;
    let queue = quorum_topology().await;
    let target = TestTarget::start(|_| (Duration::from_millis(5), 200)).await;
    // Steered while the queue is empty, so the steering's closed
    // connections hand nothing back.
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "8"]);
    let leader = leader_of(&queue.queue).await;
    steer_connection(&format!("webhook-relay: {}", queue.queue), &leader).await;
    let messages = TestMessage::many(COUNT, "cluster");
    queue.publish(&messages).await;
    target
        .wait_until(Duration::from_secs(60), "500 deliveries", |seen| seen.len() >= 500)
        .await;

    let killed_node = cluster.kill(&leader).await;
    let delivered_at_kill = target.count();
    relay.wait_for_output("reconnected to", Duration::from_secs(60)).await;
    let ids: HashSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    target
        .wait_until(Duration::from_secs(120), "every message accepted", |seen| {
            let accepted: HashSet<&str> = seen.iter().filter(|s| s.accepted()).map(|s| s.message_id()).collect();
            ids.iter().all(|id| accepted.contains(id))
        })
        .await;
    killed_node.start().await;
    wait_until_empty_holding(&queue, &relay, 0).await;
    relay.stop().await;

    let accepted = target.accepted_by_id();
    let repeats: usize = accepted.values().map(|n| n - 1).sum();
    let dead = read_back(&queue.dead_letter()).await;
    println!(
        "relay through the loss of {leader} ({delivered_at_kill} requests made by then): {COUNT} messages, \
         {} accepted, {repeats} repeats, {} dead-lettered",
        accepted.len(),
        dead.len()
    );
    assert_eq!(accepted.len(), COUNT, "every message delivered");
    assert!(
        accepted.keys().all(|id| ids.contains(id.as_str())),
        "nothing else delivered"
    );
    assert!(dead.is_empty(), "nothing dead-lettered: {} were", dead.len());
    assert!(read_back(&queue.queue).await.is_empty(), "nothing left on the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_replayed_while_the_dead_letter_queues_leader_is_down() {
    let _alone = ONE_KILL_AT_A_TIME.lock().await;
    let cluster = Cluster::under_test().await;
    let queue = quorum_topology().await;
    let refused = TestMessage::many(3, "refused");
    queue.publish(&refused).await;
    for _ in &refused {
        reject_one(&queue.queue).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.dead_letter_depth().await < 3 {
        assert!(
            Instant::now() < deadline,
            "the three rejected messages were not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let leader = leader_of(&queue.dead_letter()).await;
    let killed_node = cluster.kill(&leader).await;
    let settings = AppSettings::new().with("AmqpUrl", test_support::broker::amqp_url());
    let replay = run_to_end(&["dead-letter", "replay", "--queue", &queue.queue], &settings, "").await;
    killed_node.start().await;

    assert!(
        replay.status.success(),
        "replay with {leader} down: {}",
        replay.output()
    );
    assert_eq!(
        replay.stdout.trim(),
        format!(
            "replayed 3 message(s) from \"{}\" to queue \"{}\"",
            queue.dead_letter(),
            queue.queue
        )
    );
    let mut back: Vec<String> = read_back(&queue.queue).await.iter().map(|m| m.id()).collect();
    let mut refused_ids: Vec<String> = refused.iter().map(|m| m.id.clone()).collect();
    back.sort();
    refused_ids.sort();
    assert_eq!(back, refused_ids, "each dead letter back on the queue, once");
    assert!(read_back(&queue.dead_letter()).await.is_empty(), "none left dead");
}
