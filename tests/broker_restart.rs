//! The broker stops and starts in the middle of a burst. Its own test binary:
//! cargo runs test binaries one after another, so no other test sees the
//! outage. Every webhook answered 2xx must be on the queue afterwards, and
//! callers should mostly wait out a short outage rather than fail.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use test_support::broker::{BrokerOutage, Topology};
use test_support::process::Served;

/// Webhooks in the burst; `RESTART_WEBHOOKS` raises it for the long run
/// (`scripts/reliability`).
fn webhooks() -> usize {
    std::env::var("RESTART_WEBHOOKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}
const CONCURRENCY: usize = 32;

#[tokio::test]
async fn a_broker_restart_mid_burst_loses_no_acknowledged_webhook() {
    let total = webhooks();
    let topology = Topology::declare().await;
    let app = Arc::new(Served::start(&topology.settings()).await);
    let answered = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));

    let senders: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (app, answered, next) = (app.clone(), answered.clone(), next.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        return results;
                    }
                    let started = Instant::now();
                    let body = format!("old={index}&new={index}");
                    let status = app
                        .forward(
                            "/api/WebhookForwarder",
                            "application/x-www-form-urlencoded",
                            body.as_bytes(),
                        )
                        .await
                        .status();
                    results.push((index, status.as_u16(), started.elapsed()));
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Stop the broker once the burst is well under way.
    while answered.load(Ordering::Relaxed) < total / 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = Instant::now();
    let outage = BrokerOutage::begin().await;
    let answered_at_stop = answered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    outage.end().await;
    let outage = stopped.elapsed();

    let mut results = Vec::new();
    for sender in senders {
        results.extend(sender.await.unwrap());
    }
    let ok: Vec<usize> = results
        .iter()
        .filter(|(_, s, _)| *s == 200)
        .map(|(i, _, _)| *i)
        .collect();
    let unavailable = results.iter().filter(|(_, s, _)| *s == 503).count();
    let slowest = results.iter().map(|(_, _, t)| *t).max().unwrap();

    let mut queued = topology.take(ok.len()).await;
    // A publish retried after a lost confirm can be on the queue twice.
    queued.extend(topology.take_all().await);
    let bodies: std::collections::HashSet<Vec<u8>> = queued.iter().map(|m| m.body.clone()).collect();
    let lost: Vec<usize> = ok
        .iter()
        .copied()
        .filter(|i| !bodies.contains(format!("old={i}&new={i}").as_bytes()))
        .collect();
    println!(
        "broker restart: {total} webhooks at concurrency {CONCURRENCY}; outage {:.1} s (stop_app at {answered_at_stop} answered); \
         2xx {}, 503 {}, other {}, queued {}, duplicates {}, lost {}, slowest answer {:.1} s",
        outage.as_secs_f64(),
        ok.len(),
        unavailable,
        results.len() - ok.len() - unavailable,
        queued.len(),
        queued.len() - bodies.len(),
        lost.len(),
        slowest.as_secs_f64()
    );

    let output = app.process.output();
    let failures: std::collections::BTreeSet<&str> = output
        .lines()
        .filter(|l| l.contains("not queued"))
        .map(|l| l.split_once("not queued: ").map_or(l, |(_, why)| why))
        .map(|why| why.get(..100).unwrap_or(why))
        .collect();
    println!("failure reasons: {failures:#?}");
    assert_eq!(results.len(), total, "every webhook was answered");
    assert!(lost.is_empty(), "answered 200 but not on the queue: {lost:?}");
    assert!(
        ok.len() * 100 >= total * 95,
        "callers should mostly wait out a short outage: only {} of {total} got 200",
        ok.len()
    );
    assert!(
        results.iter().all(|(_, s, _)| *s == 200 || *s == 503),
        "failures are 503s the caller retries"
    );

    // The handler recovered by itself: no restart of the handler.
    let after = app
        .forward("/api/WebhookForwarder", "text/plain", b"after the restart")
        .await;
    assert_eq!(after.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"after the restart");
}
