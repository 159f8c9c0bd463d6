//! `--coalesce`: an identical copy held and not yet begun is acknowledged
//! undelivered when a newer one arrives; a copy whose delivery began is
//! delivered, and the newer after it; a relay killed right after coalescing
//! loses nothing.

use std::time::Duration;

use test_support::broker::{TestMessage, Topology};
use test_support::process::Handler;
use test_support::target::{Release, TestTarget, wait_until_drained};

/// The progress line reached `coalesced=N`.
async fn wait_for_coalesced(relay: &Handler, count: usize) {
    relay
        .wait_for_output(&format!(" coalesced={count} "), Duration::from_secs(30))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_copies_waiting_for_a_slot_are_coalesced_into_the_newest() {
    let queue = Topology::with_dead_letter().await;
    let busy = TestMessage::post("old=1&new=1");
    let copies: Vec<TestMessage> = (0..3).map(|_| TestMessage::post("old=101&new=101")).collect();
    let other = TestMessage::post("old=2&new=2");
    queue.publish(std::slice::from_ref(&busy)).await;
    // The first request takes the only slot until released; the copies,
    // queued once it is under way, wait for the slot.
    let release = Release::default();
    let target = TestTarget::holding_back(&busy.id, &release).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--coalesce", "--concurrency", "1"]);
    target.wait_until_in_flight(1, Duration::from_secs(30)).await;
    queue.publish(&[&copies[..], &[other.clone()][..]].concat()).await;
    wait_for_coalesced(&relay, 2).await;
    release.open();
    wait_until_drained(&queue, &target, &relay, 3).await;
    relay.stop().await;

    let sent: Vec<String> = target.seen().iter().map(|s| s.message_id().to_owned()).collect();
    // The newest copy keeps its place in line, ahead of the other webhook.
    let expected = vec![busy.id, copies[2].id.clone(), other.id];
    assert_eq!(sent, expected, "only the newest copy is sent, before the other webhook");
    assert_eq!(queue.depth().await, 0, "the older copies were acknowledged");
    let output = relay.output();
    assert!(output.contains("stopped: delivered=3 "), "{output}");
    assert!(output.contains(" coalesced=2 "), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_delivery_began_is_delivered_and_the_newer_after_it() {
    let queue = Topology::with_dead_letter().await;
    let first = TestMessage::post("old=101&new=101");
    queue.publish(std::slice::from_ref(&first)).await;
    let release = Release::default();
    let target = TestTarget::holding_back(&first.id, &release).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--coalesce", "--concurrency", "4"]);
    // The first copy's request is under way (held at the target)...
    target.wait_until_in_flight(1, Duration::from_secs(30)).await;
    // ...when the second copy and another webhook arrive: a slot is free,
    // and the other webhook takes it.
    let second = TestMessage::post("old=101&new=101");
    let other = TestMessage::post("old=2&new=2");
    queue.publish(&[second.clone(), other.clone()]).await;
    target
        .wait_until(Duration::from_secs(30), "the other webhook", |seen| {
            seen.iter().any(|s| s.message_id() == other.id)
        })
        .await;
    assert!(
        target.seen().iter().all(|s| s.message_id() != second.id),
        "the newer copy went while the older was under way"
    );
    release.open();
    wait_until_drained(&queue, &target, &relay, 3).await;
    relay.stop().await;

    let seen = target.seen();
    let of = |id: &str| seen.iter().find(|s| s.message_id() == id).unwrap();
    assert!(
        of(&second.id).arrived >= of(&first.id).answered,
        "the newer copy went before the older was answered"
    );
    let output = relay.output();
    assert!(output.contains("stopped: delivered=3 "), "{output}");
    assert!(output.contains(" coalesced=0 "), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_right_after_coalescing_loses_nothing() {
    let queue = Topology::with_dead_letter().await;
    let busy = TestMessage::post("old=1&new=1");
    let older = TestMessage::post("old=101&new=101");
    let newer = TestMessage::post("old=101&new=101");
    queue.publish(std::slice::from_ref(&busy)).await;
    // Never answers the first: the copies, queued once it is under way,
    // wait until the relay is killed.
    let stuck = Release::default();
    let target = TestTarget::holding_back(&busy.id, &stuck).await;
    let relay = Handler::relay(&queue, &target.url("/hook.php"), &["--coalesce", "--concurrency", "1"]);
    target.wait_until_in_flight(1, Duration::from_secs(30)).await;
    queue.publish(&[older.clone(), newer.clone()]).await;
    wait_for_coalesced(&relay, 1).await;
    relay.signal("KILL");
    drop(relay);

    // What the broker kept: the first and the newer copy, not the older.
    let accepting = TestTarget::accepting().await;
    let mut again = Handler::relay(&queue, &accepting.url("/hook.php"), &[]);
    again
        .wait_for_output("consuming from queue", Duration::from_secs(60))
        .await;
    wait_until_drained(&queue, &accepting, &again, 2).await;
    again.stop().await;
    let sent: Vec<String> = accepting.seen().iter().map(|s| s.message_id().to_owned()).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.contains(&busy.id) && sent.contains(&newer.id), "{sent:?}");
    assert!(!sent.contains(&older.id), "the coalesced copy came back");
}
