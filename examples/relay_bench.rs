//! Benchmark of `handler relay`: messages per second delivered to a fast local
//! target. Run it through `scripts/bench-relay`, which builds the release
//! binary first.
//!
//! Each run declares a topology of its own on the local broker (the test
//! support's `Topology`: deleted when the run ends), publishes the messages
//! (`TestMessage`, the forwarder's format, persistent), starts `handler
//! relay` against an in-process target that answers 200 at once, and times
//! the deliveries from the first request's arrival to the last one's, so
//! start-up and connection set-up are left out. Prints every run and the
//! median. The target only counts: recording every request (as the tests'
//! target does) would slow it down and measure the target instead.
//!
//! The signed phase: each run is followed by one with `RelaySigningSecret`
//! set (every request signed as Standard Webhooks says), so both see the
//! same machine; it prints its median and its share of the unsigned one.
//!
//! Usage: relay_bench <handler binary> [messages] [runs] [concurrency] [prefetch]

// A benchmark tool: a panic is a failed run.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::broker::{TestMessage, Topology, amqp_url};
use warp::Filter;

/// The signed phase's secret (a fixed one: only the cost of signing is measured).
const SIGNING_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Arrivals at the target: how many (and how many signed), the first and the last.
#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    signed: AtomicUsize,
    span: Mutex<Option<(Instant, Instant)>>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let handler = args
        .get(1)
        .expect("usage: relay_bench <handler binary> [messages] [runs] [concurrency] [prefetch]");
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().unwrap());
    let (messages, runs, concurrency) = (arg(2, 20_000), arg(3, 5), arg(4, 64));
    let prefetch = args.get(5).map(|p| p.parse::<usize>().unwrap());
    let shown = prefetch.map_or_else(|| "default".to_owned(), |p| p.to_string());
    println!(
        "relay benchmark: {messages} messages per run, {runs} runs, --concurrency {concurrency}, --prefetch {shown}"
    );

    let mut rates = Vec::new();
    let mut signed = Vec::new();
    for run in 1..=runs {
        let rate = one_run(handler, messages, concurrency, prefetch, &[]).await;
        println!("run {run}: {rate:.0} messages/s");
        rates.push(rate);
        let signing = [("RelaySigningSecret", SIGNING_SECRET)];
        let rate = one_run(handler, messages, concurrency, prefetch, &signing).await;
        println!("run {run}, signed: {rate:.0} messages/s");
        signed.push(rate);
    }
    let unsigned = median(&mut rates);
    println!("median: {unsigned:.0} messages/s");
    let signed = median(&mut signed);
    println!(
        "signed median: {signed:.0} messages/s, {:.3} of unsigned (target: at least 0.95)",
        signed / unsigned
    );
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// One run: `messages` relayed by a relay with `settings` in its environment
/// besides `AmqpUrl`; the delivery rate in messages per second.
async fn one_run(
    handler: &str,
    messages: usize,
    concurrency: usize,
    prefetch: Option<usize>,
    settings: &[(&str, &str)],
) -> f64 {
    let topology = Topology::with_dead_letter().await;
    topology.publish(&TestMessage::many(messages, "bench")).await;

    let arrivals = Arc::new(Arrivals::default());
    let seen = arrivals.clone();
    let target = warp::header::optional::<String>("webhook-signature")
        .and(warp::body::bytes())
        .map(move |signature: Option<String>, _body: bytes::Bytes| {
            if signature.is_some() {
                seen.signed.fetch_add(1, Ordering::Relaxed);
            }
            let now = Instant::now();
            let mut span = seen.span.lock().unwrap();
            *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
            seen.count.fetch_add(1, Ordering::Relaxed);
            warp::reply()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = format!("http://{}/hook.php", listener.local_addr().unwrap());
    let server = tokio::spawn(warp::serve(target).incoming(listener).run());

    let mut relay_args = vec![
        "relay".to_owned(),
        "--queue".to_owned(),
        topology.queue.clone(),
        "--to".to_owned(),
        to,
        "--concurrency".to_owned(),
        concurrency.to_string(),
    ];
    if let Some(prefetch) = prefetch {
        relay_args.extend(["--prefetch".to_owned(), prefetch.to_string()]);
    }
    let mut relay = tokio::process::Command::new(handler)
        .args(&relay_args)
        .env("AmqpUrl", amqp_url())
        .envs(settings.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals.count.load(Ordering::Relaxed) < messages {
        assert!(
            Instant::now() < deadline,
            "the relay did not deliver everything in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (first, last) = arrivals.span.lock().unwrap().unwrap();
    // The phase measures what it says: every request signed, or none.
    let signing = settings.iter().any(|(name, _)| *name == "RelaySigningSecret");
    let signed = arrivals.signed.load(Ordering::Relaxed);
    assert_eq!(
        signed,
        if signing {
            arrivals.count.load(Ordering::Relaxed)
        } else {
            0
        }
    );

    let pid = relay.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    relay.wait().await.unwrap();
    server.abort();
    (messages - 1) as f64 / (last - first).as_secs_f64()
}
