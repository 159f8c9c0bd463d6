//! Settings: read once at start-up from app settings (environment variables),
//! validated into types, each error naming the setting and how to fix it.
//!
//! Parsing works on any lookup function, so it is unit-tested from a plain map
//! rather than from the process environment.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use url::Url;

use crate::admission::{self, Admission};
use crate::secret::Secret;

/// Port used when no Functions host says otherwise (standalone, container, VM).
pub const STANDALONE_DEFAULT_LISTEN: &str = "127.0.0.1:8080";

const DEFAULT_MAX_BODY_BYTES: NonZeroUsize = NonZeroUsize::new(1024 * 1024).unwrap();
/// 64 keep-alive connections is where the broker's HTTP publish reaches its ceiling.
const DEFAULT_PUBLISH_CONCURRENCY: NonZeroUsize = NonZeroUsize::new(64).unwrap();

/// Everything the handler needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// Where and how webhooks are published.
    pub broker: BrokerSettings,
    /// Bounds on bodies, concurrency and waiting.
    pub limits: Limits,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long a connection may take to send a request's headers (or idle
    /// between requests) before it is closed.
    pub header_read_timeout: Duration,
    /// Optional source checks (allow-list, shared secret); off by default.
    pub admission: Admission,
}

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

/// Bounds that keep the handler's memory and waiting finite.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest webhook body accepted; larger ones get 413.
    pub max_body_bytes: NonZeroUsize,
    /// Most publishes in flight towards the broker at once.
    pub publish_concurrency: NonZeroUsize,
    /// How long a webhook may wait for a publish slot before it gets 503.
    pub slot_wait: Duration,
    /// Timeout of one publish attempt (the broker's confirm can hang).
    pub attempt_timeout: Duration,
    /// Total time for all attempts of one publish, retries included.
    pub publish_deadline: Duration,
}

/// A setting that is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A required setting is absent or empty.
    #[error("setting {name} is missing: {hint}")]
    Missing {
        /// The setting's name.
        name: &'static str,
        /// How to fix it.
        hint: &'static str,
    },
    /// A setting is present but unusable.
    #[error("setting {name} is invalid: {problem}; {hint}")]
    Invalid {
        /// The setting's name.
        name: &'static str,
        /// What is wrong (never the secret value itself).
        problem: String,
        /// How to fix it.
        hint: &'static str,
    },
}

const ENDPOINT_HINT: &str = "set it to https://<host>/api/exchanges/<vhost>/<exchange>/publish \
     (locally http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish)";
const AUTH_HINT: &str = "set it to base64(\"<user>:<password>\"), with or without the \"Basic \" prefix";

impl Settings {
    /// Reads the settings from the process environment (app settings arrive there).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings from a map, as the tests do.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Self::from_lookup(|name| map.get(name).cloned())
    }

    /// Reads the settings through `lookup`; empty values count as absent.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let endpoint = get("AmqpEndpoint").ok_or(SettingsError::Missing {
            name: "AmqpEndpoint",
            hint: ENDPOINT_HINT,
        })?;
        let auth = get("AmqpAuthHeader").ok_or(SettingsError::Missing {
            name: "AmqpAuthHeader",
            hint: AUTH_HINT,
        })?;
        let (authorization, user) = parse_auth_header(&auth)?;

        let limits = Limits {
            max_body_bytes: parse_or("MaxBodyBytes", get("MaxBodyBytes"), DEFAULT_MAX_BODY_BYTES)?,
            publish_concurrency: parse_or(
                "PublishConcurrency",
                get("PublishConcurrency"),
                DEFAULT_PUBLISH_CONCURRENCY,
            )?,
            slot_wait: duration_or("PublishSlotWait", get("PublishSlotWait"), "5s")?,
            attempt_timeout: duration_or("PublishAttemptTimeout", get("PublishAttemptTimeout"), "10s")?,
            publish_deadline: duration_or("PublishDeadline", get("PublishDeadline"), "30s")?,
        };

        Ok(Settings {
            listen: parse_listen(get("FUNCTIONS_CUSTOMHANDLER_PORT"), get("ListenAddress"))?,
            broker: BrokerSettings {
                endpoint: parse_endpoint(&endpoint)?,
                authorization,
                user,
                routing_key: get("AmqpRoutingKey").unwrap_or_else(|| "webhook".to_owned()),
                app_id: get("AmqpAppId").unwrap_or_else(|| "e-conomic-webhook-forwarder".to_owned()),
            },
            limits,
            shutdown_grace: duration_or("ShutdownGrace", get("ShutdownGrace"), "10s")?,
            header_read_timeout: duration_or("HeaderReadTimeout", get("HeaderReadTimeout"), "30s")?,
            admission: Admission {
                allowed_networks: get("AllowedSourceNetworks")
                    .map(|raw| admission::parse_networks(&raw))
                    .transpose()
                    .map_err(|problem| SettingsError::Invalid {
                        name: "AllowedSourceNetworks",
                        problem,
                        hint: "list addresses or networks separated by commas, e.g. e-conomic,10.0.0.0/8",
                    })?,
                shared_secret: get("WebhookSecret").map(Secret::new),
            },
        })
    }
}

