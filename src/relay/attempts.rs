//! What the relay remembers about the messages it handled, by message id, so
//! that a message coming back after a lost connection (the broker requeues
//! whatever was unacknowledged) is treated as a repeat, not as new:
//!
//! - one still being tried carries on with its attempt count, so the target
//!   sees `X-Webhook-Attempt: 2` for a repeat, never a second `1`;
//! - one the target already took (2xx), or one already dead-lettered, whose
//!   acknowledgement was lost with the connection, is acknowledged again
//!   without another request or another dead-letter copy.
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

/// What the relay knows about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Requests made (0 when the message is new).
    pub attempts: u32,
    /// Why the last request failed, if one did.
    pub last_failure: Option<String>,
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
            attempts: 2,
            last_failure: Some("HTTP 500".to_owned()),
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
