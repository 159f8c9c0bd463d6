//! `--rate`: request starts spaced evenly, so a fragile target sees a steady
//! flow instead of a burst.
//!
//! Each request reserves the next free slot on a schedule of one slot per
//! period and sleeps until it. Slots never come closer than the period, and
//! an idle spell saves up no credit for a burst later. A sleep can overshoot
//! its slot (timer granularity is about a millisecond, and a busy machine
//! wakes tasks late), but the following slots do not move: the long-run rate
//! is exact and no window of time holds more starts than its slots plus
//! those woken late from just before it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::options::Rate;

/// Paces request starts; unlimited when built without a rate.
#[derive(Debug)]
pub struct Pace {
    period: Option<Duration>,
    next_slot: Mutex<Option<Instant>>,
}

impl Pace {
    /// A pace of `rate` request starts per second, or none.
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            period: rate.map(Rate::period),
            next_slot: Mutex::new(None),
        }
    }

    /// Waits for this request's slot. Dropping the future early (shutdown)
    /// wastes the slot, which only ever slows the pace down.
    pub async fn wait(&self) {
        let Some(period) = self.period else { return };
        let slot = {
            let mut next = self.next_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            // A slot in the past is not owed to anyone: start from now.
            let slot = next.map_or(now, |next| next.max(now));
            *next = Some(slot + period);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn starts_are_one_period_apart_however_many_wait() {
        let pace = Arc::new(Pace::new(Rate::new(10.0)));
        let begin = Instant::now();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let pace = pace.clone();
                tokio::spawn(async move {
                    pace.wait().await;
                    Instant::now() - begin
                })
            })
            .collect();
        let mut starts = Vec::new();
        for waiter in waiters {
            starts.push(waiter.await.unwrap().as_millis());
        }
        starts.sort_unstable();
        assert_eq!(starts, [0, 100, 200, 300, 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_spell_saves_no_credit_for_a_burst() {
        let pace = Pace::new(Rate::new(2.0));
        pace.wait().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let resumed = Instant::now();
        pace.wait().await;
        pace.wait().await;
        assert_eq!(Instant::now() - resumed, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn no_rate_never_waits() {
        let pace = Pace::new(None);
        let begin = Instant::now();
        for _ in 0..1000 {
            pace.wait().await;
        }
        assert_eq!(Instant::now(), begin);
    }
}
