//! The HTTP transport: one `POST .../publish` to the management API per
//! attempt, judged by its answer. A 200 alone proves nothing: only
//! `{"routed":true}` means a queue took the message.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::{PublishError, PublisherBuildError};
use crate::broker::http::{PublishEndpoint, reason};
use crate::broker::message::{self, Envelope};
use crate::http_client;
use crate::settings::{BrokerSettings, Limits};
use crate::webhook::Webhook;

/// Most bytes of a broker answer we read: enough for `{"routed":true}` or an
/// error reason, never an unbounded buffer.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Publishes through the HTTP publish endpoint with one pooled client.
#[derive(Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    authorization: HeaderValue,
    broker: BrokerSettings,
}

impl HttpTransport {
    /// Builds the one pooled client (rustls, keep-alive) every publish reuses.
    pub fn new(broker: BrokerSettings, limits: &Limits) -> Result<Self, PublisherBuildError> {
        Ok(Self {
            client: http_client::client(limits.publish_concurrency.get(), limits.attempt_timeout)?,
            authorization: broker.credentials.header()?,
            broker,
        })
    }

    /// Where messages go, for log lines.
    pub fn endpoint(&self) -> &PublishEndpoint {
        &self.broker.endpoint
    }

    /// One POST to the publish endpoint, judged by [`judge`].
    pub async fn attempt(
        &self,
        webhook: &Webhook,
        envelope: Envelope<'_>,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let body = Bytes::from(message::publish_body(webhook, envelope));
        let sent = self
            .client
            .post(self.broker.endpoint.url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let mut response = sent.map_err(|e| transport_failure(&e, timeout))?;
        let status = response.status();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_failure(&e, timeout))? {
            let room = MAX_ANSWER_BYTES.saturating_sub(answer.len());
            answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        judge(status, &answer, &self.broker, envelope.routing_key)
    }
}

fn transport_failure(error: &reqwest::Error, timeout: Duration) -> PublishError {
    if error.is_timeout() {
        PublishError::Timeout(timeout)
    } else {
        // The URL it names holds no secret: settings refuse an endpoint with credentials.
        PublishError::Transport(http_client::error_chain(error))
    }
}

#[derive(Deserialize)]
struct RoutedAnswer {
    routed: bool,
}

/// Turns the endpoint's status and body into success or a typed failure;
/// `routing_key` is the key the message was published with.
fn judge(status: StatusCode, answer: &[u8], broker: &BrokerSettings, routing_key: &str) -> Result<(), PublishError> {
    let endpoint = &broker.endpoint;
    let not_found = || PublishError::NotFound {
        exchange: endpoint.exchange.clone(),
        vhost: endpoint.vhost.clone(),
        reason: reason(answer),
        setting: endpoint.setting,
    };
    match status.as_u16() {
        200 | 201 => match serde_json::from_slice::<RoutedAnswer>(answer) {
            Ok(RoutedAnswer { routed: true }) => Ok(()),
            Ok(RoutedAnswer { routed: false }) => Err(PublishError::NotRouted {
                exchange: endpoint.exchange.clone(),
                vhost: endpoint.vhost.clone(),
                routing_key: routing_key.to_owned(),
            }),
            Err(_) => Err(PublishError::UnexpectedAnswer),
        },
        // RabbitMQ 3.10 and 4.0 say "Access refused." when a vhost's connection
        // limit stops the connection it publishes on: not a credentials problem.
        // (3.10 says the same for an unknown vhost; 4.0 answers that 404.)
        401 if reason(answer).contains("Access refused") => Err(PublishError::ConnectionRefused {
            user: broker.credentials.user.clone(),
        }),
        401 => Err(PublishError::Unauthorized {
            user: broker.credentials.user.clone(),
            reason: reason(answer),
            setting: broker.credentials.setting,
        }),
        // RabbitMQ 3.10 answers an unknown exchange with 400 and the channel
        // error "404 NOT_FOUND - no exchange ..."; 4.0 with 404 "exchange_not_found".
        404 => Err(not_found()),
        400 if reason(answer).contains("NOT_FOUND") => Err(not_found()),
        // The broker nacked the message, a queue's limit refusing it
        // (`x-overflow: reject-publish`): "rejected Unable to publish message.
        // Check queue limits." (3.10.8 and 4.0.5 alike). A full queue may
        // drain, so it is retried within the deadline, as the AMQP transport
        // retries a nack.
        400 if reason(answer).contains("Check queue limits") => Err(PublishError::Nacked),
        // RabbitMQ 4.2.9+ and 4.3.3+ stop waiting for the confirm after 30 s
        // with 400 "confirm_timeout": the message may or may not be queued.
        // Like our own attempt timeout, it is worth another attempt (a
        // duplicate, with the same message_id, is better than a loss).
        400 if reason(answer).contains("confirm_timeout") => Err(PublishError::Unavailable {
            status: status.as_u16(),
            reason: reason(answer),
        }),
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
    use crate::broker::http::Credentials;
    use crate::broker::routing_key::RoutingKey;

    fn broker() -> BrokerSettings {
        BrokerSettings {
            transport: crate::settings::broker::PublishTransport::Http,
            endpoint: PublishEndpoint::parse("http://h/api/exchanges/%2F/ex/publish").unwrap(),
            credentials: Credentials::from_auth_header("eDp5").unwrap(),
            amqp_url: None,
            routing_key: RoutingKey::parse("webhook").unwrap(),
            app_id: "app".into(),
        }
    }

    fn judge_answer(status: u16, answer: &str) -> Result<(), PublishError> {
        judge(
            StatusCode::from_u16(status).unwrap(),
            answer.as_bytes(),
            &broker(),
            "webhook",
        )
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
        let err = judge_answer(401, answer).unwrap_err();
        assert!(matches!(err, PublishError::Unauthorized { .. }), "{err:?}");
        assert!(err.to_string().contains("check setting AmqpAuthHeader"), "{err}");
    }

    #[test]
    fn a_400_carrying_a_not_found_channel_error_is_not_found() {
        let answer = r#"{"error":"bad_request","reason":"404 NOT_FOUND - no exchange 'ex' in vhost '/'"}"#;
        assert!(matches!(judge_answer(400, answer), Err(PublishError::NotFound { .. })));
    }

    #[test]
    fn rabbitmq_4_answers_are_judged_like_3_10s() {
        // Copied from curl against RabbitMQ 4.0.5.
        let answer = r#"{"error":"not_found","reason":"exchange_not_found"}"#;
        assert!(matches!(judge_answer(404, answer), Err(PublishError::NotFound { .. })));
        let answer = r#"{"error":"not_found","reason":"vhost_not_found"}"#;
        assert!(matches!(judge_answer(404, answer), Err(PublishError::NotFound { .. })));
        let answer = r#"{"error":"not_authorized","reason":"Not_Authorized"}"#;
        assert!(matches!(
            judge_answer(401, answer),
            Err(PublishError::Unauthorized { .. })
        ));
    }

    #[test]
    fn a_queue_limit_refusing_the_message_is_a_nack_worth_another_attempt() {
        // Copied from curl against RabbitMQ 3.10.8 and 4.0.5 (the same
        // answer; a queue with x-max-length 1 and x-overflow reject-publish,
        // already full).
        let answer = r#"{"error":"bad_request","reason":"rejected Unable to publish message. Check queue limits."}"#;
        let err = judge_answer(400, answer).unwrap_err();
        assert!(matches!(err, PublishError::Nacked), "{err:?}");
        assert!(err.is_transient(), "{err:?}");
    }

    #[test]
    fn a_confirm_timeout_is_worth_another_attempt() {
        let answer = r#"{"error":"bad_request","reason":"confirm_timeout"}"#;
        let err = judge_answer(400, answer).unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }

    #[test]
    fn the_brokers_reason_is_kept() {
        let err = judge_answer(404, r#"{"error":"Object Not Found","reason":"Not Found"}"#).unwrap_err();
        assert!(err.to_string().contains("Not Found"), "{err}");
        let err = judge_answer(502, "bad gateway\n").unwrap_err();
        assert!(err.to_string().contains("bad gateway"), "{err}");
    }
}
