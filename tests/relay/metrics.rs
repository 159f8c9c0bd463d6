//! `--metrics`: Prometheus text at /metrics, parsed by a Prometheus parser,
//! whose counts match what the target saw.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use test_support::broker::{TestMessage, Topology};
use test_support::metrics::{Metrics, metrics_url};
use test_support::process::Handler;
use test_support::target::{Answer, TestTarget, wait_until_drained};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_parse_as_prometheus_text_and_count_what_the_target_saw() {
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(50, "counted");
    queue.publish(&messages).await;
    // Every fifth message is refused for good; every seventh once.
    let target = TestTarget::answering(|seen| {
        let n: usize = String::from_utf8_lossy(&seen.body)
            .split(['=', '&'])
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let status = if n % 5 == 0 || (n % 7 == 0 && seen.attempt() == 1) {
            422
        } else {
            200
        };
        Answer::status(status)
    })
    .await;
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &[
            "--metrics",
            "127.0.0.1:0",
            "--max-attempts",
            "2",
            "--retry-delay",
            "10ms",
        ],
    );
    relay
        .wait_for_output("serving metrics on http://", Duration::from_secs(30))
        .await;
    relay.wait_for_output("dead-lettered=10", Duration::from_secs(60)).await;
    wait_until_drained(&queue, &target, &relay, 40).await;
    let url = metrics_url(&relay.output()).expect("the metrics address is logged");
    let metrics = Metrics::scrape(&url).await;
    relay.stop().await;

    let seen = target.seen();
    let accepted = seen.iter().filter(|s| s.accepted()).count() as f64;
    let refused = seen.iter().filter(|s| s.status == 422).count() as f64;
    assert_eq!(metrics.counter("relay_delivered_total", &[]), accepted);
    assert_eq!(accepted, 40.0);
    assert_eq!(metrics.counter("relay_dead_lettered_total", &[]), 10.0);
    assert_eq!(
        metrics.counter("relay_requests_total", &[("outcome", "accepted")]),
        accepted
    );
    assert_eq!(
        metrics.counter("relay_requests_total", &[("outcome", "refused")]),
        refused
    );
    assert_eq!(metrics.counter("relay_requests_total", &[("outcome", "outage")]), 0.0);
    // Retried: the refusals that left attempts (each seventh's first, and
    // each fifth's first); the final refusals were dead-lettered instead.
    assert_eq!(metrics.counter("relay_retried_total", &[]), refused - 10.0);
    assert_eq!(metrics.counter("relay_circuit_opened_total", &[]), 0.0);
    assert_eq!(metrics.gauge("relay_circuit_state", &[("state", "closed")]), 1.0);
    assert_eq!(metrics.gauge("relay_circuit_state", &[("state", "open")]), 0.0);
    assert_eq!(metrics.gauge("relay_in_flight", &[]), 0.0);
    assert_eq!(metrics.gauge("relay_held", &[]), 0.0);
    assert_eq!(metrics.gauge("relay_queue_depth", &[]), 0.0);
    let buckets = metrics.histogram("relay_target_latency_seconds");
    let (top, all) = *buckets.last().unwrap();
    assert!(top.is_infinite());
    assert_eq!(all, seen.len() as f64, "one latency per request");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative buckets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_show_the_queues_ttl_and_the_timestamp_of_its_oldest_ready_message() {
    let queue = Topology::declare_with_queue_arguments(json!({ "x-message-ttl": 86_400_000 })).await;
    let before = unix_seconds();
    queue.publish(&TestMessage::many(5, "aging")).await;
    let after = unix_seconds();
    // The target is down and the relay holds one message at a time: four stay ready in the queue.
    let target = TestTarget::answering(|_| Answer::status(503)).await;
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--metrics", "127.0.0.1:0", "--concurrency", "1", "--prefetch", "1"],
    );
    relay
        .wait_for_output("serving metrics on http://", Duration::from_secs(30))
        .await;
    let url = metrics_url(&relay.output()).expect("the metrics address is logged");
    // The management API refreshes its queue figures every 5 s, and the relay looks as often.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = Metrics::scrape(&url).await;
        if metrics.gauge("relay_queue_oldest_message_timestamp_seconds", &[]) >= 0.0 || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    relay.stop().await;

    assert_eq!(metrics.gauge("relay_queue_message_ttl_seconds", &[]), 86_400.0);
    let oldest = metrics.gauge("relay_queue_oldest_message_timestamp_seconds", &[]);
    assert!(
        (before as f64..=after as f64).contains(&oldest),
        "the oldest message's timestamp {oldest} is not between {before} and {after}:\n{}",
        metrics.text
    );
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}
