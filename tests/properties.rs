//! Property tests (the fuzz targets): random input through the host-payload
//! parser and the publish-body builder. A short bounded run (proptest's 256
//! cases per property) is part of every test run; raise PROPTEST_CASES for a
//! longer one, e.g. `PROPTEST_CASES=100000 cargo test --test properties`.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use webhook_forwarder::broker::message::{Envelope, publish_body};
use webhook_forwarder::intake::host::invocation::InvocationRequest;
use webhook_forwarder::webhook::{Webhook, strip_function_key};

const ENVELOPE: Envelope<'static> = Envelope {
    routing_key: "webhook",
    app_id: "app",
    timestamp: 1,
};

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/x-www-form-urlencoded".to_owned())),
        Just(Some("application/json; charset=utf-8".to_owned())),
        Just(Some("application/octet-stream".to_owned())),
        Just(Some("multipart/form-data; boundary=x".to_owned())),
        "[ -~]{0,300}".prop_map(Some),
    ]
}

/// Query strings with `code` pairs mixed in, encoded in various ways.
fn query() -> impl Strategy<Value = String> {
    let pair = prop_oneof![
        "[a-z]{1,5}=[a-zA-Z0-9%+]{0,8}",
        Just("code=KEY".to_owned()),
        Just("%63ode=KEY".to_owned()),
        Just("code".to_owned()),
        "[a-z]{0,3}code[a-z]{0,3}=x",
    ];
    prop::collection::vec(pair, 0..6).prop_map(|pairs| pairs.join("&"))
}

fn decoded_keys(query: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect()
}

proptest! {
    #[test]
    fn the_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = InvocationRequest::parse(&bytes);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_json_in_data_req(value in arbitrary_json()) {
        let document = json!({ "Data": { "req": value } }).to_string();
        if let Ok(request) = InvocationRequest::parse(document.as_bytes()) {
            let _ = request.data.req.into_webhook(None);
        }
    }

    #[test]
    fn a_host_envelope_yields_the_original_body_and_no_function_key(
        body in prop::collection::vec(any::<u8>(), 0..512),
        content_type in content_type(),
        method in "(GET|POST|post|PuT)",
        query in query(),
    ) {
        let binary = content_type.as_deref().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap().trim().to_ascii_lowercase();
            essence == "application/octet-stream" || essence.starts_with("multipart/")
        });
        // The host sends text bodies as UTF-8 text, so a text body is made valid UTF-8.
        let body = if binary { body } else { String::from_utf8_lossy(&body).into_owned().into_bytes() };
        let mut headers = serde_json::Map::new();
        if let Some(ct) = &content_type {
            headers.insert("Content-Type".to_owned(), json!([ct]));
        }
        let mut req = json!({
            "Url": format!("https://x.azurewebsites.net/api/WebhookForwarder?{query}"),
            "Method": method,
            "Headers": headers,
        });
        if !body.is_empty() {
            req["Body"] = if binary { json!(BASE64.encode(&body)) } else { json!(std::str::from_utf8(&body).unwrap()) };
        }
        let document = json!({ "Data": { "req": req } }).to_string();

        let webhook = InvocationRequest::parse(document.as_bytes()).unwrap().data.req.into_webhook(Some("id")).unwrap();

        prop_assert_eq!(&webhook.body[..], &body[..]);
        prop_assert_eq!(webhook.method, method.to_ascii_uppercase());
        prop_assert!(!decoded_keys(&webhook.query).contains(&"code".to_owned()), "{}", webhook.query);
    }

    #[test]
    fn stripping_the_key_keeps_every_other_pair_in_order(query in query()) {
        let stripped = strip_function_key(&query);
        let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).filter(|p| {
            let key = p.split_once('=').map_or(*p, |(k, _)| k);
            decoded_keys(&format!("{key}=")).first().map(String::as_str) != Some("code")
        }).collect();
        prop_assert_eq!(stripped, kept.join("&"));
    }

    #[test]
    fn the_publish_body_carries_the_exact_bytes_and_properties(
        body in prop::collection::vec(any::<u8>(), 0..1024),
        content_type in content_type(),
        query in "[ -~]{0,64}",
        message_id in "[ -~]{1,64}",
    ) {
        let webhook = Webhook {
            message_id: message_id.clone(),
            method: "POST".to_owned(),
            content_type: content_type.clone(),
            query: query.clone(),
            body: Bytes::from(body.clone()),
        };

        let published: Value = serde_json::from_slice(&publish_body(&webhook, ENVELOPE)).unwrap();

        let payload = published["payload"].as_str().unwrap();
        let bytes = match published["payload_encoding"].as_str().unwrap() {
            "string" => payload.as_bytes().to_vec(),
            "base64" => BASE64.decode(payload).unwrap(),
            other => panic!("unknown encoding {other}"),
        };
        prop_assert_eq!(bytes, body);
        let properties = &published["properties"];
        prop_assert_eq!(&properties["delivery_mode"], &json!(2));
        prop_assert_eq!(&properties["message_id"], &json!(message_id));
        prop_assert_eq!(&properties["headers"]["x-http-query"], &json!(query));
        let shown_type = properties.get("content_type").or_else(|| properties["headers"].get("x-http-content-type"));
        prop_assert_eq!(shown_type.and_then(Value::as_str), content_type.as_deref());
        prop_assert!(properties.get("content_type").and_then(Value::as_str).is_none_or(|ct| ct.len() <= 255));
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,20}".prop_map(Value::String),
        Just(json!("POST")),
        Just(json!("application/octet-stream")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("Url".to_owned()),
                    Just("Method".to_owned()),
                    Just("Query".to_owned()),
                    Just("Headers".to_owned()),
                    Just("Body".to_owned()),
                    Just("Content-Type".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
