//! A broker restart mid-drain loses nothing. A test binary of its own, with
//! this one test: restarting the shared broker would break tests running
//! alongside it, and cargo runs test binaries one after another.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use test_support::broker::{BrokerOutage, TestMessage, Topology, amqp_url_shown};
use test_support::process::Handler;
use test_support::target::{TestTarget, assert_each_arrived_with_distinct_attempts, wait_until_drained};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_drain_loses_nothing() {
    const COUNT: usize = 3_000;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "restart");
    queue.publish(&messages).await;
    let target = TestTarget::start(|_| (Duration::from_millis(5), 200)).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "8"]);
    target
        .wait_until(Duration::from_secs(60), "300 deliveries", |seen| seen.len() >= 300)
        .await;

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
    wait_until_drained(&queue, &target, &relay, COUNT).await;
    relay.stop().await;

    assert_each_arrived_with_distinct_attempts(&messages, &target.seen());
    assert_eq!(queue.depth().await, 0, "messages left behind");
    assert!(queue.take_dead_letters().await.is_empty());
    let output = relay.output();
    assert!(output.contains("could not reconnect"), "{output}");
}
