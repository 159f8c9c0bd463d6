//! One message's way through the relay, in a task of its own: wait for a
//! concurrency slot and the pace, deliver, then acknowledge; on failure back
//! off and try again; after the last attempt, dead-letter; at shutdown, hand
//! it back to the queue.
//!
//! A message backing off gives up its concurrency slot (others use it) but
//! stays unacknowledged in this task, so it keeps its prefetch slot: with
//! prefetch equal to `--concurrency`, messages in flight plus messages backing
//! off never exceed `--concurrency`. When the target fails, fewer new messages
//! come in, which is the backpressure a failing target needs; a crash or a lost
//! connection returns the held message to the queue, since it was never acked.

use std::sync::Arc;

use bytes::Bytes;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::attempts::{AttemptLog, Record, Settled};
use super::dead_letter::{DeadLetters, Reason};
use super::progress::{Count, Counters};
use super::rate::Pace;
use super::retry::{Next, RetryPolicy};
use super::target::Target;
use crate::broker::message::Original;

/// What every delivery task shares, for the whole life of the relay (across
/// reconnects, so the concurrency bound holds even while the tasks of a lost
/// connection are being torn down).
#[derive(Debug)]
pub struct Shared {
    /// The user's endpoint.
    pub target: Target,
    /// `--rate`.
    pub pace: Pace,
    /// `--concurrency`: one permit per request in flight.
    pub slots: Semaphore,
    /// `--max-attempts` and the backoff.
    pub retry: RetryPolicy,
    /// What happened to each message id, to recognise repeats.
    pub attempts: AttemptLog,
    /// What the progress lines show.
    pub counters: Counters,
}

/// Relays one delivery to its end: acknowledged, dead-lettered, or handed
/// back when `stopping` fires. Never returns with the message unaccounted:
/// anything not acked or nacked here is returned by the broker when the
/// channel closes.
pub async fn relay(
    mut delivery: Delivery,
    shared: Arc<Shared>,
    dead_letters: Arc<DeadLetters>,
    stopping: CancellationToken,
) {
    let _held = shared.counters.hold();
    let original = Original::from_properties(&delivery.properties);
    let id = original.message_id.as_deref();
    let body = Bytes::from(std::mem::take(&mut delivery.data));
    let mut record = shared.attempts.recall(id);
    if let Some(settled) = record.settled {
        return acknowledge_repeat(&delivery, settled, id).await;
    }
    loop {
        if record.attempts >= shared.retry.max_attempts {
            // Used up before a lost connection brought it back: do not try again.
            return dead_letter(&delivery, &body, &shared, &dead_letters, &record, &stopping).await;
        }
        let slot = tokio::select! {
            biased;
            () = stopping.cancelled() => return give_back(&delivery, &shared, id).await,
            slot = acquire(&shared.slots, &shared.pace) => slot,
        };
        record.attempts += 1;
        shared.attempts.note(id, &record);
        // Not raced against `stopping`: a request under way finishes, so the
        // target's answer decides between ack and requeue.
        let result = shared.target.deliver(&original, body.clone(), record.attempts).await;
        drop(slot);
        let failure = match result {
            Ok(_) => {
                record.settled = Some(Settled::Delivered);
                shared.attempts.note(id, &record);
                shared.counters.add(Count::Delivered);
                return acknowledge(&delivery, id, "delivered").await;
            }
            Err(failure) => failure.to_string(),
        };
        record.last_failure = Some(failure.clone());
        shared.attempts.note(id, &record);
        let wait = match shared.retry.after_failure(record.attempts) {
            Next::GiveUp => continue,
            Next::RetryAfter(_) if stopping.is_cancelled() => return give_back(&delivery, &shared, id).await,
            Next::RetryAfter(wait) => wait,
        };
        shared.counters.add(Count::Retried);
        warn!(message_id = id, attempt = record.attempts, retry_in = ?wait, "delivery failed, will retry: {failure}");
        tokio::select! {
            biased;
            () = stopping.cancelled() => return give_back(&delivery, &shared, id).await,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A concurrency slot first, then the pace: the pace's slot is taken only by
/// a request that can start at once.
async fn acquire<'a>(slots: &'a Semaphore, pace: &Pace) -> SemaphorePermit<'a> {
    let permit = slots
        .acquire()
        .await
        .expect("the concurrency semaphore is never closed");
    pace.wait().await;
    permit
}

/// Acknowledges a message that is settled (`what` happened to it). Its
/// record is noted first: if the ack is lost with the connection, the repeat
/// is recognised and acknowledged without another request.
async fn acknowledge(delivery: &Delivery, id: Option<&str>, what: &str) {
    match delivery.acker.ack(BasicAckOptions::default()).await {
        Ok(true) => {}
        Ok(false) => warn!(
            message_id = id,
            "{what}, but the channel closed before the ack; the broker will deliver it again"
        ),
        Err(e) => warn!(
            message_id = id,
            "{what}, but the ack failed ({e}); the broker will deliver it again"
        ),
    }
}

/// A message this relay already settled came back because its ack was lost:
/// acknowledge it again, without sending it again.
async fn acknowledge_repeat(delivery: &Delivery, settled: Settled, id: Option<&str>) {
    let what = match settled {
        Settled::Delivered => "already delivered",
        Settled::DeadLettered => "already dead-lettered",
    };
    info!(
        message_id = id,
        "a repeat of a message {what} before the connection dropped; acknowledging it"
    );
    acknowledge(delivery, id, what).await;
}

async fn dead_letter(
    delivery: &Delivery,
    body: &Bytes,
    shared: &Shared,
    dead_letters: &DeadLetters,
    record: &Record,
    stopping: &CancellationToken,
) {
    let id = delivery.properties.message_id().as_ref().map(|id| id.as_str());
    let reason = Reason {
        failure: record.last_failure.as_deref().unwrap_or("unknown"),
        attempts: record.attempts,
    };
    let mut wait = shared.retry.first_delay;
    loop {
        match dead_letters
            .publish(delivery.routing_key.as_str(), &delivery.properties, body, reason)
            .await
        {
            Ok(()) => break,
            Err(e) => {
                // Never drop it: keep it unacknowledged (it stays on the broker's
                // books) and try again until the exchange is fixed or we stop.
                error!(
                    message_id = id,
                    attempts = reason.attempts,
                    retry_in = ?wait,
                    "cannot move the message to the dead-letter queue, keeping it: {e}"
                );
                tokio::select! {
                    biased;
                    () = stopping.cancelled() => return give_back(delivery, shared, id).await,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(shared.retry.max_delay);
            }
        }
    }
    let mut record = record.clone();
    record.settled = Some(Settled::DeadLettered);
    shared.attempts.note(id, &record);
    shared.counters.add(Count::DeadLettered);
    warn!(
        message_id = id,
        attempts = reason.attempts,
        exchange = dead_letters.exchange(),
        "moved to the dead-letter queue: {}",
        reason.failure
    );
    acknowledge(delivery, id, "dead-lettered").await;
}

/// Returns the message to the queue, undelivered, for a later run.
async fn give_back(delivery: &Delivery, shared: &Shared, id: Option<&str>) {
    let requeue = BasicNackOptions {
        requeue: true,
        multiple: false,
    };
    match delivery.acker.nack(requeue).await {
        Ok(true) => {
            shared.counters.add(Count::Returned);
            debug!(message_id = id, "returned to the queue");
        }
        // Closing the channel returns it all the same.
        _ => info!(
            message_id = id,
            "could not return the message now; closing the channel will"
        ),
    }
}
