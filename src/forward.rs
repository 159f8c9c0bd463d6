//! The one operation both host modes share: check a webhook (size, source),
//! publish it, log the outcome once. Routes only translate to and from HTTP
//! around it.

use std::borrow::Cow;

use tracing::{debug, error, warn};

use crate::admission::{Admission, Caller};
use crate::error::ForwardError;
use crate::publisher::{PublishError, Published, Publisher};
use crate::webhook::{self, Webhook};

/// Shared state of every route: the publisher, the body limit, the source checks.
#[derive(Debug)]
pub struct Forwarder {
    publisher: Publisher,
    max_body_bytes: usize,
    admission: Admission,
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

    /// Largest body accepted, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Largest host invocation JSON accepted in payload mode: a body at the
    /// limit can grow sixfold when JSON-escaped (`\u0000`), plus headers.
    pub fn max_invocation_bytes(&self) -> usize {
        self.max_body_bytes.saturating_mul(6).saturating_add(1024 * 1024)
    }

    /// Checks and publishes `webhook`, sent by `caller`, and logs one line
    /// saying what happened (and, on failure, what to do). Returns the line
    /// too, for the host's `Logs`.
    pub async fn forward(&self, webhook: &Webhook, caller: &Caller<'_>) -> (Result<Published, ForwardError>, String) {
        let refused = |failure: ForwardError| {
            let line = format!("message {} not queued: {failure}", webhook.message_id);
            warn!("{line}");
            (Err(failure), line)
        };
        if webhook.body.len() > self.max_body_bytes {
            return refused(ForwardError::BodyTooLarge {
                limit: self.max_body_bytes,
            });
        }
        if let Err(refusal) = self.admission.check(caller) {
            return refused(refusal.into());
        }
        match self.publisher.publish(&self.without_secrets(webhook)).await {
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
