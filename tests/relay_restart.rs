//! A broker restart loses nothing, mid-drain or while the target is down.
//! A test binary of its own: restarting the shared broker would break tests
//! running alongside it, and cargo runs test binaries one after another
//! (run it under `flock /tmp/broker-outage.lock` on a shared machine). Its
//! tests run one at a time: each restarts the broker.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use test_support::broker::{BrokerOutage, TestMessage, Topology, amqp_url_shown};
use test_support::process::Handler;
use test_support::target::{
    Answer, TestTarget, assert_each_accepted_once, assert_each_arrived_with_distinct_attempts, free_address,
    wait_until_drained,
};
use tokio::sync::Mutex;

/// One restart at a time, whatever the test harness runs in parallel.
static BROKER: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_drain_loses_nothing() {
    let _one_at_a_time = BROKER.lock().await;
    const COUNT: usize = 3_000;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "restart");
    queue.publish(&messages).await;
    let target = TestTarget::start(|_| (Duration::from_millis(5), 200)).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "8"]);
    target
        .wait_until(Duration::from_secs(60), "300 deliveries", |seen| seen.len() >= 300)
        .await;

    restart_the_broker_under(&relay).await;
    wait_until_drained(&queue, &target, &relay, COUNT).await;
    relay.stop().await;

    assert_each_arrived_with_distinct_attempts(&messages, &target.seen());
    assert_eq!(queue.depth().await, 0, "messages left behind");
    assert!(queue.take_dead_letters().await.is_empty());
    let output = relay.output();
    assert!(output.contains("could not reconnect"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_while_the_target_is_down_changes_nothing() {
    let _one_at_a_time = BROKER.lock().await;
    const COUNT: usize = 100;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "paused");
    queue.publish(&messages).await;
    let down = free_address();
    let mut relay = Handler::relay(
        &queue,
        &format!("http://{down}/hook.php"),
        &[
            "--max-attempts",
            "2",
            "--retry-delay",
            "200ms",
            "--max-retry-delay",
            "1s",
        ],
    );
    relay
        .wait_for_output("taking no new deliveries", Duration::from_secs(30))
        .await;

    restart_the_broker_under(&relay).await;
    // Still down after the reconnect, past the whole retry budget.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(queue.dead_letter_depth().await, 0);

    let target = TestTarget::answering_at(down, |_| Answer::status(200)).await;
    wait_until_drained(&queue, &target, &relay, COUNT).await;
    relay.stop().await;

    assert_each_accepted_once(&messages, &target);
    assert_eq!(target.count(), COUNT, "a message was sent twice");
    assert_eq!(queue.depth().await, 0);
    assert!(queue.take_dead_letters().await.is_empty());
    assert!(relay.output().contains(" dead-lettered=0 "), "{}", relay.output());
}

/// Stops the broker until `relay` has seen the connection go and failed to
/// reconnect for a while, starts it again, and waits for the reconnect.
async fn restart_the_broker_under(relay: &Handler) {
    let outage = BrokerOutage::begin().await;
    relay
        .wait_for_output(
            &format!("lost the connection to {}", amqp_url_shown()),
            Duration::from_secs(60),
        )
        .await;
    // Let the relay fail to reconnect a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    outage.end().await;
    relay.wait_for_output("reconnected to", Duration::from_secs(60)).await;
}
