//! Publishes stream out on confirm-mode channels of the one connection
//! ([`CHANNELS`] of them), as many in flight on each as
//! `PublishConcurrency` allows, and each is answered once its confirm is in
//! and every publish before it on its channel has been answered.
//!
//! Why in order: a `basic.return` (the message was not routed) names no
//! delivery tag. RabbitMQ sends a message's return before any ack that
//! covers it, and returns in publish order, but it acknowledges several
//! messages at once (`multiple`) and the AMQP client completes those in no
//! set order, handing each completed confirm the oldest waiting return, so a
//! return often rides on another publish's confirm. The returned message
//! carries its `message_id`, though. Counting shows where it can be: the
//! returns waiting never outnumber the publishes not yet confirmed whose
//! returns have come, so once every publish up to a message is confirmed,
//! its return, if it had one, has been handed out, to a confirm completed by
//! then. So before answering a publish the pipeline waits for every earlier
//! publish of its channel, collects the returns of every confirm completed
//! so far (`Pipeline::collect_settled`) and matches them by `message_id`.
//! A return is taken off its confirm wherever the confirm is first seen
//! (`InFlight::settle`), even in the publish's own first poll: a thread
//! descheduled there finds the broker's answer in already. The first cut of
//! this file missed that path, and the test named below caught it, a 200 for
//! a returned message in 3 of 5 runs.
//!
//! While the broker blocks the connection (a memory or disk alarm: see
//! [`super::flow`]) nothing new is put on the wire, and the publishes in
//! flight get [`BLOCK_GRACE`] for their confirms, then are refused instead of
//! waiting for confirms that come only once the alarm clears; their channel
//! is given up.
//!
//! History: one channel per publish in flight (exact, but each publish cost
//! the broker a channel round), then batches answered once the whole batch
//! was confirmed (a batch waited for the one before it). Before both, a
//! version trusted the client's pairing of returns to confirms: the test
//! `a_binding_that_comes_and_goes_mid_burst_never_gets_a_dropped_webhook_a_2xx`
//! (tests/api/amqp_transport.rs) saw webhooks answered 200 and dropped by
//! the broker in 2 of 3 runs with that one.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

use super::connection::Link;
use super::verdict::{self, Destination};
use crate::publish::PublishError;

/// How many channels publish at once, each with a pipeline of its own. One
/// beat two in 5 of 5 alternating runs of 50,000 webhooks: the broker spent
/// less CPU and fewer context switches per message. The 100,000-webhook
/// runs after it scored as with two, within the noise (docs/transports.md).
pub const CHANNELS: usize = 1;

/// How long publishes in flight when the broker blocks the connection may
/// still wait for their confirms before they are refused. Confirms that came
/// at all came within 5 ms of `connection.blocked` (3 of 20 runs of
/// examples/alarm_confirms; in 16 others none came until the alarm cleared:
/// docs/reliability.md); a hundred times that still answers their webhooks
/// well within a second.
pub const BLOCK_GRACE: Duration = Duration::from_millis(500);

/// Why a channel is given up after a `basic.nack`. A quorum queue's
/// member on a channel's node can refuse every later publish of that
/// channel once the queue's leader was lost: seen on a three-node 3.10.8
/// cluster, where in 6 of 12 runs the handler's channel, opened within 0.4 s
/// of the leader's node being killed, had every publish nacked for as long
/// as the run went on (90 s), while a new connection's publishes to the
/// same queue were confirmed at once (tests/cluster.rs, docs/clusters.md).
/// The channel's queue state lives in the broker's channel process, so a
/// new channel starts afresh; the publishes still in flight on the old one
/// are sent again (the same `message_id`) by the retry loop, as after any
/// channel given up.
const NACKED: &str = "the broker refused a publish (basic.nack): a new channel for the next";

