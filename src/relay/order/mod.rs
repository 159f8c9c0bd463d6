//! Per-key order (`--order-by`), and the copies `--coalesce` collapses: the
//! stage between the consumer and the worker. A message is handed to the
//! [`super::worker`] only when every earlier message this relay received
//! that shares one of its keys has left: delivered, dead-lettered, coalesced
//! or handed back. Messages that share no key run at full `--concurrency`.
//!
//! The order is that of arrival on the consuming channel, which is the
//! queue's order: the consumer calls [`Order::arrive`] for each delivery, in
//! turn, before its task is spawned. The keys are held until the task ends,
//! so a message backing off, paused with the circuit or being dead-lettered
//! keeps its place and the later messages of its keys wait behind it.
//!
//! A message waiting behind a key holds no request slot (it has not reached
//! the gate), only its prefetch slot: the head of every key is always among
//! the messages held (it arrived first) and can always make its request, so
//! a prefetch full of waiting messages slows the relay to the pace of the
//! busy keys but never stops it. docs/relay.md says what that costs.
//!
//! The table lives with one connection ([`Order`] is made per session): a
//! lost connection aborts every task and the broker returns their messages
//! in queue order, so the next session starts from an empty table. At
//! shutdown what is not delivered is returned the same way, by closing the
//! channel ([`super::worker`]).

pub mod keys;
pub mod table;
pub mod turnstile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::coalesce::{self, Claim};
use super::dead_letter::DeadLetters;
use super::dead_letter::headers::ORDER_KEYS_HEADER;
use super::metrics::{Count, Metrics};
use super::worker::{self, Holding, Shared};
use crate::broker::message::Original;
pub use keys::OrderBy;
use table::KeyTable;
use turnstile::{Spot, Turnstile};

/// What a message waits behind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A key an `--order-by` template rendered.
    Rendered(String),
    /// The digest of a webhook, with `--coalesce`: copies go one at a time.
    Copy(String),
}

/// The order stage of one session.
#[derive(Debug)]
pub struct Order {
    order_by: OrderBy,
    coalesce: bool,
    metrics: Arc<Metrics>,
    held: Arc<Mutex<Held>>,
    /// First requests in the order messages became free to go.
    turnstile: Arc<Turnstile>,
}

/// The messages the session holds, by their number in the table.
#[derive(Debug, Default)]
struct Held {
    table: KeyTable<Key>,
    slots: HashMap<u64, Arc<Slot>>,
    next: u64,
    /// The session is over: nobody may go any more.
    closed: bool,
}

/// One held message's wake-up and claim.
#[derive(Debug)]
struct Slot {
    turn: Notify,
    claim: Claim,
}

impl Order {
    /// The stage for one session: ordered by `order_by` (none: unordered),
    /// coalescing copies when `coalesce`.
    pub fn new(order_by: OrderBy, coalesce: bool, metrics: Arc<Metrics>) -> Self {
        Self {
            order_by,
            coalesce,
            metrics,
            held: Arc::default(),
            turnstile: Arc::default(),
        }
    }

    /// Takes one delivery's place, in the order deliveries arrive; with
    /// `--coalesce`, an older identical copy that has not begun is
    /// coalesced here. Its keys go into the delivery's headers, so a dead
    /// letter carries them.
    pub fn arrive(&self, delivery: &mut Delivery) -> Place {
        if self.order_by.is_empty() && !self.coalesce {
            return Place::unordered(self.turnstile.line_up(), self.turnstile.clone());
        }
        let original = Original::from_properties(&delivery.properties);
        let parts = original.parts(&delivery.data);
        let rendered = self.order_by.keys(parts);
        let copy = self.coalesce.then(|| coalesce::identity(parts));
        if !rendered.is_empty() {
            stamp_keys(delivery, &rendered);
        }
        let mut keys: Vec<Key> = rendered.into_iter().map(Key::Rendered).collect();
        let claim = if copy.is_some() { Claim::open() } else { Claim::fixed() };
        let mut held = self.lock();
        if let Some(digest) = copy {
            let key = Key::Copy(digest);
            if let Some(older) = held.table.last_with(&key)
                && let Some(slot) = held.slots.get(&older).cloned()
                && slot.claim.coalesce()
            {
                // As if the older copy had never been sent: its place goes.
                let freed = held.table.leave(older);
                held.wake(&freed);
            }
            keys.push(key);
        }
        let id = held.next;
        held.next += 1;
        let free = held.table.arrive(id, keys);
        let slot = Arc::new(Slot {
            turn: Notify::new(),
            claim,
        });
        held.slots.insert(id, slot.clone());
        self.metrics.set_waiting_behind_keys(held.table.waiting());
        drop(held);
        Place {
            spot: free.then(|| self.turnstile.line_up()),
            turnstile: self.turnstile.clone(),
            free,
            slot: Some(slot.clone()),
            claim: slot.claim.clone(),
            leave: Some(Leave {
                id,
                held: self.held.clone(),
                metrics: self.metrics.clone(),
            }),
        }
    }

