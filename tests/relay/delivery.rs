//! What reaches the target: every message, once, byte for byte, as the
//! original request.

use std::collections::HashMap;
use std::time::Duration;

use test_support::broker::{TestMessage, Topology};
use test_support::process::{Handler, Served, run_to_end};
use test_support::target::{Seen, TestTarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_queued_messages_all_arrive_once_byte_for_byte_within_the_limits() {
    const COUNT: usize = 10_000;
    const CONCURRENCY: usize = 16;
    const RATE: usize = 5_000;
    let queue = Topology::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "bulk");
    queue.publish(&messages).await;
    let target = TestTarget::accepting().await;

    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--concurrency", &CONCURRENCY.to_string(), "--rate", &RATE.to_string()],
    );
    target
        .wait_until(Duration::from_secs(180), "10,000 deliveries", |seen| {
            seen.len() >= COUNT
        })
        .await;
    relay.stop().await;

    let seen = target.seen();
    assert_eq!(seen.len(), COUNT, "some message was delivered twice");
    let by_id: HashMap<&str, &Seen> = seen.iter().map(|s| (s.message_id(), s)).collect();
    for message in &messages {
        let request = by_id.get(message.id.as_str()).expect("every message arrives");
        assert_eq!(request.body, message.body, "body of {}", message.id);
        assert_eq!(request.attempt(), 1);
    }
    assert!(
        target.max_in_flight() <= CONCURRENCY,
        "{} in flight",
        target.max_in_flight()
    );
    crate::pace::assert_rate_respected(&seen, RATE);
    assert_eq!(queue.depth().await, 0);
    let output = relay.output();
    assert!(
        output.contains("stopped: delivered=10000 retried=0 dead-lettered=0 returned=0"),
        "{output}"
    );
}

#[tokio::test]
async fn method_query_content_type_and_body_reach_the_target_as_queued() {
    let queue = Topology::with_dead_letter().await;
    let long_content_type = format!("text/plain; charset=utf-8; x={}", "y".repeat(300));
    let messages = vec![
        TestMessage {
            query: "type=product&id=1".to_owned(),
            ..TestMessage::post("old=101&new=101")
        },
        TestMessage {
            method: "GET".to_owned(),
            query: "type=order".to_owned(),
            content_type: None,
            ..TestMessage::post("")
        },
        TestMessage {
            method: "PUT".to_owned(),
            query: String::new(),
            content_type: Some("application/octet-stream".to_owned()),
            ..TestMessage::post((0..=255u8).collect::<Vec<_>>())
        },
        TestMessage {
            content_type: Some(long_content_type.clone()),
            ..TestMessage::post("long content type")
        },
        TestMessage {
            query: "name=a%20b+c&x=%26y&empty=".to_owned(),
            ..TestMessage::post("a\0\"b\\")
        },
    ];
    queue.publish(&messages).await;
    let target = TestTarget::accepting().await;

    let mut relay = Handler::relay(&queue, &target.url("/hook.php?token=abc"), &[]);
    target
        .wait_until(Duration::from_secs(30), "5 deliveries", |seen| seen.len() >= 5)
        .await;
    relay.stop().await;

    let seen = target.seen();
    let request = |i: usize| -> &Seen { seen.iter().find(|s| s.message_id() == messages[i].id).unwrap() };
    let expected = [
        (
            "POST",
            "/hook.php?token=abc&type=product&id=1",
            Some("application/x-www-form-urlencoded"),
        ),
        ("GET", "/hook.php?token=abc&type=order", None),
        ("PUT", "/hook.php?token=abc", Some("application/octet-stream")),
        (
            "POST",
            "/hook.php?token=abc&type=product",
            Some(long_content_type.as_str()),
        ),
        (
            "POST",
            "/hook.php?token=abc&name=a%20b+c&x=%26y&empty=",
            Some("application/x-www-form-urlencoded"),
        ),
    ];
    for (i, (method, path_and_query, content_type)) in expected.into_iter().enumerate() {
        let request = request(i);
        assert_eq!(request.method.as_str(), method, "message {i}");
        assert_eq!(request.path_and_query, path_and_query, "message {i}");
        assert_eq!(request.header("content-type"), content_type, "message {i}");
        assert_eq!(request.body, messages[i].body, "message {i}");
        assert_eq!(request.header("x-webhook-attempt"), Some("1"), "message {i}");
    }
    assert_eq!(seen.len(), 5);
}

/// The whole pipeline, each part the real binary: `handler setup
/// --dead-letter` declares the topology, `handler` forwards webhooks onto it,
/// `handler relay` delivers them, and dead-letters into setup's queue.
#[tokio::test]
async fn webhooks_go_from_the_forwarder_through_the_queue_to_the_target_or_the_dead_letter_queue() {
    let queue = Topology::names();
    let settings = queue.amqp_url_settings();
    let setup = run_to_end(&["setup", "--queue", &queue.queue, "--dead-letter"], &settings, "").await;
    assert!(setup.status.success(), "{}", setup.output());
    let forwarder = Served::start(&settings).await;
    let form = "application/x-www-form-urlencoded";
    for (query, body) in [
        ("type=product&code=fnKEY-secret&id=7", "old=101&new=102&name=Caf%C3%A9"),
        ("type=product&code=fnKEY-secret&id=8", "doomed=1"),
    ] {
        let answer = forwarder
            .request(reqwest::Method::POST, &format!("/api/WebhookForwarder?{query}"))
            .header("content-type", form)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", forwarder.process.output());
    }
    let target = TestTarget::start(|seen| {
        let status = if seen.body.starts_with(b"doomed") { 422 } else { 200 };
        (Duration::ZERO, status)
    })
    .await;

    // Debug logs: a successful run prints no password either.
    let to = target.url("/webhook.php");
    let mut relay = Handler::spawn(
        &[
            "relay",
            "--queue",
            &queue.queue,
            "--to",
            &to,
            "--max-attempts",
            "2",
            "--retry-delay",
            "20ms",
        ],
        &settings,
        "debug",
    );
    relay.wait_for_output("dead-lettered=1", Duration::from_secs(30)).await;
    relay.stop().await;

    let seen = target.seen();
    let delivered: Vec<_> = seen.iter().filter(|s| s.accepted()).collect();
    assert_eq!(delivered.len(), 1);
    let request = delivered[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path_and_query, "/webhook.php?type=product&id=7");
    assert_eq!(request.header("content-type"), Some(form));
    assert_eq!(request.body, "old=101&new=102&name=Caf%C3%A9".as_bytes());
    assert!(!request.message_id().is_empty());
    let dead = queue.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, b"doomed=1");
    assert_eq!(dead[0].header("x-http-query").as_deref(), Some("type=product&id=8"));
    assert_eq!(
        dead[0].header("x-relay-failure").as_deref(),
        Some("the target answered HTTP 422 Unprocessable Entity")
    );
    assert_eq!(queue.depth().await, 0);
    let output = relay.output();
    let shown = settings.get("AmqpUrl").unwrap().replace("guest:guest", "guest:***");
    assert!(output.contains(&shown), "{shown} in:\n{output}");
    assert!(!output.contains("guest:guest"), "{output}");
}
