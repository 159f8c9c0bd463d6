//! The webhooks a burst sends: e-conomic-like form bodies, each unique, and
//! the shapes they take on the wire in each mode.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

/// The function key every bench request carries (and that must not reach the queue).
pub const FUNCTION_KEY: &str = "bench-function-key";

/// Body of webhook `index` of run `run`: a "product updated" webhook with a
/// unique nonce so every message can be matched on readback.
pub fn body(run: &str, index: usize) -> Vec<u8> {
    format!("old={index}&new={index}&type=product&nonce={run}-{index}").into_bytes()
}

/// Path and query of a forwarding-mode request.
pub fn forwarding_path() -> String {
    format!("/api/WebhookForwarder?type=product&code={FUNCTION_KEY}")
}

/// The host's invocation JSON for `body` (payload mode).
pub fn invocation(body: &[u8], index: usize) -> Vec<u8> {
    let text = String::from_utf8(body.to_vec()).expect("bench bodies are text");
    json!({
        "Data": { "req": {
            "Url": format!("https://bench.azurewebsites.net/api/WebhookForwarder?type=product&code={FUNCTION_KEY}"),
            "Method": "POST",
            "Query": { "type": "product", "code": FUNCTION_KEY },
            "Headers": {
                "Content-Type": ["application/x-www-form-urlencoded"],
                "Content-Length": [body.len().to_string()],
                "Host": ["bench.azurewebsites.net"],
                "X-Forwarded-For": ["54.72.52.167:51234"]
            },
            "Params": {},
            "Identities": [{ "AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true, "Claims": [] }],
            "Body": text
        } },
        "Metadata": { "sys": { "MethodName": "WebhookForwarder", "RandGuid": format!("bench-{index}") } }
    })
    .to_string()
    .into_bytes()
}

/// The publish request the handler would send for `body`: the direct
/// ceiling publishes exactly this to the broker.
pub fn publish_request(body: &[u8], index: usize) -> Vec<u8> {
    let payload = String::from_utf8(body.to_vec()).unwrap_or_else(|_| BASE64.encode(body));
    json!({
        "properties": {
            "delivery_mode": 2,
            "content_type": "application/x-www-form-urlencoded",
            "message_id": format!("direct-{index}"),
            "timestamp": 1_795_950_000u64,
            "app_id": "e-conomic-webhook-forwarder",
            "headers": { "x-http-method": "POST", "x-http-query": "type=product" }
        },
        "routing_key": "webhook",
        "payload": payload,
        "payload_encoding": "string"
    })
    .to_string()
    .into_bytes()
}
