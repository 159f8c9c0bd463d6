//! The webhooks a burst sends: e-conomic-like form bodies, each unique, and
//! the shapes they take on the wire in each mode. The direct publishers
//! send what the handler would: the product's own message format.

use bytes::Bytes;
use test_support::host::host_envelope;
use webhook_forwarder::broker::message::Envelope;
use webhook_forwarder::settings::broker::{DEFAULT_APP_ID, DEFAULT_ROUTING_KEY};
use webhook_forwarder::webhook::Webhook;

/// The function key every bench request carries (and that must not reach the queue).
pub const FUNCTION_KEY: &str = "bench-function-key";
/// The sender's content type, as e-conomic's legacy webhooks send it.
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// The template-key phase's `AmqpRoutingKey`: the key from the query's type.
pub const ROUTING_KEY_TEMPLATE: &str = "webhook.{query.type}";
/// What it renders for every webhook a burst sends (`type=product`).
pub const TEMPLATE_KEY: &str = "webhook.product";

/// Body of webhook `index` of run `run`: a "product updated" webhook with a
/// unique nonce so every message can be matched on readback.
pub fn body(run: &str, index: usize) -> Vec<u8> {
    format!("old={index}&new={index}&type=product&nonce={run}-{index}").into_bytes()
}

/// Path and query of a forwarding-mode request.
pub fn forwarding_path() -> String {
    format!("/api/WebhookForwarder?type=product&code={FUNCTION_KEY}")
}

/// The host's invocation JSON for `body` (payload mode), as the test
/// support builds it for every payload-mode test.
pub fn invocation(body: &[u8]) -> Vec<u8> {
    host_envelope(
        "POST",
        &format!("type=product&code={FUNCTION_KEY}"),
        Some(CONTENT_TYPE),
        body,
    )
    .to_string()
    .into_bytes()
}

/// The webhook the handler builds from webhook `index` of run `run`.
pub fn webhook(run: &str, index: usize) -> Webhook {
    Webhook {
        message_id: format!("{run}-{index}"),
        method: "POST".to_owned(),
        content_type: Some(CONTENT_TYPE.to_owned()),
        query: "type=product".to_owned(),
        body: Bytes::from(body(run, index)),
    }
}

/// What every message carries besides the webhook, as the handler sets it.
pub fn envelope() -> Envelope<'static> {
    Envelope {
        routing_key: DEFAULT_ROUTING_KEY,
        app_id: DEFAULT_APP_ID,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}
