//! Memory and disk alarms raised and cleared in the middle of a burst, and
//! under a draining relay, on a RabbitMQ node of these tests' own
//! (`scripts/alarm-broker-up`): an alarm blocks every publisher of its node,
//! so these never run against the shared brokers (`AlarmNode::under_test`
//! refuses to). Its own test binary (`test = false`): `scripts/test` runs it
//! as a step of its own against each broker version; one alarm at a time.
//!
//! The bounds asserted are the and docs/reliability.md's: answered
//! within 2 s while blocked, 2xx again within seconds of clearing, and at
//! most one webhook per sender answered 503 and queued anyway (the publishes
//! in flight when the block came).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use test_support::alarm::{AlarmNode, Kind};
use test_support::broker::{TestMessage, Topology};
use test_support::host::{Burst, Sent};
use test_support::process::{Handler, Served};
use test_support::target::{
    Answer, TestTarget, assert_each_accepted_once, wait_until_drained, wait_until_empty_holding,
};

/// The tests share one broker node, and an alarm blocks all of it.
static ONE_ALARM_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Webhooks in flight at once, as many host instances' requests would be.
const SENDERS: usize = 32;
/// How long the alarm stays on mid-burst.
const BLOCKED_FOR: Duration = Duration::from_secs(3);
/// The bound on an answer while blocked.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// "2xx again within seconds of clearing."
const RECOVERED_WITHIN: Duration = Duration::from_secs(10);

