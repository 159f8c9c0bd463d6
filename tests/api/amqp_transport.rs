//! `PublishTransport=amqp` against the real broker: the same message as the
//! HTTP transport, a 2xx only after the broker's ack, unroutable and refused
//! messages answered 5xx, one connection however busy, a broker that is not
//! there yet at start-up, and no secret anywhere.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use test_support::AppSettings;
use test_support::assert_no_secret;
use test_support::broker::{Topology, api_send, channels_of, connections_named};
use test_support::host::{Burst, caller_response, host_envelope};
use test_support::network::LateBroker;
use test_support::process::Served;

const PASSWORD: &str = "Wr0ng-amqp-Pa55word";

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
async fn a_network_that_goes_silent_is_noticed_by_heartbeats_and_the_handler_reconnects() {
    let topology = Topology::declare().await;
    let mut broker = LateBroker::reserve();
    broker.open().await;
    // A heartbeat of 2 s: the client gives up on a silent broker after 4 s.
    let settings = topology
        .amqp_transport_settings()
        .with("AmqpUrl", format!("{}?heartbeat=2", broker.amqp_url()));
    let app = Served::start(&settings).await;
    app.process
        .wait_for_output("heartbeat_s=2", Duration::from_secs(10))
        .await;

    broker.stall();
    app.process
        .wait_for_output("lost the connection", Duration::from_secs(20))
        .await;
    broker.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.process.output().matches("connected to amqp://").count() < 2 {
        assert!(Instant::now() < deadline, "no reconnection:\n{}", app.process.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = app
        .forward("/api/WebhookForwarder", "text/plain", b"after the silence")
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"after the silence");
    let output = app.process.output();
    let lost = output.lines().find(|l| l.contains("lost the connection")).unwrap();
    assert!(lost.contains("heartbeat"), "{lost}");
}

#[tokio::test]
async fn a_2xx_comes_after_the_broker_took_the_message_and_a_nack_is_503() {
    // A queue that holds one message and refuses more: the broker acks the
    // first publish and nacks the second.
    let topology = Topology::declare_with_queue_arguments(json!({
        "x-max-length": 1,
        "x-overflow": "reject-publish"
    }))
    .await;
    let settings = topology
        .amqp_transport_settings()
        .with("PublishDeadline", "1500ms")
        .with("PublishAttemptTimeout", "500ms");
    let app = Served::start(&settings).await;

    let first = app.forward("/api/WebhookForwarder", "text/plain", b"fits").await;
    assert_eq!(first.status(), 200);
    // On the queue already when the 200 arrives: no wait.
    assert_eq!(topology.depth().await, 1);

    let second = app.forward("/api/WebhookForwarder", "text/plain", b"refused").await;
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "5");
    let taken = topology.take_all().await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].body, b"fits");
    let output = app.process.output();
    assert!(output.contains("refused to take the message (basic.nack)"), "{output}");
}

