//! The one operation both host modes share: check a webhook, publish it, log
//! the outcome once. Routes only translate to and from HTTP around it.

use tracing::{debug, error, warn};

use crate::error::ForwardError;
use crate::publisher::{PublishError, Published, Publisher};
use crate::webhook::Webhook;

/// Shared state of every route: the publisher and the body limit.
#[derive(Debug)]
pub struct Forwarder {
    publisher: Publisher,
    max_body_bytes: usize,
}

impl Forwarder {
    /// Wraps the publisher built at start-up.
    pub fn new(publisher: Publisher, max_body_bytes: usize) -> Self {
        Self {
            publisher,
            max_body_bytes,
        }
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

    /// Publishes `webhook` and logs one line saying what happened (and, on
    /// failure, what to do). Returns the line too, for the host's `Logs`.
    pub async fn forward(&self, webhook: &Webhook) -> (Result<Published, ForwardError>, String) {
        if webhook.body.len() > self.max_body_bytes {
            let failure = ForwardError::BodyTooLarge {
                limit: self.max_body_bytes,
            };
            let line = format!("message {} not queued: {failure}", webhook.message_id);
            warn!("{line}");
            return (Err(failure), line);
        }
        match self.publisher.publish(webhook).await {
            Ok(published) => {
                let line = format!(
                    "queued message {} ({} bytes) to exchange {} in {} attempt(s)",
                    webhook.message_id,
                    webhook.body.len(),
                    self.publisher.exchange(),
                    published.attempts
                );
                debug!("{line}");
                (Ok(published), line)
            }
            Err(failure) => {
                let line = format!("message {} not queued: {failure}", webhook.message_id);
                match failure {
                    PublishError::Overloaded { .. } => warn!("{line}"),
                    _ => error!("{line}"),
                }
                (Err(failure.into()), line)
            }
        }
    }
}
