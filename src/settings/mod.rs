//! Settings: read once at start-up from app settings (environment variables),
//! validated into types, each error naming the setting and how to fix it.
//!
//! Parsing works on any lookup function, so it is unit-tested from a plain map
//! rather than from the process environment. The broker's endpoint and
//! credentials are in [`broker`], the source checks in [`sources`], the list
//! of names (and the hint for a mistyped one) in [`names`]; this module
//! holds the rest.

pub mod broker;
mod error;
pub mod names;
pub mod sources;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

pub use broker::{BrokerSettings, PublishTransport, parse_amqp_url};
pub use error::SettingsError;
pub use sources::{SourceChecks, parse_networks};

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
    /// between requests) before it is closed. Longer than the idle timeout of
    /// clients' connection pools (.NET: 1 min, reqwest: 90 s), so a client
    /// does not reuse a connection at the instant the server closes it.
    pub header_read_timeout: Duration,
    /// Optional source checks (allow-list, shared secret); off by default.
    pub source_checks: SourceChecks,
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

        let broker = BrokerSettings::from_lookup(&get)?;
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
            broker,
            limits,
            shutdown_grace: duration_or("ShutdownGrace", get("ShutdownGrace"), "10s")?,
            header_read_timeout: duration_or("HeaderReadTimeout", get("HeaderReadTimeout"), "2m")?,
            source_checks: SourceChecks {
                allowed_networks: get("AllowedSourceNetworks")
                    .map(|raw| parse_networks(&raw))
                    .transpose()
                    .map_err(|problem| SettingsError::Invalid {
                        name: "AllowedSourceNetworks",
                        problem,
                        hint: "list addresses or networks separated by commas, e.g. e-conomic,10.0.0.0/8",
                    })?,
                shared_secret: get("WebhookSecret").map(Secret::new),
                behind_functions_host: get("FUNCTIONS_CUSTOMHANDLER_PORT").is_some(),
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

fn parse_or(name: &'static str, raw: Option<String>, default: NonZeroUsize) -> Result<NonZeroUsize, SettingsError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.parse().map_err(|_| SettingsError::Invalid {
        name,
        problem: format!("{raw:?} is not a whole number above zero"),
        hint: "see docs/settings.md",
    })
}

fn duration_or(name: &'static str, raw: Option<String>, default: &str) -> Result<Duration, SettingsError> {
    let raw = raw.unwrap_or_else(|| default.to_owned());
    parse_duration(&raw).map_err(|hint| SettingsError::Invalid {
        name,
        problem: format!("{raw:?} is not a positive duration"),
        hint,
    })
}

/// A positive duration written with a unit (`500ms`, `10s`, `1m`), as every
/// duration setting and command-line option takes it.
pub fn parse_duration(raw: &str) -> Result<Duration, &'static str> {
    match humantime::parse_duration(raw) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err("write a positive duration like 500ms, 10s or 1m"),
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
        assert_eq!(s.broker.routing_key.plain(), Some("webhook"));
        assert_eq!(s.broker.endpoint.vhost, "/");
        assert_eq!(s.broker.endpoint.exchange, "e-conomic.direct");
        assert_eq!(s.broker.credentials.user, "guest");
        assert_eq!(s.broker.credentials.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=");
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
    fn empty_auth_header_counts_as_missing() {
        assert!(error_for(&[("AmqpAuthHeader", "  ")]).contains("AmqpAuthHeader is missing"));
    }

    #[test]
    fn amqp_url_alone_is_enough_and_is_trimmed() {
        let map: HashMap<String, String> = [("AmqpUrl", " amqp://guest:guest@127.0.0.1/ \n")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let s = Settings::from_map(&map).unwrap();
        assert_eq!(
            s.broker.endpoint.url.as_str(),
            "http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish"
        );
        assert_eq!(s.broker.credentials.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=");
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
        assert!(!settings(&[]).unwrap().source_checks.is_enabled());
        let s = settings(&[
            ("AllowedSourceNetworks", "e-conomic, 10.0.0.0/8"),
            ("WebhookSecret", "w"),
        ])
        .unwrap();
        assert_eq!(s.source_checks.allowed_networks.unwrap().len(), 7);
        assert_eq!(s.source_checks.shared_secret.unwrap().expose(), "w");
        assert!(error_for(&[("AllowedSourceNetworks", "x.y")]).contains("AllowedSourceNetworks is invalid"));
    }

    #[test]
    fn debug_output_does_not_contain_the_auth_header() {
        let s = settings(&[]).unwrap();
        assert!(!format!("{s:?}").contains(AUTH));
    }
}
