//! The one operation every host mode shares: check a webhook (size, source),
//! publish it, log the outcome once with fields. Routes only translate to and
//! from HTTP around it; the payload route also turns the [`Outcome`] into the
//! host's `Logs` line.

use std::borrow::Cow;
use std::fmt;

use tracing::{debug, error, warn};

use super::admission::{Admission, Caller};
use super::error::ForwardError;
use crate::publish::{PublishError, Published, Publisher};
use crate::webhook::{self, Webhook};

/// Shared state of every route: the publisher, the body limit, the source checks.
#[derive(Debug)]
pub struct Forwarder {
    publisher: Publisher,
    max_body_bytes: usize,
    admission: Admission,
}

/// What became of one webhook.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// The message id it was (or would have been) queued under.
    pub message_id: &'a str,
    /// Its body size.
    pub bytes: usize,
    /// The exchange it was published to.
    pub exchange: &'a str,
    /// Queued, or why not.
    pub result: Result<Published, ForwardError>,
}

impl fmt::Display for Outcome<'_> {
    /// The line the host records in the invocation's `Logs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(published) => write!(
                f,
                "queued message {} ({} bytes) to exchange {} in {} attempt(s)",
                self.message_id, self.bytes, self.exchange, published.attempts
            ),
            Err(failure) => write!(f, "message {} not queued: {failure}", self.message_id),
        }
    }
}

impl Forwarder {
    /// Wraps the publisher built at start-up.
    pub fn new(publisher: Publisher, max_body_bytes: usize, admission: Admission) -> Self {
        Self {
            publisher,
            max_body_bytes,
            admission,
        }
    }

    /// The publisher, for the start-up line.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Largest body accepted, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Largest host invocation JSON accepted in payload mode: a body at the
    /// limit can grow sixfold when JSON-escaped (`\u0000`), plus headers.
    pub fn max_invocation_bytes(&self) -> usize {
        self.max_body_bytes.saturating_mul(6).saturating_add(1024 * 1024)
    }

    /// Checks and publishes `webhook`, sent by `caller`, and logs the
    /// outcome once, with what to do about a failure.
    pub async fn forward<'a>(&'a self, webhook: &'a Webhook, caller: &Caller<'_>) -> Outcome<'a> {
        let result = self.check_and_publish(webhook, caller).await;
        let outcome = Outcome {
            message_id: &webhook.message_id,
            bytes: webhook.body.len(),
            exchange: self.publisher.exchange(),
            result,
        };
        log(&outcome);
        outcome
    }

    async fn check_and_publish(&self, webhook: &Webhook, caller: &Caller<'_>) -> Result<Published, ForwardError> {
        if webhook.body.len() > self.max_body_bytes {
            return Err(ForwardError::BodyTooLarge {
                limit: self.max_body_bytes,
            });
        }
        self.admission.check(caller)?;
        Ok(self.publisher.publish(&self.without_secrets(webhook)).await?)
    }

    /// The webhook minus any shared-secret query parameter (the function key
    /// is already gone): secrets are never published.
    fn without_secrets<'w>(&self, webhook: &'w Webhook) -> Cow<'w, Webhook> {
        let mut stripped = Cow::Borrowed(webhook);
        for name in self.admission.secret_params() {
            let query = webhook::strip_param(&stripped.query, name);
            stripped.to_mut().query = query;
        }
        stripped
    }
}

/// One event per webhook: debug when queued (a burst would flood the logs),
/// warn when refused or overloaded, error when the broker failed it; debug
/// again while the broker blocks publishing, whose start and end the
/// transport logs once each.
fn log(outcome: &Outcome<'_>) {
    let (message_id, bytes) = (outcome.message_id, outcome.bytes);
    match &outcome.result {
        Ok(published) => debug!(
            message_id,
            bytes,
            attempts = published.attempts,
            exchange = outcome.exchange,
            status = 200,
            "queued"
        ),
        Err(failure) => {
            let status = failure.status().as_u16();
            match failure {
                ForwardError::Publish(PublishError::Overloaded { .. }) | ForwardError::Forbidden(_) => {
                    warn!(message_id, bytes, status, error = %failure, "not queued");
                }
                ForwardError::Publish(PublishError::Blocked { .. }) => {
                    debug!(message_id, bytes, status, error = %failure, "not queued");
                }
                ForwardError::Publish(_) => error!(message_id, bytes, status, error = %failure, "not queued"),
                _ => warn!(message_id, bytes, status, error = %failure, "not queued"),
            }
        }
    }
}
