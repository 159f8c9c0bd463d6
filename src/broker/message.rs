//! The message format: the contract between whatever publishes a webhook
//! (either transport) and whatever consumes it (the relay, the user's own
//! subscriber). One module writes it and reads it back, so the two sides
//! cannot drift apart.
//!
//! A queued webhook is its body, byte for byte, with these properties:
//! `delivery_mode` 2 (persistent), `content_type` (when the sender gave one
//! that fits an AMQP short string), `message_id` (the host's invocation id or
//! a UUID), `timestamp` (seconds), `app_id`, and the headers
//! [`METHOD_HEADER`], [`QUERY_HEADER`], [`DIGEST_HEADER`] and, for an
//! overlong content type, [`LONG_CONTENT_TYPE_HEADER`]. It is published with
//! the routing key `AmqpRoutingKey` renders for it
//! ([`super::routing_key`]); nothing that reads it back depends on the key.
//!
//! Pure functions only, so the format is unit-tested without a broker.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::Serialize;
use sha2::{Digest, Sha256};

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
/// Message header holding the webhook's digest ([`WebhookParts::digest`]):
/// the same for every copy of one webhook, so consumers can spot repeats.
pub const DIGEST_HEADER: &str = "x-webhook-sha256";

/// What a message carries besides the webhook itself.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Routing key of the message.
    pub routing_key: &'a str,
    /// `app_id` property.
    pub app_id: &'a str,
    /// `timestamp` property, seconds since the Unix epoch.
    pub timestamp: u64,
}

/// The `content_type` property and the long-content-type header: a content
/// type goes in the property when it fits, in the header when it does not.
fn content_type_fields(webhook: &Webhook) -> (Option<&str>, Option<&str>) {
    let content_type = webhook.content_type.as_deref();
    let fits = |ct: &&str| ct.len() <= SHORT_STRING_MAX;
    (content_type.filter(fits), content_type.filter(|ct| !fits(ct)))
}

// ---- writing, HTTP transport: the body of `POST .../publish` ----------------

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
    #[serde(rename = "x-webhook-sha256")]
    digest: String,
}

/// Builds the HTTP publish endpoint's request body for `webhook`.
///
/// The payload is the body byte for byte: as a string when it is valid UTF-8,
/// base64 otherwise, so the broker stores exactly the bytes that arrived.
pub fn publish_body(webhook: &Webhook, envelope: Envelope<'_>) -> Vec<u8> {
    let (payload, payload_encoding) = match std::str::from_utf8(&webhook.body) {
        Ok(text) => (Cow::Borrowed(text), "string"),
        Err(_) => (Cow::Owned(BASE64.encode(&webhook.body)), "base64"),
    };
    let (content_type, long_content_type) = content_type_fields(webhook);
    let body = PublishBody {
        properties: Properties {
            delivery_mode: PERSISTENT,
            content_type,
            message_id: &webhook.message_id,
            timestamp: envelope.timestamp,
            app_id: envelope.app_id,
            headers: Headers {
                method: &webhook.method,
                query: &webhook.query,
                long_content_type,
                digest: webhook.parts().digest(),
            },
        },
        routing_key: envelope.routing_key,
        payload,
        payload_encoding,
    };
    serde_json::to_vec(&body).expect("a struct of strings and integers always serializes")
}

// ---- writing, AMQP transport: the basic properties --------------------------

/// The AMQP properties of `webhook`'s message, the same ones the HTTP publish
/// endpoint sets from [`publish_body`] (its headers arrive as long strings).
pub fn amqp_properties(webhook: &Webhook, envelope: Envelope<'_>) -> BasicProperties {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let (content_type, long_content_type) = content_type_fields(webhook);
    let mut headers = FieldTable::default();
    headers.insert(METHOD_HEADER.into(), text(&webhook.method));
    headers.insert(QUERY_HEADER.into(), text(&webhook.query));
    headers.insert(DIGEST_HEADER.into(), text(&webhook.parts().digest()));
    if let Some(long) = long_content_type {
        headers.insert(LONG_CONTENT_TYPE_HEADER.into(), text(long));
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(webhook.message_id.as_str().into())
        .with_timestamp(envelope.timestamp)
        .with_app_id(envelope.app_id.into())
        .with_headers(headers);
    if let Some(content_type) = content_type {
        properties = properties.with_content_type(content_type.into());
    }
    properties
}

// ---- the parts of a webhook, wherever it is held ------------------------------

/// The parts of a webhook that identify it and that templates read
/// ([`crate::template`]): the same on both sides of the queue, borrowed from
/// a [`Webhook`] about to be published or from a queued message read back
/// ([`Original::parts`]). The message id and the routing key are not parts:
/// two sends of the same webhook differ in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookParts<'a> {
    /// The sender's method, upper case.
    pub method: &'a str,
    /// The sender's raw query string, function key removed, maybe empty.
    pub query: &'a str,
    /// The sender's `Content-Type`, if it sent one.
    pub content_type: Option<&'a str>,
    /// The body, byte for byte.
    pub body: &'a [u8],
}

