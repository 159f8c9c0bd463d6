//! The outbound side: one HTTP request per attempt to the user's endpoint,
//! rebuilt from the queued message (signed by [`super::signing`] and with the
//! [`super::endpoint_headers`] when those settings are set), judged 2xx or
//! not, and what a failure says about the target ([`Failure::outcome`], for
//! the circuit).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, StatusCode};
use url::Url;

use super::circuit::Outcome;
use super::endpoint_headers::EndpointHeaders;
use super::signing::Signer;
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
    /// The target answered, but not 2xx; with the wait its `Retry-After`
    /// asked for, on a 429 or 503 that had one.
    #[error("the target answered HTTP {0}")]
    Status(StatusCode, Option<Duration>),
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
    signer: Option<Signer>,
    headers: EndpointHeaders,
}

impl Target {
    /// Builds the client: rustls, keep-alive for `concurrency` connections,
    /// no redirects (a redirected POST turns into a GET and loses its body).
    pub fn new(url: Url, timeout: Duration, concurrency: usize) -> Result<Self, reqwest::Error> {
        let client = http_client::client(concurrency, timeout)?;
        Ok(Self {
            client,
            url,
            timeout,
            signer: None,
            headers: EndpointHeaders::default(),
        })
    }

    /// Signs every request with `signer` (`RelaySigningSecret`), if any.
    pub fn signed_by(self, signer: Option<Signer>) -> Self {
        Self { signer, ..self }
    }

    /// Adds `headers` (`RelayHeaders`) to every request.
    pub fn with_headers(self, headers: EndpointHeaders) -> Self {
        Self { headers, ..self }
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
    /// byte, `Content-Type` and query, plus the message id and attempt
    /// headers, the `RelayHeaders` and, with a signer, this attempt's signature.
    pub async fn deliver(&self, original: &Original, body: Bytes, attempt: u32) -> Result<StatusCode, Failure> {
        let mut request = self
            .client
            .request(method_of(original), url_for(&self.url, &original.query))
            .header(USER_AGENT, concat!("webhook-relay/", env!("CARGO_PKG_VERSION")))
            .header(ATTEMPT_HEADER, attempt)
            .timeout(self.timeout);
        if !self.headers.map().is_empty() {
            // After User-Agent: a User-Agent of RelayHeaders replaces the relay's.
            request = request.headers(self.headers.map().clone());
        }
        if let Some(signer) = &self.signer {
            // Signed now, not when the message arrived: the timestamp is this attempt's.
            request = request.headers(signer.headers(original, &body, SystemTime::now()));
        }
        request = request.body(body);
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
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                retry_after(response.headers(), SystemTime::now())
            }
            _ => None,
        };
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
            Err(Failure::Status(status, retry_after))
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

impl Failure {
    /// What this failure says about the target as a whole.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Status(status, retry_after) => match outcome_of(*status) {
                Outcome::Outage { .. } => Outcome::Outage {
                    retry_after: *retry_after,
                },
                other => other,
            },
            // No answer at all: the target (or the way to it) is unwell.
            Self::Timeout(_) | Self::Transport(_) => Outcome::Outage { retry_after: None },
        }
    }

    /// The HTTP status, when the target answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status(status, _) => Some(*status),
            Self::Timeout(_) | Self::Transport(_) => None,
        }
    }
}

/// What an answer's status says: 408 (the target timed out reading), 429
/// (it asks for less), 502, 503 and 504 (it or its backend is down) say the
/// target as a whole is unwell; any other 5xx may be this message's fault or
/// the target's; every other status is the target's word about this message.
pub fn outcome_of(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Accepted,
        408 | 429 | 502 | 503 | 504 => Outcome::Outage { retry_after: None },
        500..=599 => Outcome::ServerError,
        _ => Outcome::Refused,
    }
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (a date
/// already past is no wait); `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly many digits: as long as a wait can be (the circuit caps it).
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
    fn statuses_say_outage_server_error_or_refused() {
        let outcome = |code: u16| outcome_of(StatusCode::from_u16(code).unwrap());
        for code in [200, 201, 204, 299] {
            assert_eq!(outcome(code), Outcome::Accepted, "{code}");
        }
        for code in [408, 429, 502, 503, 504] {
            assert_eq!(outcome(code), Outcome::Outage { retry_after: None }, "{code}");
        }
        for code in [500, 501, 505, 507, 599] {
            assert_eq!(outcome(code), Outcome::ServerError, "{code}");
        }
        for code in [301, 302, 400, 401, 403, 404, 409, 410, 422] {
            assert_eq!(outcome(code), Outcome::Refused, "{code}");
        }
    }

    #[test]
    fn no_answer_is_an_outage_and_a_retry_after_travels_with_it() {
        let timeout = Failure::Timeout(Duration::from_secs(1));
        assert_eq!(timeout.outcome(), Outcome::Outage { retry_after: None });
        let refused = Failure::Transport("connection refused".to_owned());
        assert_eq!(refused.outcome(), Outcome::Outage { retry_after: None });
        let busy = Failure::Status(StatusCode::SERVICE_UNAVAILABLE, Some(Duration::from_secs(3)));
        assert_eq!(
            busy.outcome(),
            Outcome::Outage {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(busy.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(busy.to_string(), "the target answered HTTP 503 Service Unavailable");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert_eq!(retry_after(&headers("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&headers(" 0 "), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        assert_eq!(
            retry_after(&headers("99999999999999999999999"), now),
            Some(Duration::MAX)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&headers("-5"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_logged_target_hides_password_and_query() {
        let target = Target::new(url("https://u:pw@h/x?key=k"), Duration::from_secs(1), 1).unwrap();
        let shown = target.redacted();
        assert!(!shown.contains("pw") && !shown.contains("key=k"), "{shown}");
        assert_eq!(shown, "https://u:***@h/x?[hidden]");
    }
}
