//! Judges the publish endpoint's answer. A 200 alone proves nothing: only
//! `{"routed":true}` means a queue took the message.

use reqwest::StatusCode;
use serde::Deserialize;

use super::PublishError;
use crate::broker_http::reason;
use crate::settings::BrokerSettings;

#[derive(Deserialize)]
struct RoutedAnswer {
    routed: bool,
}

/// Turns the endpoint's status and body into success or a typed failure.
pub fn judge(status: StatusCode, answer: &[u8], broker: &BrokerSettings) -> Result<(), PublishError> {
    let endpoint = &broker.endpoint;
    let not_found = || PublishError::NotFound {
        exchange: endpoint.exchange.clone(),
        vhost: endpoint.vhost.clone(),
        reason: reason(answer),
    };
    match status.as_u16() {
        200 | 201 => match serde_json::from_slice::<RoutedAnswer>(answer) {
            Ok(RoutedAnswer { routed: true }) => Ok(()),
            Ok(RoutedAnswer { routed: false }) => Err(PublishError::NotRouted {
                exchange: endpoint.exchange.clone(),
                vhost: endpoint.vhost.clone(),
                routing_key: broker.routing_key.clone(),
            }),
            Err(_) => Err(PublishError::UnexpectedAnswer),
        },
        // RabbitMQ 3.10 says "Access refused." when a vhost's connection
        // limit stops the connection it publishes on: not a credentials problem.
        401 if reason(answer).contains("Access refused") => Err(PublishError::ConnectionRefused {
            user: broker.user.clone(),
        }),
        401 => Err(PublishError::Unauthorized {
            user: broker.user.clone(),
            reason: reason(answer),
        }),
        // RabbitMQ 3.10 answers an unknown exchange with 400 and the channel
        // error "404 NOT_FOUND - no exchange ..."; newer ones with 404.
        404 => Err(not_found()),
        400 if reason(answer).contains("NOT_FOUND") => Err(not_found()),
        429 | 500..=599 => Err(PublishError::Unavailable {
            status: status.as_u16(),
            reason: reason(answer),
        }),
        _ => Err(PublishError::Rejected {
            status: status.as_u16(),
            reason: reason(answer),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::settings::PublishEndpoint;

    fn broker() -> BrokerSettings {
        BrokerSettings {
            endpoint: PublishEndpoint {
                url: "http://h/api/exchanges/%2F/ex/publish".parse().unwrap(),
                vhost: "/".into(),
                exchange: "ex".into(),
            },
            authorization: Secret::new("Basic eDp5"),
            user: "x".into(),
            routing_key: "webhook".into(),
            app_id: "app".into(),
        }
    }

    fn judge_answer(status: u16, answer: &str) -> Result<(), PublishError> {
        judge(StatusCode::from_u16(status).unwrap(), answer.as_bytes(), &broker())
    }

    #[test]
    fn routed_true_is_the_only_success() {
        assert!(judge_answer(200, r#"{"routed":true}"#).is_ok());
    }

    #[test]
    fn routed_false_is_a_failure_naming_the_binding() {
        let err = judge_answer(200, r#"{"routed":false}"#).unwrap_err();
        assert!(matches!(err, PublishError::NotRouted { .. }), "{err:?}");
    }

    #[test]
    fn a_200_without_a_verdict_is_not_success() {
        assert!(matches!(
            judge_answer(200, "<html>ok</html>"),
            Err(PublishError::UnexpectedAnswer)
        ));
        assert!(matches!(judge_answer(200, ""), Err(PublishError::UnexpectedAnswer)));
    }

    #[test]
    fn statuses_map_to_their_failures() {
        assert!(matches!(judge_answer(401, ""), Err(PublishError::Unauthorized { .. })));
        assert!(matches!(judge_answer(404, ""), Err(PublishError::NotFound { .. })));
        assert!(matches!(
            judge_answer(400, ""),
            Err(PublishError::Rejected { status: 400, .. })
        ));
        assert!(matches!(
            judge_answer(405, ""),
            Err(PublishError::Rejected { status: 405, .. })
        ));
        assert!(matches!(
            judge_answer(429, ""),
            Err(PublishError::Unavailable { status: 429, .. })
        ));
        assert!(matches!(
            judge_answer(503, ""),
            Err(PublishError::Unavailable { status: 503, .. })
        ));
    }

    #[test]
    fn a_401_access_refused_is_a_connection_limit_not_bad_credentials() {
        let answer = r#"{"error":"not_authorised","reason":"Access refused."}"#;
        assert!(matches!(
            judge_answer(401, answer),
            Err(PublishError::ConnectionRefused { .. })
        ));
        let answer = r#"{"error":"not_authorized","reason":"Login failed"}"#;
        assert!(matches!(
            judge_answer(401, answer),
            Err(PublishError::Unauthorized { .. })
        ));
    }

    #[test]
    fn a_400_carrying_a_not_found_channel_error_is_not_found() {
        let answer = r#"{"error":"bad_request","reason":"404 NOT_FOUND - no exchange 'ex' in vhost '/'"}"#;
        assert!(matches!(judge_answer(400, answer), Err(PublishError::NotFound { .. })));
    }

    #[test]
    fn the_brokers_reason_is_kept() {
        let err = judge_answer(404, r#"{"error":"Object Not Found","reason":"Not Found"}"#).unwrap_err();
        assert!(err.to_string().contains("Not Found"), "{err}");
        let err = judge_answer(502, "bad gateway\n").unwrap_err();
        assert!(err.to_string().contains("bad gateway"), "{err}");
    }
}
