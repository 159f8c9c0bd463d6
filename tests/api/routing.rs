//! Routing keys from the webhook (`AmqpRoutingKey` as a template) against
//! the real broker, over both transports: each type reaches its own queue,
//! an unbound type reaches `<exchange>.unrouted` (answered 2xx) or is
//! refused (5xx) without an alternate exchange, hostile values fall back to
//! the default key, and every message carries the webhook's digest. The
//! topologies are made by `handler setup`, as a user makes them.

use std::time::Duration;

use sha2::{Digest, Sha256};
use test_support::AppSettings;
use test_support::broker::{QueuedMessage, Topology, take_all, take_from};
use test_support::process::{Handler, Served, run_to_end};
use test_support::target::TestTarget;

use crate::app::spawn_app;

const TEMPLATE: &str = "webhook.{query.type|other}";
const FORM: &str = "application/x-www-form-urlencoded";

/// Runs `handler setup <args>` for the topology's exchange; asserts success.
async fn set_up(topology: &Topology, args: &[&str]) {
    let mut line = vec!["setup"];
    line.extend_from_slice(args);
    let run = run_to_end(&line, &topology.settings(), "").await;
    assert!(run.status.success(), "{}", run.output());
}

/// A queue of the topology's bound with `key` by `handler setup`, plus `extra` options.
async fn queue_for(topology: &Topology, suffix: &str, key: &str, extra: &[&str]) -> String {
    let queue = topology.other_queue(suffix);
    let mut args = vec!["--queue", queue.as_str(), "--binding-key", key];
    args.extend_from_slice(extra);
    set_up(topology, &args).await;
    queue
}

