//! The circuit: whether the target as a whole is taking requests, decided
//! from the outcomes of the requests themselves. A pure state machine: the
//! time is passed in, so every rule below is unit-tested without a clock, a
//! runtime or a network ([`super::gate`] runs it).
//!
//! The rules (docs/relay.md states them for users):
//!
//! - **Closed** (the target is well): up to `limit` requests at once; `limit`
//!   is the concurrency, or lower while ramping up after an outage (one more
//!   per 2xx).
//! - An **outage signal** ([`Outcome::Outage`]: no connection, a reset, a
//!   timeout, 408, 429, 502, 503, 504) opens the circuit. So does a **server
//!   error** (another 5xx) when no other message got a 2xx since the failing
//!   message's previous request (or since this request started, for its
//!   first): with nothing else getting through, an outage cannot be told from
//!   a message the target chokes on, and an outage must never be mistaken for
//!   a bad message.
//! - **Open**: no request starts but one probe, the first after
//!   `first_probe` (or the target's `Retry-After`), then at an interval that
//!   doubles after each failed probe, capped at `max_probe` (as is any
//!   `Retry-After`). A message that last failed with a server error (a
//!   *suspect*) lets a fresh message probe first when one waits: the poison
//!   message is the worst probe.
//! - A 2xx to the probe closes the circuit with `limit` 1 (the ramp). So does
//!   a refusal (4xx): the target answered, it is up.
//! - [`Verdict::Failed`] (the message's own failure, which counts toward
//!   `--max-attempts`) only while closed, for a refusal (4xx) or for a server
//!   error while another message got a 2xx since. Everything else that fails
//!   is [`Verdict::Paused`]: the message waits for the circuit and its
//!   attempt count does not move.

use std::time::{Duration, Instant};

/// What one request came back with, as the circuit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx.
    Accepted,
    /// The target answered and refused this message: a 4xx other than 408
    /// and 429, or a 3xx.
    Refused,
    /// A 5xx other than 502, 503 and 504: the message's fault while others
    /// get through, the target's otherwise.
    ServerError,
    /// The target as a whole is unwell: no connection, a reset, a timeout,
    /// 408, 429, 502, 503 or 504; with the wait its `Retry-After` asked for.
    Outage {
        /// `Retry-After` of a 429 or 503, if it had one.
        retry_after: Option<Duration>,
    },
}

/// What the message whose request ended does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target took it: acknowledge it.
    Delivered,
    /// Its own failure: counts toward `--max-attempts`.
    Failed,
    /// The target is unwell: wait for the circuit; attempts do not move.
    Paused,
}

/// A change of the circuit's state, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It opened; the first probe goes at the instant given.
    Opened(Instant),
    /// The probe failed; the next goes at the instant given.
    ProbeFailed(Instant),
    /// The probe got an answer: closed, ramping up.
    Closed,
}

/// The circuit's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Most requests at once when well (`--concurrency`).
    pub concurrency: usize,
    /// Wait before the first probe (`--retry-delay`).
    pub first_probe: Duration,
    /// Longest wait between probes, `Retry-After` included (`--max-retry-delay`).
    pub max_probe: Duration,
}

/// The state, as the metrics and the progress line show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow, up to `limit` at once.
    Closed {
        /// Requests allowed at once now (below the concurrency while ramping up).
        limit: usize,
    },
    /// Paused until the next probe.
    Open {
        /// When the next probe may start.
        next_probe: Instant,
        /// The interval after the next failed probe, before doubling.
        interval: Duration,
        /// Whether a probe is under way.
        probing: bool,
    },
}

/// One message asking to make a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Tells messages apart (a number the caller gives each message).
    pub message: u64,
    /// Since when a 2xx for another message shows the target is well: the
    /// start of this message's previous request, or of this one.
    pub since: Instant,
    /// Whether its last failure was a paused server error.
    pub suspect: bool,
}

/// Whether a request may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Start it; hand the ticket back to [`Circuit::finish`] or [`Circuit::abandon`].
    Go(Ticket),
    /// Not now: ask again at this instant, or, when `None`, after any other
    /// request ends.
    Wait(Option<Instant>),
}

