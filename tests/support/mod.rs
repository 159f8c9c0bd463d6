//! Shared by the relay's two test binaries (`relay` and `relay_restart`):
//! the real broker, the real binary, a recording HTTP target.

// Each binary uses only part of this.
#![allow(dead_code)]

pub mod broker;
#[path = "../common/mod.rs"]
pub mod common;
pub mod process;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use broker::{TestMessage, TestQueue};
use process::Handler;
use target::{Seen, TestTarget};

/// Waits until every one of `count` messages was accepted at least once, the
/// queue is empty and the relay holds nothing: all delivered, acknowledged,
/// nothing left anywhere. Repeats after a lost connection may still be in
/// play when the last new id arrives, hence the two last conditions.
pub async fn wait_until_drained(queue: &TestQueue, target: &TestTarget, relay: &Handler, count: usize) {
    target
        .wait_until(Duration::from_secs(120), "every message accepted", |seen| {
            let accepted: HashSet<&str> = seen.iter().filter(|s| s.accepted()).map(|s| s.message_id()).collect();
            accepted.len() >= count
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = relay.output();
        let last_progress = output.lines().rfind(|l| l.starts_with("progress: ")).unwrap_or("");
        if queue.depth().await == 0 && last_progress.contains(" held=0 ") {
            return;
        }
        assert!(Instant::now() < deadline, "the queue did not drain:\n{output}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every message reached the target, and no two requests for one message
/// carried the same `X-Webhook-Attempt`: a repeat after a lost connection
/// says it is one. (An attempt cut off with the connection may never have
/// been recorded, so the numbers can start above 1.)
pub fn assert_each_arrived_with_distinct_attempts(messages: &[TestMessage], seen: &[Seen]) {
    let mut attempts: HashMap<&str, Vec<u32>> = HashMap::new();
    for request in seen {
        attempts
            .entry(request.message_id())
            .or_default()
            .push(request.attempt());
    }
    for message in messages {
        let made = attempts.get(message.id.as_str()).expect("every message arrives");
        let distinct: HashSet<&u32> = made.iter().collect();
        assert_eq!(
            distinct.len(),
            made.len(),
            "attempt numbers of {}: {made:?}",
            message.id
        );
    }
}