/// The topology's settings over HTTP and over AMQP, both with `key`.
fn both_transports(topology: &Topology, key: &str) -> [(&'static str, AppSettings); 2] {
    [
        ("http", topology.settings().with("AmqpRoutingKey", key)),
        ("amqp", topology.amqp_transport_settings().with("AmqpRoutingKey", key)),
    ]
}

fn path(query: &str) -> String {
    format!("/api/WebhookForwarder?{query}&code=fn-key")
}

/// What the docs say the digest is: hex SHA-256 of METHOD, QUERY (without
/// the function key), CONTENT-TYPE and BODY, joined by line feeds.
fn documented_digest(query: &str, content_type: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("POST\n{query}\n{content_type}\n").as_bytes());
    hasher.update(body);
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn three_types_reach_three_queues_over_either_transport() {
    let topology = Topology::names();
    let types = ["invoice", "product", "order"];
    let mut queues = Vec::new();
    for kind in types {
        queues.push(queue_for(&topology, kind, &format!("webhook.{kind}"), &[]).await);
    }

    for (transport, settings) in both_transports(&topology, TEMPLATE) {
        let app = spawn_app(&settings).await;
        for kind in types {
            let body = format!("old=1&new=2&{transport}={kind}");
            let response = app.forward(&path(&format!("type={kind}")), FORM, body.as_bytes()).await;
            assert_eq!(response.status(), 200, "{transport} {kind}");
        }
        for (kind, queue) in types.iter().zip(&queues) {
            let mut taken = take_from(queue, 1).await;
            taken.extend(take_all(queue, usize::MAX).await);
            assert_eq!(taken.len(), 1, "{transport}: {queue} got {taken:?}");
            assert_eq!(taken[0].body, format!("old=1&new=2&{transport}={kind}").as_bytes());
            assert_eq!(taken[0].routing_key, format!("webhook.{kind}"));
            assert_eq!(
                taken[0].header("x-http-query").as_deref(),
                Some(format!("type={kind}").as_str())
            );
        }
    }
}

#[tokio::test]
async fn an_unbound_type_reaches_the_unrouted_queue_and_is_answered_2xx() {
    let topology = Topology::names();
    queue_for(&topology, "invoice", "webhook.invoice", &["--alternate-exchange"]).await;

    for (transport, settings) in both_transports(&topology, TEMPLATE) {
        let app = spawn_app(&settings).await;
        let body = format!("quotation-{transport}");
        let response = app.forward(&path("type=quotation"), FORM, body.as_bytes()).await;
        assert_eq!(response.status(), 200, "{transport}");
        let taken = take_from(&topology.unrouted(), 1).await;
        assert_eq!(taken.len(), 1, "{transport}");
        assert_eq!(taken[0].body, body.as_bytes());
        assert_eq!(taken[0].routing_key, "webhook.quotation");
    }
}

#[tokio::test]
async fn the_same_unbound_type_without_an_alternate_exchange_is_answered_5xx_naming_its_key() {
    let topology = Topology::names();
    let invoices = queue_for(&topology, "invoice", "webhook.invoice", &[]).await;

    for (transport, settings) in both_transports(&topology, TEMPLATE) {
        let app = Served::start(&settings).await;
        let response = app.forward(&path("type=quotation"), FORM, b"refused").await;
        assert_eq!(response.status(), 502, "{transport}");
        let output = app.process.output();
        assert!(
            output.contains("with routing key \"webhook.quotation\""),
            "{transport}: the log names the rendered key:\n{output}"
        );
    }
    assert!(take_from(&invoices, 1).await.is_empty());
}

#[tokio::test]
async fn hostile_values_route_to_the_default_key_and_the_log_says_which_was_replaced() {
    let topology = Topology::names();
    let other = queue_for(&topology, "other", "webhook.other", &[]).await;
    let long = "t".repeat(10 * 1024);
    let hostile = [
        (
            format!("type={long}"),
            "{query.type|other} was 10240 bytes (over 64), used \\\"other\\\"",
        ),
        ("type=%23".to_owned(), "{query.type|other} held '#'"),
        ("type=*".to_owned(), "{query.type|other} held '*'"),
        ("type=webhook.%2A".to_owned(), "{query.type|other} held '*'"),
        ("type=%C3%A6ble".to_owned(), "{query.type|other} held 'æ'"),
        ("type=".to_owned(), "{query.type|other} was missing, used \\\"other\\\""),
        ("id=7".to_owned(), "{query.type|other} was missing"),
    ];

    for (transport, settings) in both_transports(&topology, TEMPLATE) {
        let app = Served::start(&settings).await;
        for (query, _) in &hostile {
            let response = app.forward(&path(query), FORM, query.as_bytes()).await;
            assert_eq!(response.status(), 200, "{transport} {:.40}", query);
        }
        let taken = take_from(&other, hostile.len()).await;
        assert_eq!(taken.len(), hostile.len(), "{transport}");
        for (message, (query, logged)) in taken.iter().zip(&hostile) {
            assert_eq!(message.routing_key, "webhook.other", "{transport} {:.40}", query);
            assert_eq!(message.body, query.as_bytes(), "{transport}: in the order sent");
            let output = app.process.output();
            let line = output
                .lines()
                .find(|line| line.contains(&message.id()) && line.contains("routing key"))
                .unwrap_or_else(|| panic!("no routing-key line for {:.40}:\n{output:.4000}", query));
            assert!(line.contains(logged), "{transport}: {line:.400}");
            assert!(line.contains("routing_key=\"webhook.other\""), "{line:.400}");
            assert!(
                line.len() < 2048,
                "the log line does not carry the 10 kB value: {line:.200}"
            );
        }
    }
}

#[tokio::test]
async fn the_digest_is_equal_for_a_webhook_sent_twice_and_differs_for_one_byte() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let sends: [&[u8]; 3] = [b"old=101&new=102", b"old=101&new=102", b"old=101&new=103"];

    for body in sends {
        let response = app.forward(&path("type=product"), FORM, body).await;
        assert_eq!(response.status(), 200);
    }

    let taken = topology.take(3).await;
    let digest = |m: &QueuedMessage| m.header("x-webhook-sha256").expect("every message has the digest");
    assert_ne!(taken[0].id(), taken[1].id(), "two sends, two message ids");
    assert_eq!(
        digest(&taken[0]),
        digest(&taken[1]),
        "the same webhook, the same digest"
    );
    assert_ne!(digest(&taken[1]), digest(&taken[2]), "one byte differs");
    for (message, body) in taken.iter().zip(sends) {
        assert_eq!(digest(message), documented_digest("type=product", FORM, body));
    }
}

