//! First come, first sent: a message free to go asks the gate for its first
//! request only once every message that was free before it has had its own
//! (or left). The gate alone admits whichever task asks first, and tokio may
//! well run a task spawned later first: without this, at `--concurrency 1`,
//! each of 3 test runs of 500 webhooks sent some the other way round.
//!
//! So at `--concurrency 1` webhooks are sent in the order the relay got them
//! (a retry, backing off, is overtaken), and at any concurrency their first
//! requests start in that order. Messages line up when they become free to
//! go: at arrival, or when the last earlier message of their keys leaves
//! ([`super`]), so a message waiting behind a busy key holds up nobody else.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// The line of one session.
#[derive(Debug, Default)]
pub struct Turnstile {
    last: Mutex<Option<Arc<Passage>>>,
}

/// One spot's state, shared with the spot behind it.
#[derive(Debug, Default)]
struct Passage {
    /// Its spot was dropped: passed, or left the line early.
    left: AtomicBool,
    notify: Notify,
    /// The spot before it, until that one has passed: a spot that left
    /// early (coalesced, handed back) hands its wait on to the one behind.
    before: Mutex<Option<Arc<Passage>>>,
}

/// One message's spot in the line: it has passed (or left) once dropped.
#[derive(Debug)]
pub struct Spot {
    mine: Arc<Passage>,
}

impl Turnstile {
    /// Takes the spot behind every message lined up so far.
    pub fn line_up(&self) -> Spot {
        let mut last = lock(&self.last);
        let mine = Arc::new(Passage {
            before: Mutex::new(last.take()),
            ..Passage::default()
        });
        *last = Some(mine.clone());
        Spot { mine }
    }
}

impl Spot {
    /// Resolves once every message lined up before this one has passed or
    /// left the line.
    pub async fn reach_front(&self) {
        loop {
            let Some(before) = lock(&self.mine.before).clone() else {
                return;
            };
            before.has_left().await;
            // What it waited for (nothing, if it reached the front) is ours.
            let further = lock(&before.before).clone();
            *lock(&self.mine.before) = further;
        }
    }
}

impl Passage {
    async fn has_left(&self) {
        loop {
            // Created before the look, so a drop in between is not missed.
            let notified = self.notify.notified();
            if self.left.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Spot {
    fn drop(&mut self) {
        self.mine.left.store(true, Ordering::Release);
        self.mine.notify.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn the_first_in_line_is_at_the_front_at_once() {
        let line = Turnstile::default();
        let first = line.line_up();
        assert!(first.reach_front().now_or_never().is_some());
    }

    #[test]
    fn a_spot_reaches_the_front_only_once_every_earlier_one_passed() {
        let line = Turnstile::default();
        let first = line.line_up();
        let second = line.line_up();
        let third = line.line_up();
        assert!(second.reach_front().now_or_never().is_none());
        assert!(third.reach_front().now_or_never().is_none());
        drop(first);
        assert!(second.reach_front().now_or_never().is_some());
        assert!(third.reach_front().now_or_never().is_none());
        drop(second);
        assert!(third.reach_front().now_or_never().is_some());
    }

    #[test]
    fn a_spot_that_left_early_hands_its_wait_to_the_one_behind() {
        let line = Turnstile::default();
        let first = line.line_up();
        let second = line.line_up();
        let third = line.line_up();
        drop(second);
        assert!(third.reach_front().now_or_never().is_none());
        drop(first);
        assert!(third.reach_front().now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_waiting_spot_is_woken_when_the_one_before_passes() {
        let line = Turnstile::default();
        let first = line.line_up();
        let second = line.line_up();
        let waiting = tokio::spawn(async move { second.reach_front().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.unwrap();
    }
}
