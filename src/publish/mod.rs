//! Putting one webhook on RabbitMQ, confirmed: the part every transport
//! shares. A bounded number of publishes run at once ([`Limits`]), each
//! retried on transient failures with backoff and jitter until the publish
//! deadline, each attempt under its own timeout; success means the broker
//! confirmed the message, nothing less.
//!
//! A transport sits behind [`Transport::attempt`]: the HTTP publish
//! endpoint ([`http`], the default) or AMQP with publisher confirms over one
//! long-lived connection ([`amqp`]); the setting `PublishTransport` chooses.

pub mod amqp;
pub mod error;
pub mod http;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{info, warn};

pub use error::PublishError;

use crate::broker::http::BadAuthHeader;
use crate::broker::message::Envelope;
use crate::broker::routing_key::{self, Flaw, RoutingKey};
use crate::settings::{BrokerSettings, Limits, PublishTransport};
use crate::webhook::Webhook;

/// A publish the broker confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// How many attempts it took (1 when nothing went wrong).
    pub attempts: u32,
}

/// The publisher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PublisherBuildError {
    /// The credentials hold characters HTTP headers cannot carry.
    #[error(transparent)]
    BadAuthHeader(#[from] BadAuthHeader),
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// How messages reach the broker.
#[derive(Debug)]
// Built once per process: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Transport {
    /// RabbitMQ's HTTP publish endpoint.
    Http(http::HttpTransport),
    /// AMQP 0-9-1 with publisher confirms.
    Amqp(amqp::AmqpTransport),
}

impl Transport {
    /// One attempt to publish `webhook`, within `timeout`; `Ok` only once
    /// the broker confirmed it.
    async fn attempt(&self, webhook: &Webhook, envelope: Envelope<'_>, timeout: Duration) -> Result<(), PublishError> {
        match self {
            Self::Http(http) => http.attempt(webhook, envelope, timeout).await,
            Self::Amqp(amqp) => amqp.attempt(webhook, envelope, timeout).await,
        }
    }

    /// Where messages go, in words for the start-up line.
    pub fn describe(&self) -> String {
        match self {
            Self::Http(http) => {
                let endpoint = http.endpoint();
                format!(
                    "exchange {:?} in vhost {:?} through the HTTP publish endpoint {}",
                    endpoint.exchange, endpoint.vhost, endpoint.url
                )
            }
            Self::Amqp(amqp) => amqp.describe(),
        }
    }

    /// Lets go of the broker at shutdown: the AMQP connection is closed
    /// cleanly; the HTTP transport holds nothing worth closing.
    pub async fn close(&self) {
        match self {
            Self::Http(_) => {}
            Self::Amqp(amqp) => amqp.close().await,
        }
    }
}

/// Publishes webhooks; built once at start-up and shared by every request.
#[derive(Debug)]
pub struct Publisher {
    transport: Transport,
    routing_key: RoutingKey,
    app_id: String,
    exchange: String,
    limits: Limits,
    /// Bounds publishes in flight so an overload waits briefly, then gets 503,
    /// instead of piling up in memory.
    slots: Semaphore,
}

impl Publisher {
    /// Builds the transport the settings choose. The AMQP transport starts
    /// connecting in the background (this needs a Tokio runtime).
    pub fn new(broker: BrokerSettings, limits: Limits) -> Result<Self, PublisherBuildError> {
        let (routing_key, app_id) = (broker.routing_key.clone(), broker.app_id.clone());
        let exchange = broker.endpoint.exchange.clone();
        let transport = match &broker.transport {
            PublishTransport::Http => Transport::Http(http::HttpTransport::new(broker, &limits)?),
            PublishTransport::Amqp { url, connection_name } => Transport::Amqp(amqp::AmqpTransport::start(
                url.clone(),
                connection_name.clone(),
                exchange.clone(),
                limits.publish_concurrency.get(),
            )),
        };
        Ok(Self {
            transport,
            routing_key,
            app_id,
            exchange,
            slots: Semaphore::new(limits.publish_concurrency.get()),
            limits,
        })
    }

    /// The transport, for the start-up line.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The exchange messages go to, for log lines.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Publishes `webhook`, retrying transient failures with backoff and jitter
    /// until the publish deadline; every attempt has its own timeout because
    /// the broker's confirm can hang. No span per publish: `tracing` was in
    /// about 4 % of the handler's profile samples at 6,000 webhooks a second,
    /// and the one line logged in here names the message itself.
    pub async fn publish(&self, webhook: &Webhook) -> Result<Published, PublishError> {
        let _slot = self.acquire_slot().await?;
        let routing_key = self.routing_key.render(webhook.parts());
        if !routing_key.replaced.is_empty() {
            log_replaced(&webhook.message_id, &routing_key);
        }
        let envelope = Envelope {
            routing_key: &routing_key.key,
            app_id: &self.app_id,
            timestamp: unix_seconds(),
        };
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
            let failure = match self.transport.attempt(webhook, envelope, timeout).await {
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
            warn!(
                message_id = %webhook.message_id,
                attempts,
                retry_in = ?delay,
                error = %failure,
                "publish attempt failed, retrying"
            );
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
}

/// One line per webhook whose routing key could not carry a value: info
/// when a value was only missing (a default is there for that), warn when
/// the sender sent one the key cannot hold.
fn log_replaced(message_id: &str, rendered: &routing_key::Rendered<'_>) {
    let replaced = routing_key::describe(&rendered.replaced);
    let key = rendered.key.as_ref();
    if rendered.replaced.iter().all(|r| r.flaw == Flaw::Missing) {
        info!(
            message_id,
            routing_key = key,
            replaced,
            "routing key: a value was missing"
        );
    } else {
        warn!(
            message_id,
            routing_key = key,
            replaced,
            "routing key: a value the key cannot carry was replaced"
        );
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
