//! The AMQP transport's one connection over its life: opened in the
//! background while `GET /` answers, exactly one however many webhooks are
//! in flight, waited for (503, or a free slot) while the broker is not
//! there, kept when the broker refuses the password (and no secret
//! printed), and reopened after a network gone silent.

use std::time::{Duration, Instant};

use test_support::AppSettings;
use test_support::assert_no_secret;
use test_support::broker::{TestUser, Topology, broker_url, channels_of, connections_named, the_one_connection_named};
use test_support::host::{Burst, host_envelope};
use test_support::network::LateBroker;
use test_support::process::Served;
use webhook_forwarder::publish::amqp::pipeline;

const PASSWORD: &str = "Wr0ng-amqp-Pa55word";

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
        seen.iter()
            .all(|(_, channels)| *channels as usize <= pipeline::CHANNELS),
        "one channel per pipeline, however many webhooks are in flight: {seen:?}"
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
        .with("AmqpUrl", broker_url("guest", PASSWORD));
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
async fn a_working_password_appears_nowhere_not_in_the_connection_name_nor_the_clients_trace() {
    let topology = Topology::declare().await;
    let user = TestUser::create("").await;
    let site = format!("test-site-{}", uuid::Uuid::new_v4().simple());
    let settings = topology
        .amqp_transport_settings()
        .with("AmqpUrl", user.amqp_url())
        .with("WEBSITE_SITE_NAME", site.as_str())
        .with("WEBSITE_INSTANCE_ID", "1");
    let app = Served::start_logging(&settings, "trace").await;
    let name = format!("webhook-forwarder: {site} instance 1");

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"secretless").await;
    let answer = response.text().await.unwrap();

    assert!(answer.contains("\"queued\":true"), "{answer}");
    let queued = topology.take(1).await;
    assert_eq!(queued[0].body, b"secretless");
    the_one_connection_named(&name).await;
    for text in [&app.process.output(), &answer, &queued[0].properties.to_string(), &name] {
        assert_no_secret(text, &[&user.password]);
    }
}
