//! The circuit at run time: every delivery task asks the gate before a
//! request and tells it how the request ended; a task that may not start yet
//! sleeps until the circuit could let it (a request ended, or the probe is
//! due), never polling. The gate also tells the consumer whether to take
//! deliveries ([`Gate::wants_deliveries`]).
//!
//! In the steady state (closed, full concurrency) each request that ends
//! wakes one waiting task (the first), never all of them: with a prefetch
//! above the concurrency, tasks wait for a slot all the time.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::circuit::{Admission, Circuit, Outcome, Policy, Request, State, Ticket, Transition, Verdict};
use super::metrics::{CircuitState, Metrics, Tally};

/// A change of the circuit a request caused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The target seems down: paused; the first probe in this long.
    Opened(Duration),
    /// The probe failed; the next in this long.
    ProbeFailed(Duration),
    /// The target answered the probe: flowing again, ramping up.
    Closed,
}

/// The circuit, shared by every delivery task.
#[derive(Debug)]
pub struct Gate {
    circuit: Mutex<Circuit>,
    /// Wakes waiting tasks when a request ends or the probe turn frees.
    changed: Notify,
    /// Tells the consumer to look at [`Gate::wants_deliveries`] again.
    deliveries: Notify,
    open: AtomicBool,
    fresh_waiting: AtomicUsize,
    suspects: AtomicUsize,
    next_message: AtomicU64,
}

impl Gate {
    /// A closed gate.
    pub fn new(policy: Policy) -> Self {
        Self {
            circuit: Mutex::new(Circuit::new(policy)),
            changed: Notify::new(),
            deliveries: Notify::new(),
            open: AtomicBool::new(false),
            fresh_waiting: AtomicUsize::new(0),
            suspects: AtomicUsize::new(0),
            next_message: AtomicU64::new(0),
        }
    }

    /// A number telling this message apart from the others the circuit sees.
    pub fn message_number(&self) -> u64 {
        self.next_message.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the circuit is open.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Waits until message `message` may send a request. `previous` is when
    /// its previous request started, if it made one; `suspect` whether its
    /// last failure was a paused server error. Dropping the future while it
    /// waits (shutdown) is fine.
    pub async fn enter<'a>(
        &'a self,
        message: u64,
        previous: Option<Instant>,
        suspect: bool,
        metrics: &'a Metrics,
    ) -> Pass<'a> {
        let _waiting = (!suspect).then(|| Waiting::new(self));
        // Armed (registered for a wake-up) only once a first look said wait,
        // then looked at again: no wake-up is lost, and the common case (a
        // free slot) takes no lock but the circuit's.
        let mut notified = std::pin::pin!(self.changed.notified());
        let mut armed = false;
        loop {
            let now = Instant::now();
            let request = Request {
                message,
                since: previous.unwrap_or(now),
                suspect,
            };
            let fresh_waiting = suspect && self.fresh_waiting.load(Ordering::Relaxed) > 0;
            let admission = self.lock().admit(request, now, fresh_waiting);
            match admission {
                Admission::Go(ticket) => {
                    if ticket.is_probe() {
                        metrics.set_circuit(CircuitState::probing);
                    }
                    return Pass {
                        gate: self,
                        metrics,
                        ticket: Some(ticket),
                        _in_flight: metrics.in_flight(),
                    };
                }
                Admission::Wait(_) if !armed => {
                    notified.as_mut().enable();
                    armed = true;
                    continue;
                }
                Admission::Wait(Some(at)) => {
                    let at = tokio::time::Instant::from_std(at);
                    tokio::select! {
                        () = notified.as_mut() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                Admission::Wait(None) => notified.as_mut().await,
            }
            notified.set(self.changed.notified());
            armed = false;
        }
    }

    /// Whether the consumer should take deliveries, holding `held` messages
    /// with a prefetch of `prefetch`: always while closed; while open only
    /// when it holds nothing (a probe needs a message, e.g. after a
    /// reconnect), or when every message it holds is a suspect and the
    /// prefetch has room, so that a fresh message can tell a poison message
    /// from an outage.
    pub fn wants_deliveries(&self, held: u64, prefetch: u64) -> bool {
        if !self.is_open() || held == 0 {
            return true;
        }
        let suspects = self.suspects.load(Ordering::Relaxed) as u64;
        held <= suspects && held < prefetch
    }

    /// Resolves when [`Gate::wants_deliveries`] may have changed.
    pub async fn deliveries_changed(&self) {
        self.deliveries.notified().await;
    }

    /// Tells the consumer to look again, if the circuit is open (while it is
    /// closed the answer is always yes).
    pub fn held_changed(&self) {
        if self.is_open() {
            self.deliveries.notify_one();
        }
    }

    /// Marks a message as a suspect while the mark lives.
    pub fn suspect(&self) -> Suspect<'_> {
        self.suspects.fetch_add(1, Ordering::Relaxed);
        self.held_changed();
        Suspect(self)
    }

