//! Where and how to reach the broker: the publish endpoint and the auth
//! header, either given as the seed's `AmqpEndpoint` + `AmqpAuthHeader` or
//! derived from the `AmqpUrl` CloudAMQP shows (the explicit settings win).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use url::Url;

use super::SettingsError;
use super::amqp_url::{self, AmqpUrl};
use crate::secret::Secret;

/// The exchange the seed declares, used with `AmqpUrl` when `AmqpExchange` is not set.
pub const DEFAULT_EXCHANGE: &str = "e-conomic.direct";
/// Routing key of every published message unless `AmqpRoutingKey` says otherwise.
pub const DEFAULT_ROUTING_KEY: &str = "webhook";

/// The RabbitMQ HTTP publish endpoint and what goes into each message.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The publish endpoint, parsed.
    pub endpoint: PublishEndpoint,
    /// The full `Authorization` header value, `Basic <base64(user:password)>`.
    pub authorization: Secret,
    /// The broker user (not secret; named in error logs to help fix credentials).
    pub user: String,
    /// Routing key of every published message.
    pub routing_key: String,
    /// `app_id` property of every published message.
    pub app_id: String,
}

/// `POST {base}/api/exchanges/{vhost}/{exchange}/publish`, with its parts decoded for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishEndpoint {
    /// The URL to POST to.
    pub url: Url,
    /// The virtual host, percent-decoded.
    pub vhost: String,
    /// The exchange, percent-decoded.
    pub exchange: String,
}

impl PublishEndpoint {
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

const ENDPOINT_HINT: &str = "set AmqpUrl to the AMQP URL on the CloudAMQP details page \
     (amqps://<user>:<password>@<host>/<vhost>), or AmqpEndpoint to \
     https://<host>/api/exchanges/<vhost>/<exchange>/publish \
     (locally http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish)";
const AUTH_HINT: &str = "set it to base64(\"<user>:<password>\"), with or without the \"Basic \" prefix \
     (`handler auth-header` prints it), or set AmqpUrl instead";

impl BrokerSettings {
    /// Reads the broker settings through `get` (trimmed, empty = absent).
    pub(super) fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        // AmqpUrl is read only when an explicit setting is missing: it is the
        // easy way in, and the explicit settings override it.
        let explicit_endpoint = get("AmqpEndpoint");
        let explicit_auth = get("AmqpAuthHeader");
        let amqp_url = match (&explicit_endpoint, &explicit_auth, get("AmqpUrl")) {
            (Some(_), Some(_), _) | (_, _, None) => None,
            (_, _, Some(raw)) => Some(amqp_url::parse(&raw)?),
        };

        let endpoint = match (explicit_endpoint, &amqp_url) {
            (Some(raw), _) => parse_endpoint(&raw)?,
            (None, Some(amqp)) => {
                amqp.publish_endpoint(&get("AmqpExchange").unwrap_or_else(|| DEFAULT_EXCHANGE.to_owned()))
            }
            (None, None) => {
                return Err(SettingsError::Missing {
                    name: "AmqpEndpoint",
                    hint: ENDPOINT_HINT,
                });
            }
        };
        let (authorization, user) = match (explicit_auth, amqp_url) {
            (Some(raw), _) => parse_auth_header(&raw)?,
            (None, Some(AmqpUrl { user, password, .. })) => {
                let encoded = encode_credentials(&user, password.expose());
                (Secret::new(format!("Basic {}", encoded.expose())), user)
            }
            (None, None) => {
                return Err(SettingsError::Missing {
                    name: "AmqpAuthHeader",
                    hint: AUTH_HINT,
                });
            }
        };

        Ok(BrokerSettings {
            endpoint,
            authorization,
            user,
            routing_key: get("AmqpRoutingKey").unwrap_or_else(|| DEFAULT_ROUTING_KEY.to_owned()),
            app_id: get("AmqpAppId").unwrap_or_else(|| "e-conomic-webhook-forwarder".to_owned()),
        })
    }
}

/// base64 of `user:password`: exactly the value `AmqpAuthHeader` takes.
pub fn encode_credentials(user: &str, password: &str) -> Secret {
    Secret::new(BASE64.encode(format!("{user}:{password}")))
}

