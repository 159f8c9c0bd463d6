//! How this crate talks HTTP to the broker's management API, shared by the
//! publisher and the operations commands: one client configuration and one
//! way to turn the auth secret into a header.

use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::secret::Secret;

/// The auth secret holds characters an HTTP header cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("setting AmqpAuthHeader holds characters an HTTP header cannot carry")]
pub struct BadAuthHeader;

/// The `Authorization` header for `secret`, marked sensitive so no debug
/// print of a request shows it.
pub fn authorization(secret: &Secret) -> Result<HeaderValue, BadAuthHeader> {
    let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| BadAuthHeader)?;
    value.set_sensitive(true);
    Ok(value)
}

/// A pooled rustls client keeping up to `max_idle` connections alive.
pub fn client(max_idle: usize, connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(max_idle)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // A redirected POST would turn into a GET and publish nothing; a
        // redirected PUT could declare on a server nobody configured.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// A reqwest failure with its cause chain, which holds the useful part
/// ("connection refused"). The URL it names holds no secret: settings refuse
/// an endpoint with credentials in it.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    reason: Option<String>,
    error: Option<String>,
}

/// The broker's `reason` (or `error`) field of an error answer such as
/// `{"error":"not_found","reason":"..."}`, else the start of the body;
/// control characters dropped so it fits on one log line.
pub fn reason(answer: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let parsed = serde_json::from_slice::<ErrorAnswer>(answer).ok();
    let text = match parsed.and_then(|a| a.reason.or(a.error)) {
        Some(reason) => reason,
        None => String::from_utf8_lossy(answer).trim().to_owned(),
    };
    let text: String = text.chars().filter(|c| !c.is_control()).take(MAX_CHARS).collect();
    if text.is_empty() {
        "no reason given".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_prefers_the_reason_field_then_error_then_the_body() {
        assert_eq!(
            reason(br#"{"error":"not_found","reason":"vhost_not_found"}"#),
            "vhost_not_found"
        );
        assert_eq!(reason(br#"{"error":"bad_request"}"#), "bad_request");
        assert_eq!(reason(b"bad gateway\n"), "bad gateway");
        assert_eq!(reason(b""), "no reason given");
    }

    #[test]
    fn the_authorization_header_is_sensitive() {
        let value = authorization(&Secret::new("Basic eDp5")).unwrap();
        assert!(value.is_sensitive());
        assert!(authorization(&Secret::new("Basic \n")).is_err());
    }
}
