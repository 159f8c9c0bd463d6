//! `PublishTransport=amqp` against the real broker, publish by publish: the
//! same message as the HTTP transport, a 2xx only after the broker's ack,
//! unrouted, refused and unconfirmed messages never answered 2xx, each with
//! the same failure as over HTTP. The connection's life is in
//! [`crate::amqp_connection`].

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use test_support::broker::{Topology, api_send};
use test_support::host::{Burst, caller_response, host_envelope};
use test_support::network::LateBroker;
use test_support::process::Served;

/// `properties` without `timestamp`, which is the publishing second.
fn without_timestamp(properties: &Value) -> Value {
    let mut properties = properties.clone();
    properties.as_object_mut().unwrap().remove("timestamp");
    properties
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The "not queued" reason the handler logged, without the message id.
fn not_queued_reason(output: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.contains("not queued"))
        .unwrap_or_else(|| panic!("no \"not queued\" line in:\n{output}"));
    let reason = line.split_once("error=").map_or(line, |(_, rest)| rest);
    reason.split(" message_id=").next().unwrap_or(reason).to_owned()
}

#[tokio::test]
async fn both_transports_queue_the_same_message() {
    let topology = Topology::declare().await;
    let over_http = Served::start(&topology.settings()).await;
    let over_amqp = Served::start(&topology.amqp_transport_settings()).await;
    let long_type = format!("text/plain; profile={}", "x".repeat(300));
    let webhooks = [
        (Some("application/x-www-form-urlencoded"), b"old=101&new=102".to_vec()),
        (Some("application/octet-stream"), (0..=255u8).rev().collect()),
        (
            Some(long_type.as_str()),
            "øre=1&navn=Smørrebrød\0\"".as_bytes().to_vec(),
        ),
        (None, Vec::new()),
    ];

    for (i, (content_type, body)) in webhooks.iter().enumerate() {
        let invocation_id = format!("inv-same-{i}-{}", uuid::Uuid::new_v4().simple());
        let envelope = host_envelope("POST", "type=product&code=k", *content_type, body);
        let mut queued = Vec::new();
        for app in [&over_http, &over_amqp] {
            let (status, _, _) = caller_response(app.invoke(&invocation_id, &envelope).await).await;
            assert_eq!(status, 200, "{content_type:?}");
            queued.extend(topology.take(1).await);
        }

        let [http, amqp] = queued.as_slice() else {
            panic!("expected one message per transport, got {queued:?}")
        };
        assert_eq!(http.body, *body, "{content_type:?}");
        assert_eq!(amqp.body, http.body, "{content_type:?}: the body byte for byte");
        assert_eq!(amqp.routing_key, http.routing_key);
        assert_eq!(
            without_timestamp(&amqp.properties),
            without_timestamp(&http.properties),
            "{content_type:?}: the same properties and headers"
        );
        assert_eq!(amqp.properties["delivery_mode"], 2);
        assert_eq!(amqp.properties["message_id"], invocation_id.as_str());
        assert_eq!(amqp.properties["app_id"], "e-conomic-webhook-forwarder");
        for message in [http, amqp] {
            let timestamp = message.properties["timestamp"].as_u64().unwrap();
            assert!(
                timestamp.abs_diff(unix_now()) < 300,
                "timestamp {timestamp} is not about now"
            );
        }
    }
    assert!(
        topology.take_all().await.is_empty(),
        "each webhook was queued once per transport"
    );
}

#[tokio::test]
async fn an_unroutable_webhook_is_502_with_the_same_log_line_as_routed_false() {
    let topology = Topology::unbound().await;
    let over_http = Served::start(&topology.settings()).await;
    let over_amqp = Served::start(&topology.amqp_transport_settings()).await;

    let mut reasons = Vec::new();
    for app in [&over_http, &over_amqp] {
        let response = app.forward("/api/WebhookForwarder", "text/plain", b"dropped").await;
        assert_eq!(response.status(), 502);
        assert!(!response.headers().contains_key("retry-after"));
        reasons.push(not_queued_reason(&app.process.output()));
    }

    assert_eq!(reasons[0], reasons[1], "the same failure, whichever transport");
    assert!(
        reasons[1].contains(&format!(
            "the broker DROPPED the message: no queue is bound to exchange \"{}\"",
            topology.exchange
        )),
        "{}",
        reasons[1]
    );
}

#[tokio::test]
async fn a_missing_exchange_is_retried_until_the_deadline_then_503_on_the_same_connection() {
    // Retried because a restarting broker does not know its exchanges for a
    // moment; the broker closes the channel each time, never the connection.
    let topology = Topology::names();
    let settings = topology
        .amqp_transport_settings()
        .with("PublishDeadline", "1500ms")
        .with("PublishAttemptTimeout", "500ms");
    let app = Served::start(&settings).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let output = app.process.output();
    assert!(
        output.contains(&format!("does not know exchange \"{}\"", topology.exchange)),
        "{output}"
    );
    assert!(output.contains("NOT_FOUND - no exchange"), "{output}");
    assert_eq!(
        output.matches("connected to amqp://").count(),
        1,
        "reconnected:\n{output}"
    );
    assert!(!output.contains("lost the connection"), "{output}");
}