fn parse_endpoint(raw: &str) -> Result<PublishEndpoint, SettingsError> {
    let invalid = |problem: String| SettingsError::Invalid {
        name: "AmqpEndpoint",
        problem,
        hint: ENDPOINT_HINT,
    };
    let url = Url::parse(raw).map_err(|e| invalid(format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme {:?} is not http or https", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // A password here would end up in logs; it belongs in AmqpAuthHeader.
        return Err(invalid(
            "it contains credentials; put them in AmqpAuthHeader instead".to_owned(),
        ));
    }
    let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
    let parts = match segments.as_slice() {
        [.., "api", "exchanges", vhost, exchange, "publish"] => Some((*vhost, *exchange)),
        _ => None,
    };
    let Some((vhost, exchange)) = parts else {
        return Err(invalid(format!(
            "path {:?} does not end in /api/exchanges/<vhost>/<exchange>/publish",
            url.path()
        )));
    };
    let (vhost, exchange) = (percent_decode(vhost), percent_decode(exchange));
    if vhost.is_empty() || exchange.is_empty() {
        return Err(invalid(
            "the vhost or the exchange in its path is empty (the default vhost is %2F)".to_owned(),
        ));
    }
    Ok(PublishEndpoint { url, vhost, exchange })
}

fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// Accepts `Basic <base64>` or the bare base64 of `user:password`, as the seed
/// tells users to paste it; returns the full header value and the user name.
fn parse_auth_header(raw: &str) -> Result<(Secret, String), SettingsError> {
    let invalid = |problem: &str| SettingsError::Invalid {
        name: "AmqpAuthHeader",
        problem: problem.to_owned(),
        hint: AUTH_HINT,
    };
    let encoded = match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest.trim(),
        Some(_) => return Err(invalid("it has a space but does not start with \"Basic \"")),
        None => raw,
    };
    let decoded = BASE64.decode(encoded).map_err(|_| invalid("it is not valid base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid("it does not decode to UTF-8 text"))?;
    let Some((user, _password)) = decoded.split_once(':') else {
        return Err(invalid("it does not decode to \"<user>:<password>\" (no colon)"));
    };
    if user.is_empty() {
        return Err(invalid("the user name it decodes to is empty"));
    }
    Ok((Secret::new(format!("Basic {encoded}")), user.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const AUTH: &str = "Z3Vlc3Q6Z3Vlc3Q="; // guest:guest
    const LOCAL_ENDPOINT: &str = "http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish";

    fn broker(pairs: &[(&str, &str)]) -> Result<BrokerSettings, SettingsError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        BrokerSettings::from_lookup(&|name| map.get(name).map(|v| (*v).to_owned()))
    }

    fn error_for(pairs: &[(&str, &str)]) -> String {
        broker(pairs).unwrap_err().to_string()
    }

    fn explicit_broker(extra: &[(&str, &str)]) -> Result<BrokerSettings, SettingsError> {
        let mut map: HashMap<&str, &str> = HashMap::from([("AmqpEndpoint", LOCAL_ENDPOINT), ("AmqpAuthHeader", AUTH)]);
        map.extend(extra.iter().copied());
        BrokerSettings::from_lookup(&|name| map.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn explicit_settings_give_endpoint_user_and_defaults() {
        let b = explicit_broker(&[]).unwrap();
        assert_eq!(b.endpoint.vhost, "/");
        assert_eq!(b.endpoint.exchange, "e-conomic.direct");
        assert_eq!(b.user, "guest");
        assert_eq!(b.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(b.routing_key, "webhook");
    }

    #[test]
    fn auth_header_is_accepted_with_the_basic_prefix_in_any_case() {
        let b = explicit_broker(&[("AmqpAuthHeader", "basic Z3Vlc3Q6Z3Vlc3Q=")]).unwrap();
        assert_eq!(b.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=");
    }

    #[test]
    fn missing_endpoint_names_the_setting_and_both_fixes() {
        let err = error_for(&[("AmqpAuthHeader", AUTH)]);
        assert!(err.contains("AmqpEndpoint is missing"), "{err}");
        assert!(err.contains("/api/exchanges/"), "{err}");
        assert!(err.contains("AmqpUrl"), "{err}");
    }

    #[test]
    fn missing_auth_header_points_to_the_auth_header_command() {
        let err = error_for(&[("AmqpEndpoint", LOCAL_ENDPOINT)]);
        assert!(err.contains("AmqpAuthHeader is missing"), "{err}");
        assert!(err.contains("handler auth-header"), "{err}");
    }

    #[test]
    fn endpoint_without_the_publish_path_is_rejected() {
        let err = explicit_broker(&[("AmqpEndpoint", "https://host.example/api/exchanges/v/x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("AmqpEndpoint is invalid"), "{err}");
        assert!(err.contains("does not end in"), "{err}");
    }

    #[test]
    fn endpoint_with_another_scheme_is_rejected() {
        let err = explicit_broker(&[("AmqpEndpoint", "amqps://host.example/api/exchanges/v/x/publish")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not http or https"), "{err}");
    }

    #[test]
    fn endpoint_with_embedded_credentials_is_rejected_without_echoing_them() {
        let err = explicit_broker(&[(
            "AmqpEndpoint",
            "https://u:s3cret@host.example/api/exchanges/v/x/publish",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("contains credentials"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn endpoint_parts_are_percent_decoded() {
        let b = explicit_broker(&[(
            "AmqpEndpoint",
            "https://h.example/api/exchanges/my%20vhost/e%2Bx/publish",
        )])
        .unwrap();
        assert_eq!(b.endpoint.vhost, "my vhost");
        assert_eq!(b.endpoint.exchange, "e+x");
    }

    #[test]
    fn auth_header_that_is_not_base64_is_rejected_without_echoing_it() {
        let err = explicit_broker(&[("AmqpAuthHeader", "not*base64!")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid base64"), "{err}");
        assert!(!err.contains("not*base64!"), "{err}");
    }

    #[test]
    fn auth_header_without_a_colon_is_rejected() {
        // base64("justauser")
        let err = explicit_broker(&[("AmqpAuthHeader", "anVzdGF1c2Vy")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no colon"), "{err}");
    }

    #[test]
    fn auth_header_with_another_scheme_is_rejected() {
        let err = explicit_broker(&[("AmqpAuthHeader", "Bearer abc")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not start with"), "{err}");
    }

    #[test]
    fn amqp_url_alone_gives_endpoint_and_auth_header() {
        let b = broker(&[("AmqpUrl", "amqps://gtygdfsy:pa55@antelope.rmq.cloudamqp.com/gtygdfsy")]).unwrap();
        assert_eq!(
            b.endpoint.url.as_str(),
            "https://antelope.rmq.cloudamqp.com/api/exchanges/gtygdfsy/e-conomic.direct/publish"
        );
        assert_eq!(b.endpoint.vhost, "gtygdfsy");
        assert_eq!(b.endpoint.exchange, "e-conomic.direct");
        assert_eq!(b.user, "gtygdfsy");
        assert_eq!(
            b.authorization.expose(),
            format!("Basic {}", BASE64.encode("gtygdfsy:pa55"))
        );
    }

    #[test]
    fn amqp_exchange_names_the_exchange_of_the_derived_endpoint() {
        let b = broker(&[
            ("AmqpUrl", "amqp://guest:guest@127.0.0.1"),
            ("AmqpExchange", "other.direct"),
        ])
        .unwrap();
        assert_eq!(
            b.endpoint.url.as_str(),
            "http://127.0.0.1:15672/api/exchanges/%2F/other.direct/publish"
        );
    }

    #[test]
    fn explicit_settings_win_over_amqp_url() {
        let pairs = [
            ("AmqpUrl", "amqps://other:secret@elsewhere.example/other"),
            ("AmqpEndpoint", LOCAL_ENDPOINT),
            ("AmqpAuthHeader", AUTH),
        ];
        let b = broker(&pairs).unwrap();
        assert_eq!(b.endpoint.url.as_str(), LOCAL_ENDPOINT);
        assert_eq!(b.user, "guest");
    }

    #[test]
    fn each_explicit_setting_wins_on_its_own() {
        let with_endpoint = broker(&[
            ("AmqpUrl", "amqps://other:secret@elsewhere.example/other"),
            ("AmqpEndpoint", LOCAL_ENDPOINT),
        ])
        .unwrap();
        assert_eq!(with_endpoint.endpoint.url.as_str(), LOCAL_ENDPOINT);
        assert_eq!(with_endpoint.user, "other");

        let with_auth = broker(&[
            ("AmqpUrl", "amqps://other:secret@elsewhere.example/other"),
            ("AmqpAuthHeader", AUTH),
        ])
        .unwrap();
        assert_eq!(with_auth.endpoint.vhost, "other");
        assert_eq!(with_auth.user, "guest");
    }

    #[test]
    fn an_unused_amqp_url_is_not_parsed() {
        let pairs = [
            ("AmqpUrl", "not a url"),
            ("AmqpEndpoint", LOCAL_ENDPOINT),
            ("AmqpAuthHeader", AUTH),
        ];
        assert!(broker(&pairs).is_ok());
    }

    #[test]
    fn api_url_reaches_the_management_api_beside_the_publish_endpoint() {
        let b = explicit_broker(&[(
            "AmqpEndpoint",
            "https://h.example/rabbit/api/exchanges/v/x/publish?ignored=1",
        )])
        .unwrap();
        assert_eq!(
            b.endpoint.api_url(&["queues", "/", "a b"]).as_str(),
            "https://h.example/rabbit/api/queues/%2F/a%20b"
        );
        assert_eq!(
            b.endpoint.api_url(&["whoami"]).as_str(),
            "https://h.example/rabbit/api/whoami"
        );
    }

    #[test]
    fn encode_credentials_is_the_base64_the_seed_asks_for() {
        assert_eq!(encode_credentials("guest", "guest").expose(), AUTH);
    }
}
