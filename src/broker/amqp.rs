//! Opening an AMQP 0-9-1 connection to RabbitMQ, the one way every part of
//! the product does it (the AMQP publish transport, `handler check`, the
//! relay): the URL's credentials and vhost, TLS for `amqps`, a heartbeat
//! that Azure's load balancer will not cut, a name the management UI shows,
//! a bounded wait, and failures that name the problem without the password.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::{Connection, ConnectionProperties};

use super::url::AmqpUrl;

/// How long one connection attempt may take (TCP, TLS and the AMQP handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The heartbeat asked for unless the URL asks for a shorter one. Azure's
/// load balancer drops a TCP connection idle for 4 minutes; a heartbeat of
/// 30 s keeps the connection busy and lets each side notice a dead peer
/// within about a minute.
pub const HEARTBEAT_SECONDS: u16 = 30;
/// The longest heartbeat used, whatever the URL says (`?heartbeat=0` or
/// `?heartbeat=600` would let the load balancer cut an idle connection).
pub const MAX_HEARTBEAT_SECONDS: u16 = 60;

/// Why a connection could not be opened. Every variant shows the URL with
/// its password hidden; the client's own texts pass through
/// [`AmqpUrl::redact`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The broker refused the user or password (`ACCESS_REFUSED`).
    #[error("the broker at {url} refused the credentials of user {user:?} (ACCESS_REFUSED)")]
    Refused {
        /// The redacted URL.
        url: String,
        /// The user that tried.
        user: String,
    },
    /// The vhost does not exist, the user may not use it, or its connection
    /// limit is reached (`NOT_ALLOWED`).
    #[error("the broker at {url} refused user {user:?} the vhost {vhost:?} (NOT_ALLOWED: {reason})")]
    VhostNotAllowed {
        /// The redacted URL.
        url: String,
        /// The vhost.
        vhost: String,
        /// The user that tried.
        user: String,
        /// The broker's words.
        reason: String,
    },
    /// No answer within [`CONNECT_TIMEOUT`].
    #[error("could not connect to {url}: no answer within {after:?}")]
    Timeout {
        /// The redacted URL.
        url: String,
        /// How long was waited.
        after: Duration,
    },
    /// The network, TLS or the handshake failed otherwise.
    #[error("could not connect to {url}: {detail}")]
    Failed {
        /// The redacted URL.
        url: String,
        /// What the client said, password taken out.
        detail: String,
    },
}

impl ConnectError {
    /// Names what the broker refused, when it said so, instead of the
    /// client's raw text.
    pub fn from_lapin(url: &AmqpUrl, error: &lapin::Error) -> Self {
        let shown = url.to_string();
        match error.kind() {
            lapin::ErrorKind::ProtocolError(e) if e.get_id() == 403 => Self::Refused {
                url: shown,
                user: url.user().to_owned(),
            },
            lapin::ErrorKind::ProtocolError(e) if e.get_id() == 530 => Self::VhostNotAllowed {
                url: shown,
                vhost: url.vhost().to_owned(),
                user: url.user().to_owned(),
                reason: url.redact(e.get_message().as_str()),
            },
            _ => Self::Failed {
                url: shown,
                detail: url.redact(&error.to_string()),
            },
        }
    }
}

/// Opens a connection to the broker `url` names, called `name` in the
/// management UI, with a heartbeat of at most [`MAX_HEARTBEAT_SECONDS`];
/// gives up after [`CONNECT_TIMEOUT`].
pub async fn connect(url: &AmqpUrl, name: &str) -> Result<Connection, ConnectError> {
    let mut uri = url.lapin_uri().map_err(|e| ConnectError::Failed {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    uri.query.heartbeat = Some(heartbeat(uri.query.heartbeat));
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(ConnectError::from_lapin(url, &error)),
        Err(_) => Err(ConnectError::Timeout {
            url: url.to_string(),
            after: CONNECT_TIMEOUT,
        }),
    }
}

/// Delays between reconnection attempts: 200 ms doubling to 5 s, with
/// jitter so that many processes do not reconnect in step after a broker
/// restart; forever, because a broker restart takes seconds and a process
/// that gave up would need a person to restart it.
pub fn reconnect_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The heartbeat to ask for: the URL's when it is between 1 and
/// [`MAX_HEARTBEAT_SECONDS`], [`HEARTBEAT_SECONDS`] otherwise. The broker
/// may lower it further; it can never raise it.
fn heartbeat(asked: Option<u16>) -> u16 {
    match asked {
        Some(seconds) if (1..=MAX_HEARTBEAT_SECONDS).contains(&seconds) => seconds,
        _ => HEARTBEAT_SECONDS,
    }
}

/// The connection name for the management UI, showing the app and the
/// instance: `"{role}: {site} instance {instance}"` on Azure (from the
/// host's `WEBSITE_SITE_NAME` and `WEBSITE_INSTANCE_ID`), else
/// `"{role}: {host} pid {pid}"`. Nothing in it is secret.
pub fn connection_name(role: &str, site: Option<&str>, instance: Option<&str>) -> String {
    match (site, instance) {
        (Some(site), Some(instance)) => format!("{role}: {site} instance {instance}"),
        (Some(site), None) => format!("{role}: {site} host {} pid {}", host_name(), std::process::id()),
        (None, _) => format!("{role}: {} pid {}", host_name(), std::process::id()),
    }
}

/// This machine's name, for connection names; `unknown-host` when no
/// source has one.
fn host_name() -> String {
    ["HOSTNAME", "COMPUTERNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .chain(std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_at_most_a_minute() {
        assert_eq!(heartbeat(None), 30);
        assert_eq!(heartbeat(Some(0)), 30, "0 would turn heartbeats off");
        assert_eq!(heartbeat(Some(600)), 30);
        assert_eq!(heartbeat(Some(10)), 10);
        assert_eq!(heartbeat(Some(60)), 60);
    }

    #[test]
    fn the_connection_name_shows_the_app_and_the_instance() {
        assert_eq!(
            connection_name("webhook-forwarder", Some("my-app"), Some("0a1b2c")),
            "webhook-forwarder: my-app instance 0a1b2c"
        );
        let local = connection_name("webhook-forwarder", None, None);
        assert!(local.starts_with("webhook-forwarder: "), "{local}");
        assert!(local.ends_with(&format!(" pid {}", std::process::id())), "{local}");
        let site_only = connection_name("webhook-forwarder", Some("my-app"), None);
        assert!(site_only.starts_with("webhook-forwarder: my-app host "), "{site_only}");
    }

    #[test]
    fn a_refusal_is_named_without_the_password() {
        let url = AmqpUrl::parse("amqp://u:s3cret@h/v").unwrap();
        let error: lapin::Error = lapin::ErrorKind::ProtocolError(lapin::protocol::AMQPError::new(
            lapin::protocol::AMQPHardError::NOTALLOWED.into(),
            "vhost v not found (s3cret)".into(),
        ))
        .into();
        let refused = ConnectError::from_lapin(&url, &error);
        assert!(matches!(refused, ConnectError::VhostNotAllowed { .. }), "{refused:?}");
        let text = refused.to_string();
        assert!(text.contains("vhost \"v\""), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