#[tokio::test]
async fn a_confirm_that_does_not_come_is_cut_by_the_attempt_timeout_never_answered_2xx() {
    let topology = Topology::declare().await;
    let mut broker = LateBroker::reserve();
    broker.open().await;
    let settings = topology
        .amqp_transport_settings()
        .with("AmqpUrl", broker.amqp_url())
        .with("PublishAttemptTimeout", "300ms")
        .with("PublishDeadline", "1500ms");
    let app = Served::start(&settings).await;
    app.process
        .wait_for_output("connected to amqp://", Duration::from_secs(10))
        .await;

    // The network stops delivering: the publish leaves, its confirm never comes.
    broker.stall();
    let stalled = app.forward("/api/WebhookForwarder", "text/plain", b"unconfirmed").await;
    broker.resume();
    let after = app.forward("/api/WebhookForwarder", "text/plain", b"confirmed").await;

    assert_eq!(stalled.status(), 503);
    assert_eq!(stalled.headers()["retry-after"], "5");
    assert!(
        app.process.output().contains("no answer from the broker within 300ms"),
        "{}",
        app.process.output()
    );
    assert_eq!(after.status(), 200, "the same connection carries on");
    // The unconfirmed publishes may have reached the queue once the network
    // delivered them: duplicates of a webhook the sender will retry, never a loss.
    let queued = topology.take_all().await;
    assert!(queued.iter().any(|m| m.body == b"confirmed"), "{queued:?}");
    assert!(
        queued
            .iter()
            .all(|m| m.body == b"confirmed" || m.body == b"unconfirmed")
    );
}

#[tokio::test]
async fn a_2xx_comes_after_the_broker_took_the_message_and_a_nack_is_503_over_either_transport() {
    // A queue that holds one message and refuses more: the broker acks the
    // first publish and nacks the second. Over HTTP the endpoint answers
    // that nack 400 "Unable to publish message. Check queue limits.". A
    // full queue may drain, so either transport retries within the
    // deadline, then answers 503 + Retry-After.
    for transport in ["http", "amqp"] {
        let topology = Topology::declare_with_queue_arguments(json!({
            "x-max-length": 1,
            "x-overflow": "reject-publish"
        }))
        .await;
        let settings = match transport {
            "http" => topology.settings(),
            _ => topology.amqp_transport_settings(),
        };
        let settings = settings
            .with("PublishDeadline", "1500ms")
            .with("PublishAttemptTimeout", "500ms");
        let app = Served::start(&settings).await;

        let first = app.forward("/api/WebhookForwarder", "text/plain", b"fits").await;
        assert_eq!(first.status(), 200, "{transport}");
        // On the queue already when the 200 arrives: no wait.
        assert_eq!(topology.depth().await, 1, "{transport}");

        let second = app.forward("/api/WebhookForwarder", "text/plain", b"refused").await;
        assert_eq!(second.status(), 503, "{transport}");
        assert_eq!(second.headers()["retry-after"], "5", "{transport}");
        let taken = topology.take_all().await;
        assert_eq!(taken.len(), 1, "{transport}");
        assert_eq!(taken[0].body, b"fits", "{transport}");
        let output = app.process.output();
        assert!(
            output.contains("refused to take the message (basic.nack)"),
            "{transport}: {output}"
        );
        assert!(output.contains("retrying"), "{transport}: {output}");
    }
}

#[tokio::test]
async fn a_binding_that_comes_and_goes_mid_burst_never_gets_a_dropped_webhook_a_2xx() {
    // Routed and returned publishes interleave while the binding is removed
    // and added again and again, and the broker acknowledges several
    // publishes at once: each webhook must still get its own verdict.
    const TOTAL: usize = 6_000;
    let topology = Topology::declare().await;
    let app = Served::start(&topology.amqp_transport_settings()).await;
    let burst = Burst::start(&app, TOTAL, 64, "text/plain", |i| format!("n={i}"));
    let binding = format!("bindings/%2F/e/{}/q/{}", topology.exchange, topology.queue);
    let mut flips = 0;
    while burst.started() < TOTAL {
        let status = if flips % 2 == 0 {
            api_send(Method::DELETE, &format!("{binding}/webhook"), None).await
        } else {
            api_send(Method::POST, &binding, Some(&json!({ "routing_key": "webhook" }))).await
        };
        assert!((200..300).contains(&status), "{status}");
        flips += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = burst.finish().await;

    let queued: HashSet<Vec<u8>> = topology.drain().await.into_iter().map(|m| m.body).collect();
    let ok: Vec<&String> = answers.iter().filter(|a| a.status == 200).map(|a| &a.body).collect();
    let dropped = answers.iter().filter(|a| a.status == 502).count();
    let lost: Vec<&&String> = ok.iter().filter(|b| !queued.contains(b.as_bytes())).collect();
    println!("{flips} flips: {} answered 200, {dropped} 502", ok.len());
    assert!(lost.is_empty(), "answered 200 but dropped by the broker: {lost:?}");
    assert!(
        flips >= 4 && !ok.is_empty() && dropped > 0,
        "{flips} flips: {} answered 200, {dropped} 502",
        ok.len()
    );
    assert_eq!(ok.len() + dropped, TOTAL, "every answer is 200 or 502");
}
