//! When a failed delivery is tried again, and when it is given up and moved
//! to the dead-letter queue. (What was tried so far is in [`super::attempts`].)

use std::time::Duration;

/// How often, and how patiently, a delivery is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before the message moves to the dead-letter queue (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub first_delay: Duration,
    /// Cap of the doubling wait.
    pub max_delay: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this wait.
    RetryAfter(Duration),
    /// Attempts are used up: dead-letter the message.
    GiveUp,
}

impl RetryPolicy {
    /// Decides after attempt number `attempt` (1-based) failed.
    pub fn after_failure(&self, attempt: u32) -> Next {
        if attempt >= self.max_attempts {
            return Next::GiveUp;
        }
        Next::RetryAfter(jittered(self.delay_after(attempt)))
    }

    /// `first_delay * 2^(attempt-1)`, capped at `max_delay`, before jitter.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first_delay
            .checked_mul(1 << doublings)
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }
}

/// A wait as a person reads it in a log line: whole seconds from one
/// second up ("4s"), milliseconds below ("250ms").
pub fn rounded(wait: Duration) -> String {
    if wait >= Duration::from_secs(1) {
        format!("{}s", wait.as_secs_f64().round())
    } else {
        format!("{}ms", wait.as_millis())
    }
}

/// Between half and all of `delay`: messages that failed together (the target
/// went down) come back spread out instead of all at once.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_delay_doubles_then_stays_at_the_cap() {
        let policy = policy(100);
        let delays: Vec<u64> = (1..=9).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(policy.delay_after(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_keeps_the_wait_between_half_and_all_of_the_delay() {
        let policy = policy(100);
        for _ in 0..1000 {
            let Next::RetryAfter(wait) = policy.after_failure(3) else {
                panic!("gave up early")
            };
            assert!(
                wait >= Duration::from_secs(2) && wait <= Duration::from_secs(4),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn a_wait_is_logged_in_whole_seconds_or_milliseconds() {
        assert_eq!(rounded(Duration::from_millis(3_600)), "4s");
        assert_eq!(rounded(Duration::from_secs(60)), "60s");
        assert_eq!(rounded(Duration::from_millis(1_400)), "1s");
        assert_eq!(rounded(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn it_gives_up_after_the_last_attempt_and_not_before() {
        let policy = policy(3);
        assert!(matches!(policy.after_failure(1), Next::RetryAfter(_)));
        assert!(matches!(policy.after_failure(2), Next::RetryAfter(_)));
        assert_eq!(policy.after_failure(3), Next::GiveUp);
        assert_eq!(self::policy(1).after_failure(1), Next::GiveUp);
    }
}