    /// Lets no waiting message go any more: the session is over (its
    /// connection lost, or the shutdown grace ran out) and its tasks are
    /// about to be aborted. Without this, a task aborted first would free
    /// the next of its key, which could send its request before its own
    /// abort, ahead of the first when the broker delivers both again.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Held {
    fn wake(&self, freed: &[u64]) {
        if self.closed {
            return;
        }
        for id in freed {
            if let Some(slot) = self.slots.get(id) {
                // Stores a permit when the task is not waiting yet.
                slot.turn.notify_one();
            }
        }
    }
}

/// Writes a message's ordering keys into its headers, for its dead letter.
fn stamp_keys(delivery: &mut Delivery, keys: &[String]) {
    let array: Vec<AMQPValue> = keys
        .iter()
        .map(|key| AMQPValue::LongString(LongString::from(key.as_str())))
        .collect();
    let mut headers = delivery
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().clone())
        .unwrap_or_default();
    headers.insert(ORDER_KEYS_HEADER.into(), AMQPValue::FieldArray(FieldArray::from(array)));
    delivery.properties = delivery.properties.clone().with_headers(FieldTable::from(headers));
}

/// One message's place in the order: it may go once [`Place::turn`]
/// resolves; it leaves the table when dropped (its task ended or was aborted).
#[derive(Debug)]
pub struct Place {
    /// Its spot in the line for a first request, once it is free to go.
    spot: Option<Spot>,
    turnstile: Arc<Turnstile>,
    free: bool,
    slot: Option<Arc<Slot>>,
    claim: Claim,
    leave: Option<Leave>,
}

#[derive(Debug)]
struct Leave {
    id: u64,
    held: Arc<Mutex<Held>>,
    metrics: Arc<Metrics>,
}

impl Place {
    fn unordered(spot: Spot, turnstile: Arc<Turnstile>) -> Self {
        Self {
            spot: Some(spot),
            turnstile,
            free: true,
            slot: None,
            claim: Claim::fixed(),
            leave: None,
        }
    }

    /// Whether it may go at once.
    pub fn is_free(&self) -> bool {
        self.free
    }

    /// Resolves when every earlier message sharing one of its keys has left.
    pub async fn turn(&self) {
        if let (false, Some(slot)) = (self.free, &self.slot) {
            slot.turn.notified().await;
        }
    }

    /// Its spot in the line for a first request: taken at arrival if it was
    /// free to go, else now (its turn has come).
    fn line_up(&mut self) -> Spot {
        self.spot.take().unwrap_or_else(|| self.turnstile.line_up())
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(leave) = self.leave.take() else { return };
        let mut held = leave.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.slots.remove(&leave.id);
        let freed = held.table.leave(leave.id);
        held.wake(&freed);
        leave.metrics.set_waiting_behind_keys(held.table.waiting());
    }
}

/// Relays one delivery in its turn: waits behind its keys, then hands it to
/// the worker; acknowledges it as coalesced if a newer copy came first.
///
/// Waiting is not raced against `stopping`: at shutdown a waiting message
/// still goes in its turn, right after the one before it, and the worker
/// leaves it at once.
pub async fn relay(
    mut place: Place,
    holding: Holding,
    delivery: Delivery,
    shared: Arc<Shared>,
    dead_letters: Arc<DeadLetters>,
    stopping: CancellationToken,
) {
    let claim = place.claim.clone();
    // Coalescing may come before this task even starts.
    let acker = claim.is_coalescable().then(|| delivery.acker.clone());
    let message_id = delivery.properties.message_id().as_ref().map(|id| id.to_string());
    let coalesced_waiting = if place.is_free() {
        false
    } else {
        tokio::select! {
            biased;
            () = claim.coalesced() => true,
            () = place.turn() => false,
        }
    };
    if !coalesced_waiting {
        let work = worker::relay(
            delivery,
            &holding,
            place.line_up(),
            shared.clone(),
            dead_letters,
            stopping,
            claim.clone(),
        );
        tokio::select! {
            biased;
            // Its delivery has not begun: it waits for a request slot at most.
            () = claim.coalesced() => {}
            () = work => {}
        }
    }
    if let (true, Some(acker)) = (claim.is_coalesced(), acker) {
        acknowledge_coalesced(&acker, &holding, message_id.as_deref(), &shared.metrics).await;
    }
    drop(place);
    drop(holding);
}

