//! The host's invocation request in payload mode: `{"Data":{"req":{...}},"Metadata":{...}}`.
//!
//! Tolerant of what real hosts send (header values as arrays, any header name
//! case, `Query` as an object or an old host's string, no `Body`, no
//! `Identities`) and strict about the rest, with errors that name the field.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;

use crate::webhook::{self, Webhook};

/// The invocation request body. `Metadata` is informational and ignored.
#[derive(Debug, Deserialize)]
pub struct InvocationRequest {
    /// The trigger data, keyed by binding name.
    #[serde(rename = "Data")]
    pub data: InvocationData,
}

/// `Data`: one entry per input binding; ours is the HTTP trigger `req`.
#[derive(Debug, Deserialize)]
pub struct InvocationData {
    /// The HTTP trigger's request.
    pub req: HttpTriggerRequest,
}

/// `Data.req`: the sender's HTTP request as the host describes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpTriggerRequest {
    /// The full original URL, query (with the function key) included.
    #[serde(default)]
    pub url: Option<String>,
    /// The original method.
    pub method: String,
    /// The query as an object (or a string, from hosts before Sept 2020).
    #[serde(default)]
    pub query: Option<QueryField>,
    /// Header values, normally arrays of strings.
    #[serde(default)]
    pub headers: Option<HashMap<String, HeaderValues>>,
    /// The body: text, or base64 for octet-stream and multipart; absent for
    /// chunked or empty originals.
    #[serde(default)]
    pub body: Option<String>,
}

/// `Query` as hosts have sent it.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "an object of strings, or a string")]
pub enum QueryField {
    /// Current hosts: `{"type":"product","code":"KEY"}`.
    Object(HashMap<String, Option<String>>),
    /// Old hosts: a JSON object serialized into a string.
    Text(String),
}

/// One header's values as hosts have sent them.
#[derive(Debug)]
pub enum HeaderValues {
    /// Current hosts: `["application/json"]`.
    Many(Vec<String>),
    /// Tolerated: a single string.
    One(String),
}

// By hand rather than `#[serde(untagged)]`: untagged buffers every value
// before trying each shape, and a request carries a dozen headers (payload
// mode spent a tenth of its CPU there under a burst).
impl<'de> Deserialize<'de> for HeaderValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shapes;
        impl<'de> serde::de::Visitor<'de> for Shapes {
            type Value = HeaderValues;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of strings, or a string")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<HeaderValues, E> {
                Ok(HeaderValues::One(value.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<HeaderValues, E> {
                Ok(HeaderValues::One(value))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderValues, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(value) = seq.next_element()? {
                    values.push(value);
                }
                Ok(HeaderValues::Many(values))
            }
        }
        deserializer.deserialize_any(Shapes)
    }
}

/// A malformed invocation request; the text names the offending field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvocationError(pub String);

impl InvocationRequest {
    /// Parses the host's JSON, naming the path of any bad field (`Data.req.Method: ...`).
    pub fn parse(json: &[u8]) -> Result<Self, InvocationError> {
        // Tracking the path costs on every field of every invocation: parse
        // plainly, and again with the path only to explain a failure. serde_json's own
        // recursion limit (128) stops deeply nested input either way.
        serde_json::from_slice(json).or_else(|_| Self::parse_naming_the_path(json))
    }

    /// The same parse, tracking the path of the field being read.
    fn parse_naming_the_path(json: &[u8]) -> Result<Self, InvocationError> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = without_quoted_values(&e.into_inner().to_string());
                InvocationError(if path == "." { inner } else { format!("{path}: {inner}") })
            })
            .and_then(|request: Self| {
                deserializer
                    .end()
                    .map(|()| request)
                    .map_err(|e| InvocationError(format!("trailing data after the JSON: {e}")))
            })
    }
}

impl HttpTriggerRequest {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        let (_, values) = self
            .headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        match values {
            HeaderValues::Many(values) => values.first().map(String::as_str),
            HeaderValues::One(value) => Some(value),
        }
    }

    /// Turns the request into a webhook: body decoded to its original bytes,
    /// query taken from the URL (as sent, order kept) with the function key removed.
    pub fn into_webhook(self, invocation_id: Option<&str>) -> Result<Webhook, InvocationError> {
        let content_type = self.header("content-type").map(str::to_owned);
        let body = match self.body {
            None => Bytes::new(),
            Some(text) if content_type.as_deref().is_some_and(host_sends_base64) => {
                Bytes::from(BASE64.decode(text.trim()).map_err(|e| {
                    InvocationError(format!(
                        "Data.req.Body: not valid base64 although the Content-Type is {} ({e})",
                        content_type.as_deref().unwrap_or_default()
                    ))
                })?)
            }
            Some(text) => Bytes::from(text),
        };
        let query = match (&self.url, &self.query) {
            (Some(url), _) => raw_query_of(url).to_owned(),
            (None, Some(query)) => query.to_query_string(),
            (None, None) => String::new(),
        };
        Ok(Webhook {
            message_id: webhook::message_id(invocation_id),
            method: self.method.to_ascii_uppercase(),
            content_type,
            query: webhook::strip_function_key(&query),
            body,
        })
    }
}

