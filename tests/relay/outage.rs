//! The target down: the relay pauses (the circuit opens), probes with one
//! request at a time, counts no attempt, dead-letters nothing, and delivers
//! everything once the target is back; Retry-After sets the wait; SIGTERM
//! while paused hands the held messages back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use test_support::broker::{TestMessage, Topology};
use test_support::process::Handler;
use test_support::target::{Answer, TestTarget, assert_each_accepted_once, free_address, wait_until_drained};

/// A retry budget of about 1.4 s: attempts after 0.2 s and 0.4 s, then out.
const SHORT_BUDGET: [&str; 6] = [
    "--max-attempts",
    "3",
    "--retry-delay",
    "200ms",
    "--max-retry-delay",
    "1s",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_for_longer_than_the_retry_budget_loses_nothing_to_the_dead_letter_queue() {
    const COUNT: usize = 200;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "outage");
    queue.publish(&messages).await;
    // Nothing listens there yet: every request is refused a connection.
    let down = free_address();
    let mut relay = Handler::relay(&queue, &format!("http://{down}/hook.php"), &SHORT_BUDGET);
    relay
        .wait_for_output("the target seems down: pausing deliveries", Duration::from_secs(30))
        .await;
    // Five times the whole retry budget.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(queue.dead_letter_depth().await, 0, "dead-lettered during the outage");

    let target = TestTarget::answering_at(down, |_| Answer::status(200)).await;
    relay
        .wait_for_output(
            "the target answered the probe: resuming deliveries",
            Duration::from_secs(30),
        )
        .await;
    wait_until_drained(&queue, &target, &relay, COUNT).await;
    relay.stop().await;

    assert_each_accepted_once(&messages, &target);
    assert_eq!(target.count(), COUNT, "a message was sent twice");
    assert_eq!(queue.depth().await, 0);
    assert!(queue.take_dead_letters().await.is_empty());
    let output = relay.output();
    assert!(output.contains("taking no new deliveries"), "{output}");
    assert!(output.contains(&format!("stopped: delivered={COUNT} ")), "{output}");
    assert!(output.contains(" dead-lettered=0 "), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_for_every_message_are_an_outage_too() {
    const COUNT: usize = 40;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "crashed");
    queue.publish(&messages).await;
    // The application behind the endpoint is broken (500 for everything),
    // then fixed.
    let broken = Arc::new(AtomicBool::new(true));
    let target = TestTarget::answering({
        let broken = broken.clone();
        move |_| Answer::status(if broken.load(Ordering::SeqCst) { 500 } else { 200 })
    })
    .await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &SHORT_BUDGET);
    relay
        .wait_for_output("the target seems down", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let failed_meanwhile = target.count();
    broken.store(false, Ordering::SeqCst);
    wait_until_drained(&queue, &target, &relay, COUNT).await;
    relay.stop().await;

    assert_each_accepted_once(&messages, &target);
    assert!(queue.take_dead_letters().await.is_empty());
    // While broken: the first requests, then one probe at a time, at growing
    // intervals capped at 1 s: nowhere near a request per message per retry.
    assert!(
        failed_meanwhile <= 20,
        "{failed_meanwhile} requests while the target was broken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sets_the_wait_before_the_next_request() {
    let queue = Topology::with_dead_letter().await;
    let message = TestMessage::post("busy");
    queue.publish(std::slice::from_ref(&message)).await;
    // The first answer asks for 3 s; the retry delay alone would be 100 ms.
    let target = TestTarget::answering(|seen| {
        if seen.attempt() == 1 {
            Answer::status(503).with_header("Retry-After", "3")
        } else {
            Answer::status(200)
        }
    })
    .await;
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--retry-delay", "100ms", "--max-retry-delay", "20s"],
    );
    relay.wait_for_output("delivered=1", Duration::from_secs(30)).await;
    relay.stop().await;

    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].arrived - seen[0].arrived;
    assert!(
        waited >= Duration::from_millis(2900),
        "the relay came back after {waited:?}"
    );
    assert!(
        relay.output().contains("probing with one request in 3s"),
        "{}",
        relay.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_max_retry_delay_is_capped() {
    let queue = Topology::with_dead_letter().await;
    queue.publish(&[TestMessage::post("throttled")]).await;
    let target = TestTarget::answering(|seen| {
        if seen.attempt() == 1 {
            Answer::status(429).with_header("Retry-After", "3600")
        } else {
            Answer::status(200)
        }
    })
    .await;
    let began = Instant::now();
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--max-retry-delay", "1s"]);
    relay.wait_for_output("delivered=1", Duration::from_secs(30)).await;
    relay.stop().await;

    let seen = target.seen();
    let waited = seen[1].arrived - seen[0].arrived;
    assert!(
        waited >= Duration::from_millis(900) && began.elapsed() < Duration::from_secs(60),
        "waited {waited:?}"
    );
    assert!(
        relay.output().contains("probing with one request in 1s"),
        "{}",
        relay.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_target_is_down_returns_every_held_message() {
    const COUNT: usize = 30;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "held");
    queue.publish(&messages).await;
    let down = free_address();
    let mut relay = Handler::relay(
        &queue,
        &format!("http://{down}/hook.php"),
        &[
            "--concurrency",
            "4",
            "--prefetch",
            "4",
            "--retry-delay",
            "10s",
            "--max-retry-delay",
            "10s",
        ],
    );
    relay
        .wait_for_output("taking no new deliveries", Duration::from_secs(30))
        .await;
    relay
        .wait_for_output("held=4 queue-depth=26 circuit=open", Duration::from_secs(30))
        .await;
    let stopping = Instant::now();
    relay.stop().await;

    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown waited for the probe: {:?}",
        stopping.elapsed()
    );
    let left = queue.take_all().await;
    assert_eq!(left.len(), COUNT, "every message is back on the queue");
    let mut ids: Vec<String> = left.iter().map(|m| m.id()).collect();
    ids.sort();
    let mut sent: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    sent.sort();
    assert_eq!(ids, sent);
    assert_eq!(queue.dead_letter_depth().await, 0);
    assert!(relay.output().contains("returned=4 "), "{}", relay.output());
}
