//! How this crate reaches the broker's management HTTP API, shared by the
//! HTTP publisher and the operations commands: where the API is (beside the
//! publish endpoint), the credentials and their header, and how to read the
//! broker's error answers.
//!
//! Each value remembers which setting it came from, so a message about it
//! names the setting the user actually set.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::HeaderValue;
use url::Url;

use super::url::AmqpUrl;
use crate::secret::Secret;
use crate::urls::{self, Echo};

/// `POST {base}/api/exchanges/{vhost}/{exchange}/publish`, with its parts
/// decoded for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishEndpoint {
    /// The URL to POST to.
    pub url: Url,
    /// The virtual host, percent-decoded.
    pub vhost: String,
    /// The exchange, percent-decoded.
    pub exchange: String,
    /// The setting(s) it came from, for messages: `AmqpEndpoint`, or
    /// `AmqpUrl` (with `AmqpExchange`).
    pub setting: &'static str,
}

impl PublishEndpoint {
    /// Parses an explicit `AmqpEndpoint`; the error says what is wrong
    /// without quoting the value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = urls::parse(raw, &["http", "https"], Echo::Never)?;
        if !url.username().is_empty() || url.password().is_some() {
            // A password here would end up in logs; it belongs in AmqpAuthHeader.
            return Err("it contains credentials; put them in AmqpAuthHeader instead".to_owned());
        }
        let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
        let Some((vhost, exchange)) = (match segments.as_slice() {
            [.., "api", "exchanges", vhost, exchange, "publish"] => Some((*vhost, *exchange)),
            _ => None,
        }) else {
            return Err(format!(
                "path {:?} does not end in /api/exchanges/<vhost>/<exchange>/publish",
                url.path()
            ));
        };
        let (vhost, exchange) = (percent_decode(vhost), percent_decode(exchange));
        if vhost.is_empty() || exchange.is_empty() {
            return Err("the vhost or the exchange in its path is empty (the default vhost is %2F)".to_owned());
        }
        Ok(Self {
            url,
            vhost,
            exchange,
            setting: "AmqpEndpoint",
        })
    }

    /// The publish endpoint of `exchange` on the broker `amqp_url` names,
    /// its management API where the URL implies it.
    pub fn from_amqp_url(amqp_url: &AmqpUrl, exchange: &str) -> Self {
        Self::from_amqp_url_at(amqp_url, amqp_url.management_base(), exchange)
    }

    /// Like [`PublishEndpoint::from_amqp_url`], with the management API at
    /// `base` (`AmqpManagementUrl`; a path in it, a reverse proxy's prefix, is kept).
    pub fn from_amqp_url_at(amqp_url: &AmqpUrl, base: Url, exchange: &str) -> Self {
        let mut url = base;
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["api", "exchanges", amqp_url.vhost(), exchange, "publish"]);
        }
        Self {
            url,
            vhost: amqp_url.vhost().to_owned(),
            exchange: exchange.to_owned(),
            setting: "AmqpUrl",
        }
    }

    /// The management API URL made of `segments` on the same server, e.g.
    /// `["queues", "/", "q"]` -> `{base}/api/queues/%2F/q`; each segment is
    /// percent-encoded, `/` included, as the API wants vhost and names.
    pub fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        // Parsing guaranteed the path ends in exchanges/<vhost>/<exchange>/publish.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop().pop().pop().pop().extend(segments);
        }
        url
    }
}

/// Who the management API is asked as: the user, the `Authorization`
/// header value, and the setting they came from.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The broker user (not secret; named in messages to help fix credentials).
    pub user: String,
    /// The full header value, `Basic <base64(user:password)>`.
    pub authorization: Secret,
    /// `AmqpAuthHeader` or `AmqpUrl`, for messages.
    pub setting: &'static str,
}

