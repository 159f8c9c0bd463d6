//! Payload mode: the host POSTs `/WebhookForwarder` with the invocation JSON.

use serde_json::json;

use test_support::broker::Topology;
use test_support::host::{as_payload_mode_text, caller_response, host_envelope};
use test_support::{FUNCTION_KEY, assert_no_secret};

use crate::app::spawn_app;

#[tokio::test]
async fn a_form_webhook_is_queued_byte_for_byte_with_its_properties() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let invocation_id = uuid::Uuid::new_v4().to_string();
    let query = format!("type=product&code={FUNCTION_KEY}");
    let envelope = host_envelope(
        "POST",
        &query,
        Some("application/x-www-form-urlencoded"),
        b"old=101&new=101",
    );

    let (status, headers, body) = caller_response(app.invoke(&invocation_id, &envelope).await).await;

    assert_eq!(status, 200);
    assert_eq!(headers["Content-Type"], "application/json");
    assert_eq!(body, json!({ "queued": true, "message_id": invocation_id }));
    let messages = topology.take(1).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.body, b"old=101&new=101");
    assert_eq!(message.routing_key, "webhook");
    assert_eq!(message.properties["delivery_mode"], 2);
    assert_eq!(message.properties["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(message.properties["message_id"], invocation_id.as_str());
    assert_eq!(message.properties["app_id"], "e-conomic-webhook-forwarder");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let timestamp = message.properties["timestamp"].as_u64().unwrap();
    assert!(
        timestamp.abs_diff(now) < 300,
        "timestamp {timestamp} is not about now ({now})"
    );
    assert_eq!(message.header("x-http-method").as_deref(), Some("POST"));
    assert_eq!(message.header("x-http-query").as_deref(), Some("type=product"));
    assert_no_secret(&message.properties.to_string(), &[]);
}

#[tokio::test]
async fn the_host_answer_carries_a_log_line_naming_the_message() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let envelope = host_envelope("POST", "", Some("text/plain"), b"x");

    let answer: serde_json::Value = app.invoke("inv-log-1", &envelope).await.json().await.unwrap();

    let logs = answer["Logs"].as_array().unwrap();
    assert!(
        logs.iter()
            .any(|l| l.as_str().unwrap().contains("queued message inv-log-1")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn an_octet_stream_body_arrives_as_its_original_bytes() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    let envelope = host_envelope("POST", "", Some("application/octet-stream"), &bytes);

    let (status, _, _) = caller_response(app.invoke("inv-binary", &envelope).await).await;

    assert_eq!(status, 200);
    assert_eq!(topology.take(1).await[0].body, bytes);
}

#[tokio::test]
async fn a_multipart_body_arrives_as_its_original_bytes() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let body = b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n\xff\xfe\r\n--b--\r\n".to_vec();
    let envelope = host_envelope("POST", "", Some("multipart/form-data; boundary=b"), &body);

    let (status, _, _) = caller_response(app.invoke("inv-multipart", &envelope).await).await;

    assert_eq!(status, 200);
    let message = &topology.take(1).await[0];
    assert_eq!(message.body, body);
    assert_eq!(message.properties["content_type"], "multipart/form-data; boundary=b");
}

#[tokio::test]
async fn unicode_json_text_is_kept_exactly() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let body = "{\"name\":\"Søren Ærø — 日本\",\"n\":1}\n".as_bytes();
    let envelope = host_envelope("POST", "", Some("application/json"), body);

    let (status, _, _) = caller_response(app.invoke("inv-unicode", &envelope).await).await;

    assert_eq!(status, 200);
    assert_eq!(topology.take(1).await[0].body, body);
}

#[tokio::test]
async fn a_get_webhook_without_body_carries_its_data_in_the_query() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let envelope = host_envelope("GET", &format!("code={FUNCTION_KEY}&old=5&new=6"), None, b"");
    assert!(envelope["Data"]["req"].get("Body").is_none());

    let (status, _, _) = caller_response(app.invoke("inv-get", &envelope).await).await;

    assert_eq!(status, 200);
    let message = &topology.take(1).await[0];
    assert!(message.body.is_empty());
    assert_eq!(message.header("x-http-method").as_deref(), Some("GET"));
    assert_eq!(message.header("x-http-query").as_deref(), Some("old=5&new=6"));
    assert!(message.properties.get("content_type").is_none());
}

#[tokio::test]
async fn an_old_hosts_string_query_and_missing_identities_are_accepted() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let envelope = json!({
        "Data": { "req": {
            "Method": "POST",
            "Query": "{}",
            "Headers": { "content-type": ["text/plain"] },
            "Body": "legacy"
        } },
        "Metadata": {}
    });

    let (status, _, _) = caller_response(app.invoke("inv-old-host", &envelope).await).await;

    assert_eq!(status, 200);
    let message = &topology.take(1).await[0];
    assert_eq!(message.body, b"legacy");
    assert_eq!(message.properties["content_type"], "text/plain");
}

#[tokio::test]
async fn malformed_invocation_json_is_a_clear_400_and_nothing_is_queued() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    let cases = [
        (json!({ "Metadata": {} }), "missing field `Data`"),
        (json!({ "Data": { "req": { "Method": 7 } } }), "Data.req.Method"),
        (
            json!({ "Data": { "req": { "Method": "POST", "Headers": { "A": "x", "B": 1 } } } }),
            "Data.req.Headers",
        ),
    ];
    for (envelope, expected) in cases {
        let response = app.invoke("inv-bad", &envelope).await;
        assert_eq!(response.status(), 400, "{envelope}");
        let answer: serde_json::Value = response.json().await.unwrap();
        let res = &answer["Outputs"]["res"];
        assert_eq!(res["statusCode"], "400");
        assert!(res["body"].as_str().unwrap().contains(expected), "{expected}: {res}");
    }
    let not_json = app
        .invoke("inv-bad", &serde_json::Value::String("{\"Data\":".into()))
        .await;
    assert_eq!(not_json.status(), 400);
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_inside_and_one_at_the_limit_is_queued() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings().with("MaxBodyBytes", "1000")).await;

    let over = host_envelope("POST", "", Some("text/plain"), &[b'a'; 1001]);
    let (status, _, body) = caller_response(app.invoke("inv-over", &over).await).await;
    assert_eq!(status, 413);
    assert!(body["error"].as_str().unwrap().contains("1000-byte limit"), "{body}");

    let at_limit = host_envelope("POST", "", Some("text/plain"), &[b'a'; 1000]);
    let (status, _, _) = caller_response(app.invoke("inv-at", &at_limit).await).await;
    assert_eq!(status, 200);

    let messages = topology.take(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body.len(), 1000);
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn a_text_body_arrives_as_the_host_decoded_it_not_as_sent() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings()).await;
    // Latin-1 "ø" and a byte-order mark: the host decodes text bodies as
    // UTF-8 before the handler sees them, so payload mode cannot be
    // byte-exact (docs/host-modes.md); proxying mode is.
    let sent = b"\xef\xbb\xbfname=S\xf8ren".to_vec();
    let envelope = host_envelope(
        "POST",
        "",
        Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
        &sent,
    );

    let (status, _, _) = caller_response(app.invoke("inv-latin1", &envelope).await).await;

    assert_eq!(status, 200);
    let queued = &topology.take(1).await[0].body;
    assert_eq!(queued, "name=S\u{fffd}ren".as_bytes());
    assert_eq!(queued, as_payload_mode_text(&sent).as_bytes());
    assert_ne!(queued, &sent);
}
