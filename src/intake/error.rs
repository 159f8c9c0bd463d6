//! Every way a webhook can fail to be queued, and the one place that maps
//! each to what the caller sees: a status, maybe `Retry-After`, a short reason.
//!
//! Anything but 2xx makes e-conomic retry, so broker trouble is always 5xx:
//! a 4xx would tell some senders to give up on an event we did not queue.

use std::time::Duration;

use warp::http::StatusCode;

use crate::publish::PublishError;

/// Seconds a caller is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;
/// The longest `Retry-After` asked for while the broker blocks publishing.
pub const MAX_BLOCKED_RETRY_AFTER_SECONDS: u64 = 60;

/// `Retry-After` while the broker blocks publishing (a memory or disk
/// alarm): as long as the block has lasted so far, at least
/// [`RETRY_AFTER_SECONDS`], at most [`MAX_BLOCKED_RETRY_AFTER_SECONDS`].
/// All that is known is how long it has lasted; an alarm clears only once
/// the queue drains or the broker gets room, so one that has lasted long
/// will likely last a while longer, and a caller that waits in step with it
/// is refused fewer times. The cap keeps a caller that honours it from
/// coming back more than a minute after the alarm cleared.
pub fn blocked_retry_after(lasted: Duration) -> u64 {
    lasted
        .as_secs()
        .clamp(RETRY_AFTER_SECONDS, MAX_BLOCKED_RETRY_AFTER_SECONDS)
}

/// Why a webhook was not queued.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The body is over `MaxBodyBytes`.
    #[error("the request body is larger than the {limit}-byte limit (setting MaxBodyBytes)")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read (the sender hung up mid-body).
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    /// The method is not one the route takes.
    #[error("method {method} is not allowed here; use {allowed}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The methods the route takes, for the `Allow` header.
        allowed: &'static str,
    },
    /// A source check refused the request.
    #[error("the request was refused: {0}")]
    Forbidden(#[from] super::admission::Refusal),
    /// The host's invocation JSON is malformed.
    #[error("the invocation request is malformed: {0}")]
    BadInvocation(String),
    /// The broker did not confirm the message.
    #[error("the webhook was not queued: {0}")]
    Publish(#[from] PublishError),
}

impl ForwardError {
    /// The status the caller gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BodyUnreadable(_) | Self::BadInvocation(_) => StatusCode::BAD_REQUEST,
            Self::Publish(_) if self.retry_after().is_some() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Publish(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// `Retry-After` seconds, for failures that should pass by themselves.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Publish(PublishError::Overloaded { .. } | PublishError::DeadlineExceeded { .. }) => {
                Some(RETRY_AFTER_SECONDS)
            }
            Self::Publish(PublishError::Blocked { lasted, .. }) => Some(blocked_retry_after(*lasted)),
            Self::Publish(e) if e.is_transient() => Some(RETRY_AFTER_SECONDS),
            _ => None,
        }
    }

    /// The short reason the caller reads: no broker names, no secrets.
    pub fn reason(&self) -> String {
        match self {
            Self::BodyTooLarge { limit } => format!("request body over the {limit}-byte limit"),
            Self::BodyUnreadable(_) => "request body could not be read".to_owned(),
            Self::MethodNotAllowed { .. } => self.to_string(),
            // Which check failed is for the log: no hints to a prober.
            Self::Forbidden(_) => "request not allowed".to_owned(),
            Self::BadInvocation(detail) => format!("malformed invocation request: {detail}"),
            Self::Publish(PublishError::Overloaded { .. }) => "too many webhooks at once; retry later".to_owned(),
            Self::Publish(_) if self.retry_after().is_some() => "the queue is unavailable; retry later".to_owned(),
            Self::Publish(_) => "the webhook could not be queued; retry later".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn publish(e: PublishError) -> ForwardError {
        ForwardError::Publish(e)
    }

    #[test]
    fn overload_is_503_with_retry_after() {
        let e = publish(PublishError::Overloaded {
            concurrency: 1,
            waited: Duration::from_secs(1),
        });
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after(), Some(RETRY_AFTER_SECONDS));
    }

    #[test]
    fn a_broker_that_stays_down_is_503_with_retry_after() {
        let e = publish(PublishError::DeadlineExceeded {
            attempts: 3,
            deadline: Duration::from_secs(1),
            last: Box::new(PublishError::Transport("refused".into())),
        });
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after(), Some(RETRY_AFTER_SECONDS));
    }

    #[test]
    fn a_blocked_broker_is_503_asking_to_wait_as_long_as_the_block_lasted_within_bounds() {
        let blocked = |seconds| {
            publish(PublishError::Blocked {
                reason: "low on memory".into(),
                lasted: Duration::from_secs(seconds),
            })
        };
        assert_eq!(blocked(0).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(blocked(0).retry_after(), Some(RETRY_AFTER_SECONDS));
        assert_eq!(blocked(17).retry_after(), Some(17));
        assert_eq!(blocked(3_600).retry_after(), Some(MAX_BLOCKED_RETRY_AFTER_SECONDS));
        assert_eq!(blocked(17).reason(), "the queue is unavailable; retry later");
    }

    #[test]
    fn broker_configuration_errors_are_502_so_the_sender_retries() {
        let not_routed = publish(PublishError::NotRouted {
            exchange: "internal-exchange".into(),
            vhost: "/".into(),
            routing_key: "k".into(),
        });
        assert_eq!(not_routed.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(not_routed.retry_after(), None);
        assert!(
            !not_routed.reason().contains("internal-exchange"),
            "the caller is not told broker names"
        );
        let unauthorized = publish(PublishError::Unauthorized {
            user: "u".into(),
            reason: "Login failed".into(),
            setting: "AmqpUrl",
        });
        assert_eq!(unauthorized.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn input_errors_are_4xx() {
        assert_eq!(
            ForwardError::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ForwardError::BadInvocation("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