impl Credentials {
    /// Reads an explicit `AmqpAuthHeader`: `Basic <base64>` or the bare
    /// base64 of `user:password`, as the seed tells users to paste it. The
    /// error never quotes the value.
    pub fn from_auth_header(raw: &str) -> Result<Self, &'static str> {
        let encoded = match raw.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest.trim(),
            Some(_) => return Err("it has a space but does not start with \"Basic \""),
            None => raw,
        };
        let decoded = BASE64.decode(encoded).map_err(|_| "it is not valid base64")?;
        let decoded = String::from_utf8(decoded).map_err(|_| "it does not decode to UTF-8 text")?;
        let Some((user, _password)) = decoded.split_once(':') else {
            return Err("it does not decode to \"<user>:<password>\" (no colon)");
        };
        if user.is_empty() {
            return Err("the user name it decodes to is empty");
        }
        Ok(Self {
            user: user.to_owned(),
            authorization: Secret::new(format!("Basic {encoded}")),
            setting: "AmqpAuthHeader",
        })
    }

    /// The user and password of `AmqpUrl`.
    pub fn from_amqp_url(amqp_url: &AmqpUrl) -> Self {
        let encoded = encode_credentials(amqp_url.user(), amqp_url.password().expose());
        Self {
            user: amqp_url.user().to_owned(),
            authorization: Secret::new(format!("Basic {}", encoded.expose())),
            setting: "AmqpUrl",
        }
    }

    /// The `Authorization` header, marked sensitive so no debug print of a
    /// request shows it.
    pub fn header(&self) -> Result<HeaderValue, BadAuthHeader> {
        let mut value = HeaderValue::from_str(self.authorization.expose()).map_err(|_| BadAuthHeader(self.setting))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// The credentials hold characters an HTTP header cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("setting {0} holds characters an HTTP header cannot carry")]
pub struct BadAuthHeader(&'static str);

/// base64 of `user:password`: exactly the value `AmqpAuthHeader` takes.
pub fn encode_credentials(user: &str, password: &str) -> Secret {
    Secret::new(BASE64.encode(format!("{user}:{password}")))
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

fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "Z3Vlc3Q6Z3Vlc3Q="; // guest:guest

    #[test]
    fn an_amqp_url_gives_the_publish_endpoint_beside_its_management_api() {
        let amqp = AmqpUrl::parse("amqps://gtygdfsy:pa55@antelope.rmq.cloudamqp.com/gtygdfsy").unwrap();
        let endpoint = PublishEndpoint::from_amqp_url(&amqp, "e-conomic.direct");
        assert_eq!(
            endpoint.url.as_str(),
            "https://antelope.rmq.cloudamqp.com/api/exchanges/gtygdfsy/e-conomic.direct/publish"
        );
        let local = AmqpUrl::parse("amqp://guest:guest@127.0.0.1").unwrap();
        assert_eq!(
            PublishEndpoint::from_amqp_url(&local, "e x").url.as_str(),
            "http://127.0.0.1:15672/api/exchanges/%2F/e%20x/publish"
        );
    }

    #[test]
    fn a_management_url_moves_the_endpoint_and_keeps_its_path_prefix() {
        let local = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5673/").unwrap();
        let base = Url::parse("http://127.0.0.1:15673/").unwrap();
        assert_eq!(
            PublishEndpoint::from_amqp_url_at(&local, base, "x").url.as_str(),
            "http://127.0.0.1:15673/api/exchanges/%2F/x/publish"
        );
        let proxied = Url::parse("https://proxy.example/rabbitmq/").unwrap();
        assert_eq!(
            PublishEndpoint::from_amqp_url_at(&local, proxied, "x").url.as_str(),
            "https://proxy.example/rabbitmq/api/exchanges/%2F/x/publish"
        );
    }

    #[test]
    fn endpoint_parts_are_percent_decoded() {
        let endpoint = PublishEndpoint::parse("https://h.example/api/exchanges/my%20vhost/e%2Bx/publish").unwrap();
        assert_eq!(
            (endpoint.vhost.as_str(), endpoint.exchange.as_str()),
            ("my vhost", "e+x")
        );
        assert_eq!(endpoint.setting, "AmqpEndpoint");
    }

    #[test]
    fn an_endpoint_that_is_not_a_publish_url_is_refused() {
        let err = PublishEndpoint::parse("https://host.example/api/exchanges/v/x").unwrap_err();
        assert!(err.contains("does not end in"), "{err}");
        let err = PublishEndpoint::parse("amqps://host.example/api/exchanges/v/x/publish").unwrap_err();
        assert!(err.contains("not http or https"), "{err}");
        let err = PublishEndpoint::parse("https://h/api/exchanges//x/publish").unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn an_endpoint_with_credentials_is_refused_without_echoing_them() {
        let err = PublishEndpoint::parse("https://u:s3cret@host.example/api/exchanges/v/x/publish").unwrap_err();
        assert!(err.contains("contains credentials"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn api_url_reaches_the_management_api_beside_the_publish_endpoint() {
        let endpoint = PublishEndpoint::parse("https://h.example/rabbit/api/exchanges/v/x/publish?ignored=1").unwrap();
        assert_eq!(
            endpoint.api_url(&["queues", "/", "a b"]).as_str(),
            "https://h.example/rabbit/api/queues/%2F/a%20b"
        );
        assert_eq!(
            endpoint.api_url(&["whoami"]).as_str(),
            "https://h.example/rabbit/api/whoami"
        );
    }

    #[test]
    fn the_auth_header_is_taken_with_or_without_the_basic_prefix() {
        for raw in [AUTH, "Basic Z3Vlc3Q6Z3Vlc3Q=", "basic  Z3Vlc3Q6Z3Vlc3Q="] {
            let credentials = Credentials::from_auth_header(raw).unwrap();
            assert_eq!(credentials.user, "guest", "{raw}");
            assert_eq!(credentials.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=", "{raw}");
        }
    }

    #[test]
    fn a_malformed_auth_header_is_named_without_echoing_it() {
        assert_eq!(
            Credentials::from_auth_header("not*base64!").unwrap_err(),
            "it is not valid base64"
        );
        // base64("justauser")
        assert!(
            Credentials::from_auth_header("anVzdGF1c2Vy")
                .unwrap_err()
                .contains("no colon")
        );
        assert!(
            Credentials::from_auth_header("Bearer abc")
                .unwrap_err()
                .contains("does not start with")
        );
        // base64(":pw")
        assert!(Credentials::from_auth_header("OnB3").unwrap_err().contains("empty"));
    }

    #[test]
    fn credentials_from_an_amqp_url_name_that_setting() {
        let amqp = AmqpUrl::parse("amqp://guest:guest@h/").unwrap();
        let credentials = Credentials::from_amqp_url(&amqp);
        assert_eq!(credentials.authorization.expose(), format!("Basic {AUTH}"));
        assert_eq!(credentials.setting, "AmqpUrl");
    }

    #[test]
    fn the_authorization_header_is_sensitive() {
        let credentials = Credentials::from_auth_header(AUTH).unwrap();
        assert!(credentials.header().unwrap().is_sensitive());
        let mut broken = credentials;
        broken.authorization = Secret::new("Basic \n");
        assert!(broken.header().unwrap_err().to_string().contains("AmqpAuthHeader"));
    }

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
    fn encode_credentials_is_the_base64_the_seed_asks_for() {
        assert_eq!(encode_credentials("guest", "guest").expose(), AUTH);
    }
}
