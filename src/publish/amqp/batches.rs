//! Publishes go out in batches, each batch on one confirm-mode channel of
//! the one connection, and are answered only once the whole batch is
//! confirmed. A few workers, each with a channel of its own, take the
//! waiting publishes from one queue, so one batch is sent while another
//! waits for its confirms.
//!
//! Why batches: a `basic.return` (the message was not routed) names no
//! delivery tag. RabbitMQ sends it before the `basic.ack` of the message,
//! but it acknowledges several messages at once (`multiple`), and the AMQP
//! client hands the return to whichever pending publish it completes first.
//! The returned message carries its `message_id`, though, and the client
//! hands out one waiting return per confirm it completes, in arrival order:
//! as a message's return arrives before its ack, the returns waiting never
//! outnumber the publishes not yet confirmed, so once every publish of a
//! batch is confirmed, every return of the batch has been handed out. The
//! worker collects their `message_id`s and then answers each publish: only
//! acked and not returned is success. A channel is only given its next
//! batch once the last one is confirmed, so batches never mix.
//!
//! An earlier version gave each publish a channel of its own (exact too,
//! but each publish cost the broker a channel round of its own), and before
//! that pipelined everything on one channel, trusting the client's pairing:
//! the test `a_binding_that_comes_and_goes_mid_burst_never_gets_a_dropped_webhook_a_2xx`
//! (tests/api/amqp_transport.rs) saw webhooks answered 200 and dropped by
//! the broker in 2 of 3 runs with that one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

use super::connection::Link;
use super::verdict::{self, Destination};
use crate::publish::PublishError;

/// How many channels publish at once, each one batch at a time. Four keep
/// the broker busy while batches stay large enough for its acks to cover
/// many messages at once (docs/benchmarks.md).
pub const WORKERS: usize = 2;

/// One message to publish, and where its answer goes.
#[derive(Debug)]
pub struct Publish {
    /// Its `message_id`, which a returned message is matched by.
    pub message_id: String,
    /// The routing key.
    pub routing_key: String,
    /// The body, byte for byte.
    pub body: Bytes,
    /// The message's properties.
    pub properties: BasicProperties,
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// The caller's attempt timeout, for the error text.
    pub timeout: Duration,
    /// Where the verdict goes.
    pub answer: oneshot::Sender<Result<(), PublishError>>,
}

/// The queue of waiting publishes and the workers that send them.
#[derive(Debug)]
pub struct Batches {
    waiting: flume::Sender<Publish>,
    _workers: Vec<AbortOnDropHandle<()>>,
}

impl Batches {
    /// Starts the workers; a batch holds at most `max_batch` publishes.
    pub fn start(link: Arc<Link>, to: Arc<Destination>, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (waiting, taken) = flume::bounded(max_batch);
        let workers = (0..WORKERS)
            .map(|_| {
                let worker = Worker {
                    link: link.clone(),
                    to: to.clone(),
                    channel: None,
                };
                AbortOnDropHandle::new(tokio::spawn(worker.run(taken.clone(), max_batch)))
            })
            .collect();
        Self {
            waiting,
            _workers: workers,
        }
    }

    /// Hands `publish` to the next free worker.
    pub async fn submit(&self, publish: Publish) -> Result<(), PublishError> {
        self.waiting
            .send_async(publish)
            .await
            .map_err(|_| PublishError::NotConnected("the publisher is stopping".to_owned()))
    }
}

/// One channel and the batches it sends.
struct Worker {
    link: Arc<Link>,
    to: Arc<Destination>,
    channel: Option<Channel>,
}

impl Worker {
    async fn run(mut self, taken: flume::Receiver<Publish>, max_batch: usize) {
        while let Ok(first) = taken.recv_async().await {
            let mut batch = vec![first];
            batch.extend(taken.try_iter().take(max_batch - 1));
            // A caller that stopped waiting retries on its own; sending its
            // message now would only make a duplicate.
            batch.retain(|publish| !publish.answer.is_closed());
            let verdicts = self.send(&batch).await;
            for (publish, verdict) in batch.into_iter().zip(verdicts) {
                let _ = publish.answer.send(verdict);
            }
        }
    }

