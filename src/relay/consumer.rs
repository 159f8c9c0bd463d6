//! The AMQP side: connect, consume with `--prefetch` and manual
//! acknowledgements, give each delivery a task of its own, and when
//! the connection drops, reconnect with backoff.
//!
//! While the circuit is open the consumer is cancelled, so the relay takes
//! no new deliveries (the messages it holds stay held: see docs/relay.md
//! for why); it consumes again when the circuit closes, or when every
//! message it holds is a suspect and a fresh one is needed to probe with
//! ([`super::gate::Gate::wants_deliveries`]).
//!
//! Nothing is lost on the way: a message leaves the queue only when a task
//! acknowledges it (delivered) or after its dead-letter copy was confirmed.
//! When the connection drops, the broker requeues everything unacknowledged,
//! so the tasks of the old connection are simply aborted (their acks could no
//! longer arrive) and the messages come back on the new one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer, ExchangeKind};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{error, info, warn};

use super::RelayError;
use super::dead_letter::{DeadLetters, is_not_found};
use super::options::RelayOptions;
use super::order::{self, Order};
use super::standby;
use super::worker::{Holding, Shared};
use crate::broker;
use crate::broker::amqp::reconnect_delays;
use crate::broker::topology::dead_letter_name;

/// How long closing the connection may take at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Consumer tag, shown in the management UI.
const CONSUMER_TAG: &str = "webhook-relay";

/// Consumes until `stop` fires. The first connection must succeed (a wrong
/// URL, password or queue name is reported at once); after that, a lost
/// connection is retried forever, with backoff.
pub async fn consume(options: &RelayOptions, shared: Arc<Shared>, stop: CancellationToken) -> Result<(), RelayError> {
    let mut session = Session::open(options, &shared).await?;
    info!(
        "consuming from queue {:?} at {} (prefetch {})",
        options.queue, options.amqp_url, options.prefetch
    );
    standby::look(options, session.other_consumers).await;
    loop {
        let lost = match session.run(options, &shared, &stop).await {
            Ended::Stopped => return Ok(()),
            Ended::Lost(reason) => reason,
        };
        warn!("lost the connection to {}: {lost}; reconnecting", options.amqp_url);
        let mut delays = reconnect_delays();
        session = loop {
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
            match Session::open(options, &shared).await {
                Ok(session) => break session,
                Err(e) => warn!("could not reconnect: {e}; trying again"),
            }
        };
        info!(
            "reconnected to {}; consuming from queue {:?} again",
            options.amqp_url, options.queue
        );
    }
}

/// How a session ended.
enum Ended {
    /// `stop` fired; in-flight deliveries were drained.
    Stopped,
    /// The connection or channel failed.
    Lost(String),
}

/// One connection, its consuming channel and its consumer (none while the
/// circuit keeps the relay from taking deliveries).
struct Session {
    connection: Arc<Connection>,
    channel: Channel,
    consumer: Option<Consumer>,
    dead_letters: Arc<DeadLetters>,
    /// Per-key order and coalescing: afresh with each connection, since a
    /// lost one returns every held message to the queue.
    order: Order,
    /// Consumers the queue had before this one.
    other_consumers: u32,
}