impl WebhookParts<'_> {
    /// The webhook's digest: the hex SHA-256 of `METHOD \n QUERY \n
    /// CONTENT-TYPE \n BODY` (no spaces; an absent content type is empty).
    /// Two sends of the same webhook have the same digest whatever their
    /// message ids; one byte more or less anywhere changes it. Unambiguous:
    /// none of the first three can hold a line break (HTTP forbids it in a
    /// request line and a header value).
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.method.as_bytes(),
            self.query.as_bytes(),
            self.content_type.unwrap_or("").as_bytes(),
        ] {
            hasher.update(part);
            hasher.update(b"\n");
        }
        hasher.update(self.body);
        hex::encode(hasher.finalize())
    }
}

impl Webhook {
    /// This webhook's parts, as a consumer will read them back.
    pub fn parts(&self) -> WebhookParts<'_> {
        WebhookParts {
            method: &self.method,
            query: &self.query,
            content_type: self.content_type.as_deref(),
            body: &self.body,
        }
    }
}

// ---- reading: which request a queued message stands for ---------------------

/// The original webhook request a queued message describes, body aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// The `message_id` property; consumers deduplicate by it.
    pub message_id: Option<String>,
    /// The sender's method, upper case; `POST` when the message does not say.
    pub method: String,
    /// The sender's raw query string (function key removed), maybe empty.
    pub query: String,
    /// The sender's `Content-Type`, if it sent one.
    pub content_type: Option<String>,
}

impl Original {
    /// Reads the properties the forwarder sets; messages published by anything
    /// else still read, as a POST of their body.
    pub fn from_properties(properties: &BasicProperties) -> Self {
        let headers = properties.headers().as_ref();
        let header = |name: &str| headers.and_then(|h| text_header(h, name));
        let method = header(METHOD_HEADER)
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "POST".to_owned());
        let content_type = properties
            .content_type()
            .as_ref()
            .map(|ct| ct.as_str().to_owned())
            .or_else(|| header(LONG_CONTENT_TYPE_HEADER));
        Self {
            message_id: properties.message_id().as_ref().map(|id| id.as_str().to_owned()),
            method,
            query: header(QUERY_HEADER).unwrap_or_default(),
            content_type,
        }
    }
}

impl Original {
    /// The queued webhook's parts, with `body`, the message's payload.
    pub fn parts<'a>(&'a self, body: &'a [u8]) -> WebhookParts<'a> {
        WebhookParts {
            method: &self.method,
            query: &self.query,
            content_type: self.content_type.as_deref(),
            body,
        }
    }
}

