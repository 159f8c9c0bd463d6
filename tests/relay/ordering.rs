//! `--order-by`: the webhooks of one key reach the target one after another,
//! in queue order, whatever the latency, the refusals and the circuit do;
//! different keys go in parallel; a renumbering waits behind both numbers.
//! Without it, at `--concurrency 1`, the queue's order, also across SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use test_support::broker::{TestMessage, Topology};
use test_support::metrics::{Metrics, metrics_url};
use test_support::ordering::{self, TEMPLATE};
use test_support::process::Handler;
use test_support::target::{Answer, Release, TestTarget, assert_each_accepted_once, wait_until_drained};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_keeps_its_order_under_random_latency_and_refusals() {
    const KEYS: usize = 30;
    const PER_KEY: usize = 20;
    let queue = Topology::with_dead_letter().await;
    let messages = ordering::interleaved(KEYS, PER_KEY);
    queue.publish(&messages).await;
    // 0-20 ms per answer; about one first attempt in seven refused with a
    // 500 (the others get through, so it is that message's failure: retried).
    let target = TestTarget::flaky(Duration::from_millis(20), 7, 500).await;
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--order-by", TEMPLATE, "--concurrency", "16", "--retry-delay", "20ms"],
    );
    wait_until_drained(&queue, &target, &relay, messages.len()).await;
    relay.stop().await;

    let seen = target.seen();
    assert!(seen.iter().any(|s| s.status == 500), "no refusal happened");
    assert_each_accepted_once(&messages, &target);
    ordering::assert_each_key_waited_for_the_one_before(&seen);
    assert!(target.max_in_flight() > 1, "different keys were not sent in parallel");
    assert!(relay.output().contains(" dead-lettered=0 "), "{}", relay.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_keeps_its_order_while_the_circuit_opens_and_closes() {
    const KEYS: usize = 10;
    const PER_KEY: usize = 10;
    let queue = Topology::with_dead_letter().await;
    let messages = ordering::interleaved(KEYS, PER_KEY);
    queue.publish(&messages).await;
    // Up for the first messages of each key; down (503) from the first
    // request of a third message on, until the test brings it back.
    let (went_down, down) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let target = TestTarget::answering({
        let down = down.clone();
        move |seen| {
            if ordering::key_and_seq(seen).1 == 2 && !went_down.swap(true, Ordering::SeqCst) {
                down.store(true, Ordering::SeqCst);
            }
            Answer {
                delay: Duration::from_millis(fastrand::u64(0..10)),
                status: if down.load(Ordering::SeqCst) { 503 } else { 200 },
                ..Answer::default()
            }
        }
    })
    .await;
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &[
            "--order-by",
            TEMPLATE,
            "--concurrency",
            "8",
            "--retry-delay",
            "100ms",
            "--max-retry-delay",
            "300ms",
        ],
    );
    relay
        .wait_for_output("the target seems down: pausing deliveries", Duration::from_secs(60))
        .await;
    // Let it probe a few times, then bring the target back.
    target
        .wait_until(Duration::from_secs(60), "some probes", |seen| {
            seen.iter().filter(|s| s.status == 503).count() >= 4
        })
        .await;
    down.store(false, Ordering::SeqCst);
    wait_until_drained(&queue, &target, &relay, messages.len()).await;
    relay.stop().await;

    let seen = target.seen();
    assert_each_accepted_once(&messages, &target);
    ordering::assert_each_key_waited_for_the_one_before(&seen);
    let output = relay.output();
    assert!(
        output.contains("the target answered the probe: resuming deliveries"),
        "{output}"
    );
    assert!(output.contains(" dead-lettered=0 "), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renumbering_waits_behind_both_numbers_and_holds_both_back() {
    let queue = Topology::with_dead_letter().await;
    let webhook = |body: &str| TestMessage::post(body);
    // Product 101 is updated, renumbered to 102, a new 101 is created,
    // 102 is updated; product 7 has nothing to do with them.
    let messages = [
        webhook("old=101&new=101"),
        webhook("old=101&new=102"),
        webhook("old=101&new=101"),
        webhook("old=102&new=102"),
        webhook("old=7&new=7"),
    ];
    queue.publish(&messages).await;
    // The first update of 101 is refused until product 7 got through: proof
    // that 7 did not wait, while everything touching 101 or 102 did.
    let seven_done = Arc::new(AtomicBool::new(false));
    let first = messages[0].id.clone();
    let target = TestTarget::answering({
        let seven_done = seven_done.clone();
        move |seen| {
            if seen.body.as_ref() == b"old=7&new=7" {
                seven_done.store(true, Ordering::SeqCst);
            }
            let refused = seen.message_id() == first && !seven_done.load(Ordering::SeqCst);
            Answer::status(if refused { 422 } else { 200 })
        }
    })
    .await;
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &[
            "--order-by",
            "{query.type}:{form.old}",
            "--order-by",
            "{query.type}:{form.new}",
            "--retry-delay",
            "20ms",
            "--max-retry-delay",
            "100ms",
            "--max-attempts",
            "1000",
        ],
    );
    wait_until_drained(&queue, &target, &relay, messages.len()).await;
    relay.stop().await;

    let seen = target.seen();
    let accepted = |i: usize| {
        seen.iter()
            .find(|s| s.message_id() == messages[i].id && s.accepted())
            .unwrap_or_else(|| panic!("message {i} was not accepted"))
    };
    let first_request = |i: usize| {
        seen.iter()
            .filter(|s| s.message_id() == messages[i].id)
            .map(|s| s.arrived)
            .min()
            .unwrap()
    };
    assert!(accepted(4).arrived < accepted(0).answered, "product 7 waited");
    assert!(first_request(1) >= accepted(0).answered, "the renumbering went early");
    assert!(
        first_request(2) >= accepted(1).answered,
        "the new 101 went before the renumbering"
    );
    assert!(
        first_request(3) >= accepted(1).answered,
        "102 went before the renumbering"
    );
    assert_each_accepted_once(&messages, &target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_behind_a_busy_key_stay_within_the_prefetch() {
    const COUNT: usize = 40;
    const PREFETCH: f64 = 8.0;
    let queue = Topology::with_dead_letter().await;
    // One key for all: they can only go one at a time.
    let messages = ordering::interleaved(1, COUNT);
    queue.publish(&messages).await;
    let target = TestTarget::start(|_| (Duration::from_millis(20), 200)).await;
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &[
            "--order-by",
            TEMPLATE,
            "--concurrency",
            "4",
            "--prefetch",
            "8",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    relay
        .wait_for_output("serving metrics on http://", Duration::from_secs(30))
        .await;
    let url = metrics_url(&relay.output()).unwrap();
    let (mut most_held, mut most_behind) = (0.0_f64, 0.0_f64);
    while target.accepted_count() < COUNT {
        let metrics = Metrics::scrape(&url).await;
        let held = metrics.gauge("relay_held", &[]);
        let behind = metrics.gauge("relay_waiting_behind_keys", &[]);
        // A message counts as held until its ack goes out; the broker may
        // deliver the next before the acked one has left its key, so all
        // the prefetch may wait behind it for that moment.
        assert!(held <= PREFETCH, "{held} held with --prefetch 8");
        assert!(behind <= held, "{behind} behind their key but {held} held");
        most_held = most_held.max(held);
        most_behind = most_behind.max(behind);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_until_drained(&queue, &target, &relay, COUNT).await;
    let last = Metrics::scrape(&url).await;
    relay.stop().await;

    assert!(most_behind >= 1.0, "nothing was ever seen waiting behind its key");
    assert!(most_held >= 2.0, "the relay never held more than one");
    assert_eq!(last.gauge("relay_waiting_behind_keys", &[]), 0.0);
    assert_eq!(target.max_in_flight(), 1, "one key, one request at a time");
    ordering::assert_each_key_waited_for_the_one_before(&target.seen());
    assert_each_accepted_once(&messages, &target);
}

#[tokio::test]
async fn a_bad_order_by_template_stops_the_relay_at_start_naming_the_option_and_the_fault() {
    let queue = Topology::with_dead_letter().await;
    let mut relay = Handler::relay(
        &queue,
        "http://127.0.0.1:9/",
        &["--order-by", "{query.type}", "--order-by", "{query.type}:{form.old"],
    );
    let status = relay.wait_for_exit(Duration::from_secs(60)).await;
    assert!(!status.success());
    let output = relay.output();
    assert!(
        output.contains(
            "stderr: error: --order-by \"{query.type}:{form.old\": at column 14: this placeholder is not closed: add a }"
        ),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_each_keys_messages_back_in_order_on_a_quorum_queue() {
    const KEYS: usize = 3;
    const PER_KEY: usize = 10;
    // A quorum queue puts messages nacked one by one back in the order of
    // the nacks: what the relay returns must come back in queue order.
    let queue = Topology::declare_with_queue_arguments(serde_json::json!({ "x-queue-type": "quorum" })).await;
    let messages = ordering::interleaved(KEYS, PER_KEY);
    queue.publish(&messages).await;
    // The first of each key stays under way until SIGTERM came.
    let release = Release::default();
    let target = TestTarget::answering({
        let release = release.clone();
        move |seen| {
            let answer = Answer::status(200);
            if ordering::key_and_seq(seen).1 == 0 {
                answer.held_by(&release)
            } else {
                answer
            }
        }
    })
    .await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--order-by", TEMPLATE]);
    relay.wait_for_output(" behind-keys=27 ", Duration::from_secs(30)).await;
    stop_while_under_way(&mut relay, &release).await;

    assert_eq!(target.accepted_count(), KEYS, "the first of each key was delivered");
    let back = queue.take_all().await;
    assert_eq!(back.len(), KEYS * (PER_KEY - 1), "the rest was handed back");
    let mut seqs: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for message in &back {
        let body = String::from_utf8_lossy(&message.body).into_owned();
        let field = |name: &str| {
            body.split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .unwrap()
                .to_owned()
        };
        seqs.entry(field("id")).or_default().push(field("seq").parse().unwrap());
    }
    for (key, order) in seqs {
        assert_eq!(order, (1..PER_KEY).collect::<Vec<_>>(), "{key} came back out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_order_by_at_concurrency_1_webhooks_reach_the_target_in_the_queues_order() {
    const COUNT: usize = 500;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "in-order");
    queue.publish(&messages).await;
    let target = TestTarget::accepting().await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "1"]);
    target
        .wait_until(Duration::from_secs(120), "500 deliveries", |seen| seen.len() >= COUNT)
        .await;
    relay.stop().await;

    let sent: Vec<String> = target.seen().iter().map(|s| s.message_id().to_owned()).collect();
    let queued: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    let first_out_of_order = sent.iter().zip(&queued).position(|(s, q)| s != q);
    assert_eq!(first_out_of_order, None, "sent in another order than queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_order_by_at_concurrency_1_sigterm_hands_webhooks_back_in_the_queues_order_on_a_quorum_queue() {
    const COUNT: usize = 12;
    let queue = Topology::declare_with_queue_arguments(serde_json::json!({ "x-queue-type": "quorum" })).await;
    let messages = TestMessage::many(COUNT, "in-order");
    queue.publish(&messages).await;
    // The first stays under way until SIGTERM came; the prefetch (4) waits.
    let release = Release::default();
    let target = TestTarget::holding_back(&messages[0].id, &release).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "1"]);
    relay.wait_for_output(" held=4 ", Duration::from_secs(30)).await;
    stop_while_under_way(&mut relay, &release).await;

    assert_eq!(target.accepted_count(), 1, "the first was delivered");
    let back: Vec<String> = queue.take_all().await.iter().map(|m| m.id()).collect();
    let queued: Vec<String> = messages[1..].iter().map(|m| m.id.clone()).collect();
    assert_eq!(back, queued, "handed back out of order");
}

/// SIGTERM while requests are held under way at the target, then lets them
/// finish: the relay must exit 0.
async fn stop_while_under_way(relay: &mut Handler, release: &Release) {
    relay.terminate();
    relay
        .wait_for_output("stopping: no new deliveries", Duration::from_secs(30))
        .await;
    release.open();
    let status = relay.wait_for_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", relay.output());
}
