//! The webhook as the forwarder sees it, whichever way the host delivered it.

use bytes::Bytes;

/// Name of the function key query parameter: a secret that must never be published.
pub const FUNCTION_KEY_PARAM: &str = "code";

/// One received webhook, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Unique id of the message: the host's invocation id, or a fresh UUID standalone.
    pub message_id: String,
    /// The HTTP method the sender used (`POST`, sometimes `GET`).
    pub method: String,
    /// The sender's `Content-Type`, when it sent one.
    pub content_type: Option<String>,
    /// The raw query string without the function key, `?` excluded.
    pub query: String,
    /// The request body, byte for byte.
    pub body: Bytes,
}

/// Picks the message id: the invocation id when the host gave one, else a fresh UUID.
///
/// An id that could not be an AMQP `message_id` (over 255 bytes) or that
/// holds control characters is not trusted: standalone, anyone can send it.
pub fn message_id(invocation_id: Option<&str>) -> String {
    match invocation_id.map(str::trim) {
        Some(id) if !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control) => id.to_owned(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Removes every `code=` pair from a raw query string, keeping the other pairs
/// exactly as they were encoded (legacy webhooks may carry their data there).
pub fn strip_function_key(query: &str) -> String {
    strip_param(query, FUNCTION_KEY_PARAM)
}

/// Removes every pair named `name` from a raw query string (and empty
/// pairs), keeping the others exactly as they were encoded.
pub fn strip_param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !has_key(pair, name))
        .collect::<Vec<_>>()
        .join("&")
}

fn has_key(pair: &str, name: &str) -> bool {
    let key = pair.split_once('=').map_or(pair, |(key, _)| key);
    // The key may itself be percent-encoded (`%63ode`); compare it decoded.
    percent_encoding::percent_decode_str(&key.replace('+', " ")).decode_utf8_lossy() == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_key_is_removed_wherever_it_stands() {
        assert_eq!(strip_function_key("code=K&type=product"), "type=product");
        assert_eq!(strip_function_key("type=product&code=K"), "type=product");
        assert_eq!(strip_function_key("a=1&code=K&b=2"), "a=1&b=2");
        assert_eq!(strip_function_key("code=K"), "");
        assert_eq!(strip_function_key("code"), "");
    }

    #[test]
    fn repeated_and_encoded_function_keys_are_removed() {
        assert_eq!(strip_function_key("code=A&x=1&code=B"), "x=1");
        assert_eq!(strip_function_key("%63ode=K&x=1"), "x=1");
    }

    #[test]
    fn other_pairs_keep_their_encoding() {
        assert_eq!(
            strip_function_key("name=a%20b&encode=1&codes=2"),
            "name=a%20b&encode=1&codes=2"
        );
    }

    #[test]
    fn empty_pairs_are_dropped() {
        assert_eq!(strip_function_key("&&x=1&"), "x=1");
        assert_eq!(strip_function_key(""), "");
    }

    #[test]
    fn message_id_prefers_the_invocation_id() {
        assert_eq!(message_id(Some("abc")), "abc");
        let fresh = message_id(Some(" "));
        assert!(uuid::Uuid::parse_str(&fresh).is_ok());
        assert!(uuid::Uuid::parse_str(&message_id(Some(&"x".repeat(300)))).is_ok());
        assert!(uuid::Uuid::parse_str(&message_id(Some("a\u{0}b"))).is_ok());
        assert_ne!(message_id(None), message_id(None));
    }
}