#[tokio::test]
async fn both_transports_write_the_same_key_and_digest() {
    let topology = Topology::names();
    let invoices = queue_for(&topology, "invoice", "webhook.invoice", &[]).await;
    let body = "øre=1&nr=5\0\"".as_bytes();

    let mut queued = Vec::new();
    for (transport, settings) in both_transports(&topology, TEMPLATE) {
        let app = spawn_app(&settings).await;
        let response = app
            .forward(&path("type=invoice"), "text/plain; charset=utf-8", body)
            .await;
        assert_eq!(response.status(), 200, "{transport}");
        queued.extend(take_from(&invoices, 1).await);
    }

    let [http, amqp] = queued.as_slice() else {
        panic!("one message per transport: {queued:?}")
    };
    assert_eq!(
        (http.routing_key.as_str(), amqp.routing_key.as_str()),
        ("webhook.invoice", "webhook.invoice")
    );
    let expected = documented_digest("type=invoice", "text/plain; charset=utf-8", body);
    assert_eq!(http.header("x-webhook-sha256"), Some(expected.clone()));
    assert_eq!(amqp.header("x-webhook-sha256"), Some(expected));
    assert_eq!(http.properties["headers"], amqp.properties["headers"]);
}

#[tokio::test]
async fn a_relay_drains_the_unrouted_queue_like_any_queue() {
    let topology = Topology::names();
    queue_for(&topology, "invoice", "webhook.invoice", &["--alternate-exchange"]).await;
    let app = spawn_app(&topology.settings().with("AmqpRoutingKey", TEMPLATE)).await;
    for kind in ["quotation", "cashbook"] {
        let response = app.forward(&path(&format!("type={kind}")), FORM, kind.as_bytes()).await;
        assert_eq!(response.status(), 200);
    }
    let target = TestTarget::accepting().await;

    let unrouted = topology.unrouted();
    let relay_settings = AppSettings::new().with("AmqpUrl", test_support::broker::amqp_url());
    let mut relay = Handler::spawn(
        &["relay", "--queue", &unrouted, "--to", &target.url("/hook")],
        &relay_settings,
        "info",
    );
    target
        .wait_until(Duration::from_secs(30), "both unrouted webhooks", |seen| {
            seen.len() >= 2
        })
        .await;
    relay.stop().await;

    let mut delivered: Vec<(Vec<u8>, String)> = target
        .seen()
        .iter()
        .map(|s| (s.body.to_vec(), s.path_and_query.clone()))
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        [
            (b"cashbook".to_vec(), "/hook?type=cashbook".to_owned()),
            (b"quotation".to_vec(), "/hook?type=quotation".to_owned()),
        ]
    );
    assert!(take_from(&unrouted, 1).await.is_empty(), "drained");
}

#[tokio::test]
async fn a_bad_template_stops_the_start_naming_the_setting() {
    let topology = Topology::names();
    let settings = topology.settings().with("AmqpRoutingKey", "webhook.{query.type");

    let Err((status, output)) = Served::start_with_args(&[], &settings).await else {
        panic!("the handler started with a broken AmqpRoutingKey")
    };

    assert!(!status.success());
    assert!(
        output.contains(
            "setting AmqpRoutingKey is invalid: \"webhook.{query.type\": at column 9: this placeholder is not closed: add a }"
        ),
        "{output}"
    );
}