/// How long closing a channel given up on may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One message to publish, and where its answer goes.
#[derive(Debug)]
pub struct Publish {
    /// Its `message_id`, which a returned message is matched by.
    pub message_id: String,
    /// Its routing key, rendered for this webhook.
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

/// The queue of waiting publishes and the pipelines that send them.
#[derive(Debug)]
pub struct Pipelines {
    waiting: flume::Sender<Publish>,
    _pipelines: Vec<AbortOnDropHandle<()>>,
}

impl Pipelines {
    /// Starts the pipelines; each keeps at most `max_in_flight` publishes
    /// unanswered.
    pub fn start(link: Arc<Link>, to: Arc<Destination>, max_in_flight: usize) -> Self {
        let max_in_flight = max_in_flight.max(1);
        let (waiting, taken) = flume::bounded(max_in_flight);
        let pipelines = (0..CHANNELS)
            .map(|_| {
                let pipeline = Pipeline {
                    link: link.clone(),
                    to: to.clone(),
                    channel: None,
                    in_flight: VecDeque::new(),
                    returned: HashMap::new(),
                    alone: VecDeque::new(),
                    refuse_at: None,
                };
                AbortOnDropHandle::new(tokio::spawn(pipeline.run(taken.clone(), max_in_flight)))
            })
            .collect();
        Self {
            waiting,
            _pipelines: pipelines,
        }
    }

    /// Hands `publish` to the next pipeline with room for it.
    pub async fn submit(&self, publish: Publish) -> Result<(), PublishError> {
        self.waiting
            .send_async(publish)
            .await
            .map_err(|_| PublishError::NotConnected("the publisher is stopping".to_owned()))
    }
}

/// A publish on the wire: its send and then its confirm.
type Confirming = Pin<Box<dyn Future<Output = Result<Confirmation, lapin::Error>> + Send>>;

/// One publish sent and not answered yet.
struct InFlight {
    publish: Publish,
    confirming: Confirming,
    /// The broker's answer, once in (a return riding on it already taken).
    settled: Option<Result<Confirmation, lapin::Error>>,
    /// Sent with nothing else in flight on its channel, after the broker
    /// closed a channel over some message of a crowd.
    alone: bool,
}

impl InFlight {
    /// Keeps the broker's answer. A return riding on it is handed back: it
    /// may be another publish's.
    fn settle(&mut self, mut settled: Result<Confirmation, lapin::Error>) -> Option<String> {
        let returned = match &mut settled {
            Ok(Confirmation::Ack(message) | Confirmation::Nack(message)) => message.take(),
            _ => None,
        };
        self.settled = Some(settled);
        returned.map(|message| {
            let id = message.properties.message_id().as_ref().map(|id| id.to_string());
            id.unwrap_or_default()
        })
    }
}

/// What woke the pipeline.
enum Event {
    /// A new publish to send.
    Publish(Publish),
    /// The oldest publish's confirm (or its failure) came in.
    Settled(Result<Confirmation, lapin::Error>),
    /// The oldest publish's deadline passed without a confirm.
    TimedOut,
    /// The broker blocked the connection: the grace for confirms starts.
    BlockNoticed,
    /// The grace is over: the publishes still in flight are refused.
    Blocked,
    /// The transport is gone.
    Stopped,
}

/// One channel and the publishes in flight on it, oldest first.
struct Pipeline {
    link: Arc<Link>,
    to: Arc<Destination>,
    channel: Option<Channel>,
    in_flight: VecDeque<InFlight>,
    /// `message_id`s of returned messages collected and not yet matched to
    /// their publish, with how many times each came back.
    returned: HashMap<String, usize>,
    /// Publishes to send again one at a time: the broker closed the channel
    /// over one message and failed the others with it.
    alone: VecDeque<Publish>,
    /// While the broker blocks the connection: when the publishes in flight
    /// stop waiting for their confirms.
    refuse_at: Option<Instant>,
}

impl Pipeline {
    async fn run(mut self, taken: flume::Receiver<Publish>, max_in_flight: usize) {
        let mut blocked = self.link.flow().watch();
        loop {
            self.answer_settled();
            if self.in_flight.is_empty() {
                self.refuse_at = None;
                if let Some(publish) = self.alone.pop_front() {
                    self.send(publish, true).await;
                    continue;
                }
            }
            // While a publish goes alone, nothing else joins it.
            let room = self.in_flight.len() < max_in_flight
                && self.alone.is_empty()
                && !self.in_flight.front().is_some_and(|entry| entry.alone);
            let event = match self.in_flight.front_mut() {
                None => match taken.recv_async().await {
                    Ok(publish) => Event::Publish(publish),
                    Err(_) => Event::Stopped,
                },
                Some(oldest) => {
                    let deadline = oldest.publish.deadline;
                    let refuse_at = self.refuse_at;
                    tokio::select! {
                        biased;
                        settled = &mut oldest.confirming => Event::Settled(settled),
                        () = tokio::time::sleep_until(deadline) => Event::TimedOut,
                        () = tokio::time::sleep_until(refuse_at.unwrap_or(deadline)), if refuse_at.is_some() => {
                            Event::Blocked
                        }
                        Ok(_) = blocked.wait_for(|blocked| *blocked), if refuse_at.is_none() => Event::BlockNoticed,
                        publish = taken.recv_async(), if room => match publish {
                            Ok(publish) => Event::Publish(publish),
                            Err(_) => Event::Stopped,
                        },
                    }
                }
            };
            match event {
                Event::Publish(publish) => self.send(publish, false).await,
                Event::Settled(settled) => {
                    let returned = self.in_flight.front_mut().and_then(|oldest| oldest.settle(settled));
                    self.note_returned(returned);
                    self.collect_settled();
                }
                Event::TimedOut => {
                    // A confirm that never came: the channel is given up, and
                    // with it every answer still owed on it.
                    if let Some(oldest) = self.in_flight.pop_front() {
                        let _ = oldest
                            .publish
                            .answer
                            .send(Err(PublishError::Timeout(oldest.publish.timeout)));
                    }
                    self.give_up_channel("a confirm on the channel timed out");
                }
                Event::BlockNoticed => self.refuse_at = Some(Instant::now() + BLOCK_GRACE),
                Event::Blocked => {
                    self.refuse_at = None;
                    // Unblocked within the grace: the rest are on their way.
                    if *blocked.borrow() {
                        self.refuse_in_flight();
                    }
                }
                Event::Stopped => return,
            }
        }
    }

