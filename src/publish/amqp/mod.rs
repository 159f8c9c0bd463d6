//! The AMQP transport: AMQP 0-9-1 with publisher confirms over one
//! long-lived connection per process ([`connection`]), publishes streamed
//! on a few confirm-mode channels ([`pipeline`]), every publish
//! `mandatory`. Success is a `basic.ack` of a message that was not returned,
//! nothing less ([`verdict`]). The message is built by [`crate::broker::message`], the
//! same format the HTTP transport sends.
//!
//! A confirm lost with the connection, or one that does not come within the
//! attempt's timeout, fails the attempt; the shared retry loop publishes
//! again with the same `message_id`. The broker may have kept the first copy,
//! so a consumer can see a message twice (never zero times after a 2xx).
//! While the broker blocks the connection (a memory or disk alarm), nothing
//! is published and every attempt is refused at once ([`flow`]).

pub mod connection;
pub mod flow;
pub mod pipeline;
pub mod verdict;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::PublishError;
use crate::broker::AmqpUrl;
use crate::broker::message::{self, Envelope};
use crate::webhook::Webhook;
use connection::Link;
use pipeline::{Pipelines, Publish};
use verdict::Destination;

/// Publishes over the one connection, kept up in the background.
#[derive(Debug)]
pub struct AmqpTransport {
    link: Arc<Link>,
    pipelines: Pipelines,
    to: Arc<Destination>,
    connection_name: String,
}

impl AmqpTransport {
    /// Starts connecting to `url` in the background as `connection_name` and
    /// returns at once; publishes wait for the connection within their
    /// timeout. At most `concurrency` publishes are in flight at once.
    pub fn start(url: AmqpUrl, connection_name: String, exchange: String, concurrency: usize) -> Self {
        let link = Arc::new(Link::start(url.clone(), connection_name.clone()));
        let to = Arc::new(Destination { url, exchange });
        Self {
            pipelines: Pipelines::start(link.clone(), to.clone(), concurrency),
            link,
            to,
            connection_name,
        }
    }

    /// One confirmed publish of `webhook`: queued for the next channel with
    /// room, published `mandatory`, judged once it and every publish before
    /// it on its channel are confirmed; all within `timeout`.
    pub async fn attempt(
        &self,
        webhook: &Webhook,
        envelope: Envelope<'_>,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let deadline = Instant::now() + timeout;
        let (answer, verdict) = oneshot::channel();
        let publish = Publish {
            message_id: webhook.message_id.clone(),
            routing_key: envelope.routing_key.to_owned(),
            body: webhook.body.clone(),
            properties: message::amqp_properties(webhook, envelope),
            deadline,
            timeout,
            answer,
        };
        let published = async {
            self.pipelines.submit(publish).await?;
            verdict
                .await
                .map_err(|_| PublishError::NotConnected("the publisher stopped".to_owned()))?
        };
        tokio::time::timeout_at(deadline, published)
            .await
            .map_err(|_| PublishError::Timeout(timeout))?
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