impl Session {
    async fn open(options: &RelayOptions, shared: &Shared) -> Result<Self, RelayError> {
        let url = &options.amqp_url;
        let amqp = |source: lapin::Error| RelayError::from_amqp(url, &source);
        // Named after the queue, so the management UI tells relays apart.
        let name = format!("webhook-relay: {}", options.queue);
        let connection = Arc::new(broker::amqp::connect(url, &name).await?);
        let channel = connection.create_channel().await.map_err(amqp)?;
        channel
            .basic_qos(options.prefetch, BasicQosOptions::default())
            .await
            .map_err(amqp)?;
        // Passive: the relay never creates the queue (a typo would otherwise
        // make an empty queue nobody publishes to and wait there forever).
        let queue = channel
            .queue_declare(
                options.queue.as_str().into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    RelayError::QueueMissing(options.queue.clone())
                } else {
                    amqp(e)
                }
            })?;
        shared.metrics.set_queue_depth(queue.message_count());
        let other_consumers = queue.consumer_count();
        check_dead_letter_exchange(&connection, &options.queue).await;
        // Always consume at first: even with the circuit open (a reconnect
        // during an outage), a probe needs a message to probe with.
        let consumer = Some(start_consuming(&channel, &options.queue).await.map_err(amqp)?);
        let dead_letters = Arc::new(DeadLetters::new(url.clone(), &options.queue));
        let order = Order::new(options.order_by.clone(), options.coalesce, shared.metrics.clone());
        Ok(Self {
            connection,
            channel,
            consumer,
            dead_letters,
            order,
            other_consumers,
        })
    }

    /// Starts or stops consuming as the circuit wants. Deliveries the broker
    /// sent before a cancel took effect still get their tasks.
    async fn follow_circuit(
        &mut self,
        options: &RelayOptions,
        shared: &Arc<Shared>,
        stop: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), String> {
        let held = shared.metrics.snapshot().held;
        let wanted = shared.gate.wants_deliveries(held, u64::from(options.prefetch));
        match (wanted, self.consumer.take()) {
            (true, None) => {
                info!("taking deliveries again");
                self.consumer = Some(
                    start_consuming(&self.channel, &options.queue)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            (false, Some(mut consumer)) => {
                info!(
                    held,
                    "the circuit is open: taking no new deliveries; the held messages wait for it"
                );
                self.channel
                    .basic_cancel(CONSUMER_TAG.into(), BasicCancelOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                // Cancel-ok came after every delivery sent before it: they are
                // all in the stream now, which then ends.
                let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    while let Some(next) = consumer.next().await {
                        match next {
                            Ok(delivery) => self.spawn(delivery, shared, stop, tasks),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Ok(())
                })
                .await;
                drained.unwrap_or_else(|_| Err("the cancelled consumer did not end".to_owned()))?;
            }
            (_, consumer) => self.consumer = consumer,
        }
        Ok(())
    }

    /// Gives the delivery its place in the order (here, in the order of
    /// arrival), then a task of its own.
    fn spawn(
        &self,
        mut delivery: lapin::message::Delivery,
        shared: &Arc<Shared>,
        stop: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) {
        let holding = Holding::new(shared);
        let place = self.order.arrive(&mut delivery);
        tasks.spawn(order::relay(
            place,
            holding,
            delivery,
            shared.clone(),
            self.dead_letters.clone(),
            stop.clone(),
        ));
    }

    /// Hands deliveries to tasks until the connection fails or `stop` fires.
    async fn run(mut self, options: &RelayOptions, shared: &Arc<Shared>, stop: &CancellationToken) -> Ended {
        let mut tasks = JoinSet::new();
        let _depth = AbortOnDropHandle::new(tokio::spawn(poll_depth(
            self.connection.clone(),
            options.queue.clone(),
            shared.clone(),
            options.progress_interval,
        )));
        // Without a consumer (the circuit is open) no delivery error tells of
        // a lost connection: its events, and a look at the channel, do.
        let mut events = self.connection.events_listener();
        let mut looks = tokio::time::interval(Duration::from_secs(1));
        let ended = loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break Ended::Stopped,
                Some(event) = events.next() => {
                    // A soft error closes only its own channel (a probe of the
                    // dead-letter exchange, say): lost only if ours went too.
                    if let lapin::Event::Error(e) = event
                        && !(self.connection.status().connected() && self.channel.status().connected())
                    {
                        break Ended::Lost(e.to_string());
                    }
                }
                _ = looks.tick() => {
                    if !self.channel.status().connected() {
                        break Ended::Lost("the channel closed".to_owned());
                    }
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined
                        && e.is_panic()
                    {
                        // Its message stays unacknowledged until this channel closes.
                        error!("a delivery task panicked: {e}");
                    }
                }
                () = shared.gate.deliveries_changed() => {
                    if let Err(e) = self.follow_circuit(options, shared, stop, &mut tasks).await {
                        break Ended::Lost(e);
                    }
                }
                next = next_delivery(&mut self.consumer) => match next {
                    Some(Ok(delivery)) => self.spawn(delivery, shared, stop, &mut tasks),
                    Some(Err(e)) => break Ended::Lost(e.to_string()),
                    None => break Ended::Lost("the broker cancelled the consumer (was the queue deleted?)".to_owned()),
                },
            }
        };
        match ended {
            Ended::Lost(_) => {
                // Their acks cannot arrive any more; the broker requeued their messages.
                self.order.close();
                tasks.shutdown().await;
            }
            Ended::Stopped => self.drain(tasks, options.shutdown_grace).await,
        }
        self.close().await;
        ended
    }

    /// Takes no new deliveries, then lets the tasks finish: requests under
    /// way get their answer and their ack, the rest go back to the queue
    /// when the channel closes.
    ///
    /// The consumer is not cancelled: on a queue with a single active
    /// consumer, RabbitMQ 4.0.5 makes a standby active at the cancel, and it
    /// would deliver later webhooks of a key while this relay still holds
    /// earlier ones (seen in a test; 3.10.8 waited for the close). What the
    /// broker sends meanwhile is left unread and returned with the rest.
    async fn drain(&self, mut tasks: JoinSet<()>, grace: Duration) {
        info!(
            "stopping: no new deliveries; waiting up to {grace:?} for {} held message(s)",
            tasks.len()
        );
        let finished = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            warn!(
                "{} delivery(ies) did not finish within {grace:?}; closing the connection returns them to the queue",
                tasks.len()
            );
            self.order.close();
            tasks.shutdown().await;
        } else {
            info!("every held message was acknowledged or returned to the queue");
        }
    }

    /// Closing returns any message still unacknowledged to the queue.
    async fn close(&self) {
        let close = async {
            let _ = self.channel.close(200, "relay stopping".into()).await;
            let _ = self.connection.close(200, "relay stopping".into()).await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}

/// Starts the consumer (prefetch as set on the channel, acknowledgements on).
async fn start_consuming(channel: &Channel, queue: &str) -> lapin::Result<Consumer> {
    channel
        .basic_consume(
            queue.into(),
            CONSUMER_TAG.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// The consumer's next delivery; never, while there is no consumer.
async fn next_delivery(consumer: &mut Option<Consumer>) -> Option<lapin::Result<lapin::message::Delivery>> {
    match consumer {
        Some(consumer) => consumer.next().await,
        None => std::future::pending().await,
    }
}

/// Warns at start-up when the dead-letter exchange is missing: the relay runs
/// anyway, and keeps exhausted messages unacknowledged until it exists.
async fn check_dead_letter_exchange(connection: &Connection, queue: &str) {
    let exchange = dead_letter_name(queue);
    // A failed passive declare closes its channel: use a throwaway one.
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let declared = channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(()) => {
            let _ = channel.close(200, "checked".into()).await;
        }
        Err(e) if is_not_found(&e) => warn!(
            "the dead-letter exchange {exchange:?} does not exist: messages that use up their attempts will be \
             kept and tried again every --max-retry-delay until it does (`handler setup --dead-letter` creates it)"
        ),
        Err(e) => warn!("could not check the dead-letter exchange {exchange:?}: {e}"),
    }
}

/// Reads the queue depth (ready messages) for the progress lines, over a
/// channel of its own so a failed read cannot close the consuming channel.
/// Twice per progress line (at most every 250 ms, at least every second), so
/// the depth a line shows is at most half an interval old.
async fn poll_depth(connection: Arc<Connection>, queue: String, shared: Arc<Shared>, progress: Duration) {
    let mut channel: Option<Channel> = None;
    let every = (progress / 2).clamp(Duration::from_millis(250), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if channel.as_ref().is_none_or(|c| !c.status().connected()) {
            channel = connection.create_channel().await.ok();
        }
        let Some(open) = channel.as_ref() else { continue };
        let declared = open
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => shared.metrics.set_queue_depth(q.message_count()),
            Err(_) => channel = None,
        }
    }
}