/// Under the Functions host: 127.0.0.1 on the port it chose. Standalone:
/// `ListenAddress`, default [`STANDALONE_DEFAULT_LISTEN`].
fn parse_listen(host_port: Option<String>, listen: Option<String>) -> Result<SocketAddr, SettingsError> {
    if let Some(port) = host_port {
        let port: u16 = port.parse().map_err(|_| SettingsError::Invalid {
            name: "FUNCTIONS_CUSTOMHANDLER_PORT",
            problem: format!("{port:?} is not a port number"),
            hint: "the Functions host sets it; unset it to run standalone",
        })?;
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    let listen = listen.unwrap_or_else(|| STANDALONE_DEFAULT_LISTEN.to_owned());
    listen.parse().map_err(|_| SettingsError::Invalid {
        name: "ListenAddress",
        problem: format!("{listen:?} is not an address:port"),
        hint: "use e.g. 127.0.0.1:8080, or 0.0.0.0:8080 in a container",
    })
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

fn parse_or(name: &'static str, raw: Option<String>, default: NonZeroUsize) -> Result<NonZeroUsize, SettingsError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.parse().map_err(|_| SettingsError::Invalid {
        name,
        problem: format!("{raw:?} is not a whole number above zero"),
        hint: "see the settings table in README.md",
    })
}

