//! Faults from a stub endpoint: retries, deadlines, overload. Nothing is
//! acknowledged to the caller that the endpoint did not confirm.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use test_support::process::Served;
use test_support::stub::{Act, ROUTED, StubBroker};

async fn app_for(stub: &StubBroker, extra: &[(&str, &str)]) -> Served {
    let settings = extra
        .iter()
        .fold(stub.settings(), |s, (name, value)| s.with(name, *value));
    Served::start(&settings).await
}

#[tokio::test]
async fn a_500_then_success_is_retried_and_answered_200() {
    let stub = StubBroker::start(
        vec![Act::Answer(500, r#"{"error":"boom"}"#), Act::Answer(429, "{}")],
        ROUTED,
    )
    .await;
    let app = app_for(&stub, &[]).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"retry me").await;

    assert_eq!(response.status(), 200);
    let received = stub.received();
    assert_eq!(received.len(), 3, "two failures, then the confirm");
    assert!(
        received.iter().all(|body| body == &received[0]),
        "every retry sends the same message and id"
    );
    assert_eq!(received[0]["payload"], "retry me");
    assert!(app.process.output().contains("retrying"), "{}", app.process.output());
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let stub = StubBroker::start(vec![Act::Drop], ROUTED).await;
    let app = app_for(&stub, &[]).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 200);
    assert_eq!(stub.received().len(), 2);
}

#[tokio::test]
async fn a_hanging_confirm_is_cut_by_the_attempt_timeout_and_retried() {
    let stub = StubBroker::start(vec![Act::Hang], ROUTED).await;
    let app = app_for(&stub, &[("PublishAttemptTimeout", "300ms")]).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 200);
    assert_eq!(stub.received().len(), 2);
    assert!(
        app.process.output().contains("no answer from the broker within 300ms"),
        "{}",
        app.process.output()
    );
}

#[tokio::test]
async fn an_endpoint_that_stays_down_gets_503_with_retry_after_never_200() {
    let stub = StubBroker::start(vec![], Act::Answer(503, "{}")).await;
    let app = app_for(&stub, &[("PublishDeadline", "1s")]).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert!(stub.received().len() >= 2, "retried within the deadline");
    assert!(
        app.process.output().contains("gave up after"),
        "{}",
        app.process.output()
    );
}

#[tokio::test]
async fn a_hanging_endpoint_gets_503_once_the_deadline_passes() {
    let stub = StubBroker::start(vec![], Act::Hang).await;
    let app = app_for(
        &stub,
        &[("PublishAttemptTimeout", "200ms"), ("PublishDeadline", "700ms")],
    )
    .await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 503);
    assert!(!stub.received().is_empty());
}

#[tokio::test]
async fn a_401_is_not_retried() {
    let stub = StubBroker::start(
        vec![],
        Act::Answer(401, r#"{"error":"not_authorized","reason":"Login failed"}"#),
    )
    .await;
    let app = app_for(&stub, &[]).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 502);
    assert_eq!(stub.received().len(), 1);
}

#[tokio::test]
async fn a_200_that_is_not_a_routed_verdict_is_not_success() {
    let stub = StubBroker::start(vec![], Act::Answer(200, r#"{"ok":true}"#)).await;
    let app = app_for(&stub, &[]).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 502);
    assert!(
        app.process.output().contains("without a routed verdict"),
        "{}",
        app.process.output()
    );
}

#[tokio::test]
async fn when_every_slot_is_busy_a_caller_gets_503_with_retry_after() {
    let stub = StubBroker::start(
        vec![Act::AnswerAfter(Duration::from_secs(3), 200, r#"{"routed":true}"#)],
        ROUTED,
    )
    .await;
    let app = app_for(&stub, &[("PublishConcurrency", "1"), ("PublishSlotWait", "100ms")]).await;

    let slow = app.forward("/api/WebhookForwarder", "text/plain", b"first");
    let rejected = async {
        // Give the first request time to take the only slot.
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.forward("/api/WebhookForwarder", "text/plain", b"second").await
    };
    let (slow, rejected) = tokio::join!(slow, rejected);

    assert_eq!(slow.status(), 200);
    assert_eq!(rejected.status(), 503);
    assert_eq!(rejected.headers()["retry-after"], "5");
    assert_eq!(
        stub.received().len(),
        1,
        "the rejected webhook never reached the endpoint"
    );
}

#[tokio::test]
async fn under_intermittent_faults_every_200_was_confirmed_by_the_endpoint() {
    let stub = StubBroker::cycling(vec![
        Act::Answer(500, "{}"),
        ROUTED,
        Act::Answer(429, "{}"),
        Act::Drop,
        ROUTED,
        Act::AnswerAfter(Duration::from_millis(50), 200, r#"{"routed":true}"#),
        Act::Answer(502, "<html>bad gateway</html>"),
    ])
    .await;
    let app = app_for(&stub, &[]).await;

    let answers = futures_util::future::join_all((0..200).map(|i| {
        let app = &app;
        async move {
            let body = format!("webhook {i}");
            let response = app
                .forward("/api/WebhookForwarder", "text/plain", body.as_bytes())
                .await;
            let status = response.status().as_u16();
            let answer: serde_json::Value = response.json().await.unwrap();
            (status, answer["message_id"].as_str().unwrap().to_owned())
        }
    }))
    .await;

    let confirmed: HashSet<String> = stub
        .confirmed()
        .iter()
        .map(|b| b["properties"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "every webhook got through the faults"
    );
    for (_, message_id) in &answers {
        assert!(
            confirmed.contains(message_id),
            "200 for {message_id}, which the endpoint never confirmed"
        );
    }
    assert!(stub.received().len() > 200, "faults were retried");
}

#[tokio::test]
async fn a_hanging_endpoint_never_holds_a_caller_past_the_deadline() {
    let stub = StubBroker::start(vec![], Act::Hang).await;
    let app = app_for(&stub, &[("PublishAttemptTimeout", "400ms"), ("PublishDeadline", "1s")]).await;

    let started = Instant::now();
    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;
    let waited = started.elapsed();

    assert_eq!(response.status(), 503);
    // A bound, not a speed test: the margin covers a loaded machine.
    assert!(
        waited < Duration::from_secs(6),
        "held for {waited:?} with a 1 s deadline"
    );
}
