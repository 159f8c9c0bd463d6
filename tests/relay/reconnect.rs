//! A lost connection mid-drain: the relay reconnects, the broker hands back
//! what was unacknowledged, nothing is lost. (The broker-restart variant is
//! in `tests/relay_restart.rs`.)

use std::time::Duration;

use test_support::broker::{TestMessage, Topology, amqp_url_shown, close_connections_named};
use test_support::process::Handler;
use test_support::target::TestTarget;
use test_support::target::{assert_each_arrived_with_distinct_attempts, wait_until_drained};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_drain_is_reopened_and_nothing_is_lost() {
    const COUNT: usize = 2_000;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "reconnect");
    queue.publish(&messages).await;
    let target = TestTarget::start(|_| (Duration::from_millis(5), 200)).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "8"]);
    target
        .wait_until(Duration::from_secs(60), "200 deliveries", |seen| seen.len() >= 200)
        .await;

    close_connections_named(&format!("webhook-relay: {}", queue.queue)).await;
    relay.wait_for_output("reconnected to", Duration::from_secs(60)).await;
    wait_until_drained(&queue, &target, &relay, COUNT).await;
    relay.stop().await;

    eprintln!(
        "SEEN {} {:?}",
        target.seen().len(),
        relay
            .output()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
    );
    assert_each_arrived_with_distinct_attempts(&messages, &target.seen());
    assert_eq!(queue.depth().await, 0);
    assert!(queue.take_dead_letters().await.is_empty());
    let output = relay.output();
    assert!(
        output.contains(&format!("lost the connection to {}", amqp_url_shown())),
        "{output}"
    );
}