async fn acknowledge_coalesced(acker: &lapin::Acker, holding: &Holding, id: Option<&str>, metrics: &Metrics) {
    if worker::acknowledge(acker, holding, id, "coalesced").await {
        metrics.add(Count::Coalesced);
        debug!(message_id = id, "coalesced: a newer identical copy is held");
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn delivery(body: &str) -> Delivery {
        Delivery::mock(0, "".into(), "".into(), false, body.as_bytes().to_vec())
    }

    fn order(templates: &[&str], coalesce: bool) -> Order {
        let templates: Vec<String> = templates.iter().map(|t| (*t).to_owned()).collect();
        Order::new(OrderBy::parse(&templates).unwrap(), coalesce, Arc::new(Metrics::new()))
    }

    fn may_go(place: &Place) -> bool {
        place.turn().now_or_never().is_some()
    }

    #[test]
    fn a_message_goes_when_the_one_before_it_of_its_key_leaves() {
        let order = order(&["{form.id}"], false);
        let first = order.arrive(&mut delivery("id=a&seq=0"));
        let other = order.arrive(&mut delivery("id=b&seq=0"));
        let second = order.arrive(&mut delivery("id=a&seq=1"));
        assert!(first.is_free() && other.is_free());
        assert!(!second.is_free());
        assert!(!may_go(&second));
        assert_eq!(order.metrics.snapshot().behind_keys, 1);
        drop(first);
        assert!(may_go(&second));
        assert_eq!(order.metrics.snapshot().behind_keys, 0);
    }

    #[test]
    fn the_keys_go_into_the_headers_for_a_dead_letter() {
        let order = order(&["{form.old}", "{form.new}"], false);
        let mut renumbered = delivery("old=101&new=102");
        let _place = order.arrive(&mut renumbered);
        let headers = renumbered.properties.headers().clone().unwrap();
        let Some(AMQPValue::FieldArray(keys)) = headers.inner().get(ORDER_KEYS_HEADER) else {
            panic!("no {ORDER_KEYS_HEADER} in {headers:?}");
        };
        let keys: Vec<String> = keys
            .as_slice()
            .iter()
            .map(|k| match k {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, ["101", "102"]);
    }

    #[test]
    fn a_copy_not_begun_is_coalesced_and_the_newer_takes_its_own_place() {
        let order = order(&["{form.id}"], true);
        let first = order.arrive(&mut delivery("id=a&x=1"));
        let copy = order.arrive(&mut delivery("id=a&x=2"));
        let newer = order.arrive(&mut delivery("id=a&x=2"));
        assert!(copy.claim.is_coalesced(), "the older copy had not begun");
        assert!(!first.claim.is_coalesced());
        // The newer copy waits behind the first of its key, not behind the coalesced one.
        assert!(!may_go(&newer));
        drop(copy);
        assert!(!may_go(&newer));
        drop(first);
        assert!(may_go(&newer));
    }

    #[test]
    fn a_begun_copy_is_not_coalesced_and_the_newer_waits_behind_it() {
        let order = order(&[], true);
        let first = order.arrive(&mut delivery("same"));
        assert!(first.claim.begin());
        let newer = order.arrive(&mut delivery("same"));
        assert!(!first.claim.is_coalesced());
        assert!(!may_go(&newer));
        drop(first);
        assert!(may_go(&newer));
    }

    #[test]
    fn unordered_without_coalescing_everything_goes_at_once() {
        let order = order(&[], false);
        let first = order.arrive(&mut delivery("same"));
        let second = order.arrive(&mut delivery("same"));
        assert!(first.is_free() && second.is_free());
        assert!(!second.claim.is_coalescable());
    }

    #[test]
    fn once_closed_nobody_goes_any_more() {
        let order = order(&["{form.id}"], false);
        let first = order.arrive(&mut delivery("id=a"));
        let second = order.arrive(&mut delivery("id=a"));
        order.close();
        drop(first);
        assert!(!may_go(&second), "a freed message could send before its abort");
    }
}
