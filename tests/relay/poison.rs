//! Poison messages: the one the target keeps refusing while it takes the
//! others is set aside with its reason, and the others flow meanwhile; with
//! no dead-letter exchange it is kept and tried again, never stalling.

use std::time::Duration;

use test_support::broker::{TestMessage, Topology};
use test_support::process::Handler;
use test_support::target::{Answer, TestTarget, assert_each_accepted_once, wait_until_drained};

fn is_poison(body: &[u8]) -> bool {
    body.starts_with(b"poison")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_messages_the_target_refuses_are_dead_lettered_and_the_rest_flow_meanwhile() {
    // One in ten is poison.
    let mut messages = Vec::new();
    for i in 0..10 {
        messages.push(TestMessage::post(format!("poison={i}")));
        messages.extend(TestMessage::many(9, &format!("good{i}")));
    }
    let (poison, good): (Vec<TestMessage>, Vec<TestMessage>) =
        messages.iter().cloned().partition(|m| is_poison(&m.body));
    let queue = Topology::with_dead_letter().await;
    queue.publish(&messages).await;
    let target = TestTarget::answering(|seen| Answer::status(if is_poison(&seen.body) { 422 } else { 200 })).await;

    // Poison retries at least a second apart: the others are long done by
    // the time the first poison message is set aside.
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--max-attempts", "3", "--retry-delay", "2s", "--max-retry-delay", "2s"],
    );
    relay.wait_for_output("dead-lettered=10", Duration::from_secs(60)).await;
    wait_until_drained(&queue, &target, &relay, good.len()).await;
    relay.stop().await;

    assert_each_accepted_once(&good, &target);
    let seen = target.seen();
    let last_good = seen.iter().filter(|s| s.accepted()).map(|s| s.arrived).max().unwrap();
    let first_final_poison = seen
        .iter()
        .filter(|s| is_poison(&s.body) && s.attempt() == 3)
        .map(|s| s.arrived)
        .min()
        .unwrap();
    assert!(
        last_good < first_final_poison,
        "the good messages waited for the poison ones"
    );
    let mut dead = queue.take_dead_letters().await;
    dead.sort_by_key(|d| d.id());
    let mut poison_ids: Vec<String> = poison.iter().map(|m| m.id.clone()).collect();
    poison_ids.sort();
    assert_eq!(dead.iter().map(|d| d.id()).collect::<Vec<_>>(), poison_ids);
    for letter in &dead {
        assert_eq!(letter.header("x-relay-status").as_deref(), Some("422"));
        assert_eq!(letter.header("x-relay-attempts").as_deref(), Some("3"));
        assert!(letter.header("x-relay-dead-lettered-at").is_some());
        assert!(is_poison(&letter.body));
    }
    let output = relay.output();
    assert!(!output.contains("the target seems down"), "{output}");
    assert!(output.contains("circuit=closed"), "{output}");
    // Each failed attempt's log line says where the message stands.
    for attempt in ["attempt 1 of 3, next in ", "attempt 2 of 3, next in "] {
        assert!(output.contains(&format!("delivery failed, {attempt}")), "{output}");
    }
    assert!(
        !output.contains("attempt 3 of 3, next in"),
        "the last attempt has no next: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_exchange_an_exhausted_message_is_tried_again_and_nothing_stalls() {
    let queue = Topology::declare().await;
    let poison = TestMessage::post("poison=1");
    let others = TestMessage::many(20, "other");
    queue.publish(&[vec![poison.clone()], others.clone()].concat()).await;
    // Refused four times, then taken (someone fixed the endpoint).
    let target = TestTarget::answering(|seen| {
        Answer::status(if is_poison(&seen.body) && seen.attempt() <= 4 {
            422
        } else {
            200
        })
    })
    .await;

    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &[
            "--concurrency",
            "2",
            "--max-attempts",
            "2",
            "--retry-delay",
            "100ms",
            "--max-retry-delay",
            "1s",
        ],
    );
    relay
        .wait_for_output(
            "out of attempts but kept: the dead-letter exchange is missing, run `handler setup --dead-letter`",
            Duration::from_secs(30),
        )
        .await;
    wait_until_drained(&queue, &target, &relay, 21).await;
    relay.stop().await;

    assert_each_accepted_once(&others, &target);
    assert_each_accepted_once(std::slice::from_ref(&poison), &target);
    let poison_requests: Vec<_> = target.seen().into_iter().filter(|s| is_poison(&s.body)).collect();
    assert_eq!(poison_requests.len(), 5, "tried again until taken");
    // Past its attempts, it was tried every --max-retry-delay, no faster.
    for pair in poison_requests[2..].windows(2) {
        let gap = pair[1].arrived - pair[0].arrived;
        assert!(gap >= Duration::from_millis(900), "tried again after {gap:?}");
    }
    let output = relay.output();
    assert!(
        output.contains(&format!(
            "cannot move the message to the dead-letter queue, keeping it and trying the target again in 1s: the dead-letter exchange \"{}\" does not exist (`handler setup --dead-letter` creates it)",
            queue.dead_letter()
        )),
        "{output}"
    );
    assert!(output.contains("stopped: delivered=21 "), "{output}");
}
