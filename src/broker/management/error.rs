//! Why a management API call failed, worded so the operator knows what to
//! fix. RabbitMQ answers most problems with 401, 404 or 400 and a `reason`;
//! the reason tells the cases apart. Texts measured on RabbitMQ 3.10.8 and
//! 4.0.5; where they differ both are matched (docs/rabbitmq-versions.md).

use std::time::Duration;

use reqwest::StatusCode;

use crate::broker::http::{BadAuthHeader, reason};

/// A management API call that did not do what was asked.
///
/// Never holds the password or the auth header: only names.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// 401 "Login failed" (3.x) or "Not_Authorized" (4.x): wrong user name or password.
    #[error(
        "the broker refused the credentials of user {user:?} (401 {reason}): the user name or password is wrong; fix setting {setting}"
    )]
    WrongCredentials {
        /// The user that tried.
        user: String,
        /// The broker's reason.
        reason: String,
        /// The setting the credentials came from.
        setting: &'static str,
    },
    /// 401 "Not management user": the user may not use the HTTP API at all.
    #[error(
        "user {user:?} may not use the management HTTP API (401 Not management user): give it the \"management\" tag, or use a user that has it"
    )]
    NotManagementUser {
        /// The user that tried.
        user: String,
    },
    /// 401 on a vhost the user has no permissions on.
    #[error(
        "user {user:?} has no permissions on vhost {vhost:?} (401 {reason}): grant them (rabbitmqctl set_permissions -p <vhost> <user> \".*\" \".*\" \".*\") or fix the vhost in setting {setting}"
    )]
    NoVhostAccess {
        /// The user that tried.
        user: String,
        /// The vhost.
        vhost: String,
        /// The broker's reason.
        reason: String,
        /// The setting the vhost came from.
        setting: &'static str,
    },
    /// 404 on the vhost: it does not exist.
    #[error(
        "vhost {vhost:?} does not exist on this broker (404): fix the vhost in setting {setting} (on CloudAMQP it is your user name; the default vhost is written %2F in a URL)"
    )]
    UnknownVhost {
        /// The vhost.
        vhost: String,
        /// The setting the vhost came from.
        setting: &'static str,
    },
    /// 400 "inequivalent arg": the object exists with other properties.
    #[error("{reason}")]
    Inequivalent {
        /// The broker's reason, naming the argument and both values.
        reason: String,
    },
    /// Any other refusal (403, other 401s, 400s, 404s).
    #[error("the management API refused {what} ({status}: {reason})")]
    Refused {
        /// What was asked, e.g. `PUT /api/queues/%2F/q`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The broker's reason.
        reason: String,
    },
    /// 5xx: the broker or a proxy before it failed.
    #[error("the management API failed {what} ({status}: {reason}); try again later")]
    Unavailable {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The broker's reason.
        reason: String,
    },
    /// A 2xx whose body is not what the RabbitMQ management API sends.
    #[error(
        "{what} answered with something that is not the RabbitMQ management API's JSON ({detail}); is the endpoint's host the management API?"
    )]
    UnexpectedAnswer {
        /// What was asked.
        what: String,
        /// The decoding failure.
        detail: String,
    },
    /// No answer within the timeout.
    #[error("no answer to {what} within {timeout:?}")]
    Timeout {
        /// What was asked.
        what: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection could not be made or broke.
    #[error("could not reach the management API: {0}")]
    Transport(String),
    /// The auth header cannot be sent.
    #[error(transparent)]
    BadAuthHeader(#[from] BadAuthHeader),
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Who asked, where, and what: the context a failure message needs.
pub(super) struct Request<'a> {
    /// The broker user.
    pub user: &'a str,
    /// The vhost.
    pub vhost: &'a str,
    /// The setting the credentials came from.
    pub credentials_setting: &'static str,
    /// The setting the endpoint (and so the vhost) came from.
    pub endpoint_setting: &'static str,
    /// Method and path, for messages.
    pub what: String,
}

/// Maps a non-2xx answer to the failure that says what to fix.
pub(super) fn failure(request: &Request<'_>, status: StatusCode, answer: &[u8]) -> ManagementError {
    let reason = reason(answer);
    let lower = reason.to_ascii_lowercase();
    let user = request.user.to_owned();
    let vhost = request.vhost.to_owned();
    match status.as_u16() {
        // 3.10.8 says "Login failed"; 4.0.5 says "Not_Authorized" for the same.
        401 if lower.contains("login failed") || lower == "not_authorized" => ManagementError::WrongCredentials {
            user,
            reason,
            setting: request.credentials_setting,
        },
        401 if lower.contains("not management user") => ManagementError::NotManagementUser { user },
        401 | 403 if lower.contains("virtual host") => ManagementError::NoVhostAccess {
            user,
            vhost,
            reason,
            setting: request.endpoint_setting,
        },
        404 if lower.contains("vhost_not_found") => ManagementError::UnknownVhost {
            vhost,
            setting: request.endpoint_setting,
        },
        400 if lower.contains("inequivalent arg") => ManagementError::Inequivalent { reason },
        500..=599 => ManagementError::Unavailable {
            what: request.what.clone(),
            status: status.as_u16(),
            reason,
        },
        _ => ManagementError::Refused {
            what: request.what.clone(),
            status: status.as_u16(),
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_for(status: u16, answer: &str) -> ManagementError {
        let request = Request {
            user: "u",
            vhost: "v",
            credentials_setting: "AmqpUrl",
            endpoint_setting: "AmqpUrl",
            what: "PUT /api/queues/v/q".to_owned(),
        };
        failure(&request, StatusCode::from_u16(status).unwrap(), answer.as_bytes())
    }

    // The answers below are RabbitMQ 3.10.8's, copied from curl, and 4.0.5's where it differs.

    #[test]
    fn login_failed_is_wrong_credentials() {
        let e = failure_for(401, r#"{"error":"not_authorized","reason":"Login failed"}"#);
        assert!(matches!(e, ManagementError::WrongCredentials { .. }), "{e:?}");
        assert!(e.to_string().contains("user \"u\" (401 Login failed)"), "{e}");
        assert!(e.to_string().ends_with("fix setting AmqpUrl"), "{e}");
    }

    #[test]
    fn rabbitmq_4s_not_authorized_is_wrong_credentials_too() {
        let e = failure_for(401, r#"{"error":"not_authorized","reason":"Not_Authorized"}"#);
        assert!(matches!(e, ManagementError::WrongCredentials { .. }), "{e:?}");
        assert!(e.to_string().contains("the user name or password is wrong"), "{e}");
    }

    #[test]
    fn a_user_without_the_management_tag_is_told_so() {
        let e = failure_for(401, r#"{"error":"not_authorised","reason":"Not management user"}"#);
        assert!(matches!(e, ManagementError::NotManagementUser { .. }), "{e:?}");
    }

    #[test]
    fn no_permission_on_the_vhost_is_named() {
        let e = failure_for(
            401,
            r#"{"error":"not_authorised","reason":"User not authorised to access virtual host"}"#,
        );
        assert!(matches!(e, ManagementError::NoVhostAccess { .. }), "{e:?}");
        assert!(e.to_string().contains("set_permissions"), "{e}");
    }

    #[test]
    fn an_unknown_vhost_is_named() {
        let e = failure_for(404, r#"{"error":"not_found","reason":"vhost_not_found"}"#);
        assert!(e.to_string().contains("vhost \"v\" does not exist"), "{e}");
    }

    #[test]
    fn inequivalent_keeps_the_brokers_words() {
        let e = failure_for(
            400,
            r#"{"error":"bad_request","reason":"inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received '86400000' but current is '604800000'"}"#,
        );
        assert!(matches!(e, ManagementError::Inequivalent { .. }), "{e:?}");
        assert!(e.to_string().contains("current is '604800000'"), "{e}");
    }

    #[test]
    fn other_answers_keep_status_and_reason() {
        let e = failure_for(401, r#"{"error":"not_authorised","reason":"Access refused."}"#);
        assert!(e.to_string().contains("401: Access refused."), "{e}");
        assert!(matches!(
            failure_for(503, ""),
            ManagementError::Unavailable { status: 503, .. }
        ));
    }
}