    fn lock(&self) -> MutexGuard<'_, Circuit> {
        // The circuit's fields stay consistent through a panic elsewhere.
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, ticket: Ticket, outcome: Outcome, metrics: &Metrics) -> (Verdict, Option<Change>) {
        let now = Instant::now();
        let (verdict, transition, state) = {
            let mut circuit = self.lock();
            let (verdict, transition) = circuit.finish(ticket, outcome, now);
            (verdict, transition, circuit.state())
        };
        if ticket.is_probe() || transition.is_some() {
            // The probe turn is free again, or everything changed: all look.
            self.changed.notify_waiters();
            metrics.set_circuit(CircuitState::of(state));
        } else {
            // One slot freed: one task takes it (a permit is stored if none waits).
            self.changed.notify_one();
        }
        let change = transition.map(|t| match t {
            Transition::Opened(at) => Change::Opened(at.saturating_duration_since(now)),
            Transition::ProbeFailed(at) => Change::ProbeFailed(at.saturating_duration_since(now)),
            Transition::Closed => Change::Closed,
        });
        if change.is_some() {
            self.open.store(matches!(state, State::Open { .. }), Ordering::Relaxed);
            self.deliveries.notify_one();
        }
        (verdict, change)
    }

    fn abandon(&self, ticket: Ticket, metrics: &Metrics) {
        let state = {
            let mut circuit = self.lock();
            circuit.abandon(ticket);
            circuit.state()
        };
        self.changed.notify_waiters();
        if ticket.is_probe() {
            metrics.set_circuit(CircuitState::of(state));
        }
    }
}

/// Leave to send one request; hand the outcome to [`Pass::finish`].
/// Dropped unfinished (the task was stopped), it frees the slot.
#[derive(Debug)]
pub struct Pass<'a> {
    gate: &'a Gate,
    metrics: &'a Metrics,
    ticket: Option<Ticket>,
    _in_flight: Tally,
}

impl Pass<'_> {
    /// Whether this request is the open circuit's probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.is_some_and(|t| t.is_probe())
    }

    /// Records how the request ended; says what the message does next and
    /// how the circuit changed.
    pub fn finish(mut self, outcome: Outcome) -> (Verdict, Option<Change>) {
        match self.ticket.take() {
            Some(ticket) => self.gate.finish(ticket, outcome, self.metrics),
            None => (Verdict::Paused, None),
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.gate.abandon(ticket, self.metrics);
        }
    }
}

/// A fresh (not suspect) message waiting in [`Gate::enter`].
struct Waiting<'a>(&'a Gate);

impl<'a> Waiting<'a> {
    fn new(gate: &'a Gate) -> Self {
        gate.fresh_waiting.fetch_add(1, Ordering::Relaxed);
        Self(gate)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fresh_waiting.fetch_sub(1, Ordering::Relaxed);
        // A suspect may have stood aside for this one (only while open).
        if self.0.is_open() {
            self.0.changed.notify_waiters();
        }
    }
}

/// A message counted as a suspect while this lives.
#[derive(Debug)]
pub struct Suspect<'a>(&'a Gate);

impl Drop for Suspect<'_> {
    fn drop(&mut self) {
        self.0.suspects.fetch_sub(1, Ordering::Relaxed);
        self.0.held_changed();
    }
}
