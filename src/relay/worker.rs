//! One message's way through the relay, in a task of its own: wait until the
//! gate lets it (the circuit is closed and a slot is free, or it is the
//! probe) and the pace, deliver, then acknowledge. A failure the circuit
//! calls the message's own counts an attempt and backs off; one that says the
//! target is down pauses the message until the circuit lets it try again,
//! counting nothing. Out of attempts, the message is dead-lettered; at
//! shutdown it is left for the channel's close to return to the queue.
//!
//! A message waiting holds no request slot, but stays unacknowledged in this
//! task, so it keeps its prefetch slot: the messages this relay holds never
//! exceed `--prefetch`. A crash or a lost connection returns a held message
//! to the queue, since it was never acked.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::attempts::{self, AttemptLog, Record, Settled};
use super::circuit::{Outcome, Verdict};
use super::coalesce::Claim;
use super::dead_letter::headers::replays;
use super::dead_letter::{DeadLetters, Reason};
use super::gate::{Change, Gate, Suspect};
use super::metrics::{Count, Metrics, RequestOutcome, Tally};
use super::order::turnstile::Spot;
use super::rate::Pace;
use super::retry::{Next, RetryPolicy};
use super::target::{Failure, Target};
use crate::broker::message::Original;

/// What every delivery task shares, for the whole life of the relay (across
/// reconnects, so the circuit and the concurrency bound hold even while the
/// tasks of a lost connection are being torn down).
#[derive(Debug)]
pub struct Shared {
    /// The user's endpoint.
    pub target: Target,
    /// `--rate`.
    pub pace: Pace,
    /// The circuit, and `--concurrency` requests in flight at most.
    pub gate: Gate,
    /// `--max-attempts` and the backoff.
    pub retry: RetryPolicy,
    /// What happened to each message id, to recognise repeats.
    pub attempts: AttemptLog,
    /// What the progress lines and `/metrics` show.
    pub metrics: Arc<Metrics>,
}

/// One held message, from its delivery until its ack goes out, it is left
/// for the channel's close, or its task ends: counted in the metrics, and
/// the consumer told when it goes (while the circuit is open, that may let
/// it take another).
///
/// Counted as the delivery arrives, before its task starts, and counted out
/// before it is settled, since the broker may deliver the next at once: so
/// the count never trails the messages waiting behind their keys, nor
/// exceeds the prefetch.
pub struct Holding {
    tally: Mutex<Option<Tally>>,
    shared: Arc<Shared>,
}

impl Holding {
    /// Counts one more message as held.
    pub fn new(shared: &Arc<Shared>) -> Self {
        Self {
            tally: Mutex::new(Some(shared.metrics.hold())),
            shared: shared.clone(),
        }
    }

    /// Counts it out (once), then lets the consumer look again.
    fn release(&self) {
        let tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner).take();
        if tally.is_some() {
            drop(tally);
            self.shared.gate.held_changed();
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.release();
    }
}

/// Where a message stands while its task runs.
struct Message<'a> {
    delivery: &'a Delivery,
    holding: &'a Holding,
    original: Original,
    body: Bytes,
    /// Its key in the attempt memory.
    key: Option<String>,
    /// Tells it apart for the circuit.
    number: u64,
    record: Record,
    /// When its previous request started.
    previous: Option<Instant>,
    /// Held while its last failure was a paused server error.
    suspect: Option<Suspect<'a>>,
    /// Held while it is out of attempts but cannot be dead-lettered.
    kept: Option<Tally>,
    /// Begun before anything sends or settles it: a newer copy may have
    /// coalesced it first ([`super::coalesce`]).
    claim: Claim,
}

impl Message<'_> {
    fn id(&self) -> Option<&str> {
        self.original.message_id.as_deref()
    }

    fn note(&self, attempts: &AttemptLog) {
        attempts.note(self.key.as_deref(), &self.record);
    }
}

/// How an attempt to dead-letter a message ended.
enum Exhausted {
    /// Moved and acknowledged.
    Moved,
    /// A newer copy coalesced it first: left alone.
    Coalesced,
    /// Shutdown came while waiting; handed back.
    HandedBack,
    /// The dead-letter exchange is missing: kept, to be tried at the target again.
    Kept,
}