    /// Puts `publish` on the wire behind the ones in flight.
    async fn send(&mut self, publish: Publish, alone: bool) {
        // A caller that stopped waiting retries on its own; sending its
        // message now would only make a duplicate.
        if publish.answer.is_closed() {
            return;
        }
        // Written now, it would wait in the socket and be queued when the
        // alarm clears, after its webhook was told to retry.
        if let Some(refusal) = self.link.flow().refuse(Instant::now()) {
            let _ = publish.answer.send(Err(refusal.into()));
            return;
        }
        let channel = match self.ready_channel(publish.deadline, publish.timeout).await {
            Ok(channel) => channel,
            Err(error) => {
                let _ = publish.answer.send(Err(error));
                return;
            }
        };
        let exchange = self.to.exchange.clone();
        let routing_key = publish.routing_key.clone();
        let body = publish.body.clone();
        let properties = publish.properties.clone();
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let mut confirming: Confirming = Box::pin(async move {
            channel
                .basic_publish(exchange.into(), routing_key.into(), options, &body, properties)
                .await?
                .await
        });
        // The first poll takes the message's delivery tag and queues its
        // frames, so the order in flight is the order on the wire.
        let first = confirming.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        let mut entry = InFlight {
            publish,
            confirming,
            settled: None,
            alone,
        };
        // A thread descheduled in that poll can find the confirm in already.
        let returned = match first {
            Poll::Ready(settled) => entry.settle(settled),
            Poll::Pending => None,
        };
        self.in_flight.push_back(entry);
        self.note_returned(returned);
    }

    /// Takes in every confirm completed so far and the returns riding on
    /// them, so that no publish is answered before its return is known.
    fn collect_settled(&mut self) {
        let mut context = Context::from_waker(Waker::noop());
        let mut returned = Vec::new();
        for entry in self.in_flight.iter_mut().filter(|entry| entry.settled.is_none()) {
            if let Poll::Ready(settled) = entry.confirming.as_mut().poll(&mut context) {
                returned.extend(entry.settle(settled));
            }
        }
        self.note_returned(returned);
    }

