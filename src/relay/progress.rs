//! Progress on stdout: a line every `--progress-interval` and one at exit,
//! with delivered, retried, dead-lettered and coalesced counts, the delivery
//! rate, the held messages (and those behind their keys), the queue depth
//! and the circuit's state, read from [`super::metrics`].
//!
//! These lines are the relay's product output, not diagnostics, so they are
//! printed directly: `RUST_LOG=warn` quiets the logs, not the progress.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, Snapshot};

/// What the line says when messages are kept for want of a dead-letter exchange.
pub const UNDEAD_LETTERABLE_HINT: &str =
    "out of attempts but kept: the dead-letter exchange is missing, run `handler setup --dead-letter`";

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
    let mut line = format!(
        "{label}: delivered={} retried={} dead-lettered={} returned={} coalesced={} behind-keys={} rate={rate:.1}/s held={} queue-depth={depth} circuit={}",
        now.delivered,
        now.retried,
        now.dead_lettered,
        now.returned,
        now.coalesced,
        now.behind_keys,
        now.held,
        now.circuit.as_str()
    );
    if now.undead_letterable > 0 {
        line.push_str(&format!(" ({} {UNDEAD_LETTERABLE_HINT})", now.undead_letterable));
    }
    line
}

/// Prints a progress line every `interval` until `stop`, then nothing: the
/// caller prints the final line once everything is settled.
pub async fn report(metrics: &Metrics, interval: Duration, stop: CancellationToken) {
    let mut before = metrics.snapshot();
    let mut since = Instant::now();
    let mut ticks = tokio::time::interval_at(since + interval, interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = metrics.snapshot();
        println!("{}", line("progress", &now, &before, since.elapsed()));
        before = now;
        since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::metrics::{CircuitState, Count};

    #[test]
    fn the_line_shows_every_count_and_the_rate_since_the_last() {
        let metrics = Metrics::new();
        let before = metrics.snapshot();
        for _ in 0..30 {
            metrics.add(Count::Delivered);
        }
        metrics.add(Count::Retried);
        metrics.add(Count::DeadLettered);
        metrics.add(Count::Returned);
        metrics.add(Count::Coalesced);
        metrics.add(Count::Coalesced);
        metrics.set_waiting_behind_keys(3);
        metrics.set_queue_depth(970);
        metrics.set_circuit(CircuitState::open);
        let _held = metrics.hold();
        let line = line("progress", &metrics.snapshot(), &before, Duration::from_secs(2));
        assert_eq!(
            line,
            "progress: delivered=30 retried=1 dead-lettered=1 returned=1 coalesced=2 behind-keys=3 rate=15.0/s held=1 queue-depth=970 circuit=open"
        );
    }

    #[test]
    fn an_unknown_depth_shows_as_a_question_mark() {
        let snapshot = Metrics::new().snapshot();
        let line = line("stopped", &snapshot, &snapshot, Duration::ZERO);
        assert!(
            line.ends_with("rate=0.0/s held=0 queue-depth=? circuit=closed"),
            "{line}"
        );
    }

    #[test]
    fn messages_kept_for_want_of_a_dead_letter_exchange_say_what_to_run() {
        let metrics = Metrics::new();
        let _kept = metrics.undead_letterable();
        let snapshot = metrics.snapshot();
        let line = line("progress", &snapshot, &snapshot, Duration::ZERO);
        assert!(
            line.ends_with("circuit=closed (1 out of attempts but kept: the dead-letter exchange is missing, run `handler setup --dead-letter`)"),
            "{line}"
        );
    }
}
