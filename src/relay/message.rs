//! Reads the forwarder's message format back: which request a queued message
//! stands for (see [`crate::publisher::message`] for the writing side).

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use reqwest::Method;

use crate::publisher::message::{LONG_CONTENT_TYPE_HEADER, METHOD_HEADER, QUERY_HEADER};

/// The original webhook request a queued message describes, body aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// The `message_id` property; the target deduplicates by it.
    pub message_id: Option<String>,
    /// The sender's method; `POST` when the message does not say.
    pub method: Method,
    /// The sender's raw query string (function key removed), maybe empty.
    pub query: String,
    /// The sender's `Content-Type`, if it sent one.
    pub content_type: Option<String>,
}

impl Original {
    /// Reads the properties the forwarder sets; messages published by anything
    /// else still relay, as a POST of their body.
    pub fn from_properties(properties: &BasicProperties) -> Self {
        let headers = properties.headers().as_ref();
        let header = |name: &str| headers.and_then(|h| text_header(h, name));
        let method = header(METHOD_HEADER)
            .and_then(|m| Method::from_bytes(m.trim().as_bytes()).ok())
            .unwrap_or(Method::POST);
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

/// A string header, whichever AMQP string type carries it (the management
/// API's publish stores long strings; AMQP clients may send short ones).
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
    use lapin::types::{LongString, ShortString};

    fn headers(pairs: &[(&str, &str)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (name, value) in pairs {
            table.insert((*name).into(), AMQPValue::LongString(LongString::from(*value)));
        }
        table
    }

    #[test]
    fn a_forwarded_message_gives_back_its_request() {
        let properties = BasicProperties::default()
            .with_message_id("id-1".into())
            .with_content_type("application/x-www-form-urlencoded".into())
            .with_headers(headers(&[
                ("x-http-method", "PUT"),
                ("x-http-query", "type=product&id=1"),
            ]));
        assert_eq!(
            Original::from_properties(&properties),
            Original {
                message_id: Some("id-1".to_owned()),
                method: Method::PUT,
                query: "type=product&id=1".to_owned(),
                content_type: Some("application/x-www-form-urlencoded".to_owned()),
            }
        );
    }

    #[test]
    fn an_overlong_content_type_is_read_from_its_header() {
        let long = format!("text/plain; x={}", "y".repeat(300));
        let properties = BasicProperties::default().with_headers(headers(&[("x-http-content-type", &long)]));
        assert_eq!(Original::from_properties(&properties).content_type, Some(long));
    }

    #[test]
    fn a_bare_message_is_a_post_without_query_or_content_type() {
        let original = Original::from_properties(&BasicProperties::default());
        assert_eq!(original.method, Method::POST);
        assert_eq!(original.query, "");
        assert_eq!(original.content_type, None);
        assert_eq!(original.message_id, None);
    }

    #[test]
    fn a_malformed_method_falls_back_to_post() {
        let properties = BasicProperties::default().with_headers(headers(&[("x-http-method", "NOT A METHOD")]));
        assert_eq!(Original::from_properties(&properties).method, Method::POST);
    }

    #[test]
    fn short_string_headers_are_read_too() {
        let mut table = FieldTable::default();
        table.insert("x-http-method".into(), AMQPValue::ShortString(ShortString::from("GET")));
        let properties = BasicProperties::default().with_headers(table);
        assert_eq!(Original::from_properties(&properties).method, Method::GET);
    }
}
