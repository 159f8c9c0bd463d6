//! `handler dead-letter list`, `replay` and `purge` against the real broker,
//! with a real relay running: listing leaves every dead letter in place;
//! replay puts each back once, and the running relay delivers it once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use test_support::AppSettings;
use test_support::broker::{TestMessage, Topology, amqp_url};
use test_support::process::{Finished, Handler, run_to_end};
use test_support::target::{Answer, TestTarget, wait_until_drained};

async fn dead_letter(args: &[&str]) -> Finished {
    let settings = AppSettings::new().with("AmqpUrl", amqp_url());
    run_to_end(&[&["dead-letter"], args].concat(), &settings, "").await
}

/// Three dead letters in `queue`, each refused with 422 once, by a relay
/// that keeps running (returned), and the switch that makes the target take them.
async fn three_dead_letters(
    queue: &Topology,
    others: usize,
) -> (Vec<TestMessage>, TestTarget, Arc<AtomicBool>, Handler) {
    let refused = TestMessage::many(3, "refused");
    queue
        .publish(&[refused.clone(), TestMessage::many(others, "fine")].concat())
        .await;
    let refusing = Arc::new(AtomicBool::new(true));
    let target = TestTarget::answering({
        let refusing = refusing.clone();
        move |seen| {
            let refuse = seen.body.starts_with(b"refused") && refusing.load(Ordering::SeqCst);
            Answer::status(if refuse { 422 } else { 200 })
        }
    })
    .await;
    let relay = Handler::relay(queue, &target.url("/hook.php"), &["--max-attempts", "1"]);
    relay.wait_for_output("dead-lettered=3", Duration::from_secs(30)).await;
    (refused, target, refusing, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_dead_letters_and_leaves_them_then_replay_delivers_each_once() {
    let queue = Topology::with_dead_letter().await;
    let (refused, target, refusing, mut relay) = three_dead_letters(&queue, 5).await;

    let table = dead_letter(&["list", "--queue", &queue.queue]).await;
    assert!(table.status.success(), "{}", table.output());
    assert!(
        table
            .stdout
            .starts_with(&format!("3 dead letter(s) in \"{}\"\n", queue.dead_letter())),
        "{}",
        table.stdout
    );
    for message in &refused {
        let row = table
            .stdout
            .lines()
            .find(|l| l.starts_with(&message.id))
            .expect("a row per dead letter");
        assert!(
            row.contains(" 1 ") && row.contains(" 422 ") && row.contains(" POST ") && row.contains("type=product"),
            "{row}"
        );
    }
    let json = dead_letter(&["list", "--queue", &queue.queue, "--json", "--limit", "2"]).await;
    assert!(json.status.success(), "{}", json.output());
    let listing: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(listing["count"], 3);
    assert_eq!(listing["messages"].as_array().unwrap().len(), 2);
    let first = &listing["messages"][0];
    assert_eq!(first["reason"], "422");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["body_bytes"], refused[0].body.len());
    assert!(first["dead_lettered_at"].as_u64().is_some());
    // Listing twice took nothing: all three are still there, unchanged.
    assert_eq!(queue.dead_letter_depth().await, 3);

    refusing.store(false, Ordering::SeqCst);
    let replay = dead_letter(&["replay", "--queue", &queue.queue]).await;
    assert!(replay.status.success(), "{}", replay.output());
    assert_eq!(
        replay.stdout.trim(),
        format!(
            "replayed 3 message(s) from \"{}\" to queue \"{}\"",
            queue.dead_letter(),
            queue.queue
        )
    );
    wait_until_drained(&queue, &target, &relay, 8).await;
    relay.stop().await;

    let accepted = target.accepted_by_id();
    for message in &refused {
        assert_eq!(accepted.get(&message.id), Some(&1), "{} delivered once", message.id);
        let last = target
            .seen()
            .into_iter()
            .rfind(|s| s.message_id() == message.id)
            .unwrap();
        assert_eq!(last.body, message.body, "the replayed body is the original");
        assert!(last.accepted());
    }
    assert_eq!(queue.dead_letter_depth().await, 0);
    assert_eq!(queue.depth().await, 0);
    assert!(relay.output().contains("delivered=8 "), "{}", relay.output());
}

#[tokio::test]
async fn replay_of_one_message_id_moves_that_one_only_and_keeps_its_properties() {
    let queue = Topology::with_dead_letter().await;
    let (refused, _target, _refusing, mut relay) = three_dead_letters(&queue, 0).await;
    relay.stop().await;

    let chosen = &refused[1];
    let replay = dead_letter(&["replay", "--queue", &queue.queue, "--message-id", &chosen.id]).await;
    assert!(replay.status.success(), "{}", replay.output());
    assert!(replay.stdout.starts_with("replayed 1 message(s)"), "{}", replay.stdout);

    let back = queue.take_all().await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id(), chosen.id);
    assert_eq!(back[0].body, chosen.body);
    assert_eq!(
        back[0].routing_key, queue.queue,
        "straight to the queue, not through the exchange"
    );
    assert_eq!(back[0].header("x-relay-replays").as_deref(), Some("1"));
    assert_eq!(back[0].header("x-http-query").as_deref(), Some("type=product"));
    assert_eq!(back[0].properties["delivery_mode"], 2);
    let left: Vec<String> = queue.take_dead_letters().await.iter().map(|d| d.id()).collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&chosen.id));

    let missing = dead_letter(&["replay", "--queue", &queue.queue, "--message-id", "no-such-id"]).await;
    assert!(!missing.status.success());
    assert!(
        missing.stderr.contains("no dead letter with message id \"no-such-id\""),
        "{}",
        missing.output()
    );
}

#[tokio::test]
async fn purge_asks_for_yes_then_deletes_every_dead_letter() {
    let queue = Topology::with_dead_letter().await;
    let (_refused, _target, _refusing, mut relay) = three_dead_letters(&queue, 0).await;
    relay.stop().await;

    let unconfirmed = dead_letter(&["purge", "--queue", &queue.queue]).await;
    assert!(!unconfirmed.status.success());
    assert!(
        unconfirmed
            .stderr
            .contains("purge deletes the 3 dead letter(s) of queue"),
        "{}",
        unconfirmed.output()
    );
    assert_eq!(queue.dead_letter_depth().await, 3);
    let purged = dead_letter(&["purge", "--queue", &queue.queue, "--yes"]).await;
    assert!(purged.status.success(), "{}", purged.output());
    assert!(
        purged.stdout.starts_with("purged 3 dead letter(s)"),
        "{}",
        purged.stdout
    );
    assert_eq!(queue.dead_letter_depth().await, 0);
}

#[tokio::test]
async fn purge_without_yes_and_without_dead_letters_says_so_and_exits_zero() {
    let queue = Topology::with_dead_letter().await;

    let run = dead_letter(&["purge", "--queue", &queue.queue]).await;

    assert!(run.status.success(), "{}", run.output());
    assert_eq!(
        run.stdout,
        format!("no dead letters in \"{}.dead-letter\": nothing to purge\n", queue.queue)
    );
}

#[tokio::test]
async fn a_queue_without_a_dead_letter_queue_is_named_with_the_fix() {
    let queue = Topology::declare().await;
    let list = dead_letter(&["list", "--queue", &queue.queue]).await;
    assert!(!list.status.success());
    assert!(
        list.stderr.contains(&format!(
            "the queue \"{0}\" has no dead-letter queue (\"{0}.dead-letter\"): check --queue, or declare it with `handler setup --queue {0} --dead-letter`",
            queue.queue
        )),
        "{}",
        list.output()
    );
}
