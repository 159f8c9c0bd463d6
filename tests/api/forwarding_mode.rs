//! The caller's own request at `/api/WebhookForwarder`: the route proxying
//! mode, legacy forwarding mode and standalone use share. The legacy mode's
//! own shape ([`test_support::host::HostClient::forward_legacy`]) at the end.

use reqwest::Method;

use test_support::broker::Topology;
use test_support::host::CallerRequest;
use test_support::{FUNCTION_KEY, assert_no_secret};

use crate::app::spawn_app;

#[tokio::test]
async fn a_chunked_webhook_is_queued_byte_for_byte_without_the_function_key() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let path = format!("/api/WebhookForwarder?type=invoice&code={FUNCTION_KEY}&no=%C3%B8");

    let response = app
        .forward(&path, "application/x-www-form-urlencoded", b"invoiceNo=1042")
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["queued"], true);
    let message = &topology.take(1).await[0];
    assert_eq!(message.body, b"invoiceNo=1042");
    assert_eq!(message.properties["delivery_mode"], 2);
    assert_eq!(message.properties["message_id"], answer["message_id"]);
    assert_eq!(message.header("x-http-method").as_deref(), Some("POST"));
    assert_eq!(
        message.header("x-http-query").as_deref(),
        Some("type=invoice&no=%C3%B8")
    );
    assert_no_secret(&message.properties.to_string(), &[]);
}

#[tokio::test]
async fn invalid_utf8_and_nul_bytes_arrive_unchanged() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let body = b"\x00\xff\xfe binary \x00\xc3".to_vec();

    let response = app
        .forward("/api/WebhookForwarder", "application/x-custom", &body)
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, body);
}

#[tokio::test]
async fn the_path_matches_in_any_case_as_azure_routes_do() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;

    let response = app.forward("/API/webhookforwarder/", "text/plain", b"x").await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await.len(), 1);
}

#[tokio::test]
async fn a_get_webhook_is_queued_with_an_empty_body() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;

    let response = app
        .request(Method::GET, "/api/WebhookForwarder?new=7")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let message = &topology.take(1).await[0];
    assert!(message.body.is_empty());
    assert_eq!(message.header("x-http-method").as_deref(), Some("GET"));
    assert_eq!(message.header("x-http-query").as_deref(), Some("new=7"));
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_and_not_queued() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings().with("MaxBodyBytes", "1024")).await;

    let over = app.forward("/api/WebhookForwarder", "text/plain", &[b'x'; 1025]).await;
    let at = app.forward("/api/WebhookForwarder", "text/plain", &[b'y'; 1024]).await;

    assert_eq!(over.status(), 413);
    // The rest of the body was never read: the connection must not be reused.
    assert_eq!(over.headers()["connection"], "close");
    assert_eq!(at.status(), 200);
    let messages = topology.take(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, vec![b'y'; 1024]);
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn other_methods_and_paths_are_refused_and_not_queued() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;

    let delete = app
        .request(Method::DELETE, "/api/WebhookForwarder")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 405);
    assert_eq!(delete.headers()["allow"], "GET, POST");
    let get_payload_path = app.request(Method::GET, "/WebhookForwarder").send().await.unwrap();
    assert_eq!(get_payload_path.status(), 405);
    let unknown = app.request(Method::POST, "/api/Other").body("x").send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("/api/WebhookForwarder"));
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn health_answers_get_and_head() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;

    assert_eq!(app.request(Method::GET, "/").send().await.unwrap().status(), 200);
    assert_eq!(app.request(Method::HEAD, "/").send().await.unwrap().status(), 200);
}

// ---- legacy forwarding mode (enableForwardingHttpRequest), as the host builds it ----

#[tokio::test]
async fn legacy_forwarding_queues_the_body_and_the_query_as_the_host_re_encoded_it() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let caller = CallerRequest::post(
        &format!("/api/WebhookForwarder?a=1&code={FUNCTION_KEY}&a=2&name=%C3%A6+x"),
        "application/x-www-form-urlencoded",
        b"old=101&new=101",
    );

    let response = app.forward_legacy(&caller, "inv-legacy").await;

    assert_eq!(response.status(), 200);
    let message = &topology.take(1).await[0];
    assert_eq!(message.body, b"old=101&new=101");
    assert_eq!(message.id(), "inv-legacy");
    // Repeated keys comma-joined, re-escaped: not the caller's bytes.
    assert_eq!(
        message.header("x-http-query").as_deref(),
        Some("a=1%2C2&name=%C3%A6%20x")
    );
}

#[tokio::test]
async fn legacy_forwarding_delivers_a_chunked_original_empty() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let caller = CallerRequest::post("/api/WebhookForwarder", "text/plain", b"lost on the way").chunked();

    let response = app.forward_legacy(&caller, "inv-legacy-chunked").await;

    // What the host sends is queued; the host never sent the body
    // (docs/host-modes.md: why the shipped host.json proxies instead).
    assert_eq!(response.status(), 200);
    assert!(topology.take(1).await[0].body.is_empty());
}
