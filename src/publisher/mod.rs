//! The outbound client: puts one webhook on RabbitMQ through the management
//! API's HTTP publish endpoint and succeeds only on `{"routed":true}`.

pub mod error;
pub mod message;
mod verdict;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{instrument, warn};

pub use error::PublishError;

use crate::broker_http::{self, BadAuthHeader};
use crate::settings::{BrokerSettings, Limits};
use crate::webhook::Webhook;

/// Most bytes of a broker answer we read: enough for `{"routed":true}` or an
/// error reason, never an unbounded buffer.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// A publish the broker confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// How many attempts it took (1 when nothing went wrong).
    pub attempts: u32,
}

/// Publishes webhooks; built once at start-up and shared by every request.
#[derive(Debug)]
pub struct Publisher {
    client: reqwest::Client,
    authorization: HeaderValue,
    broker: BrokerSettings,
    limits: Limits,
    /// Bounds publishes in flight so an overload waits briefly, then gets 503,
    /// instead of piling up in memory.
    slots: Semaphore,
}

/// The publisher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PublisherBuildError {
    /// The auth header holds characters HTTP headers cannot carry.
    #[error(transparent)]
    BadAuthHeader(#[from] BadAuthHeader),
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Publisher {
    /// Builds the one pooled client (rustls, keep-alive) every publish reuses.
    pub fn new(broker: BrokerSettings, limits: Limits) -> Result<Self, PublisherBuildError> {
        let authorization = broker_http::authorization(&broker.authorization)?;
        let client = broker_http::client(limits.publish_concurrency.get(), limits.attempt_timeout)?;
        Ok(Self {
            client,
            authorization,
            slots: Semaphore::new(limits.publish_concurrency.get()),
            broker,
            limits,
        })
    }

    /// The exchange messages go to, for log lines.
    pub fn exchange(&self) -> &str {
        &self.broker.endpoint.exchange
    }

    /// Publishes `webhook`, retrying transient failures with backoff and jitter
    /// until the publish deadline; every attempt has its own timeout because
    /// the broker's confirm can hang.
    #[instrument(name = "publish", skip_all, fields(message_id = %webhook.message_id))]
    pub async fn publish(&self, webhook: &Webhook) -> Result<Published, PublishError> {
        let _slot = self.acquire_slot().await?;
        let body = Bytes::from(message::publish_body(
            webhook,
            message::Envelope {
                routing_key: &self.broker.routing_key,
                app_id: &self.broker.app_id,
                timestamp: unix_seconds(),
            },
        ));

        let deadline = Instant::now() + self.limits.publish_deadline;
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let timeout = self
                .limits
                .attempt_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let failure = match self.attempt(body.clone(), timeout).await {
                Ok(()) => return Ok(Published { attempts }),
                Err(failure) if failure.is_transient() => failure,
                Err(failure) => return Err(failure),
            };
            let delay = delays.next().unwrap_or(Duration::from_secs(2));
            if Instant::now() + delay >= deadline {
                return Err(PublishError::DeadlineExceeded {
                    attempts,
                    deadline: self.limits.publish_deadline,
                    last: Box::new(failure),
                });
            }
            warn!(attempt = attempts, retry_in = ?delay, "publish attempt failed, retrying: {failure}");
            tokio::time::sleep(delay).await;
        }
    }

    async fn acquire_slot(&self) -> Result<SemaphorePermit<'_>, PublishError> {
        let overloaded = || PublishError::Overloaded {
            concurrency: self.limits.publish_concurrency.get(),
            waited: self.limits.slot_wait,
        };
        match tokio::time::timeout(self.limits.slot_wait, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a full one anyway.
            Ok(Err(_)) | Err(_) => Err(overloaded()),
        }
    }

    /// One POST to the publish endpoint, judged by [`verdict::judge`].
    async fn attempt(&self, body: Bytes, timeout: Duration) -> Result<(), PublishError> {
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
        verdict::judge(status, &answer, &self.broker)
    }
}

fn transport_failure(error: &reqwest::Error, timeout: Duration) -> PublishError {
    if error.is_timeout() {
        PublishError::Timeout(timeout)
    } else {
        PublishError::transport(error)
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
