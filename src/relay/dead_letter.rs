//! Moving a message that used up its attempts to the dead-letter queue, with
//! the reason, confirmed by the broker before the original is acknowledged.
//!
//! For queue `Q`, `handler setup --dead-letter` declares a fanout exchange
//! `Q.dead-letter` bound to a queue `Q.dead-letter`. The relay publishes a copy
//! (same body, same properties, reason headers added) there with publisher
//! confirms and `mandatory`, so "no such exchange" and "no queue bound" are
//! errors, not silent drops; the caller keeps the original until this succeeds.

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ErrorKind};
use tokio::sync::Mutex;

use crate::broker::topology::dead_letter_name;

/// Header stating why the last attempt failed.
pub const FAILURE_HEADER: &str = "x-relay-failure";
/// Header stating how many attempts were made.
pub const ATTEMPTS_HEADER: &str = "x-relay-attempts";
/// Header naming the queue the message was taken from.
pub const QUEUE_HEADER: &str = "x-relay-queue";

/// Why a message could not be dead-lettered; the caller keeps it unacknowledged.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The exchange is not there.
    #[error("the dead-letter exchange {0:?} does not exist (`handler setup --dead-letter` creates it)")]
    Missing(String),
    /// The exchange is there, but no queue would store the message.
    #[error("no queue is bound to the dead-letter exchange {0:?} (`handler setup --dead-letter` binds one)")]
    Unroutable(String),
    /// The broker answered the publish with a nack.
    #[error("the broker did not confirm the dead-letter publish to {0:?}")]
    Nacked(String),
    /// The channel or connection failed.
    #[error("publishing to the dead-letter exchange {exchange:?} failed: {source}")]
    Broker {
        /// The exchange.
        exchange: String,
        /// What the client said.
        source: lapin::Error,
    },
}

/// Publishes to one queue's dead-letter exchange over a confirm-mode channel
/// of its own, so a failure there (a missing exchange closes the channel)
/// never disturbs the consuming channel.
pub struct DeadLetters {
    connection: Arc<Connection>,
    queue: String,
    exchange: String,
    channel: Mutex<Option<Channel>>,
}

/// What the reason headers say.
#[derive(Debug, Clone, Copy)]
pub struct Reason<'a> {
    /// Why the last attempt failed.
    pub failure: &'a str,
    /// Attempts made.
    pub attempts: u32,
}

impl DeadLetters {
    /// Dead-letters messages of `queue`, over `connection`.
    pub fn new(connection: Arc<Connection>, queue: &str) -> Self {
        Self {
            connection,
            queue: queue.to_owned(),
            exchange: dead_letter_name(queue),
            channel: Mutex::new(None),
        }
    }

    /// The exchange messages go to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Publishes a copy of the message with the reason headers and waits for
    /// the broker's confirm.
    pub async fn publish(
        &self,
        routing_key: &str,
        properties: &BasicProperties,
        body: &[u8],
        reason: Reason<'_>,
    ) -> Result<(), DeadLetterError> {
        let channel = self.channel().await.map_err(|e| self.broker_error(e))?;
        let properties = properties.clone().with_headers(self.headers(properties, reason));
        let confirmation = async {
            channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?
                .await
        }
        .await;
        let confirmation = match confirmation {
            Ok(confirmation) => confirmation,
            Err(e) => {
                // The channel is likely closed (a missing exchange closes it):
                // the next try opens a fresh one.
                *self.channel.lock().await = None;
                return Err(self.broker_error(e));
            }
        };
        if confirmation.is_nack() {
            return Err(DeadLetterError::Nacked(self.exchange.clone()));
        }
        if confirmation.take_message().is_some() {
            return Err(DeadLetterError::Unroutable(self.exchange.clone()));
        }
        Ok(())
    }

    fn headers(&self, properties: &BasicProperties, reason: Reason<'_>) -> FieldTable {
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            FAILURE_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason.failure)),
        );
        headers.insert(
            ATTEMPTS_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(reason.attempts)),
        );
        headers.insert(
            QUEUE_HEADER.into(),
            AMQPValue::LongString(LongString::from(self.queue.as_str())),
        );
        headers
    }

    async fn channel(&self) -> lapin::Result<Channel> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    fn broker_error(&self, source: lapin::Error) -> DeadLetterError {
        if is_not_found(&source) {
            DeadLetterError::Missing(self.exchange.clone())
        } else {
            DeadLetterError::Broker {
                exchange: self.exchange.clone(),
                source,
            }
        }
    }
}

/// Whether the broker said NOT_FOUND: a passive declare or a publish named a
/// queue or exchange that is not there.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(e) if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}
