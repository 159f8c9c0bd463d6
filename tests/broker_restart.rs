//! The broker stops and starts in the middle of a burst, once per transport.
//! Its own test binary: cargo runs test binaries one after another, so no
//! other test of this workspace sees the outage (run it under the shared
//! `flock /tmp/broker-outage.lock`, as the brief says, so that nobody else's
//! does either). Every webhook answered 2xx must be on the queue afterwards,
//! callers should mostly wait out a short outage rather than fail, and the
//! handler recovers by itself.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use test_support::AppSettings;
use test_support::broker::{BrokerOutage, Topology, broker_url_shown, the_one_connection_named};
use test_support::host::Burst;
use test_support::process::Served;

/// The two tests restart the same broker: one at a time.
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CONCURRENCY: usize = 32;

/// Webhooks in the burst: `default` (sized so that the broker stops well
/// inside the burst), or `RESTART_WEBHOOKS` for the long run (`scripts/reliability`).
fn webhooks(default: usize) -> usize {
    std::env::var("RESTART_WEBHOOKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn a_broker_restart_mid_burst_loses_no_acknowledged_webhook_over_http() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let topology = Topology::declare().await;
    let app = Served::start(&topology.settings()).await;

    restart_mid_burst("http", &app, &topology, webhooks(3_000)).await;
}

#[tokio::test]
async fn a_broker_restart_mid_burst_loses_no_acknowledged_webhook_over_amqp_and_it_reconnects() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let topology = Topology::declare().await;
    let site = format!("restart-{}", uuid::Uuid::new_v4().simple());
    let settings: AppSettings = topology
        .amqp_transport_settings()
        .with("WEBSITE_SITE_NAME", site.as_str())
        .with("WEBSITE_INSTANCE_ID", "0");
    let app = Served::start(&settings).await;

    restart_mid_burst("amqp", &app, &topology, webhooks(15_000)).await;

    let output = app.process.output();
    assert!(
        output.contains(&format!("lost the connection to {}", broker_url_shown("guest"))),
        "{output}"
    );
    assert!(
        output.matches("connected to amqp://").count() >= 2,
        "no reconnection:\n{output}"
    );
    // Still exactly one connection, the new one.
    the_one_connection_named(&format!("webhook-forwarder: {site} instance 0")).await;
}

/// Sends `total` webhooks from `CONCURRENCY` senders, restarts the broker
/// once a tenth is answered, and checks what reached the queue.
async fn restart_mid_burst(transport: &str, app: &Served, topology: &Topology, total: usize) {
    let started = Instant::now();
    let burst = Burst::start(app, total, CONCURRENCY, "application/x-www-form-urlencoded", |i| {
        format!("old={i}&new={i}")
    });

    // Stop the broker once the burst is well under way.
    while burst.answered() < total / 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = Instant::now();
    let outage = BrokerOutage::begin().await;
    let answered_at_stop = burst.answered();
    tokio::time::sleep(Duration::from_secs(2)).await;
    outage.end().await;
    let outage = stopped.elapsed();

    let results = burst.finish().await;
    let burst = started.elapsed();
    let ok: Vec<usize> = results.iter().filter(|r| r.status == 200).map(|r| r.index).collect();
    let unavailable = results.iter().filter(|r| r.status == 503).count();
    let slowest = results.iter().map(|r| r.latency).max().unwrap();

    // A publish retried after a lost confirm can be on the queue twice.
    let queued = topology.drain().await;
    let bodies: HashSet<Vec<u8>> = queued.iter().map(|m| m.body.clone()).collect();
    let lost: Vec<usize> = ok
        .iter()
        .copied()
        .filter(|i| !bodies.contains(format!("old={i}&new={i}").as_bytes()))
        .collect();
    println!(
        "broker restart over {transport}: {total} webhooks at concurrency {CONCURRENCY} in {:.1} s; outage {:.1} s \
         (stop_app done at {answered_at_stop} answered); 2xx {}, 503 {}, other {}, queued {}, duplicates {}, lost {}, \
         slowest answer {:.1} s",
        burst.as_secs_f64(),
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
    let failures: BTreeSet<&str> = output
        .lines()
        .filter(|l| l.contains("not queued"))
        .map(|l| l.split_once("not queued: ").map_or(l, |(_, why)| why))
        .map(|why| why.get(..100).unwrap_or(why))
        .collect();
    println!("failure reasons: {failures:#?}");
    // What the handler met while the broker was away (AMQP: the lost
    // connection and the refused reconnections).
    let met: BTreeSet<&str> = output
        .lines()
        .filter(|l| l.contains("lost the connection") || l.contains("could not connect"))
        .filter_map(|l| l.split_once("error=").map(|(_, why)| why))
        .map(|why| why.get(..120).unwrap_or(why))
        .collect();
    println!("connection events: {met:#?}");

    assert!(
        answered_at_stop < total,
        "the burst was over before the broker stopped: raise RESTART_WEBHOOKS"
    );
    assert_eq!(results.len(), total, "every webhook was answered");
    assert!(lost.is_empty(), "answered 200 but not on the queue: {lost:?}");
    assert!(
        ok.len() * 100 >= total * 95,
        "callers should mostly wait out a short outage: only {} of {total} got 200",
        ok.len()
    );
    assert!(
        results.iter().all(|r| r.status == 200 || r.status == 503),
        "failures are 503s the caller retries"
    );

    // The handler recovered by itself: no restart of the handler.
    let after = app
        .forward("/api/WebhookForwarder", "text/plain", b"after the restart")
        .await;
    assert_eq!(after.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"after the restart");
}