/// A request under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    request: Request,
    probe: bool,
}

impl Ticket {
    /// Whether this request is the open circuit's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// The latest 2xx of two different messages: enough to answer "did another
/// message than M get through since T?" for any M.
#[derive(Debug, Clone, Copy, Default)]
struct Successes {
    latest: Option<(u64, Instant)>,
    latest_of_another: Option<(u64, Instant)>,
}

impl Successes {
    fn record(&mut self, message: u64, at: Instant) {
        if let Some(latest) = self.latest
            && latest.0 != message
        {
            self.latest_of_another = Some(latest);
        }
        self.latest = Some((message, at));
    }

    fn by_another_since(&self, message: u64, since: Instant) -> bool {
        let other = match self.latest {
            Some((by, _)) if by == message => self.latest_of_another,
            latest => latest,
        };
        other.is_some_and(|(_, at)| at >= since)
    }
}

/// The circuit of one relay.
#[derive(Debug, Clone)]
pub struct Circuit {
    policy: Policy,
    state: State,
    in_flight: usize,
    successes: Successes,
}

impl Circuit {
    /// A closed circuit at full concurrency.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            state: State::Closed {
                limit: policy.concurrency.max(1),
            },
            in_flight: 0,
            successes: Successes::default(),
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether it is open (probing or waiting to).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Requests under way.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Asks whether `request` may start at `now`. `fresh_waiting` says that a
    /// message that is not a suspect also waits, so a suspect lets it probe.
    pub fn admit(&mut self, request: Request, now: Instant, fresh_waiting: bool) -> Admission {
        match &mut self.state {
            State::Closed { limit } => {
                if self.in_flight >= *limit {
                    return Admission::Wait(None);
                }
                self.in_flight += 1;
                Admission::Go(Ticket { request, probe: false })
            }
            State::Open {
                next_probe, probing, ..
            } => {
                if *probing {
                    return Admission::Wait(None);
                }
                if now < *next_probe {
                    return Admission::Wait(Some(*next_probe));
                }
                if request.suspect && fresh_waiting {
                    return Admission::Wait(None);
                }
                *probing = true;
                self.in_flight += 1;
                Admission::Go(Ticket { request, probe: true })
            }
        }
    }

    /// Records how the request of `ticket` ended at `now`, and says what its
    /// message does next.
    pub fn finish(&mut self, ticket: Ticket, outcome: Outcome, now: Instant) -> (Verdict, Option<Transition>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Ticket { request, probe } = ticket;
        let open = self.is_open();
        match outcome {
            Outcome::Accepted => {
                self.successes.record(request.message, now);
                let transition = if probe {
                    self.close()
                } else {
                    if let State::Closed { limit } = &mut self.state {
                        *limit = (*limit + 1).min(self.policy.concurrency.max(1));
                    }
                    None
                };
                (Verdict::Delivered, transition)
            }
            Outcome::Refused if probe => (Verdict::Failed, self.close()),
            Outcome::Refused if open => (Verdict::Paused, None),
            Outcome::Refused => (Verdict::Failed, None),
            Outcome::ServerError if open => (Verdict::Paused, self.probe_failed(probe, now, None)),
            Outcome::ServerError => {
                if self.successes.by_another_since(request.message, request.since) {
                    (Verdict::Failed, None)
                } else {
                    (Verdict::Paused, Some(self.open(now, None)))
                }
            }
            Outcome::Outage { retry_after } if open => (Verdict::Paused, self.probe_failed(probe, now, retry_after)),
            Outcome::Outage { retry_after } => (Verdict::Paused, Some(self.open(now, retry_after))),
        }
    }