    /// Counts returned messages by `message_id`, for their publishes to
    /// find when they are answered.
    fn note_returned(&mut self, message_ids: impl IntoIterator<Item = String>) {
        for id in message_ids {
            if !self.in_flight.iter().any(|entry| entry.publish.message_id == id) {
                // Cannot happen by the reasoning at the top of this file; if
                // it ever does, no answer owed on this channel can be
                // trusted: publishing again is safe (the same message_id), a
                // wrong 2xx is not.
                warn!(
                    message_id = %id,
                    "a returned message matched no publish in flight; the channel's publishes are sent again"
                );
                self.give_up_channel("a returned message could not be matched to its publish");
                return;
            }
            *self.returned.entry(id).or_default() += 1;
        }
    }

    /// Answers the oldest publishes whose confirms are in, in order. After a
    /// `basic.nack` the channel is given up: see [`NACKED`].
    fn answer_settled(&mut self) {
        let mut nacked = false;
        while self.in_flight.front().is_some_and(|entry| entry.settled.is_some()) {
            let Some(InFlight {
                publish,
                settled: Some(settled),
                alone,
                ..
            }) = self.in_flight.pop_front()
            else {
                break;
            };
            let returned = self.take_returned(&publish.message_id);
            let verdict = match settled {
                Ok(confirmation) => verdict::judge(&confirmation, returned, &self.to, &publish.routing_key),
                Err(error) => {
                    // The broker closed the channel (or the connection broke).
                    self.channel = None;
                    match verdict::failure(&error, &self.to) {
                        // It closed the channel over one message (too large,
                        // say) and failed every other in flight with it: each
                        // is sent again alone, so that only the one it
                        // refuses gets the refusal.
                        PublishError::Rejected { .. } if !alone => {
                            self.alone.push_back(publish);
                            continue;
                        }
                        failure => Err(failure),
                    }
                }
            };
            nacked |= matches!(verdict, Err(PublishError::Nacked));
            let _ = publish.answer.send(verdict);
        }
        if nacked {
            self.give_up_channel(NACKED);
        }
    }

    fn take_returned(&mut self, message_id: &str) -> bool {
        let Some(count) = self.returned.get_mut(message_id) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            self.returned.remove(message_id);
        }
        true
    }

    /// Closes the channel and fails every publish still in flight on it with
    /// a transient error: the retry loop sends them again (the same
    /// `message_id`; the broker may have kept a first copy).
    fn give_up_channel(&mut self, why: &str) {
        self.abandon_channel(|| PublishError::NotConnected(why.to_owned()));
    }

    /// The broker blocked the connection [`BLOCK_GRACE`] ago: no confirm
    /// comes now for a publish still in flight until the alarm clears, so
    /// each is refused rather than holding its webhook to the deadline. The
    /// broker will still queue them when the alarm clears: a webhook refused
    /// here may be queued twice once its sender retries (the same
    /// `message_id`). Those whose confirms are in are answered first, in order.
    fn refuse_in_flight(&mut self) {
        self.collect_settled();
        self.answer_settled();
        let link = self.link.clone();
        self.abandon_channel(|| match link.flow().refuse(Instant::now()) {
            Some(refusal) => refusal.into(),
            // Unblocked meanwhile: the retry loop sends it again.
            None => PublishError::NotConnected("the broker blocked the connection".to_owned()),
        });
    }

    /// Closes the channel (once the connection writes again, if blocked) and
    /// fails every publish still in flight on it with `failure()`.
    fn abandon_channel(&mut self, failure: impl Fn() -> PublishError) {
        if let Some(channel) = self.channel.take().filter(|channel| channel.status().connected()) {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "given up".into())).await;
            });
        }
        for entry in self.in_flight.drain(..) {
            if !entry.publish.answer.is_closed() {
                let _ = entry.publish.answer.send(Err(failure()));
            }
        }
        self.returned.clear();
    }

    /// This pipeline's channel, opened (in confirm mode) when there is none
    /// or the connection it was on is gone; waits for the connection until
    /// `deadline`.
    async fn ready_channel(&mut self, deadline: Instant, timeout: Duration) -> Result<Channel, PublishError> {
        match &self.channel {
            Some(channel) if channel.status().connected() && channel.status().confirm() => {
                return Ok(channel.clone());
            }
            // Every publish in flight belongs to the channel in use. The
            // client fails those of a channel that closed: they are answered
            // (or queued to go alone); any left will not be confirmed.
            _ => {
                self.collect_settled();
                self.answer_settled();
                self.give_up_channel("the channel was closed");
            }
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
