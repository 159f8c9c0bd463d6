//! A standby: on a queue with a single active consumer, a second relay waits
//! while the first delivers, and takes over, in order, when the first is
//! killed (kill -9; a message that was in flight is delivered again, at
//! least once) or stopped (SIGTERM; only once the first has closed). With `--order-by`, a queue that another consumer shares
//! without a single active consumer is warned about at start.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::json;

use test_support::broker::{TestMessage, Topology, connect};
use test_support::ordering::{self, TEMPLATE};
use test_support::process::Handler;
use test_support::target::{Answer, Release, TestTarget, assert_each_accepted_once, wait_until_drained};

const KEYS: usize = 20;
const PER_KEY: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_in_order_when_the_active_relay_is_killed() {
    // Every answer after the first third is held until the active relay is
    // dead: it cannot finish before the kill, and it dies with requests
    // under way.
    let release = Release::default();
    let (queue, messages, target) = a_queue_and_a_target_that_stalls(&release).await;
    let options = ["--order-by", TEMPLATE, "--concurrency", "8"];
    let active = Handler::relay(&queue, &target.url("/active"), &options);
    active
        .wait_for_output("consuming from queue", Duration::from_secs(30))
        .await;
    let standby = Handler::relay(&queue, &target.url("/standby"), &options);
    standby
        .wait_for_output("this relay stands by", Duration::from_secs(30))
        .await;
    target
        .wait_until(Duration::from_secs(60), "a third delivered", |seen| {
            seen.iter().filter(|s| s.accepted()).count() >= messages.len() / 3
        })
        .await;
    active.signal("KILL");
    let killed = Instant::now();
    let seen_at_kill = target.count();
    release.open();
    let mut standby = standby;
    target
        .wait_until(Duration::from_secs(120), "every message accepted", |seen| {
            let accepted: HashSet<&str> = seen.iter().filter(|s| s.accepted()).map(|s| s.message_id()).collect();
            accepted.len() >= messages.len()
        })
        .await;
    wait_until_drained(&queue, &target, &standby, messages.len()).await;
    standby.stop().await;
    drop(active);

    let seen = target.seen();
    let by_standby: Vec<_> = seen
        .iter()
        .filter(|s| s.path_and_query.starts_with("/standby?"))
        .collect();
    assert!(
        !by_standby.is_empty(),
        "the standby never took over ({seen_at_kill} requests before the kill, {} in all):\n{}",
        seen.len(),
        standby.output()
    );
    assert!(
        by_standby.iter().all(|s| s.arrived >= killed),
        "the standby delivered while the active relay was alive"
    );
    ordering::assert_accepted_in_order_per_key(&seen, KEYS, PER_KEY);
    // Twice only what was under way when the active relay died.
    let accepted_by_active: HashSet<&str> = seen
        .iter()
        .filter(|s| s.path_and_query.starts_with("/active?") && s.accepted())
        .map(|s| s.message_id())
        .collect();
    for again in by_standby
        .iter()
        .filter(|s| accepted_by_active.contains(s.message_id()))
    {
        assert_eq!(again.attempt(), 1, "a new process counts from 1");
    }
    let twice = by_standby
        .iter()
        .filter(|s| accepted_by_active.contains(s.message_id()))
        .count();
    assert!(twice <= 8, "{twice} delivered again, more than were in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_in_order_when_the_active_relay_is_stopped_with_requests_under_way() {
    // Every answer after the first third is held until well after SIGTERM:
    // the active relay stops with requests under way and messages waiting
    // behind their keys.
    let release = Release::default();
    let (queue, messages, target) = a_queue_and_a_target_that_stalls(&release).await;
    let options = ["--order-by", TEMPLATE, "--concurrency", "8"];
    let mut active = Handler::relay(&queue, &target.url("/active"), &options);
    active
        .wait_for_output("consuming from queue", Duration::from_secs(30))
        .await;
    let mut standby = Handler::relay(&queue, &target.url("/standby"), &options);
    standby
        .wait_for_output("this relay stands by", Duration::from_secs(30))
        .await;
    target.wait_until_in_flight(8, Duration::from_secs(60)).await;
    active.terminate();
    active
        .wait_for_output("stopping: no new deliveries", Duration::from_secs(30))
        .await;
    // Time for a standby to take deliveries it should not have yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    release.open();
    let status = active.wait_for_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", active.output());
    wait_until_drained(&queue, &target, &standby, messages.len()).await;
    standby.stop().await;

    let seen = target.seen();
    assert!(
        seen.iter().any(|s| s.path_and_query.starts_with("/standby?")),
        "the standby never took over:\n{}",
        standby.output()
    );
    // 8 held by the stopping relay, and none beside them from the standby.
    assert_eq!(
        target.max_in_flight(),
        8,
        "the standby sent while the stopping relay held messages"
    );
    ordering::assert_accepted_in_order_per_key(&seen, KEYS, PER_KEY);
    assert_each_accepted_once(&messages, &target);
}

/// A queue with a single active consumer holding `KEYS` × `PER_KEY`
/// webhooks, and a target that answers the first third (in 0-20 ms) and
/// holds every later answer until `release` opens.
async fn a_queue_and_a_target_that_stalls(release: &Release) -> (Topology, Vec<TestMessage>, TestTarget) {
    let queue = Topology::declare_with_queue_arguments(json!({ "x-single-active-consumer": true })).await;
    let messages = ordering::interleaved(KEYS, PER_KEY);
    queue.publish(&messages).await;
    let arrivals = Arc::new(AtomicUsize::new(0));
    let target = TestTarget::answering({
        let (release, arrivals) = (release.clone(), arrivals.clone());
        move |_| {
            let answer = Answer {
                delay: Duration::from_millis(fastrand::u64(0..20)),
                ..Answer::default()
            };
            if arrivals.fetch_add(1, Ordering::SeqCst) < KEYS * PER_KEY / 3 {
                answer
            } else {
                answer.held_by(&release)
            }
        }
    })
    .await;
    (queue, messages, target)
}

/// A consumer of the test's own on `queue`, holding it while alive.
async fn another_consumer(queue: &str) -> lapin::Connection {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "another".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    tokio::spawn(async move { while consumer.next().await.is_some() {} });
    connection
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_on_a_queue_another_consumer_shares_warns_and_names_the_fix() {
    let queue = Topology::with_dead_letter().await;
    let _other = another_consumer(&queue.queue).await;
    let mut relay = Handler::relay(&queue, "http://127.0.0.1:9/", &["--order-by", TEMPLATE]);
    relay
        .wait_for_output(
            "already has 1 other consumer(s) and no single active consumer: a second consumer breaks the order --order-by keeps; run one relay per queue, or move to a queue declared with `handler setup --single-active-consumer`",
            Duration::from_secs(30),
        )
        .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_warning_without_order_by_or_with_a_single_active_consumer() {
    let shared = Topology::with_dead_letter().await;
    let _other = another_consumer(&shared.queue).await;
    let mut unordered = Handler::relay(&shared, "http://127.0.0.1:9/", &[]);
    let standby_queue = Topology::declare_with_queue_arguments(json!({ "x-single-active-consumer": true })).await;
    let _active = another_consumer(&standby_queue.queue).await;
    let mut standby = Handler::relay(&standby_queue, "http://127.0.0.1:9/", &["--order-by", TEMPLATE]);
    standby
        .wait_for_output("this relay stands by", Duration::from_secs(30))
        .await;
    unordered
        .wait_for_output("consuming from queue", Duration::from_secs(30))
        .await;
    unordered.stop().await;
    standby.stop().await;
    for output in [unordered.output(), standby.output()] {
        assert!(!output.contains("breaks the order"), "{output}");
    }
}
