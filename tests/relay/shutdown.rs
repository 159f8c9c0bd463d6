//! SIGTERM mid-drain: in-flight deliveries finish and are acknowledged, the
//! rest go back to the queue; nothing is lost and nothing is both.

use std::collections::HashSet;
use std::time::Duration;

use test_support::broker::{TestMessage, Topology};
use test_support::process::Handler;
use test_support::target::TestTarget;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_drain_acks_what_was_delivered_and_returns_the_rest() {
    const COUNT: usize = 2_000;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "drain");
    queue.publish(&messages).await;
    // Slow enough that requests are in flight when the signal comes.
    let target = TestTarget::start(|_| (Duration::from_millis(20), 200)).await;

    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "8"]);
    target
        .wait_until(Duration::from_secs(60), "200 deliveries", |seen| seen.len() >= 200)
        .await;
    relay.stop().await;

    let seen = target.seen();
    let delivered: HashSet<&str> = seen.iter().map(|s| s.message_id()).collect();
    assert_eq!(delivered.len(), seen.len(), "a message was delivered twice");
    let left: HashSet<String> = queue.take_all().await.into_iter().map(|m| m.id()).collect();
    for message in &messages {
        let was_delivered = delivered.contains(message.id.as_str());
        let is_queued = left.contains(&message.id);
        // Delivered and still queued would mean an in-flight delivery was
        // abandoned instead of finished and acknowledged.
        assert!(
            was_delivered != is_queued,
            "{}: delivered {was_delivered}, queued {is_queued}",
            message.id
        );
    }
    assert!(delivered.len() < COUNT, "the signal came too late to test anything");
    let output = relay.output();
    assert!(
        output.contains("every held message was acknowledged or returned to the queue"),
        "{output}"
    );
    assert!(
        output.contains(&format!("stopped: delivered={} retried=0", delivered.len())),
        "{output}"
    );
}
