//! Progress on stdout: a line every `--progress-interval` and one at exit,
//! with delivered, retried and dead-lettered counts, the delivery rate and
//! the queue depth.
//!
//! These lines are the relay's product output, not diagnostics, so they are
//! printed directly: `RUST_LOG=warn` quiets the logs, not the progress.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counts shared by every delivery task.
#[derive(Debug)]
pub struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    returned: AtomicU64,
    held: AtomicU64,
    /// Ready messages in the queue at the last look; -1 before the first.
    queue_depth: AtomicI64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Messages the target answered 2xx (then acknowledged).
    pub delivered: u64,
    /// Failed attempts that were scheduled to be tried again.
    pub retried: u64,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Messages handed back to the queue undelivered (shutdown).
    pub returned: u64,
    /// Messages this relay holds unacknowledged now: in flight or backing off.
    pub held: u64,
    /// Ready messages in the queue at the last look, if looked yet.
    pub queue_depth: Option<u64>,
}

/// A count that one delivery task adds to.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    /// See [`Snapshot::delivered`].
    Delivered,
    /// See [`Snapshot::retried`].
    Retried,
    /// See [`Snapshot::dead_lettered`].
    DeadLettered,
    /// See [`Snapshot::returned`].
    Returned,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            held: AtomicU64::new(0),
            queue_depth: AtomicI64::new(-1),
        }
    }
}

impl Counters {
    /// Adds one to `count`.
    pub fn add(&self, count: Count) {
        let counter = match count {
            Count::Delivered => &self.delivered,
            Count::Retried => &self.retried,
            Count::DeadLettered => &self.dead_lettered,
            Count::Returned => &self.returned,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message as held until the guard drops.
    pub fn hold(&self) -> Held<'_> {
        self.held.fetch_add(1, Ordering::Relaxed);
        Held(self)
    }

    /// Records the queue depth just read from the broker.
    pub fn set_queue_depth(&self, depth: u32) {
        self.queue_depth.store(i64::from(depth), Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            returned: self.returned.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            queue_depth: u64::try_from(self.queue_depth.load(Ordering::Relaxed)).ok(),
        }
    }
}

/// A message counted in [`Snapshot::held`] while this lives.
#[derive(Debug)]
pub struct Held<'a>(&'a Counters);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One progress line: the counts now and the delivery rate since `before`.
pub fn line(label: &str, now: &Snapshot, before: &Snapshot, elapsed: Duration) -> String {
    let delivered_since = now.delivered.saturating_sub(before.delivered);
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        delivered_since as f64 / seconds
    } else {
        0.0
    };
    let depth = now.queue_depth.map_or_else(|| "?".to_owned(), |d| d.to_string());
    format!(
        "{label}: delivered={} retried={} dead-lettered={} returned={} rate={rate:.1}/s held={} queue-depth={depth}",
        now.delivered, now.retried, now.dead_lettered, now.returned, now.held
    )
}

/// Prints a progress line every `interval` until `stop`, then nothing: the
/// caller prints the final line once everything is settled.
pub async fn report(counters: &Counters, interval: Duration, stop: CancellationToken) {
    let mut before = counters.snapshot();
    let mut since = Instant::now();
    let mut ticks = tokio::time::interval_at(since + interval, interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = counters.snapshot();
        println!("{}", line("progress", &now, &before, since.elapsed()));
        before = now;
        since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_every_count_and_the_rate_since_the_last() {
        let counters = Counters::default();
        let before = counters.snapshot();
        for _ in 0..30 {
            counters.add(Count::Delivered);
        }
        counters.add(Count::Retried);
        counters.add(Count::DeadLettered);
        counters.add(Count::Returned);
        counters.set_queue_depth(970);
        let _held = counters.hold();
        let line = line("progress", &counters.snapshot(), &before, Duration::from_secs(2));
        assert_eq!(
            line,
            "progress: delivered=30 retried=1 dead-lettered=1 returned=1 rate=15.0/s held=1 queue-depth=970"
        );
    }

    #[test]
    fn an_unknown_depth_shows_as_a_question_mark() {
        let snapshot = Counters::default().snapshot();
        let line = line("stopped", &snapshot, &snapshot, Duration::ZERO);
        assert!(line.ends_with("rate=0.0/s held=0 queue-depth=?"), "{line}");
    }

    #[test]
    fn a_held_message_stops_counting_when_released() {
        let counters = Counters::default();
        {
            let _a = counters.hold();
            let _b = counters.hold();
            assert_eq!(counters.snapshot().held, 2);
        }
        assert_eq!(counters.snapshot().held, 0);
    }
}
