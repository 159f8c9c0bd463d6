//! Moving a message that used up its attempts to the dead-letter queue, with
//! the reason, confirmed by the broker before the original is acknowledged.
//!
//! For queue `Q`, `handler setup --dead-letter` declares a fanout exchange
//! `Q.dead-letter` bound to a queue `Q.dead-letter`. The relay publishes a copy
//! (same body, same properties, reason headers added) there with publisher
//! confirms and `mandatory`, so "no such exchange" and "no queue bound" are
//! errors, not silent drops; the caller keeps the original until this succeeds.
//!
//! It publishes over a connection of its own, opened when the first message
//! needs it, never over the consuming one. RabbitMQ blocks a connection that
//! publishes during a memory or disk alarm and then reads nothing from it
//! (acks included) until the alarm clears, and the AMQP client writes nothing
//! to a blocked connection either: a dead letter published over the
//! consuming connection would stop the relay draining the queue, which is
//! what clears the alarm. A connection that only consumes is never blocked
//! (seen on 3.10.8 and 4.0.5). During an alarm a dead-letter publish simply
//! waits for its confirm, its original held unacknowledged, and completes
//! once the alarm clears (tests/alarm.rs).

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;
use tracing::info;

use super::headers::{ATTEMPTS_HEADER, DEAD_LETTERED_AT_HEADER, FAILURE_HEADER, QUEUE_HEADER, STATUS_HEADER};
use super::is_not_found;
use crate::broker::AmqpUrl;
use crate::broker::amqp::{self, ConnectError};
use crate::broker::topology::dead_letter_name;

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
    /// The connection dead letters are published over could not be opened.
    #[error("could not open the connection to publish dead letters over: {0}")]
    Connect(#[from] ConnectError),
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
/// of a connection of its own, so neither a failure there (a missing
/// exchange closes the channel) nor the broker blocking it (an alarm)
/// disturbs the consuming one.
pub struct DeadLetters {
    url: AmqpUrl,
    connection_name: String,
    queue: String,
    exchange: String,
    publishing: Mutex<Option<Publishing>>,
}

/// The connection dead letters go over, and its confirm-mode channel.
struct Publishing {
    connection: Connection,
    channel: Option<Channel>,
}

/// What the reason headers say.
#[derive(Debug, Clone, Copy)]
pub struct Reason<'a> {
    /// Why the last attempt failed.
    pub failure: &'a str,
    /// The target's HTTP status in the last answer, if it answered.
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
}

impl DeadLetters {
    /// Dead-letters messages of `queue`, over a connection to `url` opened
    /// when the first one needs it.
    pub fn new(url: AmqpUrl, queue: &str) -> Self {
        Self {
            url,
            // The consuming connection is `webhook-relay: <queue>`.
            connection_name: format!("webhook-relay: {queue} (dead letters)"),
            queue: queue.to_owned(),
            exchange: dead_letter_name(queue),
            publishing: Mutex::new(None),
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
        let channel = self.channel().await?;
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
                if let Some(publishing) = self.publishing.lock().await.as_mut() {
                    publishing.channel = None;
                }
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
        let mut headers = properties
            .headers()
            .as_ref()
            .map(|h| h.inner().clone())
            .unwrap_or_default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        headers.insert(FAILURE_HEADER.into(), text(reason.failure));
        headers.insert(
            ATTEMPTS_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(reason.attempts)),
        );
        headers.insert(QUEUE_HEADER.into(), text(&self.queue));
        match reason.status {
            Some(status) => headers.insert(STATUS_HEADER.into(), AMQPValue::ShortUInt(status)),
            // A status from an earlier dead-lettering would say the wrong thing.
            None => headers.remove(STATUS_HEADER),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        headers.insert(DEAD_LETTERED_AT_HEADER.into(), AMQPValue::Timestamp(now));
        FieldTable::from(headers)
    }

    /// The confirm-mode channel, opening the connection and the channel as
    /// needed (the connection is reopened once lost).
    async fn channel(&self) -> Result<Channel, DeadLetterError> {
        let mut slot = self.publishing.lock().await;
        let publishing = match slot.take() {
            Some(publishing) if publishing.connection.status().connected() => slot.insert(publishing),
            _ => slot.insert(Publishing {
                connection: amqp::connect(&self.url, &self.connection_name).await?,
                channel: None,
            }),
        };
        if publishing.connection.status().blocked() {
            info!(
                exchange = self.exchange,
                "the broker blocks publishing (a memory or disk alarm): the dead letter waits for it to clear, \
                 its original kept unacknowledged; the relay goes on draining the queue"
            );
        }
        if let Some(channel) = publishing.channel.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let open = async {
            let channel = publishing.connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(channel)
        };
        let channel = open.await.map_err(|e| self.broker_error(e))?;
        publishing.channel = Some(channel.clone());
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
