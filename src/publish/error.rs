//! Why a publish failed, worded so the log line says what to do about it.

use std::time::Duration;

/// A publish the broker did not confirm as routed: neither `{"routed":true}`
/// (HTTP) nor a `basic.ack` without a `basic.return` (AMQP).
///
/// The `Display` text is the actionable log line. It never holds the auth
/// header or the password: only names the operator needs to fix things.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Every publish slot stayed busy for the whole slot wait.
    #[error(
        "all {concurrency} publish slots stayed busy for {waited:?}: the broker is slower than the incoming rate; the caller was told to retry later"
    )]
    Overloaded {
        /// The configured concurrency.
        concurrency: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// The broker answered `{"routed":false}` (HTTP) or returned the message
    /// (`basic.return`, AMQP): no queue took it, it was dropped.
    #[error(
        "the broker DROPPED the message: no queue is bound to exchange {exchange:?} in vhost {vhost:?} with routing key {routing_key:?}; bind a durable queue to it (`handler setup` does)"
    )]
    NotRouted {
        /// The exchange published to.
        exchange: String,
        /// Its vhost.
        vhost: String,
        /// The routing key used.
        routing_key: String,
    },
    /// 401: the credentials were refused.
    #[error(
        "the broker refused the credentials of user {user:?} (401: {reason}); check setting {setting}: the user and password of a user with the management tag"
    )]
    Unauthorized {
        /// The user named in the credentials.
        user: String,
        /// The broker's reason ("Login failed", "Not management user").
        reason: String,
        /// The setting the credentials came from.
        setting: &'static str,
    },
    /// 401 "Access refused.": the login worked but the broker would not open
    /// the connection it publishes on, as when the vhost's connection limit
    /// is reached (seen with RabbitMQ 3.10); worth retrying.
    #[error(
        "the broker refused a connection for user {user:?} (401: Access refused.): the vhost's connection limit is probably reached (CloudAMQP's free plan allows 20): lower PublishConcurrency; RabbitMQ 3.x answers the same to a vhost that does not exist, which `handler check` tells apart"
    )]
    ConnectionRefused {
        /// The user named in the auth header.
        user: String,
    },
    /// 404: unknown vhost or exchange, or no permission on the vhost.
    #[error(
        "the broker does not know exchange {exchange:?} in vhost {vhost:?}, or the user may not use that vhost (404: {reason}); check setting {setting} and declare the exchange (`handler setup`)"
    )]
    NotFound {
        /// The exchange published to.
        exchange: String,
        /// Its vhost.
        vhost: String,
        /// The broker's reason.
        reason: String,
        /// The setting the exchange and vhost came from.
        setting: &'static str,
    },
    /// Another 4xx: the broker rejected the request itself.
    #[error("the broker rejected the publish ({status}: {reason})")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The broker's reason.
        reason: String,
    },
    /// 5xx or 429: the broker (or a proxy before it) failed; worth retrying.
    #[error("the broker answered {status} ({reason})")]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// The broker's reason.
        reason: String,
    },
    /// 200 without a `routed` verdict: not the RabbitMQ publish endpoint?
    #[error(
        "the endpoint answered 200 without a routed verdict; is AmqpEndpoint the RabbitMQ management API's .../publish URL?"
    )]
    UnexpectedAnswer,
    /// AMQP: the broker would not take the message (`basic.nack`): a queue
    /// at its length limit with `reject-publish`, or the broker short of
    /// resources; worth retrying, as the queue may drain.
    #[error(
        "the broker refused to take the message (basic.nack): a queue may be full (x-max-length with reject-publish) or the broker short of memory or disk"
    )]
    Nacked,
    /// AMQP: the broker refused the login (`ACCESS_REFUSED`).
    #[error(
        "the broker refused the credentials of user {user:?} over AMQP (ACCESS_REFUSED); check the user name and password in setting {setting}"
    )]
    LoginRefused {
        /// The user in the URL.
        user: String,
        /// The setting the credentials came from.
        setting: &'static str,
    },
    /// AMQP: the broker refused the vhost (`NOT_ALLOWED`): it does not exist,
    /// the user may not use it, or its connection limit is reached. Worth
    /// retrying: a connection limit frees up, and a starting broker may
    /// refuse a vhost that is not up yet.
    #[error(
        "the broker refused user {user:?} the vhost {vhost:?} (NOT_ALLOWED: {reason}); check the vhost in setting {setting}, the user's permissions and the vhost's connection limit"
    )]
    VhostRefused {
        /// The vhost.
        vhost: String,
        /// The user in the URL.
        user: String,
        /// The broker's words.
        reason: String,
        /// The setting the vhost came from.
        setting: &'static str,
    },
    /// AMQP: the broker blocks the connection (`connection.blocked`: a memory
    /// or disk alarm), so nothing was published. Not transient: the alarm
    /// lasts until the queue drains or the broker gets room, far longer than
    /// a publish may wait.
    #[error(
        "the broker blocks publishing ({reason}, for {} s so far): a memory or disk alarm; the webhook was not published; drain the queue or give the broker more memory or disk",
        .lasted.as_secs()
    )]
    Blocked {
        /// The broker's reason (`low on memory`, `low on disk`).
        reason: String,
        /// How long the block has lasted so far.
        lasted: Duration,
    },
    /// AMQP: no connection to the broker yet, or it was lost; the transport
    /// reconnects in the background.
    #[error("not connected to the broker ({0}); reconnecting in the background")]
    NotConnected(String),
    /// No answer within the attempt timeout (the confirm can hang).
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made or broke.
    #[error("could not reach the broker: {0}")]
    Transport(String),
    /// Transient failures went on until the publish deadline.
    #[error("gave up after {attempts} attempts within the {deadline:?} publish deadline; last failure: {last}")]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// The configured deadline.
        deadline: Duration,
        /// The last attempt's failure.
        last: Box<PublishError>,
    },
}