fn duration_or(name: &'static str, raw: Option<String>, default: &str) -> Result<Duration, SettingsError> {
    let raw = raw.unwrap_or_else(|| default.to_owned());
    match humantime::parse_duration(&raw) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(SettingsError::Invalid {
            name,
            problem: format!("{raw:?} is not a positive duration"),
            hint: "write it like 500ms, 10s or 1m",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "Z3Vlc3Q6Z3Vlc3Q="; // guest:guest

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut map: HashMap<String, String> = [
            (
                "AmqpEndpoint",
                "http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish",
            ),
            ("AmqpAuthHeader", AUTH),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        Settings::from_map(&map)
    }

    fn error_for(pairs: &[(&str, &str)]) -> String {
        settings(pairs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply_when_only_the_two_required_settings_are_given() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.broker.routing_key, "webhook");
        assert_eq!(s.broker.endpoint.vhost, "/");
        assert_eq!(s.broker.endpoint.exchange, "e-conomic.direct");
        assert_eq!(s.broker.user, "guest");
        assert_eq!(s.broker.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(s.limits.max_body_bytes.get(), 1024 * 1024);
        assert_eq!(s.limits.publish_concurrency.get(), 64);
        assert_eq!(s.limits.attempt_timeout, Duration::from_secs(10));
        assert_eq!(s.limits.publish_deadline, Duration::from_secs(30));
    }

    #[test]
    fn the_host_port_wins_and_binds_ipv4_loopback() {
        let s = settings(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "4711"), ("ListenAddress", "0.0.0.0:9")]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:4711".parse().unwrap());
    }

    #[test]
    fn auth_header_is_accepted_with_the_basic_prefix_in_any_case() {
        let s = settings(&[("AmqpAuthHeader", "basic Z3Vlc3Q6Z3Vlc3Q=")]).unwrap();
        assert_eq!(s.broker.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=");
    }

    #[test]
    fn missing_endpoint_names_the_setting_and_the_fix() {
        let mut map = HashMap::new();
        map.insert("AmqpAuthHeader".to_owned(), AUTH.to_owned());
        let err = Settings::from_map(&map).unwrap_err().to_string();
        assert!(err.contains("AmqpEndpoint is missing"), "{err}");
        assert!(err.contains("/api/exchanges/"), "{err}");
    }

    #[test]
    fn empty_auth_header_counts_as_missing() {
        assert!(error_for(&[("AmqpAuthHeader", "  ")]).contains("AmqpAuthHeader is missing"));
    }

    #[test]
    fn endpoint_without_the_publish_path_is_rejected() {
        let err = error_for(&[("AmqpEndpoint", "https://host.example/api/exchanges/v/x")]);
        assert!(err.contains("AmqpEndpoint is invalid"), "{err}");
        assert!(err.contains("does not end in"), "{err}");
    }

    #[test]
    fn endpoint_with_another_scheme_is_rejected() {
        let err = error_for(&[("AmqpEndpoint", "amqps://host.example/api/exchanges/v/x/publish")]);
        assert!(err.contains("not http or https"), "{err}");
    }

    #[test]
    fn endpoint_with_embedded_credentials_is_rejected_without_echoing_them() {
        let err = error_for(&[(
            "AmqpEndpoint",
            "https://u:s3cret@host.example/api/exchanges/v/x/publish",
        )]);
        assert!(err.contains("contains credentials"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn endpoint_parts_are_percent_decoded() {
        let s = settings(&[(
            "AmqpEndpoint",
            "https://h.example/api/exchanges/my%20vhost/e%2Bx/publish",
        )])
        .unwrap();
        assert_eq!(s.broker.endpoint.vhost, "my vhost");
        assert_eq!(s.broker.endpoint.exchange, "e+x");
    }

    #[test]
    fn auth_header_that_is_not_base64_is_rejected_without_echoing_it() {
        let err = error_for(&[("AmqpAuthHeader", "not*base64!")]);
        assert!(err.contains("not valid base64"), "{err}");
        assert!(!err.contains("not*base64!"), "{err}");
    }

    #[test]
    fn auth_header_without_a_colon_is_rejected() {
        // base64("justauser")
        let err = error_for(&[("AmqpAuthHeader", "anVzdGF1c2Vy")]);
        assert!(err.contains("no colon"), "{err}");
    }

    #[test]
    fn auth_header_with_another_scheme_is_rejected() {
        assert!(error_for(&[("AmqpAuthHeader", "Bearer abc")]).contains("does not start with"));
    }

    #[test]
    fn numbers_must_be_above_zero() {
        let err = error_for(&[("PublishConcurrency", "0")]);
        assert!(err.contains("PublishConcurrency is invalid"), "{err}");
    }

    #[test]
    fn durations_take_units() {
        let s = settings(&[("PublishDeadline", "1m"), ("PublishAttemptTimeout", "750ms")]).unwrap();
        assert_eq!(s.limits.publish_deadline, Duration::from_secs(60));
        assert_eq!(s.limits.attempt_timeout, Duration::from_millis(750));
        assert!(error_for(&[("PublishSlotWait", "5")]).contains("PublishSlotWait is invalid"));
    }

    #[test]
    fn a_bad_host_port_is_named() {
        assert!(error_for(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")]).contains("FUNCTIONS_CUSTOMHANDLER_PORT"));
    }

    #[test]
    fn source_checks_are_off_unless_configured() {
        assert!(!settings(&[]).unwrap().admission.is_enabled());
        let s = settings(&[
            ("AllowedSourceNetworks", "e-conomic, 10.0.0.0/8"),
            ("WebhookSecret", "w"),
        ])
        .unwrap();
        assert_eq!(s.admission.allowed_networks.unwrap().len(), 7);
        assert_eq!(s.admission.shared_secret.unwrap().expose(), "w");
        assert!(error_for(&[("AllowedSourceNetworks", "x.y")]).contains("AllowedSourceNetworks is invalid"));
    }

    #[test]
    fn debug_output_does_not_contain_the_auth_header() {
        let s = settings(&[]).unwrap();
        assert!(!format!("{s:?}").contains(AUTH));
    }
}
