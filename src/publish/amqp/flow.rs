//! The broker's flow control of the one connection. RabbitMQ sends
//! `connection.blocked` once a connection publishes while a memory or disk
//! alarm is on, and from then on reads nothing from it until
//! `connection.unblocked`. A publish written meanwhile sits in the socket and
//! reaches the queue when the alarm clears, long after its webhook was
//! answered. So while blocked nothing is published: every publish is refused
//! at once ([`Flow::refuse`]), its webhook gets 503 with `Retry-After`, and
//! the block is logged twice, when it starts and when it ends (with how many
//! webhooks were refused), never once per webhook.
//!
//! How the AMQP client shows a block (lapin 4.12, read in its source, not
//! guessed): its I/O loop sets `ConnectionStatus::blocked()` the moment it
//! reads `connection.blocked` and from then on writes no frame at all (frames
//! queued meanwhile wait inside the client, `IoLoop::can_write`) until it
//! reads `connection.unblocked`; it then emits `Event::ConnectionBlocked`
//! (with the broker's reason) and `Event::ConnectionUnblocked` on the
//! connection's events. The flag comes first, so a publish checks it; the
//! events carry the reason and wake the pipeline.
//!
//! Why no 2xx can come from this: a block only ever turns a publish into a
//! refusal (an error); success still needs the broker's `basic.ack`
//! ([`super::verdict`]). What the broker did with publishes already written
//! when the block came (measured on 3.10.8 and 4.0.5, docs/reliability.md):
//! either their confirms came within 5 ms of `connection.blocked`, or none
//! came until the alarm cleared, and then all were queued. So they get a
//! short grace ([`super::pipeline::BLOCK_GRACE`]) and are then answered 503
//! rather than held to the deadline; each of those may be queued twice once
//! its sender retries (the same `message_id`).

use std::sync::Mutex;
use std::time::Duration;

use lapin::ConnectionStatus;
use tokio::sync::watch;
use tokio::time::Instant;

/// A publish refused because the broker blocks the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The broker's reason (`low on memory`, `low on disk`), or `unknown`
    /// before its notice was read.
    pub reason: String,
    /// How long the block has lasted so far.
    pub lasted: Duration,
}

impl From<Refusal> for crate::publish::PublishError {
    fn from(refusal: Refusal) -> Self {
        Self::Blocked {
            reason: refusal.reason,
            lasted: refusal.lasted,
        }
    }
}

/// A block that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// How long it lasted.
    pub lasted: Duration,
    /// How many publishes were refused meanwhile.
    pub refused: u64,
}

/// One block, from when it was first noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    since: Instant,
    reason: Option<String>,
    refused: u64,
}

/// Where the connection stands: the pure core of [`Flow`], no lock, no clock.
#[derive(Debug, Default)]
struct State {
    block: Option<Block>,
}

impl State {
    /// The broker's notice came in: a block starts (or the one a publish
    /// noticed first gets its reason). Returns when it started.
    fn blocked(&mut self, reason: &str, now: Instant) -> Instant {
        let block = self.current(now);
        block.reason = Some(reason.to_owned());
        block.since
    }

    /// A publish asks whether it may go; `flag` is the client's blocked
    /// flag, which can be set before the notice is read. Refused (and
    /// counted) while blocked.
    fn refuse(&mut self, flag: bool, now: Instant) -> Option<Refusal> {
        if !flag && self.block.is_none() {
            return None;
        }
        let block = self.current(now);
        block.refused += 1;
        Some(Refusal {
            reason: block.reason.clone().unwrap_or_else(|| "unknown".to_owned()),
            lasted: now.saturating_duration_since(block.since),
        })
    }

    /// The block on, or one starting `now`.
    fn current(&mut self, now: Instant) -> &mut Block {
        self.block.get_or_insert(Block {
            since: now,
            reason: None,
            refused: 0,
        })
    }

    /// The block ended (`connection.unblocked`, or the connection is gone).
    fn ended(&mut self, now: Instant) -> Option<Ended> {
        self.block.take().map(|block| Ended {
            lasted: now.saturating_duration_since(block.since),
            refused: block.refused,
        })
    }
}

/// The flow control of the transport's connection, shared by the task that
/// keeps the connection (which reads the broker's notices) and the pipelines
/// (which ask before each publish).
#[derive(Debug)]
pub struct Flow {
    inner: Mutex<Inner>,
    /// Whether a block is on, for the pipelines to wake on.
    blocked: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Inner {
    state: State,
    /// The client's view of the connection in use.
    connection: Option<ConnectionStatus>,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            blocked: watch::Sender::new(false),
        }
    }
}