impl PublishError {
    /// Whether another attempt may succeed: network trouble, timeouts, 5xx,
    /// 429, a lost AMQP connection, a nack, a refused vhost, and "not found":
    /// while a restarted broker recovers its definitions, its API answers
    /// that the exchange does not exist for a few seconds (seen with RabbitMQ
    /// 3.10), and callers should wait that out.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Timeout(_)
                | Self::Transport(_)
                | Self::NotFound { .. }
                | Self::ConnectionRefused { .. }
                | Self::Nacked
                | Self::VhostRefused { .. }
                | Self::NotConnected(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_routed_says_which_binding_is_missing() {
        let e = PublishError::NotRouted {
            exchange: "e-conomic.direct".into(),
            vhost: "/".into(),
            routing_key: "webhook".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("no queue is bound to exchange \"e-conomic.direct\""),
            "{text}"
        );
        assert!(text.contains("routing key \"webhook\""), "{text}");
        assert!(!e.is_transient());
    }

    #[test]
    fn only_network_timeouts_and_server_errors_are_transient() {
        assert!(PublishError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(PublishError::Transport("reset".into()).is_transient());
        assert!(
            PublishError::Unavailable {
                status: 503,
                reason: String::new()
            }
            .is_transient()
        );
        assert!(
            PublishError::NotFound {
                exchange: "x".into(),
                vhost: "/".into(),
                reason: String::new(),
                setting: "AmqpEndpoint",
            }
            .is_transient()
        );
        assert!(PublishError::ConnectionRefused { user: "u".into() }.is_transient());
        assert!(PublishError::Nacked.is_transient());
        assert!(PublishError::NotConnected("refused".into()).is_transient());
        assert!(
            !PublishError::Blocked {
                reason: "low on memory".into(),
                lasted: Duration::from_secs(3),
            }
            .is_transient(),
            "an alarm outlasts the deadline: answered at once"
        );
        assert!(
            !PublishError::LoginRefused {
                user: "u".into(),
                setting: "AmqpUrl",
            }
            .is_transient()
        );
        assert!(
            !PublishError::Unauthorized {
                user: "u".into(),
                reason: String::new(),
                setting: "AmqpUrl",
            }
            .is_transient()
        );
        assert!(
            !PublishError::Rejected {
                status: 400,
                reason: String::new()
            }
            .is_transient()
        );
    }
}
