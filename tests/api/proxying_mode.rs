//! Proxying mode (`enableProxyingHttpRequest`, the shipped host.json): the
//! caller's request streamed through the host's YARP proxy, shaped as
//! [`test_support::host::HostClient::proxy`] documents, and our answer
//! streamed back to the caller as it is.

use test_support::broker::Topology;
use test_support::host::{CallerRequest, as_payload_mode_text};
use test_support::{FUNCTION_KEY, assert_no_secret};

use crate::app::spawn_app;

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn a_proxied_webhook_is_queued_byte_for_byte_under_its_invocation_id() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let invocation_id = uuid::Uuid::new_v4().to_string();
    let caller = CallerRequest::post(
        &format!("/api/WebhookForwarder?type=product&code={FUNCTION_KEY}"),
        FORM,
        b"old=101&new=101",
    );

    let response = app.proxy(&caller, &invocation_id).await;

    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["message_id"], invocation_id.as_str());
    let message = &topology.take(1).await[0];
    assert_eq!(message.body, b"old=101&new=101");
    assert_eq!(message.id(), invocation_id);
    assert_eq!(message.properties["content_type"], FORM);
    assert_eq!(message.header("x-http-query").as_deref(), Some("type=product"));
    assert_no_secret(&message.properties.to_string(), &[]);
}

#[tokio::test]
async fn a_chunked_original_is_re_chunked_and_queued_whole() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let body = b"invoiceNo=1042&lines=".repeat(500);
    let caller = CallerRequest::post("/api/WebhookForwarder?type=invoice", FORM, &body).chunked();

    let response = app.proxy(&caller, "inv-chunked").await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, body);
}

#[tokio::test]
async fn bytes_payload_mode_would_change_arrive_unchanged() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    // A UTF-8 byte-order mark, then "ø" in Latin-1 (0xF8, not UTF-8), as
    // the charset says: payload mode would drop the one and mangle the other.
    let body = b"\xef\xbb\xbfname=S\xf8ren&x=\x00\xff".to_vec();
    assert_ne!(as_payload_mode_text(&body).as_bytes(), body.as_slice());
    let caller = CallerRequest::post(
        "/api/WebhookForwarder",
        "application/x-www-form-urlencoded; charset=iso-8859-1",
        &body,
    );

    let response = app.proxy(&caller, "inv-bytes").await;

    assert_eq!(response.status(), 200);
    let message = &topology.take(1).await[0];
    assert_eq!(message.body, body);
    assert_eq!(
        message.properties["content_type"],
        "application/x-www-form-urlencoded; charset=iso-8859-1"
    );
}

#[tokio::test]
async fn the_raw_query_keeps_its_encoding_and_order_minus_the_function_key() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let caller = CallerRequest::post(
        &format!("/api/WebhookForwarder?b=2&code={FUNCTION_KEY}&name=%C3%A6%20x&a=1&a=2"),
        FORM,
        b"x=1",
    );

    let response = app.proxy(&caller, "inv-query").await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        topology.take(1).await[0].header("x-http-query").as_deref(),
        Some("b=2&name=%C3%A6%20x&a=1&a=2")
    );
}

#[tokio::test]
async fn a_failure_reaches_the_caller_as_our_own_status_not_wrapped() {
    // No binding: the broker would drop the message, so it is not acknowledged.
    let topology = Topology::unbound().await;
    let app = spawn_app(&topology.settings()).await;

    let response = app
        .proxy(&CallerRequest::post("/api/WebhookForwarder", FORM, b"x=1"), "inv-fail")
        .await;

    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["queued"], false);
    assert!(answer.get("Outputs").is_none(), "{answer}");
}