const BLOCK_STARTED: &str = "the broker blocked the connection";
const BLOCK_ENDED: &str = "the broker unblocked the connection: publishing again";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_mid_burst_is_answered_503_at_once_and_2xx_again_once_it_clears() {
    alarm_mid_burst(Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_alarm_mid_burst_is_answered_503_at_once_and_2xx_again_once_it_clears() {
    alarm_mid_burst(Kind::Disk).await;
}

/// A burst over the AMQP transport; the alarm raised once it runs, cleared
/// `BLOCKED_FOR` after the handler logged the block, the burst going on
/// throughout; then every answer is checked against the queue.
async fn alarm_mid_burst(kind: Kind) {
    let _alone = ONE_ALARM_AT_A_TIME.lock().await;
    let node = AlarmNode::under_test().await;
    let topology = Topology::declare().await;
    // The production log level: the block must show as two lines, not one per webhook.
    let app = Served::start_logging(&topology.amqp_transport_settings(), "info,lapin=off").await;
    let burst = Burst::start(&app, usize::MAX, SENDERS, "application/x-www-form-urlencoded", |i| {
        format!("old={i}&new={i}")
    });
    while burst.answered() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let alarm = node.raise(kind).await;
    app.process
        .wait_for_output(BLOCK_STARTED, Duration::from_secs(30))
        .await;
    let blocked_seen = Instant::now();
    let health = app.request(reqwest::Method::GET, "/").send().await.unwrap();
    assert_eq!(health.status(), 200, "GET / while blocked");
    tokio::time::sleep(BLOCKED_FOR.saturating_sub(blocked_seen.elapsed())).await;
    let clearing = Instant::now();
    alarm.clear().await;
    let cleared = Instant::now();
    app.process.wait_for_output(BLOCK_ENDED, Duration::from_secs(30)).await;
    let answered_by_then = burst.answered();
    while burst.answered() < answered_by_then + 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    burst.stop();
    let sent = burst.finish().await;
    let queued: HashSet<Vec<u8>> = topology.drain().await.into_iter().map(|m| m.body).collect();
    let output = app.process.output();

    let report = Report::of(&sent, &queued, blocked_seen, clearing, cleared);
    println!("{kind:?} alarm mid-burst, {SENDERS} senders: {}", report.line());

    // Answered at once while blocked: 503 with Retry-After.
    assert!(
        report.started_while_blocked >= 10,
        "too few webhooks sent while blocked to judge"
    );
    assert!(
        report.slowest_while_blocked <= ANSWER_WITHIN,
        "an answer took {:?} while blocked",
        report.slowest_while_blocked
    );
    for webhook in sent
        .iter()
        .filter(|w| w.started >= blocked_seen && w.answered() < clearing)
    {
        assert_eq!(webhook.status, 503, "webhook {} sent while blocked", webhook.index);
        let retry_after: u64 = webhook
            .retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After on {webhook:?}"));
        assert!(
            (5..=60).contains(&retry_after),
            "Retry-After {retry_after} is outside 5..=60 s"
        );
    }
    // 2xx again within seconds of clearing, and to the end.
    let recovered = report.first_2xx_after_clearing.expect("a 2xx after the alarm cleared");
    assert!(
        recovered <= RECOVERED_WITHIN,
        "the first 2xx came {recovered:?} after the alarm cleared"
    );
    assert!(
        sent.iter().all(|w| w.status == 200 || w.status == 503),
        "only 2xx and 503"
    );
    // Nothing answered 2xx is missing from the queue.
    assert_eq!(report.lost, 0, "answered 200 but not on the queue");
    // The 503s queued anyway: at most the publishes in flight when the block came.
    assert!(
        report.refused_but_queued <= SENDERS,
        "{} webhooks answered 503 were queued anyway; docs/reliability.md says at most one per webhook in flight ({SENDERS})",
        report.refused_but_queued
    );

    // Two lines for the whole block, with the broker's reason and the count.
    let started: Vec<&str> = output.lines().filter(|l| l.contains(BLOCK_STARTED)).collect();
    assert_eq!(started.len(), 1, "{output}");
    assert!(started[0].contains(kind.reason()), "{}", started[0]);
    let ended: Vec<&str> = output.lines().filter(|l| l.contains(BLOCK_ENDED)).collect();
    assert_eq!(ended.len(), 1, "{output}");
    assert!(
        ended[0].contains(&format!("answered_503={}", report.answered_503)),
        "the end line counts every 503 ({}): {}",
        report.answered_503,
        ended[0]
    );
    assert!(!output.contains("not queued"), "a line per webhook:\n{output}");
}

/// What a burst through an alarm got.
#[derive(Debug)]
struct Report {
    answered: usize,
    answered_2xx: usize,
    answered_503: usize,
    /// Sent after the block was logged and answered before the clearing began.
    started_while_blocked: usize,
    /// The longest wait for an answer given while blocked, counted from the
    /// later of its sending and the block.
    slowest_while_blocked: Duration,
    /// From the alarm cleared (the node reporting it off) to the first 2xx
    /// of a webhook sent after the clearing began.
    first_2xx_after_clearing: Option<Duration>,
    /// Answered 503, yet on the queue: a duplicate once the sender retries.
    refused_but_queued: usize,
    /// Answered 2xx, not on the queue (must be 0).
    lost: usize,
}

impl Report {
    /// The figures docs/reliability.md quotes.
    fn line(&self) -> String {
        format!(
            "answered {} ({} 2xx, {} 503); {} sent and answered while blocked, slowest answer while blocked {} ms; \
             first 2xx {} ms after the alarm cleared; 503 but queued anyway {}; 2xx not queued {}",
            self.answered,
            self.answered_2xx,
            self.answered_503,
            self.started_while_blocked,
            self.slowest_while_blocked.as_millis(),
            self.first_2xx_after_clearing.map_or(-1, |d| d.as_millis() as i128),
            self.refused_but_queued,
            self.lost
        )
    }

    fn of(
        sent: &[Sent],
        queued: &HashSet<Vec<u8>>,
        blocked_seen: Instant,
        clearing: Instant,
        cleared: Instant,
    ) -> Self {
        let on_queue = |w: &&Sent| queued.contains(w.body.as_bytes());
        let while_blocked = |w: &&Sent| w.answered() >= blocked_seen && w.answered() < clearing;
        Self {
            answered: sent.len(),
            answered_2xx: sent.iter().filter(|w| w.status == 200).count(),
            answered_503: sent.iter().filter(|w| w.status == 503).count(),
            started_while_blocked: sent
                .iter()
                .filter(|w| w.started >= blocked_seen)
                .filter(while_blocked)
                .count(),
            slowest_while_blocked: sent
                .iter()
                .filter(while_blocked)
                .map(|w| w.answered() - w.started.max(blocked_seen))
                .max()
                .unwrap_or_default(),
            first_2xx_after_clearing: sent
                .iter()
                .filter(|w| w.status == 200 && w.started >= clearing)
                .map(|w| w.answered().saturating_duration_since(cleared))
                .min(),
            refused_but_queued: sent.iter().filter(|w| w.status == 503).filter(on_queue).count(),
            lost: sent.iter().filter(|w| w.status == 200).filter(|w| !on_queue(w)).count(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_drains_the_queue_during_an_alarm_and_dead_letters_once_it_clears() {
    let _alone = ONE_ALARM_AT_A_TIME.lock().await;
    let node = AlarmNode::under_test().await;
    let queue = Topology::with_dead_letter().await;
    // The refused ones first: their dead-lettering comes while the alarm is
    // on, before most of the others are delivered.
    let refused = TestMessage::many(3, "refused");
    let fine = TestMessage::many(100, "fine");
    queue.publish(&[refused.clone(), fine.clone()].concat()).await;
    let target =
        TestTarget::answering(|seen| Answer::status(if seen.body.starts_with(b"refused") { 422 } else { 200 })).await;

    let alarm = node.raise(Kind::Memory).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--max-attempts", "1"]);
    // Every other message delivered and acknowledged while the alarm is on
    // (100 is far more than the prefetch of 16: the acks got through); the
    // three refused ones wait, held, for their dead-letter confirms.
    let fine_ids: HashSet<String> = fine.iter().map(|m| m.id.clone()).collect();
    target
        .wait_until(Duration::from_secs(60), "every fine message accepted", |seen| {
            let accepted: HashSet<&str> = seen.iter().filter(|s| s.accepted()).map(|s| s.message_id()).collect();
            fine_ids.iter().all(|id| accepted.contains(id.as_str()))
        })
        .await;
    wait_until_empty_holding(&queue, &relay, refused.len()).await;
    assert_eq!(node.alarms().await, ["memory"], "the alarm was on throughout");
    assert_eq!(
        queue.dead_letter_depth().await,
        0,
        "nothing can be dead-lettered during the alarm"
    );

    alarm.clear().await;
    relay.wait_for_output("dead-lettered=3", Duration::from_secs(60)).await;
    wait_until_drained(&queue, &target, &relay, fine.len()).await;
    let dead: HashSet<String> = queue.take_dead_letters().await.iter().map(|m| m.id()).collect();
    let refused_ids: HashSet<String> = refused.iter().map(|m| m.id.clone()).collect();
    assert_eq!(dead, refused_ids, "each refused message dead-lettered, once");
    assert_each_accepted_once(&fine, &target);
    relay.stop().await;
}