#[tokio::test]
async fn one_connection_carries_every_webhook_in_flight() {
    const IN_FLIGHT: usize = 64;
    let topology = Topology::declare().await;
    let site = format!("test-site-{}", uuid::Uuid::new_v4().simple());
    let settings = topology
        .amqp_transport_settings()
        .with("WEBSITE_SITE_NAME", site.as_str())
        .with("WEBSITE_INSTANCE_ID", "instance-0a1b2c");
    let app = Served::start(&settings).await;
    let name = format!("webhook-forwarder: {site} instance instance-0a1b2c");
    // 64 senders keep 64 webhooks in flight until the connection list has
    // been read several times (the broker refreshes it every few seconds).
    let burst = Burst::start(&app, usize::MAX, IN_FLIGHT, "text/plain", |i| format!("n={i}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let listed = connections_named(&name).await;
        if !listed.is_empty() {
            let channels = channels_of(&listed[0]).await;
            seen.push((listed.len(), channels));
        }
        assert!(Instant::now() < deadline, "no connection named {name:?} within 60 s");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    burst.stop();
    let statuses: Vec<u16> = burst.finish().await.iter().map(|sent| sent.status).collect();

    assert!(seen.iter().all(|(connections, _)| *connections == 1), "{seen:?}");
    assert!(
        seen.iter().all(|(_, channels)| *channels as usize <= IN_FLIGHT),
        "at most one channel per publish in flight: {seen:?}"
    );
    assert!(statuses.len() > IN_FLIGHT * 5, "only {} webhooks sent", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(topology.drain().await.len(), statuses.len());
}

#[tokio::test]
async fn a_broker_unreachable_at_start_gets_503_then_queues_once_it_is_there() {
    let topology = Topology::declare().await;
    let mut broker = LateBroker::reserve();
    let settings = topology
        .amqp_transport_settings()
        .with("AmqpUrl", broker.amqp_url())
        .with("PublishDeadline", "2s")
        .with("PublishAttemptTimeout", "1s");
    // `start` returns once GET / answered, as the host waits for it.
    let mut app = Served::start(&settings).await;

    let early = app.forward("/api/WebhookForwarder", "text/plain", b"too early").await;
    assert_eq!(early.status(), 503);
    assert_eq!(early.headers()["retry-after"], "5");
    assert!(app.process.is_running());
    app.process
        .wait_for_output("could not connect to the broker; trying again", Duration::from_secs(10))
        .await;

    broker.open().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.forward("/api/WebhookForwarder", "text/plain", b"in time").await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "still not queued 30 s after the broker came");
    }
    let queued = topology.take_all().await;
    assert!(
        !queued.is_empty() && queued.iter().all(|m| m.body == b"in time"),
        "{queued:?}"
    );
    assert!(
        app.process
            .output()
            .contains("connected to amqp://guest:***@127.0.0.1:")
    );
}

#[tokio::test]
async fn when_every_slot_is_busy_over_amqp_a_caller_gets_503_with_retry_after() {
    // The broker comes only after a while: the first webhook holds the one
    // publish slot waiting for it, and the second finds no slot.
    let topology = Topology::declare().await;
    let mut broker = LateBroker::reserve();
    let settings = topology
        .amqp_transport_settings()
        .with("AmqpUrl", broker.amqp_url())
        .with("PublishConcurrency", "1")
        .with("PublishSlotWait", "100ms");
    let app = Served::start(&settings).await;

    let waiting = app.forward("/api/WebhookForwarder", "text/plain", b"first");
    let rejected = async {
        // Give the first webhook time to take the only slot.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rejected = app.forward("/api/WebhookForwarder", "text/plain", b"second").await;
        broker.open().await;
        rejected
    };
    let (waiting, rejected) = tokio::join!(waiting, rejected);

    assert_eq!(rejected.status(), 503);
    assert_eq!(rejected.headers()["retry-after"], "5");
    assert_eq!(waiting.status(), 200, "the first waited for the broker");
    let queued = topology.take_all().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].body, b"first");
    assert!(app.process.output().contains("all 1 publish slots stayed busy"));
}

#[tokio::test]
async fn a_wrong_password_is_502_keeps_the_handler_running_and_prints_no_secret() {
    let topology = Topology::declare().await;
    let settings = topology
        .amqp_transport_settings()
        .with("AmqpUrl", format!("amqp://guest:{PASSWORD}@127.0.0.1/"));
    // Every log the AMQP client can write, frames included: none may carry it.
    let mut app = Served::start_logging(&settings, "trace").await;
    app.process
        .wait_for_output("refused the credentials", Duration::from_secs(20))
        .await;

    let started = Instant::now();
    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;
    let status = response.status();
    let body = response.text().await.unwrap();
    let envelope = host_envelope("POST", "", Some("text/plain"), b"y");
    let answer = app.invoke("inv-wrong-password", &envelope).await.text().await.unwrap();

    assert_eq!(status, 502, "no wait can fix a refused password");
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once");
    // It keeps trying in the background instead of exiting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(app.process.is_running());
    let output = app.process.output();
    assert!(
        output.contains("refused the credentials of user \"guest\" over AMQP (ACCESS_REFUSED)"),
        "{output}"
    );
    for text in [&output, &body, &answer] {
        assert_no_secret(text, &[PASSWORD]);
    }
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn amqp_without_amqp_url_exits_naming_the_setting() {
    let settings = AppSettings::new()
        .with("PublishTransport", "amqp")
        .with("AmqpExchange", "e-conomic.direct");

    let Err((status, output)) = Served::start_with_args(&[], &settings).await else {
        panic!("started without AmqpUrl")
    };

    assert!(!status.success());
    assert!(
        output.contains("stderr: error: setting AmqpUrl is missing: PublishTransport=amqp"),
        "{output}"
    );
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