    /// Publishes the batch on this worker's channel and judges every
    /// publish once all of them are confirmed.
    async fn send(&mut self, batch: &[Publish]) -> Vec<Result<(), PublishError>> {
        let (Some(earliest), Some(latest)) = (
            batch.iter().min_by_key(|p| p.deadline),
            batch.iter().max_by_key(|p| p.deadline),
        ) else {
            return Vec::new();
        };
        let channel = match self.ready_channel(earliest.deadline, earliest.timeout).await {
            Ok(channel) => channel,
            Err(error) => return vec![Err(error); batch.len()],
        };
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let exchange = self.to.exchange.as_str();
        let confirmed = join_all(batch.iter().map(|publish| {
            let sent = channel.basic_publish(
                exchange.into(),
                publish.routing_key.as_str().into(),
                options,
                &publish.body,
                publish.properties.clone(),
            );
            async move { sent.await?.await }
        }));
        let Ok(confirmations) = tokio::time::timeout_at(latest.deadline, confirmed).await else {
            // A late return on this channel could be taken for the next
            // batch's: the channel goes.
            self.channel = None;
            return batch.iter().map(|p| Err(PublishError::Timeout(p.timeout))).collect();
        };
        let verdicts = self.judge(batch, confirmations);
        if batch.len() > 1 && verdicts.iter().any(|v| matches!(v, Err(PublishError::Rejected { .. }))) {
            // The broker closed the channel over one message (too large,
            // say) and failed its batch-mates with it: each is sent again
            // alone, so that only the one it refused gets the refusal.
            let mut alone = Vec::with_capacity(batch.len());
            for publish in batch.chunks(1) {
                alone.extend(Box::pin(self.send(publish)).await);
            }
            return alone;
        }
        verdicts
    }

    /// The verdicts of a confirmed batch.
    fn judge(
        &mut self,
        batch: &[Publish],
        confirmations: Vec<Result<Confirmation, lapin::Error>>,
    ) -> Vec<Result<(), PublishError>> {
        let returned: HashSet<String> = confirmations
            .iter()
            .filter_map(|confirmation| match confirmation {
                Ok(Confirmation::Ack(Some(message)) | Confirmation::Nack(Some(message))) => Some(
                    message
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                ),
                _ => None,
            })
            .collect();
        let sent: HashSet<&str> = batch.iter().map(|p| p.message_id.as_str()).collect();
        if returned.iter().any(|id| !sent.contains(id.as_str())) {
            // Cannot happen by the reasoning above; if it ever does, no
            // verdict of this batch can be trusted, and a publish again is
            // safe (the same message_id), a wrong 2xx is not.
            warn!("a returned message matched no publish of its batch; the batch is published again");
            self.channel = None;
            let why = "a returned message could not be matched to its publish".to_owned();
            return vec![Err(PublishError::NotConnected(why)); batch.len()];
        }
        let mut verdicts = Vec::with_capacity(batch.len());
        for (publish, confirmation) in batch.iter().zip(confirmations) {
            verdicts.push(match confirmation {
                Ok(confirmation) => verdict::judge(&confirmation, returned.contains(&publish.message_id), &self.to),
                Err(error) => {
                    // The broker closed the channel (or the connection broke).
                    self.channel = None;
                    Err(verdict::failure(&error, &self.to))
                }
            });
        }
        verdicts
    }

    /// This worker's channel, opened (in confirm mode) when there is none
    /// or the connection it was on is gone; waits for the connection until
    /// `deadline`.
    async fn ready_channel(&mut self, deadline: Instant, timeout: Duration) -> Result<Channel, PublishError> {
        match &self.channel {
            Some(channel) if channel.status().connected() && channel.status().confirm() => {
                return Ok(channel.clone());
            }
            _ => self.channel = None,
        }
        let connection = self
            .link
            .connection(deadline.saturating_duration_since(Instant::now()))
            .await?;
        let open = async {
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(channel)
        };
        let channel = tokio::time::timeout_at(deadline, open)
            .await
            .map_err(|_| PublishError::Timeout(timeout))?
            .map_err(|error| verdict::failure(&error, &self.to))?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }
}