/// A string header, whichever AMQP string type carries it (the HTTP publish
/// endpoint stores long strings; AMQP clients may send short ones).
pub fn text_header(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        _ => None,
    }
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

    const ENVELOPE: Envelope<'static> = Envelope {
        routing_key: "webhook",
        app_id: "app",
        timestamp: 1_795_950_000,
    };

    fn build(webhook: &Webhook) -> Value {
        serde_json::from_slice(&publish_body(webhook, ENVELOPE)).unwrap()
    }

    #[test]
    fn utf8_body_is_sent_as_a_string_with_all_properties() {
        let body = build(&webhook(b"old=101&new=101", Some("application/x-www-form-urlencoded")));
        // The digest is what `printf 'POST\ntype=product\napplication/x-www-form-urlencoded\nold=101&new=101' | sha256sum` prints.
        assert_eq!(
            body,
            json!({
                "properties": {
                    "delivery_mode": 2,
                    "content_type": "application/x-www-form-urlencoded",
                    "message_id": "id-1",
                    "timestamp": 1_795_950_000,
                    "app_id": "app",
                    "headers": {
                        "x-http-method": "POST",
                        "x-http-query": "type=product",
                        "x-webhook-sha256": "86a318b228c636a3f1ebc620751a5b8562424b56ba39e1310544db6da6a004a3"
                    }
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
    fn both_transports_write_the_same_properties() {
        let long = format!("text/plain; x={}", "y".repeat(300));
        for content_type in [None, Some("application/json"), Some(long.as_str())] {
            let webhook = webhook(b"x", content_type);
            let json = build(&webhook)["properties"].clone();
            let amqp = amqp_properties(&webhook, ENVELOPE);
            assert_eq!(amqp.delivery_mode(), &Some(PERSISTENT));
            assert_eq!(
                amqp.message_id().as_ref().map(|s| s.as_str()),
                json["message_id"].as_str()
            );
            assert_eq!(amqp.timestamp(), &json["timestamp"].as_u64());
            assert_eq!(amqp.app_id().as_ref().map(|s| s.as_str()), json["app_id"].as_str());
            assert_eq!(
                amqp.content_type().as_ref().map(|s| s.as_str()),
                json["content_type"].as_str()
            );
            let headers = amqp.headers().clone().unwrap();
            let json_headers = json["headers"].as_object().unwrap();
            assert_eq!(headers.inner().len(), json_headers.len());
            for (name, value) in json_headers {
                assert_eq!(text_header(&headers, name).as_deref(), value.as_str(), "{name}");
            }
        }
    }

    #[test]
    fn what_is_written_reads_back_as_the_original_request() {
        let long = format!("text/plain; x={}", "y".repeat(300));
        for content_type in [None, Some("application/x-www-form-urlencoded"), Some(long.as_str())] {
            let webhook = webhook(b"x", content_type);
            let original = Original::from_properties(&amqp_properties(&webhook, ENVELOPE));
            assert_eq!(
                original,
                Original {
                    message_id: Some(webhook.message_id.clone()),
                    method: webhook.method.clone(),
                    query: webhook.query.clone(),
                    content_type: webhook.content_type.clone(),
                }
            );
        }
    }

    #[test]
    fn a_webhook_and_its_queued_message_have_the_same_parts() {
        let long = format!("text/plain; x={}", "y".repeat(300));
        for content_type in [None, Some("application/x-www-form-urlencoded"), Some(long.as_str())] {
            let webhook = webhook(b"old=101&new=102", content_type);
            let original = Original::from_properties(&amqp_properties(&webhook, ENVELOPE));
            assert_eq!(original.parts(&webhook.body), webhook.parts());
        }
    }

    #[test]
    fn the_digest_covers_each_part_and_nothing_else() {
        let sent = webhook(b"old=101&new=102", Some("application/x-www-form-urlencoded"));
        let digest = sent.parts().digest();
        // What `printf 'POST\ntype=product\napplication/x-www-form-urlencoded\nold=101&new=102' | sha256sum` prints.
        assert_eq!(
            digest,
            "147043b93148d0085ec0e3ab3b8d901e4ae766aa67848a47d9419e1342429244"
        );
        let again = Webhook {
            message_id: "another-id".to_owned(),
            ..sent.clone()
        };
        assert_eq!(again.parts().digest(), digest);
        let changed = [
            Webhook {
                method: "GET".to_owned(),
                ..sent.clone()
            },
            Webhook {
                query: "type=products".to_owned(),
                ..sent.clone()
            },
            Webhook {
                content_type: None,
                ..sent.clone()
            },
            Webhook {
                body: Bytes::from_static(b"old=101&new=103"),
                ..sent.clone()
            },
        ];
        for other in changed {
            assert_ne!(other.parts().digest(), digest, "{other:?}");
        }
    }

    #[test]
    fn a_bare_message_reads_as_a_post_without_query_or_content_type() {
        let original = Original::from_properties(&BasicProperties::default());
        assert_eq!(original.method, "POST");
        assert_eq!(original.query, "");
        assert_eq!(original.content_type, None);
        assert_eq!(original.message_id, None);
    }

    #[test]
    fn short_string_headers_are_read_too() {
        let mut table = FieldTable::default();
        table.insert(METHOD_HEADER.into(), AMQPValue::ShortString("GET".into()));
        let properties = BasicProperties::default().with_headers(table);
        assert_eq!(Original::from_properties(&properties).method, "GET");
    }

    #[test]
    fn header_names_match_the_documented_constants() {
        let body = build(&webhook(b"x", None));
        let headers = &body["properties"]["headers"];
        assert_eq!(headers[METHOD_HEADER], "POST");
        assert_eq!(headers[QUERY_HEADER], "type=product");
        assert_eq!(headers[DIGEST_HEADER], webhook(b"x", None).parts().digest().as_str());
    }

    #[test]
    fn both_transports_write_the_same_digest_and_routing_key() {
        let sent = webhook(b"old=101&new=102", Some("application/x-www-form-urlencoded"));
        let envelope = Envelope {
            routing_key: "webhook.product",
            ..ENVELOPE
        };
        let json: Value = serde_json::from_slice(&publish_body(&sent, envelope)).unwrap();
        let amqp = amqp_properties(&sent, envelope);
        let digest = text_header(amqp.headers().as_ref().unwrap(), DIGEST_HEADER);
        assert_eq!(digest.as_deref(), Some(sent.parts().digest().as_str()));
        assert_eq!(json["properties"]["headers"][DIGEST_HEADER], sent.parts().digest());
        assert_eq!(json["routing_key"], "webhook.product");
        // The AMQP transport publishes with the envelope's key itself (publish::amqp).
    }
}
