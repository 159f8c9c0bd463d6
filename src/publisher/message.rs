//! The JSON body of one `POST .../publish`: the message format consumers rely on.
//!
//! Pure functions only, so the format is unit-tested without a broker.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use crate::webhook::Webhook;

/// AMQP `delivery_mode` for persistent messages: without it a durable queue
/// drops the message when the broker restarts.
pub const PERSISTENT: u8 = 2;

/// AMQP short strings (`content_type`, `message_id`) hold at most 255 bytes.
const SHORT_STRING_MAX: usize = 255;

/// Message header holding the sender's HTTP method.
pub const METHOD_HEADER: &str = "x-http-method";
/// Message header holding the sender's query string, function key removed.
pub const QUERY_HEADER: &str = "x-http-query";
/// Message header holding a `Content-Type` too long for the AMQP property.
pub const LONG_CONTENT_TYPE_HEADER: &str = "x-http-content-type";

/// What the publish endpoint needs besides the webhook itself.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Routing key of the message.
    pub routing_key: &'a str,
    /// `app_id` property.
    pub app_id: &'a str,
    /// `timestamp` property, seconds since the Unix epoch.
    pub timestamp: u64,
}

#[derive(Serialize)]
struct PublishBody<'a> {
    properties: Properties<'a>,
    routing_key: &'a str,
    payload: Cow<'a, str>,
    payload_encoding: &'static str,
}

#[derive(Serialize)]
struct Properties<'a> {
    delivery_mode: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    message_id: &'a str,
    timestamp: u64,
    app_id: &'a str,
    headers: Headers<'a>,
}

#[derive(Serialize)]
struct Headers<'a> {
    #[serde(rename = "x-http-method")]
    method: &'a str,
    #[serde(rename = "x-http-query")]
    query: &'a str,
    #[serde(rename = "x-http-content-type", skip_serializing_if = "Option::is_none")]
    long_content_type: Option<&'a str>,
}

/// Builds the publish request body for `webhook`.
///
/// The payload is the body byte for byte: as a string when it is valid UTF-8,
/// base64 otherwise, so the broker stores exactly the bytes that arrived.
pub fn publish_body(webhook: &Webhook, envelope: Envelope<'_>) -> Vec<u8> {
    let (payload, payload_encoding) = match std::str::from_utf8(&webhook.body) {
        Ok(text) => (Cow::Borrowed(text), "string"),
        Err(_) => (Cow::Owned(BASE64.encode(&webhook.body)), "base64"),
    };
    let content_type = webhook.content_type.as_deref();
    let fits = |s: &str| s.len() <= SHORT_STRING_MAX;
    let body = PublishBody {
        properties: Properties {
            delivery_mode: PERSISTENT,
            content_type: content_type.filter(|ct| fits(ct)),
            message_id: &webhook.message_id,
            timestamp: envelope.timestamp,
            app_id: envelope.app_id,
            headers: Headers {
                method: &webhook.method,
                query: &webhook.query,
                long_content_type: content_type.filter(|ct| !fits(ct)),
            },
        },
        routing_key: envelope.routing_key,
        payload,
        payload_encoding,
    };
    serde_json::to_vec(&body).expect("a struct of strings and integers always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::{Value, json};

    fn webhook(body: &'static [u8], content_type: Option<&str>) -> Webhook {
        Webhook {
            message_id: "id-1".to_owned(),
            method: "POST".to_owned(),
            content_type: content_type.map(str::to_owned),
            query: "type=product".to_owned(),
            body: Bytes::from_static(body),
        }
    }

    fn build(webhook: &Webhook) -> Value {
        let envelope = Envelope {
            routing_key: "webhook",
            app_id: "app",
            timestamp: 1_795_950_000,
        };
        serde_json::from_slice(&publish_body(webhook, envelope)).unwrap()
    }

    #[test]
    fn utf8_body_is_sent_as_a_string_with_all_properties() {
        let body = build(&webhook(b"old=101&new=101", Some("application/x-www-form-urlencoded")));
        assert_eq!(
            body,
            json!({
                "properties": {
                    "delivery_mode": 2,
                    "content_type": "application/x-www-form-urlencoded",
                    "message_id": "id-1",
                    "timestamp": 1_795_950_000,
                    "app_id": "app",
                    "headers": {"x-http-method": "POST", "x-http-query": "type=product"}
                },
                "routing_key": "webhook",
                "payload": "old=101&new=101",
                "payload_encoding": "string"
            })
        );
    }

    #[test]
    fn invalid_utf8_body_is_sent_as_base64() {
        let body = build(&webhook(b"\xff\x00ab", None));
        assert_eq!(body["payload_encoding"], "base64");
        assert_eq!(BASE64.decode(body["payload"].as_str().unwrap()).unwrap(), b"\xff\x00ab");
    }

    #[test]
    fn missing_content_type_is_omitted_not_null() {
        let body = build(&webhook(b"", None));
        assert!(body["properties"].get("content_type").is_none());
        assert_eq!(body["payload"], "");
    }

    #[test]
    fn nul_bytes_and_quotes_survive_as_a_string_payload() {
        let body = build(&webhook(b"a\0\"b\\", Some("text/plain")));
        assert_eq!(body["payload_encoding"], "string");
        assert_eq!(body["payload"], "a\0\"b\\");
    }

    #[test]
    fn an_overlong_content_type_moves_to_a_header() {
        let long = format!("text/plain; x={}", "y".repeat(300));
        let body = build(&webhook(b"x", Some(&long)));
        assert!(body["properties"].get("content_type").is_none());
        assert_eq!(body["properties"]["headers"][LONG_CONTENT_TYPE_HEADER], long.as_str());
    }

    #[test]
    fn header_names_match_the_documented_constants() {
        let body = build(&webhook(b"x", None));
        let headers = &body["properties"]["headers"];
        assert_eq!(headers[METHOD_HEADER], "POST");
        assert_eq!(headers[QUERY_HEADER], "type=product");
    }
}
