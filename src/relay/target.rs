//! The outbound side: one HTTP request per attempt to the user's endpoint,
//! rebuilt from the queued message, judged 2xx or not.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::broker::message::Original;
use crate::http_client;

/// Header carrying the message id, for the target to deduplicate.
pub const MESSAGE_ID_HEADER: &str = "X-Webhook-Message-Id";
/// Header carrying the attempt number, 1 for the first.
pub const ATTEMPT_HEADER: &str = "X-Webhook-Attempt";

/// Most bytes of a target's answer read: answers are discarded, but reading a
/// small one fully lets the connection be reused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why an attempt did not count as delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The target answered, but not 2xx.
    #[error("the target answered HTTP {0}")]
    Status(StatusCode),
    /// No complete answer within the timeout.
    #[error("the target did not answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    #[error("the request failed: {0}")]
    Transport(String),
}

/// The user's endpoint, with one pooled client every delivery shares.
#[derive(Debug)]
pub struct Target {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
}

impl Target {
    /// Builds the client: rustls, keep-alive for `concurrency` connections,
    /// no redirects (a redirected POST turns into a GET and loses its body).
    pub fn new(url: Url, timeout: Duration, concurrency: usize) -> Result<Self, reqwest::Error> {
        let client = http_client::client(concurrency, timeout)?;
        Ok(Self { client, url, timeout })
    }

    /// The target for logs: no password, no query (either may hold a key).
    pub fn redacted(&self) -> String {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        let hidden = url.query().is_some();
        url.set_query(None);
        if hidden {
            format!("{url}?[hidden]")
        } else {
            url.to_string()
        }
    }

    /// Sends attempt number `attempt` of a message: its method, body byte for
    /// byte, `Content-Type` and query, plus the message id and attempt headers.
    pub async fn deliver(&self, original: &Original, body: Bytes, attempt: u32) -> Result<StatusCode, Failure> {
        let mut request = self
            .client
            .request(method_of(original), url_for(&self.url, &original.query))
            .header(USER_AGENT, concat!("webhook-relay/", env!("CARGO_PKG_VERSION")))
            .header(ATTEMPT_HEADER, attempt)
            .timeout(self.timeout)
            .body(body);
        if let Some(id) = original
            .message_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            request = request.header(MESSAGE_ID_HEADER, id);
        }
        if let Some(ct) = original
            .content_type
            .as_deref()
            .and_then(|ct| HeaderValue::from_str(ct).ok())
        {
            request = request.header(CONTENT_TYPE, ct);
        }
        let mut response = request.send().await.map_err(|e| self.failure(e))?;
        let status = response.status();
        let mut read = 0;
        while read < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break,
                // The status is in; a broken answer body does not undo a 2xx.
                Err(e) if status.is_success() => {
                    tracing::debug!("could not read the rest of the target's answer: {}", e.without_url());
                    break;
                }
                Err(e) => return Err(self.failure(e)),
            }
        }
        if status.is_success() {
            Ok(status)
        } else {
            Err(Failure::Status(status))
        }
    }

    fn failure(&self, error: reqwest::Error) -> Failure {
        if error.is_timeout() {
            Failure::Timeout(self.timeout)
        } else {
            // The URL may hold a key in its query; the cause chain says enough.
            Failure::Transport(http_client::error_chain(&error.without_url()))
        }
    }
}

/// The sender's method; POST when the message names none a request can carry.
fn method_of(original: &Original) -> Method {
    Method::from_bytes(original.method.as_bytes()).unwrap_or(Method::POST)
}

/// The target URL with the webhook's raw query appended to any query the
/// target URL already has, both kept as encoded.
pub fn url_for(target: &Url, query: &str) -> Url {
    let mut url = target.clone();
    if query.is_empty() {
        return url;
    }
    let merged = match target.query() {
        Some(own) if !own.is_empty() => format!("{own}&{query}"),
        _ => query.to_owned(),
    };
    url.set_query(Some(&merged));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn the_query_is_appended_as_encoded() {
        let merged = url_for(&url("http://h/hook.php"), "type=product&name=a%20b+c&x=%26");
        assert_eq!(merged.as_str(), "http://h/hook.php?type=product&name=a%20b+c&x=%26");
    }

    #[test]
    fn the_query_joins_the_targets_own() {
        let merged = url_for(&url("http://h/hook.php?secret=1"), "type=product");
        assert_eq!(merged.as_str(), "http://h/hook.php?secret=1&type=product");
    }

    #[test]
    fn an_empty_query_leaves_the_target_alone() {
        assert_eq!(url_for(&url("http://h/x?a=1"), "").as_str(), "http://h/x?a=1");
        assert_eq!(url_for(&url("http://h/x"), "").as_str(), "http://h/x");
        assert_eq!(url_for(&url("http://h/x?"), "b=2").as_str(), "http://h/x?b=2");
    }

    #[test]
    fn a_malformed_method_falls_back_to_post() {
        let original = |method: &str| Original {
            message_id: None,
            method: method.to_owned(),
            query: String::new(),
            content_type: None,
        };
        assert_eq!(method_of(&original("PUT")), Method::PUT);
        assert_eq!(method_of(&original("NOT A METHOD")), Method::POST);
    }

    #[test]
    fn the_logged_target_hides_password_and_query() {
        let target = Target::new(url("https://u:pw@h/x?key=k"), Duration::from_secs(1), 1).unwrap();
        let shown = target.redacted();
        assert!(!shown.contains("pw") && !shown.contains("key=k"), "{shown}");
        assert_eq!(shown, "https://u:***@h/x?[hidden]");
    }
}