impl QueryField {
    /// Rebuilds a query string from the object form (used only without `Url`).
    fn to_query_string(&self) -> String {
        let pairs = match self {
            Self::Object(map) => map.clone(),
            Self::Text(text) => match serde_json::from_str::<HashMap<String, Option<String>>>(text) {
                Ok(map) => map,
                Err(_) => return text.trim_start_matches('?').to_owned(),
            },
        };
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.sort();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in pairs {
            query.append_pair(&key, value.as_deref().unwrap_or_default());
        }
        query.finish()
    }
}

/// serde echoes a wrongly typed string value (`invalid type: string "..."`);
/// that value could be the function key, so every quoted value is elided.
fn without_quoted_values(message: &str) -> String {
    let mut parts = message.split('"');
    let mut out = parts.next().unwrap_or_default().to_owned();
    while let (Some(_quoted), Some(rest)) = (parts.next(), parts.next()) {
        out.push_str("\"…\"");
        out.push_str(rest);
    }
    out
}

/// The host base64-encodes bodies of exactly these types; all others arrive as text.
fn host_sends_base64(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/octet-stream" || essence.starts_with("multipart/")
}

/// The raw query of a URL, absolute or not, without `?` and fragment.
fn raw_query_of(url: &str) -> &str {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    without_fragment.split_once('?').map_or("", |(_, query)| query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<Webhook, InvocationError> {
        InvocationRequest::parse(value.to_string().as_bytes())?
            .data
            .req
            .into_webhook(Some("inv-1"))
    }

    fn req(fields: serde_json::Value) -> serde_json::Value {
        json!({ "Data": { "req": fields }, "Metadata": {} })
    }

    #[test]
    fn a_real_host_request_becomes_the_original_webhook() {
        let webhook = parse(req(json!({
            "Url": "https://app.azurewebsites.net/api/WebhookForwarder?type=product&code=KEY",
            "Method": "POST",
            "Query": { "type": "product", "code": "KEY" },
            "Headers": { "Content-Type": ["application/x-www-form-urlencoded"], "Content-Length": ["15"] },
            "Params": {},
            "Identities": [],
            "Body": "old=101&new=101"
        })))
        .unwrap();
        assert_eq!(webhook.message_id, "inv-1");
        assert_eq!(webhook.method, "POST");
        assert_eq!(
            webhook.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(webhook.query, "type=product");
        assert_eq!(&webhook.body[..], b"old=101&new=101");
    }

    #[test]
    fn header_names_match_in_any_case() {
        let webhook = parse(req(
            json!({ "Method": "POST", "Headers": { "content-TYPE": ["text/plain"] } }),
        ))
        .unwrap();
        assert_eq!(webhook.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn a_single_string_header_value_is_tolerated() {
        let webhook = parse(req(
            json!({ "Method": "POST", "Headers": { "Content-Type": "text/plain" } }),
        ))
        .unwrap();
        assert_eq!(webhook.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn no_body_means_an_empty_body() {
        let webhook = parse(req(json!({ "Method": "GET", "Url": "http://h/api/F?new=7" }))).unwrap();
        assert!(webhook.body.is_empty());
        assert_eq!(webhook.method, "GET");
        assert_eq!(webhook.query, "new=7");
    }

    #[test]
    fn octet_stream_and_multipart_bodies_are_base64_decoded() {
        for content_type in [
            "application/octet-stream",
            "multipart/form-data; boundary=x",
            "Application/Octet-Stream",
        ] {
            let webhook = parse(req(json!({
                "Method": "POST",
                "Headers": { "Content-Type": [content_type] },
                "Body": "/wBhYg=="
            })))
            .unwrap();
            assert_eq!(&webhook.body[..], b"\xff\x00ab", "{content_type}");
        }
    }

    #[test]
    fn bad_base64_for_a_binary_type_is_a_clear_error() {
        let err = parse(req(json!({
            "Method": "POST",
            "Headers": { "Content-Type": ["application/octet-stream"] },
            "Body": "***"
        })))
        .unwrap_err();
        assert!(err.0.starts_with("Data.req.Body: not valid base64"), "{}", err.0);
    }

    #[test]
    fn json_bodies_stay_text() {
        let webhook = parse(req(json!({
            "Method": "POST",
            "Headers": { "Content-Type": ["application/json"] },
            "Body": "{\"a\":1}"
        })))
        .unwrap();
        assert_eq!(&webhook.body[..], b"{\"a\":1}");
    }

    #[test]
    fn without_url_the_query_object_is_used_minus_the_key() {
        let webhook = parse(req(
            json!({ "Method": "POST", "Query": { "b": "2", "code": "K", "a": "x y" } }),
        ))
        .unwrap();
        assert_eq!(webhook.query, "a=x+y&b=2");
    }

    #[test]
    fn an_old_hosts_query_string_is_tolerated() {
        let webhook = parse(req(
            json!({ "Method": "POST", "Query": "{\"new\":\"5\",\"code\":\"K\"}" }),
        ))
        .unwrap();
        assert_eq!(webhook.query, "new=5");
        let webhook = parse(req(json!({ "Method": "POST", "Query": "{}" }))).unwrap();
        assert_eq!(webhook.query, "");
    }

    #[test]
    fn the_url_fragment_is_not_part_of_the_query() {
        let webhook = parse(req(json!({ "Method": "POST", "Url": "/api/F?x=1&code=K#frag" }))).unwrap();
        assert_eq!(webhook.query, "x=1");
    }

    #[test]
    fn a_missing_data_is_named() {
        let err = InvocationRequest::parse(br#"{"Metadata":{}}"#).unwrap_err();
        assert!(err.0.contains("missing field `Data`"), "{}", err.0);
    }

    #[test]
    fn a_missing_method_is_named() {
        let err = parse(req(json!({ "Url": "http://h/" }))).unwrap_err();
        assert!(err.0.contains("Data.req: missing field `Method`"), "{}", err.0);
    }

    #[test]
    fn wrong_types_are_named_by_path() {
        let cases = [
            (json!({ "Method": 1 }), "Data.req.Method"),
            (json!({ "Method": "POST", "Url": [] }), "Data.req.Url"),
            (json!({ "Method": "POST", "Body": {"a": 1} }), "Data.req.Body"),
            (json!({ "Method": "POST", "Headers": [] }), "Data.req.Headers"),
            (
                json!({ "Method": "POST", "Headers": { "A": [1] } }),
                "Data.req.Headers.A",
            ),
            (json!({ "Method": "POST", "Query": 5 }), "Data.req.Query"),
        ];
        for (fields, path) in cases {
            let err = parse(req(fields)).unwrap_err();
            assert!(err.0.starts_with(path), "{path}: {}", err.0);
        }
    }

    #[test]
    fn a_wrongly_typed_string_is_not_echoed() {
        let err = parse(req(json!({ "Method": "POST", "Headers": "code=SECRETKEY" }))).unwrap_err();
        assert!(err.0.starts_with("Data.req.Headers: invalid type: string"), "{}", err.0);
        assert!(!err.0.contains("SECRETKEY"), "{}", err.0);
    }

    #[test]
    fn truncated_and_trailing_json_are_rejected() {
        assert!(InvocationRequest::parse(br#"{"Data":{"req":{"Method":"PO"#).is_err());
        let err = InvocationRequest::parse(br#"{"Data":{"req":{"Method":"POST"}}} x"#).unwrap_err();
        assert!(err.0.contains("trailing"), "{}", err.0);
    }

    #[test]
    fn deeply_nested_json_does_not_overflow_the_stack() {
        let nest = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        // In a field we read, nesting is a type error (and serde_json stops at depth 128).
        let in_headers = format!(
            r#"{{"Data":{{"req":{{"Method":"POST","Headers":{{"A":{}}}}}}}}}"#,
            nest(100_000)
        );
        let err = InvocationRequest::parse(in_headers.as_bytes()).unwrap_err();
        assert!(err.0.starts_with("Data.req.Headers"), "{}", err.0);
        // In a field we ignore (Params), serde_json skips it without recursing.
        let in_params = format!(r#"{{"Data":{{"req":{{"Method":"POST","Params":{}}}}}}}"#, nest(100_000));
        assert!(InvocationRequest::parse(in_params.as_bytes()).is_ok());
    }
}
