//! What the real broker answers when the topology or credentials are wrong:
//! the caller gets a 5xx (so e-conomic retries) and the log says what to fix.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;
use serde_json::json;

use test_support::AppSettings;
use test_support::assert_no_secret;
use test_support::broker::{GUEST_AUTH, Topology, api_send, management_url, take_all_in};
use test_support::host::{caller_response, host_envelope};
use test_support::process::Served;

#[tokio::test]
async fn an_unbound_exchange_drops_the_message_so_the_caller_gets_502() {
    let topology = Topology::unbound().await;
    let app = Served::start(&topology.settings()).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"dropped").await;

    assert_eq!(response.status(), 502);
    let output = app.process.output();
    assert!(
        output.contains(&format!("no queue is bound to exchange \"{}\"", topology.exchange)),
        "{output}"
    );
    assert!(output.contains("routing key \"webhook\""), "{output}");
}

#[tokio::test]
async fn routed_false_in_payload_mode_is_502_inside_with_the_reason_in_logs() {
    let topology = Topology::unbound().await;
    let app = Served::start(&topology.settings()).await;
    let envelope = host_envelope("POST", "", Some("text/plain"), b"dropped");

    let answer: serde_json::Value = app.invoke("inv-unrouted", &envelope).await.json().await.unwrap();

    assert_eq!(answer["Outputs"]["res"]["statusCode"], "502");
    assert!(
        answer["Logs"][0].as_str().unwrap().contains("no queue is bound"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_missing_exchange_is_retried_until_the_deadline_then_503_naming_it() {
    // Retried because a restarting broker says "not found" until it has
    // recovered its definitions.
    let endpoint = format!(
        "{}/api/exchanges/%2F/no-such-exchange-{}/publish",
        management_url(),
        uuid::Uuid::new_v4().simple()
    );
    let app = Served::start(&endpoint_settings(&endpoint).with("PublishDeadline", "1s")).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 503);
    assert!(
        app.process
            .output()
            .contains("does not know exchange \"no-such-exchange-"),
        "{}",
        app.process.output()
    );
}

#[tokio::test]
async fn wrong_credentials_are_502_and_the_log_names_the_user_not_the_password() {
    let topology = Topology::declare().await;
    let password = "pw-Very-Secret-31337";
    let auth = BASE64.encode(format!("forwarder-test:{password}"));
    let app = Served::start(&topology.settings().with("AmqpAuthHeader", auth.as_str())).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;
    let status = response.status();
    let body = response.text().await.unwrap();

    assert_eq!(status, 502);
    let output = app.process.output();
    assert!(
        output.contains("refused the credentials of user \"forwarder-test\""),
        "{output}"
    );
    assert!(output.contains("check setting AmqpAuthHeader"), "{output}");
    assert_no_secret(&output, &[password, &auth]);
    assert_no_secret(&body, &[password, &auth]);
}

#[tokio::test]
async fn a_caller_is_not_told_broker_details() {
    let topology = Topology::unbound().await;
    let app = Served::start(&topology.settings()).await;
    let envelope = host_envelope("POST", "", Some("text/plain"), b"x");

    let (status, _, body) = caller_response(app.invoke("inv-details", &envelope).await).await;

    assert_eq!(status, 502);
    assert!(!body.to_string().contains(&topology.exchange), "{body}");
}

#[tokio::test]
async fn a_vhost_connection_limit_is_waited_out_not_reported_as_bad_credentials() {
    // The HTTP publish opens a connection inside the broker per request, so a
    // vhost connection limit (CloudAMQP's free plan has one) refuses some with
    // 401 "Access refused." under a burst.
    let vhost = format!("limited-{}", uuid::Uuid::new_v4().simple());
    let declarations = [
        (Method::PUT, format!("vhosts/{vhost}"), json!({})),
        (
            Method::PUT,
            format!("permissions/{vhost}/guest"),
            json!({ "configure": ".*", "write": ".*", "read": ".*" }),
        ),
        (
            Method::PUT,
            format!("vhost-limits/{vhost}/max-connections"),
            json!({ "value": 1 }),
        ),
        (
            Method::PUT,
            format!("exchanges/{vhost}/ex"),
            json!({ "type": "direct", "durable": true }),
        ),
        (Method::PUT, format!("queues/{vhost}/q"), json!({ "durable": true })),
        (
            Method::POST,
            format!("bindings/{vhost}/e/ex/q/q"),
            json!({ "routing_key": "webhook" }),
        ),
    ];
    for (method, path, body) in declarations {
        let status = api_send(method, &path, Some(&body)).await;
        assert!((200..300).contains(&status), "{path}: {status}");
    }
    let endpoint = format!("{}/api/exchanges/{vhost}/ex/publish", management_url());
    let app = Served::start(&endpoint_settings(&endpoint).with("PublishConcurrency", "8")).await;

    let app = &app;
    let statuses = futures_util::future::join_all((0..40).map(|i| async move {
        let body = i.to_string();
        app.forward("/api/WebhookForwarder", "text/plain", body.as_bytes())
            .await
            .status()
    }))
    .await;
    let queued = take_all_in(&vhost, "q", 100).await;
    api_send(Method::DELETE, &format!("vhosts/{vhost}"), None).await;

    assert!(
        statuses.iter().all(|s| *s == 200),
        "{statuses:?}\n{}",
        app.process.output()
    );
    assert!(
        !app.process.output().contains("refused the credentials"),
        "{}",
        app.process.output()
    );
    assert!(
        app.process.output().contains("connection limit is probably reached"),
        "the limit was hit and retried"
    );
    let bodies: std::collections::HashSet<&[u8]> = queued.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies.len(), 40, "every webhook is on the queue");
}

/// The seed's two settings for the local broker and another publish endpoint.
fn endpoint_settings(endpoint: &str) -> AppSettings {
    AppSettings::new()
        .with("AmqpEndpoint", endpoint)
        .with("AmqpAuthHeader", GUEST_AUTH)
}