impl Flow {
    /// A new connection is in use: no block on it yet.
    pub fn attach(&self, connection: ConnectionStatus) {
        self.lock().connection = Some(connection);
    }

    /// The connection was lost: any block ends with it (a new connection
    /// starts unblocked; the broker blocks it again if it publishes while the
    /// alarm is still on).
    pub fn detach(&self, now: Instant) -> Option<Ended> {
        let mut inner = self.lock();
        inner.connection = None;
        let ended = inner.state.ended(now);
        self.blocked.send_replace(false);
        ended
    }

    /// The broker's `connection.blocked` with its reason; returns when the
    /// block started.
    pub fn blocked(&self, reason: &str, now: Instant) -> Instant {
        let since = self.lock().state.blocked(reason, now);
        self.blocked.send_replace(true);
        since
    }

    /// The broker's `connection.unblocked`: the block's length and how many
    /// publishes it refused, if one was on.
    pub fn unblocked(&self, now: Instant) -> Option<Ended> {
        let ended = self.lock().state.ended(now);
        self.blocked.send_replace(false);
        ended
    }

    /// Whether a publish must be refused now because the broker blocks the
    /// connection; each refusal is counted for the block's last log line.
    pub fn refuse(&self, now: Instant) -> Option<Refusal> {
        let mut inner = self.lock();
        let flag = inner.connection.as_ref().is_some_and(ConnectionStatus::blocked);
        let refusal = inner.state.refuse(flag, now);
        drop(inner);
        if refusal.is_some() {
            self.blocked
                .send_if_modified(|blocked| !std::mem::replace(blocked, true));
        }
        refusal
    }

    /// Follows whether a block is on.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.blocked.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing in here panics while holding the lock; a poisoned one is
        // still consistent.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_refused_while_the_connection_is_not_blocked() {
        let mut state = State::default();
        assert_eq!(state.refuse(false, Instant::now()), None);
        assert_eq!(state.ended(Instant::now()), None, "no block, nothing ended");
    }

    #[test]
    fn a_block_refuses_every_publish_and_counts_them_until_it_ends() {
        let start = Instant::now();
        let mut state = State::default();
        assert_eq!(state.blocked("low on memory", start), start);
        let later = start + Duration::from_secs(7);
        for _ in 0..3 {
            let refusal = state.refuse(false, later).expect("refused while blocked");
            assert_eq!(refusal.reason, "low on memory");
            assert_eq!(refusal.lasted, Duration::from_secs(7));
        }
        let ended = state.ended(start + Duration::from_secs(20));
        assert_eq!(
            ended,
            Some(Ended {
                lasted: Duration::from_secs(20),
                refused: 3
            })
        );
        assert_eq!(state.refuse(false, start + Duration::from_secs(21)), None);
    }

    #[test]
    fn the_clients_flag_refuses_before_the_notice_is_read_and_the_notice_keeps_that_start() {
        let start = Instant::now();
        let mut state = State::default();
        let refusal = state.refuse(true, start).expect("the flag alone refuses");
        assert_eq!(refusal.reason, "unknown");
        let since = state.blocked("low on disk", start + Duration::from_millis(5));
        assert_eq!(since, start, "the block started when it was first seen");
        let refusal = state.refuse(true, start + Duration::from_secs(2)).expect("refused");
        assert_eq!(refusal.reason, "low on disk");
        assert_eq!(state.ended(start + Duration::from_secs(3)).map(|e| e.refused), Some(2));
    }

    #[test]
    fn a_second_notice_during_a_block_starts_nothing_new() {
        let start = Instant::now();
        let mut state = State::default();
        state.blocked("low on memory", start);
        assert!(state.refuse(false, start).is_some());
        assert_eq!(state.blocked("low on disk", start + Duration::from_secs(1)), start);
        assert_eq!(state.ended(start + Duration::from_secs(2)).map(|e| e.refused), Some(1));
    }

    #[test]
    fn the_flow_wakes_watchers_and_forgets_a_block_with_its_connection() {
        let flow = Flow::default();
        let watch = flow.watch();
        let start = Instant::now();
        flow.blocked("low on memory", start);
        assert!(*watch.borrow());
        assert!(flow.refuse(start).is_some());
        let ended = flow.detach(start + Duration::from_secs(1)).expect("the block ended");
        assert_eq!(ended.refused, 1);
        assert!(!*watch.borrow());
        assert_eq!(flow.refuse(start + Duration::from_secs(2)), None);
    }
}
