//! The AMQP transport: AMQP 0-9-1 with publisher confirms over one
//! long-lived connection per process ([`connection`]), one confirm-mode
//! channel per publish in flight ([`channels`]), every publish `mandatory`.
//! Success is a `basic.ack` of a message that was not returned, nothing less
//! ([`verdict`]). The message is built by [`crate::broker::message`], the
//! same format the HTTP transport sends.
//!
//! A confirm lost with the connection, or one that does not come within the
//! attempt's timeout, fails the attempt; the shared retry loop publishes
//! again with the same `message_id`. The broker may have kept the first copy,
//! so a consumer can see a message twice (never zero times after a 2xx).

pub mod channels;
pub mod connection;
pub mod verdict;

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use tokio::time::Instant;

use super::PublishError;
use crate::broker::AmqpUrl;
use crate::broker::message::{self, Envelope};
use crate::webhook::Webhook;
use channels::Channels;
use connection::Link;
use verdict::Destination;

/// Publishes over the one connection, kept up in the background.
#[derive(Debug)]
pub struct AmqpTransport {
    link: Link,
    channels: Channels,
    to: Destination,
    connection_name: String,
}

impl AmqpTransport {
    /// Starts connecting to `url` in the background as `connection_name` and
    /// returns at once; publishes wait for the connection within their
    /// timeout. At most `concurrency` publishes are in flight at once.
    pub fn start(
        url: AmqpUrl,
        connection_name: String,
        exchange: String,
        routing_key: String,
        concurrency: usize,
    ) -> Self {
        Self {
            link: Link::start(url.clone(), connection_name.clone(), concurrency),
            channels: Channels::default(),
            to: Destination {
                url,
                exchange,
                routing_key,
            },
            connection_name,
        }
    }

    /// One confirmed publish of `webhook`: wait for the connection, take a
    /// channel, publish `mandatory`, wait for the confirm; all within `timeout`.
    pub async fn attempt(
        &self,
        webhook: &Webhook,
        envelope: Envelope<'_>,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let deadline = Instant::now() + timeout;
        let timed_out = || PublishError::Timeout(timeout);
        let connection = self.link.connection(timeout).await?;
        let channel = tokio::time::timeout_at(deadline, self.channels.take(&connection))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| verdict::failure(&e, &self.to))?;
        let publish = async {
            let confirm = channel
                .basic_publish(
                    self.to.exchange.as_str().into(),
                    envelope.routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    &webhook.body,
                    message::amqp_properties(webhook, envelope),
                )
                .await?;
            confirm.await
        };
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(Ok(confirmation)) => {
                // A confirmed channel carries nothing more that could be
                // taken for the next publish's answer.
                self.channels.put_back(channel);
                verdict::judge(confirmation, &self.to)
            }
            // The channel is dropped (and closed): its late answer must
            // not reach another publish.
            Ok(Err(error)) => Err(verdict::failure(&error, &self.to)),
            Err(_) => Err(timed_out()),
        }
    }

    /// Where messages go, for the start-up line.
    pub fn describe(&self) -> String {
        format!(
            "exchange {:?} in vhost {:?} over AMQP at {} (connection {:?}; connecting in the background)",
            self.to.exchange,
            self.to.url.vhost(),
            self.to.url,
            self.connection_name
        )
    }

    /// Closes the connection (at shutdown, once no request is in flight).
    pub async fn close(&self) {
        self.link.close().await;
    }
}
