//! `--coalesce`: when the relay receives a webhook identical to one it holds
//! that has not begun its delivery, the older copy is acknowledged at once
//! (counted as coalesced) and the newer keeps its own place, as if the older
//! had never been sent. Identical means the same [`WebhookParts::digest`]:
//! method, query, content type and body. A copy whose delivery has begun is
//! never coalesced; the newer copy waits behind it ([`super::order`] makes
//! the digest one of its keys).
//!
//! Which side settles a held copy is decided once, by its [`Claim`]: the
//! worker [begins](Claim::begin) a message before anything that settles or
//! sends it (a request, a dead-letter copy, an ack or a hand-back), the
//! order stage [coalesces](Claim::coalesce) it; whichever comes first wins
//! and the other leaves the message alone. So a copy is never both sent and
//! acknowledged as coalesced, and never acknowledged twice. Nothing is lost
//! if the relay dies right after coalescing: the newer copy is still held,
//! unacknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

use crate::broker::message::WebhookParts;

const WAITING: u8 = 0;
const BEGUN: u8 = 1;
const COALESCED: u8 = 2;

/// What makes two webhooks copies of each other: their digest.
pub fn identity(parts: WebhookParts<'_>) -> String {
    parts.digest()
}

/// Who settles one held message: its delivery (begun) or the coalescing of
/// a newer copy. Cloned between the order stage and the worker.
#[derive(Debug, Clone, Default)]
pub struct Claim(Option<Arc<Stage>>);

#[derive(Debug, Default)]
struct Stage {
    state: AtomicU8,
    coalesced: Notify,
}

impl Claim {
    /// A message that can never be coalesced (`--coalesce` is off): it
    /// always begins.
    pub fn fixed() -> Self {
        Self(None)
    }

    /// A message a newer copy may coalesce until it begins.
    pub fn open() -> Self {
        Self(Some(Arc::default()))
    }

    /// Whether a newer copy may still coalesce it.
    pub fn is_open(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|stage| stage.state.load(Ordering::Acquire) == WAITING)
    }

    /// Whether a newer copy could ever coalesce it (it was made [`Claim::open`]).
    pub fn is_coalescable(&self) -> bool {
        self.0.is_some()
    }

    /// Marks its delivery begun; false when a newer copy coalesced it first,
    /// and then the caller must leave the message alone (the order stage
    /// acknowledges it).
    pub fn begin(&self) -> bool {
        match &self.0 {
            None => true,
            Some(stage) => match stage
                .state
                .compare_exchange(WAITING, BEGUN, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => true,
                Err(state) => state == BEGUN,
            },
        }
    }

    /// Coalesces it into a newer copy, unless its delivery has begun: true
    /// when it was coalesced (by this call).
    pub fn coalesce(&self) -> bool {
        let Some(stage) = &self.0 else { return false };
        let won = stage
            .state
            .compare_exchange(WAITING, COALESCED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            stage.coalesced.notify_waiters();
        }
        won
    }

    /// Whether a newer copy coalesced it.
    pub fn is_coalesced(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|stage| stage.state.load(Ordering::Acquire) == COALESCED)
    }

    /// Resolves once a newer copy coalesced it; never for a fixed claim.
    pub async fn coalesced(&self) {
        let Some(stage) = &self.0 else {
            return std::future::pending().await;
        };
        let mut notified = std::pin::pin!(stage.coalesced.notified());
        // Registered before the look, so a coalescing in between still wakes it.
        notified.as_mut().enable();
        if self.is_coalesced() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_claim_always_begins_and_is_never_coalesced() {
        let claim = Claim::fixed();
        assert!(!claim.is_open());
        assert!(!claim.is_coalescable());
        assert!(!claim.coalesce());
        assert!(claim.begin());
        assert!(claim.begin());
        assert!(!claim.is_coalesced());
    }

    #[test]
    fn a_begun_copy_is_never_coalesced() {
        let claim = Claim::open();
        assert!(claim.is_open());
        assert!(claim.begin());
        assert!(!claim.is_open());
        assert!(!claim.coalesce());
        assert!(!claim.is_coalesced());
        assert!(claim.begin(), "begin again (a retry) still holds");
    }

    #[test]
    fn a_coalesced_copy_never_begins() {
        let claim = Claim::open();
        let worker = claim.clone();
        assert!(claim.coalesce());
        assert!(!claim.coalesce(), "coalesced once");
        assert!(worker.is_coalesced());
        assert!(!worker.begin());
    }

    #[tokio::test]
    async fn coalescing_wakes_the_copys_task_even_if_it_looks_late() {
        let claim = Claim::open();
        claim.coalesce();
        // Already coalesced before anyone waits: resolves at once.
        claim.coalesced().await;
        let waiting = Claim::open();
        let task = tokio::spawn({
            let waiting = waiting.clone();
            async move { waiting.coalesced().await }
        });
        tokio::task::yield_now().await;
        waiting.coalesce();
        task.await.unwrap();
    }

    #[test]
    fn copies_are_told_by_their_digest() {
        let parts = |body: &'static [u8]| WebhookParts {
            method: "POST",
            query: "type=product",
            content_type: Some("application/x-www-form-urlencoded"),
            body,
        };
        assert_eq!(identity(parts(b"old=1&new=1")), identity(parts(b"old=1&new=1")));
        assert_ne!(identity(parts(b"old=1&new=1")), identity(parts(b"old=1&new=2")));
    }
}
