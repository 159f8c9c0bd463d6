//! What the relay remembers about the messages it handled, by message id, so
//! that a message coming back after a lost connection (the broker requeues
//! whatever was unacknowledged) is treated as a repeat, not as new:
//!
//! - one still being tried carries on with its request and attempt counts,
//!   so the target sees `X-Webhook-Attempt: 2` for a repeat, never a second
//!   `1`, and an outage followed by a reconnect moves no attempt count;
//! - one the target already took (2xx), or one already dead-lettered, whose
//!   acknowledgement was lost with the connection, is acknowledged again
//!   without another request or another dead-letter copy.
//!
//! A dead letter put back by `handler dead-letter replay` carries the same
//! message id but a higher replay count ([`key`]): it is a new message here,
//! not the repeat of the dead-lettered one.
//!
//! The memory is per relay process and bounded: a restarted relay starts
//! afresh. Repeats come back first (the broker requeues them at the head of
//! the queue), so the recent past is all that is needed.

use std::collections::HashMap;
use std::mem;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Message ids per generation; two generations are kept, so between this
/// many and twice this many of the latest are remembered (about 10 MB).
const GENERATION: usize = 50_000;

/// What the memory is keyed by: the message id, and the replay count when
/// the message was replayed from the dead-letter queue. `None` (nothing
/// remembered) for a message without an id.
pub fn key(message_id: Option<&str>, replays: u32) -> Option<String> {
    let id = message_id?;
    Some(match replays {
        0 => id.to_owned(),
        // A NUL cannot be in an AMQP message id typed by anyone.
        n => format!("{id}\0replay {n}"),
    })
}

/// What the relay knows about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Requests made (0 when the message is new): `X-Webhook-Attempt`.
    pub requests: u32,
    /// The message's own failures, which count toward `--max-attempts`
    /// (failures while the target was down do not).
    pub attempts: u32,
    /// Whether its last failure was a server error while nothing else got
    /// through (it may be the message, it may be the target).
    pub suspect: bool,
    /// Why the last request failed, if one did.
    pub last_failure: Option<String>,
    /// The HTTP status of the last failed request, if the target answered.
    pub last_status: Option<u16>,
    /// How it ended, once it did.
    pub settled: Option<Settled>,
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The target answered 2xx.
    Delivered,
    /// The broker confirmed its dead-letter copy.
    DeadLettered,
}

/// Records by message id; messages without an id are never remembered.
#[derive(Debug, Default)]
pub struct AttemptLog {
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<String, Record>,
    previous: HashMap<String, Record>,
}

impl AttemptLog {
    /// What earlier deliveries of this message did; a fresh record for a new
    /// message or one without an id.
    pub fn recall(&self, message_id: Option<&str>) -> Record {
        let Some(id) = message_id else {
            return Record::default();
        };
        let generations = self.lock();
        generations
            .current
            .get(id)
            .or_else(|| generations.previous.get(id))
            .cloned()
            .unwrap_or_default()
    }

    /// Remembers the latest state of a message.
    pub fn note(&self, message_id: Option<&str>, record: &Record) {
        let Some(id) = message_id else { return };
        let mut generations = self.lock();
        if generations.current.len() >= GENERATION && !generations.current.contains_key(id) {
            // The oldest generation goes: ids of messages that never came back.
            generations.previous = mem::take(&mut generations.current);
        }
        generations.current.insert(id.to_owned(), record.clone());
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        // A panic while holding the lock leaves maps that are still valid.
        self.generations.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_remembered_with_its_attempts_and_outcome() {
        let log = AttemptLog::default();
        assert_eq!(log.recall(Some("a")), Record::default());
        let tried = Record {
            requests: 3,
            attempts: 2,
            suspect: true,
            last_failure: Some("HTTP 500".to_owned()),
            last_status: Some(500),
            settled: None,
        };
        log.note(Some("a"), &tried);
        assert_eq!(log.recall(Some("a")), tried);
        let delivered = Record {
            attempts: 3,
            settled: Some(Settled::Delivered),
            ..tried
        };
        log.note(Some("a"), &delivered);
        assert_eq!(log.recall(Some("a")), delivered);
    }

    #[test]
    fn a_replay_is_another_message_than_the_one_dead_lettered() {
        let log = AttemptLog::default();
        let dead = Record {
            attempts: 3,
            settled: Some(Settled::DeadLettered),
            ..Record::default()
        };
        log.note(key(Some("a"), 0).as_deref(), &dead);
        assert_eq!(key(Some("a"), 0).as_deref(), Some("a"));
        assert_eq!(log.recall(key(Some("a"), 1).as_deref()), Record::default());
        assert_ne!(key(Some("a"), 1), key(Some("a"), 2));
        assert_eq!(key(None, 3), None);
    }

    #[test]
    fn messages_without_id_are_not_remembered() {
        let log = AttemptLog::default();
        log.note(
            None,
            &Record {
                attempts: 3,
                ..Record::default()
            },
        );
        assert_eq!(log.recall(None).attempts, 0);
    }

    #[test]
    fn the_latest_generation_is_kept_and_older_ones_go() {
        let log = AttemptLog::default();
        let once = Record {
            attempts: 1,
            ..Record::default()
        };
        for i in 0..=GENERATION * 2 {
            log.note(Some(&i.to_string()), &once);
        }
        // Ids 0.. filled a generation, G.. the next, 2G started a third:
        // the first is gone, the other two are remembered.
        assert_eq!(log.recall(Some("0")).attempts, 0);
        assert_eq!(log.recall(Some(&(GENERATION - 1).to_string())).attempts, 0);
        assert_eq!(log.recall(Some(&GENERATION.to_string())).attempts, 1);
        assert_eq!(log.recall(Some(&(GENERATION * 2).to_string())).attempts, 1);
    }
}