/// Relays one delivery to its end: acknowledged, dead-lettered, or handed
/// back when `stopping` fires. Never returns with the message unaccounted:
/// anything not acked or nacked here is returned by the broker when the
/// channel closes, or was coalesced (`claim`) and is acknowledged by the
/// order stage.
pub async fn relay(
    mut delivery: Delivery,
    holding: &Holding,
    spot: Spot,
    shared: Arc<Shared>,
    dead_letters: Arc<DeadLetters>,
    stopping: CancellationToken,
    claim: Claim,
) {
    let original = Original::from_properties(&delivery.properties);
    let key = attempts::key(original.message_id.as_deref(), replays(&delivery.properties));
    let body = Bytes::from(std::mem::take(&mut delivery.data));
    let record = shared.attempts.recall(key.as_deref());
    if let Some(settled) = record.settled {
        if !claim.begin() {
            return;
        }
        return acknowledge_repeat(&delivery, holding, settled, original.message_id.as_deref()).await;
    }
    let mut message = Message {
        delivery: &delivery,
        holding,
        suspect: record.suspect.then(|| shared.gate.suspect()),
        original,
        body,
        key,
        number: shared.gate.message_number(),
        record,
        previous: None,
        kept: None,
        claim,
    };
    let mut target_first = false;
    // Until its first request is admitted: later messages wait behind it.
    let mut spot = Some(spot);
    loop {
        if message.record.attempts >= shared.retry.max_attempts && !target_first {
            spot = None;
            match dead_letter(&mut message, &shared, &dead_letters, &stopping).await {
                Exhausted::Moved | Exhausted::HandedBack | Exhausted::Coalesced => return,
                // Tried at the target again, then dead-lettered again if it still fails.
                Exhausted::Kept => target_first = true,
            }
        }
        let pass = tokio::select! {
            biased;
            () = stopping.cancelled() => return give_back(&message, &shared.metrics),
            pass = async {
                if let Some(spot) = &spot {
                    spot.reach_front().await;
                }
                let pass = shared
                    .gate
                    .enter(message.number, message.previous, message.suspect.is_some(), &shared.metrics)
                    .await;
                shared.pace.wait().await;
                pass
            } => pass,
        };
        spot = None;
        if !message.claim.begin() {
            return;
        }
        let probe = pass.is_probe();
        message.record.requests += 1;
        message.note(&shared.attempts);
        let started = Instant::now();
        message.previous = Some(started);
        // Not raced against `stopping`: a request under way finishes, so the
        // target's answer decides between ack and requeue.
        let result = shared
            .target
            .deliver(&message.original, message.body.clone(), message.record.requests)
            .await;
        let outcome = result.as_ref().map_or_else(Failure::outcome, |_| Outcome::Accepted);
        shared.metrics.request(RequestOutcome::of(outcome), started.elapsed());
        let (verdict, change) = pass.finish(outcome);
        let failure = result.err();
        log_change(change, message.id(), failure.as_ref());
        let Some(failure) = failure else {
            message.record.settled = Some(Settled::Delivered);
            message.note(&shared.attempts);
            shared.metrics.add(Count::Delivered);
            if probe {
                info!(message_id = message.id(), "the probe was delivered");
            }
            acknowledge(&delivery.acker, holding, message.id(), "delivered").await;
            return;
        };
        message.record.last_failure = Some(failure.to_string());
        message.record.last_status = failure.status().map(|s| s.as_u16());
        match verdict {
            Verdict::Delivered => unreachable!("a failure is never delivered"),
            Verdict::Paused => {
                let suspect = outcome == Outcome::ServerError;
                message.record.suspect = suspect;
                if suspect != message.suspect.is_some() {
                    message.suspect = suspect.then(|| shared.gate.suspect());
                }
                message.note(&shared.attempts);
                shared.metrics.add(Count::Retried);
                debug!(
                    message_id = message.id(),
                    requests = message.record.requests,
                    probe,
                    "paused with the circuit: {failure}"
                );
                if stopping.is_cancelled() {
                    return give_back(&message, &shared.metrics);
                }
            }
            Verdict::Failed => {
                message.record.attempts += 1;
                message.record.suspect = false;
                message.suspect = None;
                message.note(&shared.attempts);
                target_first = false;
                let wait = match shared.retry.after_failure(message.record.attempts) {
                    Next::GiveUp => continue,
                    Next::RetryAfter(_) if stopping.is_cancelled() => {
                        return give_back(&message, &shared.metrics);
                    }
                    Next::RetryAfter(wait) => wait,
                };
                shared.metrics.add(Count::Retried);
                warn!(
                    message_id = message.id(),
                    attempts = message.record.attempts,
                    status = failure.status().map(|s| s.as_u16()),
                    retry_in = ?wait,
                    "delivery failed, attempt {} of {}, next in {}: {failure}",
                    message.record.attempts,
                    shared.retry.max_attempts,
                    super::retry::rounded(wait)
                );
                tokio::select! {
                    biased;
                    () = stopping.cancelled() => return give_back(&message, &shared.metrics),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Logs what a request did to the circuit.
fn log_change(change: Option<Change>, id: Option<&str>, failure: Option<&Failure>) {
    let status = failure.and_then(Failure::status).map(|s| s.as_u16());
    let failure = failure.map(ToString::to_string).unwrap_or_default();
    match change {
        None => {}
        Some(Change::Opened(probe_in)) => warn!(
            message_id = id,
            status,
            probe_in = ?probe_in,
            "the target seems down: pausing deliveries (no attempt counts), probing with one request in {probe_in:?}: {failure}"
        ),
        Some(Change::ProbeFailed(probe_in)) => warn!(
            message_id = id,
            status,
            probe_in = ?probe_in,
            "the target is still down, next probe in {probe_in:?}: {failure}"
        ),
        Some(Change::Closed) => info!(
            message_id = id,
            status, "the target answered the probe: resuming deliveries, ramping up to --concurrency"
        ),
    }
}

/// Acknowledges a message that is settled (`what` happened to it). Its
/// record is noted first: if the ack is lost with the connection, the repeat
/// is recognised and acknowledged without another request.
/// Says whether the ack went out (the order stage counts coalesced copies by it).
pub(super) async fn acknowledge(acker: &Acker, holding: &Holding, id: Option<&str>, what: &str) -> bool {
    holding.release();
    match acker.ack(BasicAckOptions::default()).await {
        Ok(true) => return true,
        Ok(false) => warn!(
            message_id = id,
            "{what}, but the channel closed before the ack; the broker will deliver it again"
        ),
        Err(e) => warn!(
            message_id = id,
            "{what}, but the ack failed ({e}); the broker will deliver it again"
        ),
    }
    false
}

/// A message this relay already settled came back because its ack was lost:
/// acknowledge it again, without sending it again.
async fn acknowledge_repeat(delivery: &Delivery, holding: &Holding, settled: Settled, id: Option<&str>) {
    let what = match settled {
        Settled::Delivered => "already delivered",
        Settled::DeadLettered => "already dead-lettered",
    };
    info!(
        message_id = id,
        "a repeat of a message {what} before the connection dropped; acknowledging it"
    );
    acknowledge(&delivery.acker, holding, id, what).await;
}

/// Moves a message out of attempts to the dead-letter queue. If that cannot
/// be done (no dead-letter exchange), the message is kept and, after
/// `--max-retry-delay`, tried at the target again: never held untried.
async fn dead_letter<'a>(
    message: &mut Message<'a>,
    shared: &'a Shared,
    dead_letters: &DeadLetters,
    stopping: &CancellationToken,
) -> Exhausted {
    if !message.claim.begin() {
        return Exhausted::Coalesced;
    }
    let failure = message
        .record
        .last_failure
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    let reason = Reason {
        failure: &failure,
        status: message.record.last_status,
        attempts: message.record.attempts,
    };
    let delivery = message.delivery;
    let published = dead_letters
        .publish(
            delivery.routing_key.as_str(),
            &delivery.properties,
            &message.body,
            reason,
        )
        .await;
    if let Err(e) = published {
        // Never drop it: keep it unacknowledged (it stays on the broker's
        // books) and keep trying the target until the exchange exists.
        let wait = shared.retry.max_delay;
        if message.kept.is_none() {
            message.kept = Some(shared.metrics.undead_letterable());
        }
        error!(
            message_id = message.id(),
            attempts = reason.attempts,
            retry_in = ?wait,
            "cannot move the message to the dead-letter queue, keeping it and trying the target again in {wait:?}: {e}"
        );
        return tokio::select! {
            biased;
            () = stopping.cancelled() => {
                give_back(message, &shared.metrics);
                Exhausted::HandedBack
            }
            () = tokio::time::sleep(wait) => Exhausted::Kept,
        };
    }
    message.kept = None;
    message.record.settled = Some(Settled::DeadLettered);
    message.note(&shared.attempts);
    shared.metrics.add(Count::DeadLettered);
    warn!(
        message_id = message.id(),
        attempts = reason.attempts,
        status = reason.status,
        exchange = dead_letters.exchange(),
        "moved to the dead-letter queue: {failure}"
    );
    acknowledge(&delivery.acker, message.holding, message.id(), "dead-lettered").await;
    Exhausted::Moved
}

/// Leaves the message, undelivered, for a later run: it is not nacked but
/// returned by the channel's close at the end of the shutdown. The broker
/// puts what a closing channel held back in queue order (seen with 3.10.8
/// and 4.0.5, classic and quorum queues); a nack one by one does not on a
/// quorum queue (3.10.8 puts it behind the ready messages, 4.0.5 ahead of
/// them, both in the order of the nacks). Either way the return counts
/// toward a quorum queue's delivery limit (seen with both).
fn give_back(message: &Message<'_>, metrics: &Metrics) {
    if !message.claim.begin() {
        return;
    }
    message.holding.release();
    metrics.add(Count::Returned);
    debug!(message_id = message.id(), "left to be returned to the queue");
}
