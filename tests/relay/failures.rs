//! A target refusing some messages: retries with backoff, then the
//! dead-letter queue with the reason; never a message dropped. (Refusals,
//! 4xx, are the messages' own failures; an outage, which pauses and counts
//! nothing, is in `outage.rs`.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use test_support::broker::{TestMessage, Topology};
use test_support::process::Handler;
use test_support::target::{Seen, TestTarget};

fn attempts_by_body(seen: &[Seen]) -> HashMap<Vec<u8>, Vec<u32>> {
    let mut attempts: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
    for request in seen {
        attempts
            .entry(request.body.to_vec())
            .or_default()
            .push(request.attempt());
    }
    for list in attempts.values_mut() {
        list.sort_unstable();
    }
    attempts
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_dead_lettered_with_the_reason() {
    let queue = Topology::with_dead_letter().await;
    let doomed = TestMessage::many(5, "doomed");
    let flaky = TestMessage::many(10, "flaky");
    let fine = TestMessage::many(5, "fine");
    queue
        .publish(&[doomed.clone(), flaky.clone(), fine.clone()].concat())
        .await;
    // "doomed" is always refused; "flaky" on its first attempt only.
    let target = TestTarget::start(|seen| {
        let refused = seen.body.starts_with(b"doomed") || (seen.body.starts_with(b"flaky") && seen.attempt() == 1);
        let status = if refused { 422 } else { 200 };
        (Duration::ZERO, status)
    })
    .await;

    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &[
            "--max-attempts",
            "3",
            "--retry-delay",
            "20ms",
            "--max-retry-delay",
            "100ms",
        ],
    );
    relay.wait_for_output("dead-lettered=5", Duration::from_secs(60)).await;
    target
        .wait_until(Duration::from_secs(30), "15 accepted", |seen| {
            seen.iter().filter(|s| s.accepted()).count() >= 15
        })
        .await;
    relay.stop().await;

    let attempts = attempts_by_body(&target.seen());
    for message in &doomed {
        assert_eq!(attempts[&message.body], [1, 2, 3], "doomed message");
    }
    for message in &flaky {
        assert_eq!(attempts[&message.body], [1, 2], "flaky message");
    }
    for message in &fine {
        assert_eq!(attempts[&message.body], [1], "fine message");
    }
    let mut dead = queue.take_dead_letters().await;
    dead.sort_by_key(|d| d.body.clone());
    assert_eq!(dead.len(), doomed.len());
    for (dead, original) in dead.iter().zip(&doomed) {
        assert_eq!(dead.body, original.body);
        assert_eq!(dead.id(), original.id);
        assert_eq!(
            dead.header("x-relay-failure").as_deref(),
            Some("the target answered HTTP 422 Unprocessable Entity")
        );
        assert_eq!(dead.header("x-relay-status").as_deref(), Some("422"));
        assert_eq!(dead.header("x-relay-attempts").as_deref(), Some("3"));
        assert_eq!(dead.header("x-relay-queue").as_deref(), Some(queue.queue.as_str()));
        assert_eq!(dead.header("x-http-method").as_deref(), Some("POST"));
        assert_eq!(dead.header("x-http-query").as_deref(), Some("type=product"));
        assert_eq!(dead.properties["delivery_mode"], 2);
    }
    assert_eq!(queue.depth().await, 0);
    let output = relay.output();
    assert!(
        output.contains("stopped: delivered=15 retried=20 dead-lettered=5 returned=0"),
        "{output}"
    );
}

#[tokio::test]
async fn a_target_that_answers_too_late_is_retried() {
    let queue = Topology::with_dead_letter().await;
    let message = TestMessage::post("slow");
    queue.publish(std::slice::from_ref(&message)).await;
    // The first attempt gets its answer only after the relay gave up on it.
    let target = TestTarget::start(|seen| {
        let delay = if seen.attempt() == 1 {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        };
        (delay, 200)
    })
    .await;

    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--timeout", "300ms", "--retry-delay", "20ms"],
    );
    relay.wait_for_output("delivered=1", Duration::from_secs(30)).await;
    relay.stop().await;

    let output = relay.output();
    assert!(output.contains("the target did not answer within 300ms"), "{output}");
    let second = target
        .seen()
        .into_iter()
        .find(|s| s.attempt() == 2)
        .expect("a second attempt");
    assert_eq!(second.body, message.body);
    assert_eq!(queue.depth().await, 0);
    assert!(queue.take_dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_backing_off_holds_up_neither_the_others_nor_shutdown() {
    let queue = Topology::with_dead_letter().await;
    let poison = TestMessage::post("poison");
    let others = TestMessage::many(20, "other");
    queue.publish(&[vec![poison.clone()], others.clone()].concat()).await;
    let target = TestTarget::start(|seen| {
        let status = if seen.body.starts_with(b"poison") { 422 } else { 200 };
        (Duration::ZERO, status)
    })
    .await;

    // Its retry is due no sooner than 15 s (half the delay, with jitter).
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--concurrency", "2", "--retry-delay", "30s", "--max-retry-delay", "30s"],
    );
    target
        .wait_until(Duration::from_secs(10), "the 20 others", |seen| {
            seen.iter().filter(|s| s.accepted()).count() >= 20
        })
        .await;
    let poison_attempts = target.seen().iter().filter(|s| s.body.starts_with(b"poison")).count();
    let stopping = Instant::now();
    relay.stop().await;

    assert_eq!(
        poison_attempts, 1,
        "the poison message was retried before its backoff ended"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?}: it sat out the backoff",
        stopping.elapsed()
    );
    let left = queue.take_all().await;
    assert_eq!(left.len(), 1, "the message in backoff goes back to the queue");
    assert_eq!(left[0].id(), poison.id);
    assert_eq!(left[0].body, poison.body);
    assert!(relay.output().contains("returned=1"), "{}", relay.output());
}

#[tokio::test]
async fn without_a_dead_letter_exchange_an_exhausted_message_is_kept_not_dropped() {
    let queue = Topology::declare().await;
    let message = TestMessage::post("undeliverable");
    queue.publish(std::slice::from_ref(&message)).await;
    let target = TestTarget::start(|_| (Duration::ZERO, 422)).await;

    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--max-attempts", "1", "--retry-delay", "50ms"],
    );
    relay
        .wait_for_output(
            "cannot move the message to the dead-letter queue, keeping it",
            Duration::from_secs(30),
        )
        .await;
    relay.stop().await;

    let output = relay.output();
    assert!(
        output.contains(&format!(
            "the dead-letter exchange \"{}\" does not exist (`handler setup --dead-letter` creates it)",
            queue.dead_letter()
        )),
        "{output}"
    );
    assert!(output.contains("dead-lettered=0 returned=1"), "{output}");
    let left = queue.take_all().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id(), message.id);
    assert_eq!(left[0].body, message.body);
    assert_eq!(target.count(), 1, "one attempt, as --max-attempts says");
}