    /// A request that ended without an outcome (its task was stopped):
    /// frees its slot, and its probe turn if it had it.
    pub fn abandon(&mut self, ticket: Ticket) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if ticket.probe
            && let State::Open { probing, .. } = &mut self.state
        {
            *probing = false;
        }
    }

    /// `Retry-After`, capped; the policy's wait when there is none.
    fn wait(&self, retry_after: Option<Duration>, otherwise: Duration) -> Duration {
        retry_after.unwrap_or(otherwise).min(self.policy.max_probe)
    }

    fn open(&mut self, now: Instant, retry_after: Option<Duration>) -> Transition {
        let next_probe = now + self.wait(retry_after, self.policy.first_probe);
        self.state = State::Open {
            next_probe,
            interval: self.policy.first_probe.min(self.policy.max_probe),
            probing: false,
        };
        Transition::Opened(next_probe)
    }

    /// A failure while open: only the probe's moves the schedule on.
    fn probe_failed(&mut self, probe: bool, now: Instant, retry_after: Option<Duration>) -> Option<Transition> {
        if !probe {
            return None;
        }
        let max = self.policy.max_probe;
        let State::Open { interval, .. } = self.state else {
            return None;
        };
        let grown = interval.saturating_mul(2).min(max);
        let next_probe = now + self.wait(retry_after, grown);
        self.state = State::Open {
            next_probe,
            interval: grown,
            probing: false,
        };
        Some(Transition::ProbeFailed(next_probe))
    }

    fn close(&mut self) -> Option<Transition> {
        if !self.is_open() {
            return None;
        }
        self.state = State::Closed { limit: 1 };
        Some(Transition::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn closed(concurrency: usize) -> (Circuit, Instant) {
        let policy = Policy {
            concurrency,
            first_probe: SECOND,
            max_probe: Duration::from_secs(8),
        };
        (Circuit::new(policy), Instant::now())
    }

    fn request(message: u64, since: Instant) -> Request {
        Request {
            message,
            since,
            suspect: false,
        }
    }

    fn go(circuit: &mut Circuit, message: u64, now: Instant) -> Ticket {
        match circuit.admit(request(message, now), now, false) {
            Admission::Go(ticket) => ticket,
            Admission::Wait(until) => panic!("message {message} must wait until {until:?}"),
        }
    }

    /// Opens the circuit with an outage at `now`: the first probe is due a second later.
    fn opened(circuit: &mut Circuit, now: Instant) {
        let ticket = go(circuit, 999, now);
        let outage = Outcome::Outage { retry_after: None };
        assert_eq!(
            circuit.finish(ticket, outage, now),
            (Verdict::Paused, Some(Transition::Opened(now + SECOND)))
        );
    }

    #[test]
    fn closed_it_admits_up_to_the_concurrency_and_no_more() {
        let (mut circuit, now) = closed(2);
        let first = go(&mut circuit, 1, now);
        go(&mut circuit, 2, now);
        assert_eq!(circuit.admit(request(3, now), now, false), Admission::Wait(None));
        assert_eq!(
            circuit.finish(first, Outcome::Accepted, now),
            (Verdict::Delivered, None)
        );
        go(&mut circuit, 3, now);
        assert_eq!(circuit.in_flight(), 2);
    }

    #[test]
    fn every_outage_signal_opens_it_and_pauses_the_message() {
        let (mut circuit, now) = closed(4);
        let ticket = go(&mut circuit, 1, now);
        let (verdict, transition) = circuit.finish(ticket, Outcome::Outage { retry_after: None }, now);
        assert_eq!(verdict, Verdict::Paused);
        assert_eq!(transition, Some(Transition::Opened(now + SECOND)));
        assert!(circuit.is_open());
    }

    #[test]
    fn open_it_admits_nothing_before_the_probe_and_one_probe_at_a_time() {
        let (mut circuit, now) = closed(4);
        opened(&mut circuit, now);
        let early = now + Duration::from_millis(999);
        assert_eq!(
            circuit.admit(request(1, early), early, false),
            Admission::Wait(Some(now + SECOND))
        );
        let due = now + SECOND;
        let probe = go(&mut circuit, 1, due);
        assert!(probe.is_probe());
        assert_eq!(circuit.admit(request(2, due), due, false), Admission::Wait(None));
        assert_eq!(circuit.in_flight(), 1);
    }

    #[test]
    fn failed_probes_double_the_interval_up_to_the_cap() {
        let (mut circuit, mut now) = closed(4);
        opened(&mut circuit, now);
        let mut waits = Vec::new();
        let mut due = now + SECOND;
        for _ in 0..6 {
            now = due;
            let probe = go(&mut circuit, 1, now);
            let (verdict, transition) = circuit.finish(probe, Outcome::Outage { retry_after: None }, now);
            assert_eq!(verdict, Verdict::Paused);
            let Some(Transition::ProbeFailed(next)) = transition else {
                panic!("{transition:?}")
            };
            waits.push((next - now).as_secs());
            due = next;
        }
        assert_eq!(waits, [2, 4, 8, 8, 8, 8]);
    }

    #[test]
    fn retry_after_sets_the_wait_capped_like_the_interval() {
        let (mut circuit, now) = closed(4);
        let ticket = go(&mut circuit, 1, now);
        let asked = Outcome::Outage {
            retry_after: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            circuit.finish(ticket, asked, now).1,
            Some(Transition::Opened(now + Duration::from_secs(5)))
        );
        let due = now + Duration::from_secs(5);
        let probe = go(&mut circuit, 1, due);
        let too_long = Outcome::Outage {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            circuit.finish(probe, too_long, due).1,
            Some(Transition::ProbeFailed(due + Duration::from_secs(8)))
        );
        // A short Retry-After is honoured even below the grown interval.
        let due = due + Duration::from_secs(8);
        let probe = go(&mut circuit, 1, due);
        let short = Outcome::Outage {
            retry_after: Some(Duration::from_millis(10)),
        };
        assert_eq!(
            circuit.finish(probe, short, due).1,
            Some(Transition::ProbeFailed(due + Duration::from_millis(10)))
        );
    }

    #[test]
    fn a_2xx_to_the_probe_closes_it_and_the_limit_ramps_up_one_per_2xx() {
        let (mut circuit, now) = closed(3);
        opened(&mut circuit, now);
        let due = now + SECOND;
        let probe = go(&mut circuit, 1, due);
        assert_eq!(
            circuit.finish(probe, Outcome::Accepted, due),
            (Verdict::Delivered, Some(Transition::Closed))
        );
        assert_eq!(circuit.state(), State::Closed { limit: 1 });
        let a = go(&mut circuit, 2, due);
        assert_eq!(circuit.admit(request(3, due), due, false), Admission::Wait(None));
        circuit.finish(a, Outcome::Accepted, due);
        assert_eq!(circuit.state(), State::Closed { limit: 2 });
        let b = go(&mut circuit, 3, due);
        let c = go(&mut circuit, 4, due);
        circuit.finish(b, Outcome::Accepted, due);
        circuit.finish(c, Outcome::Accepted, due);
        assert_eq!(
            circuit.state(),
            State::Closed { limit: 3 },
            "never above the concurrency"
        );
    }

    #[test]
    fn a_refusal_is_the_messages_own_failure_and_an_answer_to_the_probe_closes_it() {
        let (mut circuit, now) = closed(4);
        let ticket = go(&mut circuit, 1, now);
        assert_eq!(circuit.finish(ticket, Outcome::Refused, now), (Verdict::Failed, None));
        assert!(!circuit.is_open());

        opened(&mut circuit, now);
        let due = now + SECOND;
        let probe = go(&mut circuit, 1, due);
        assert_eq!(
            circuit.finish(probe, Outcome::Refused, due),
            (Verdict::Failed, Some(Transition::Closed))
        );
    }

    #[test]
    fn nothing_moves_attempts_while_open_not_even_a_refusal_under_way_before() {
        let (mut circuit, now) = closed(4);
        let straggler = go(&mut circuit, 1, now);
        let server_error = go(&mut circuit, 2, now);
        opened(&mut circuit, now);
        assert_eq!(
            circuit.finish(straggler, Outcome::Refused, now),
            (Verdict::Paused, None)
        );
        assert_eq!(
            circuit.finish(server_error, Outcome::ServerError, now),
            (Verdict::Paused, None)
        );
        assert!(circuit.is_open());
    }

    #[test]
    fn a_2xx_under_way_before_it_opened_is_delivered_but_does_not_close_it() {
        let (mut circuit, now) = closed(4);
        let straggler = go(&mut circuit, 1, now);
        opened(&mut circuit, now);
        assert_eq!(
            circuit.finish(straggler, Outcome::Accepted, now),
            (Verdict::Delivered, None)
        );
        assert!(circuit.is_open());
        assert_eq!(circuit.in_flight(), 0);
    }

    #[test]
    fn a_server_error_while_another_message_gets_through_is_the_messages_own() {
        let (mut circuit, now) = closed(4);
        let poison = go(&mut circuit, 1, now);
        let good = go(&mut circuit, 2, now);
        let later = now + Duration::from_millis(5);
        circuit.finish(good, Outcome::Accepted, later);
        assert_eq!(
            circuit.finish(poison, Outcome::ServerError, later),
            (Verdict::Failed, None)
        );
        assert!(!circuit.is_open());
    }

    #[test]
    fn a_server_error_with_nothing_else_getting_through_opens_it() {
        let (mut circuit, now) = closed(4);
        let failing = go(&mut circuit, 1, now);
        let (verdict, transition) = circuit.finish(failing, Outcome::ServerError, now);
        assert_eq!(verdict, Verdict::Paused);
        assert!(matches!(transition, Some(Transition::Opened(_))));
    }

    #[test]
    fn only_another_messages_2xx_since_counts_as_getting_through() {
        let (mut circuit, now) = closed(4);
        // Message 1 itself got through once: no evidence about the others.
        let own = go(&mut circuit, 1, now);
        circuit.finish(own, Outcome::Accepted, now);
        let later = now + SECOND;
        let ticket = go(&mut circuit, 1, later);
        assert_eq!(circuit.finish(ticket, Outcome::ServerError, later).0, Verdict::Paused);

        // Another message's 2xx from before this one's previous request is stale.
        let (mut circuit, now) = closed(4);
        let other = go(&mut circuit, 2, now);
        circuit.finish(other, Outcome::Accepted, now);
        let later = now + SECOND;
        let request = Request {
            message: 1,
            since: later,
            suspect: false,
        };
        let Admission::Go(ticket) = circuit.admit(request, later, false) else {
            panic!("closed")
        };
        assert_eq!(circuit.finish(ticket, Outcome::ServerError, later).0, Verdict::Paused);
    }

    #[test]
    fn the_latest_2xx_of_another_message_is_found_past_the_messages_own() {
        let (mut circuit, now) = closed(4);
        let other = go(&mut circuit, 2, now);
        circuit.finish(other, Outcome::Accepted, now);
        let own = go(&mut circuit, 1, now);
        circuit.finish(own, Outcome::Accepted, now);
        let ticket = go(&mut circuit, 1, now);
        assert_eq!(circuit.finish(ticket, Outcome::ServerError, now).0, Verdict::Failed);
    }

    #[test]
    fn a_failed_probe_with_a_server_error_keeps_it_open() {
        let (mut circuit, now) = closed(4);
        opened(&mut circuit, now);
        let due = now + SECOND;
        let probe = go(&mut circuit, 1, due);
        assert_eq!(
            circuit.finish(probe, Outcome::ServerError, due),
            (Verdict::Paused, Some(Transition::ProbeFailed(due + 2 * SECOND)))
        );
    }

    #[test]
    fn a_suspect_lets_a_fresh_message_probe_first() {
        let (mut circuit, now) = closed(4);
        opened(&mut circuit, now);
        let due = now + SECOND;
        let suspect = Request {
            message: 1,
            since: due,
            suspect: true,
        };
        assert_eq!(circuit.admit(suspect, due, true), Admission::Wait(None));
        let Admission::Go(probe) = circuit.admit(suspect, due, false) else {
            panic!("no fresh message waits: the suspect probes")
        };
        assert!(probe.is_probe());
    }

    #[test]
    fn an_abandoned_request_frees_its_slot_and_the_probe_turn() {
        let (mut circuit, now) = closed(1);
        let ticket = go(&mut circuit, 1, now);
        circuit.abandon(ticket);
        let ticket = go(&mut circuit, 2, now);
        circuit.finish(ticket, Outcome::Outage { retry_after: None }, now);
        let due = now + SECOND;
        let probe = go(&mut circuit, 3, due);
        circuit.abandon(probe);
        assert!(go(&mut circuit, 4, due).is_probe(), "the next waiter probes at once");
    }
}
