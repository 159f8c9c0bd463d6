//! Benchmark of `handler relay`: messages per second delivered to a local
//! target. Run it through `scripts/bench-relay`, which builds the release
//! binary first.
//!
//! Each run declares a topology of its own on the local broker (the test
//! support's `Topology`: deleted when the run ends), publishes the messages
//! (the forwarder's format, persistent), starts `handler relay` against an
//! in-process target, and times the deliveries from the first request's
//! arrival to the last one's, so start-up and connection set-up are left
//! out. The target only counts (recording every request, as the tests'
//! target does, would slow it down and measure the target instead), and in
//! the ordered phases it checks that each key's messages came in order.
//!
//! Phases, each on the same queue contents, into a target that answers at
//! once and into one that takes 20 ms: unordered, then `--order-by` with
//! 10,000 keys, with 100 keys, and with one hot key carrying 10 % of the
//! messages (the others each a key of its own), and last unordered with
//! `RelaySigningSecret` set (every request signed as Standard Webhooks says;
//! the target checks that every request, and only then, carries a signature). Prints every run, and per
//! phase the median, its ratio to the unordered median of the same target,
//! the relay's peak memory, its CPU time per message (user and system, from
//! /proc: a second view beside the rate, though the load moves it too) and the messages
//! that came out of order. The target does the same work in every phase (it
//! reads each body's key and sequence number), so that only the relay's
//! work differs between them. The
//! runs go round by round (each phase once per round), so that on a busy
//! machine the phases compared ran close together.
//!
//! Usage: relay_bench <handler binary> [messages] [runs] [concurrency] [prefetch]

// A benchmark tool: a panic is a failed run.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::broker::{TestMessage, Topology, amqp_url};
use warp::Filter;

/// The signed phase's secret (a fixed one: only the cost of signing is measured).
const SIGNING_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// One way of relaying the same messages.
struct Phase {
    name: &'static str,
    /// `--order-by`, if ordered; the form field it reads is the key.
    order_by: Option<&'static str>,
    /// Whether `RelaySigningSecret` is set.
    signed: bool,
}

const PHASES: [Phase; 5] = [
    Phase {
        name: "unordered",
        order_by: None,
        signed: false,
    },
    Phase {
        name: "10,000 keys",
        order_by: Some("wide"),
        signed: false,
    },
    Phase {
        name: "100 keys",
        order_by: Some("narrow"),
        signed: false,
    },
    Phase {
        name: "hot key 10 %",
        order_by: Some("hot"),
        signed: false,
    },
    Phase {
        name: "signed",
        order_by: None,
        signed: true,
    },
];

/// What one run measured.
struct Run {
    rate: f64,
    peak_rss_kib: u64,
    cpu_us_per_message: f64,
    out_of_order: usize,
}

/// Arrivals at the target: how many, the first and the last, and per key
/// the last sequence number seen.
#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    signed: AtomicUsize,
    span: Mutex<Option<(Instant, Instant)>>,
    last_seq: Mutex<HashMap<String, usize>>,
    out_of_order: AtomicUsize,
}

/// The messages every phase relays: the same bodies, with a field for each
/// way of keying them.
fn messages(count: usize) -> Vec<TestMessage> {
    (0..count)
        .map(|i| {
            let hot = if i % 10 == 0 { "hot".to_owned() } else { format!("c{i}") };
            TestMessage::post(format!(
                "seq={i}&wide=w{}&narrow=n{}&hot={hot}&old=101&new=102",
                i % 10_000,
                i % 100
            ))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let handler = args
        .get(1)
        .expect("usage: relay_bench <handler binary> [messages] [runs] [concurrency] [prefetch]");
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().unwrap());
    let (count, runs, concurrency) = (arg(2, 20_000), arg(3, 3), arg(4, 64));
    let prefetch = args.get(5).map(|p| p.parse::<usize>().unwrap());
    let shown = prefetch.map_or_else(|| "default".to_owned(), |p| p.to_string());
    println!(
        "relay benchmark: {count} messages per run, {runs} runs per phase, --concurrency {concurrency}, --prefetch {shown}"
    );
    let messages = messages(count);

    // Round by round, every phase once per round: on a busy machine the
    // phases compared then run close together in time.
    let latencies = [Duration::ZERO, Duration::from_millis(20)];
    let mut results: Vec<Vec<Vec<Run>>> = latencies
        .iter()
        .map(|_| PHASES.iter().map(|_| Vec::new()).collect())
        .collect();
    for run in 1..=runs {
        for (l, &latency) in latencies.iter().enumerate() {
            for (p, phase) in PHASES.iter().enumerate() {
                let result = one_run(handler, &messages, phase, latency, concurrency, prefetch).await;
                println!(
                    "target {latency:?}, {}: run {run}: {:.0} messages/s, peak RSS {} MiB, {:.1} µs CPU per message, {} out of order",
                    phase.name,
                    result.rate,
                    result.peak_rss_kib / 1024,
                    result.cpu_us_per_message,
                    result.out_of_order
                );
                results[l][p].push(result);
            }
        }
    }
    let mut summary = Vec::new();
    for (l, latency) in latencies.iter().enumerate() {
        let mut unordered = None;
        let mut unordered_cpu = None;
        for (p, phase) in PHASES.iter().enumerate() {
            let runs = &mut results[l][p];
            runs.sort_by(|a, b| a.cpu_us_per_message.total_cmp(&b.cpu_us_per_message));
            let cpu = runs[runs.len() / 2].cpu_us_per_message;
            let base_cpu = *unordered_cpu.get_or_insert(cpu);
            runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let median = runs[runs.len() / 2].rate;
            let base = *unordered.get_or_insert(median);
            let peak = runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
            let disorder: usize = runs.iter().map(|r| r.out_of_order).sum();
            summary.push(format!(
                "| {latency:?} | {} | {median:.0} | {:.2} | {cpu:.1} | {:.2} | {} | {disorder} |",
                phase.name,
                median / base,
                cpu / base_cpu,
                peak / 1024
            ));
        }
    }
    println!(
        "| target | phase | median messages/s | of unordered | median relay CPU µs/message | of unordered | peak RSS MiB | out of order |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for line in summary {
        println!("{line}");
    }
}

async fn one_run(
    handler: &str,
    messages: &[TestMessage],
    phase: &Phase,
    latency: Duration,
    concurrency: usize,
    prefetch: Option<usize>,
) -> Run {
    let topology = Topology::with_dead_letter().await;
    topology.publish(messages).await;

    let arrivals = Arc::new(Arrivals::default());
    let seen = arrivals.clone();
    // Unordered phases read the 10,000-key field, only to do the same work.
    let key_field = phase.order_by.unwrap_or("wide");
    let ordered = phase.order_by.is_some();
    let target = warp::header::optional::<String>("webhook-signature")
        .and(warp::body::bytes())
        .then(move |signature: Option<String>, body: bytes::Bytes| {
            let seen = seen.clone();
            async move {
                if signature.is_some() {
                    seen.signed.fetch_add(1, Ordering::Relaxed);
                }
                check_order(&seen, &body, key_field, ordered);
                tokio::time::sleep(latency).await;
                let now = Instant::now();
                {
                    let mut span = seen.span.lock().unwrap();
                    *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
                }
                seen.count.fetch_add(1, Ordering::Relaxed);
                warp::reply()
            }
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
    if let Some(field) = phase.order_by {
        relay_args.extend(["--order-by".to_owned(), format!("{{form.{field}}}")]);
    }
    if let Some(prefetch) = prefetch {
        relay_args.extend(["--prefetch".to_owned(), prefetch.to_string()]);
    }
    let mut relay = tokio::process::Command::new(handler);
    if phase.signed {
        relay.env("RelaySigningSecret", SIGNING_SECRET);
    }
    let mut relay = relay
        .args(&relay_args)
        .env("AmqpUrl", amqp_url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals.count.load(Ordering::Relaxed) < messages.len() {
        assert!(
            Instant::now() < deadline,
            "the relay did not deliver everything in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (first, last) = arrivals.span.lock().unwrap().unwrap();
    // The phase measures what it says: every request signed, or none.
    let signed = arrivals.signed.load(Ordering::Relaxed);
    assert_eq!(signed, if phase.signed { messages.len() } else { 0 });

    let pid = relay.id().unwrap().to_string();
    let peak_rss_kib = peak_rss_kib(&pid);
    let cpu_us_per_message = cpu_seconds(&pid) * 1e6 / messages.len() as f64;
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    relay.wait().await.unwrap();
    server.abort();
    Run {
        rate: (messages.len() - 1) as f64 / (last - first).as_secs_f64(),
        peak_rss_kib,
        cpu_us_per_message,
        out_of_order: arrivals.out_of_order.load(Ordering::Relaxed),
    }
}

/// Counts a message that arrived before an earlier one of its key (when
/// `ordered`: unordered phases only do the same work).
fn check_order(arrivals: &Arrivals, body: &[u8], field: &str, ordered: bool) {
    let mut key = None;
    let mut seq = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        if name == field {
            key = Some(value.into_owned());
        } else if name == "seq" {
            seq = value.parse::<usize>().ok();
        }
    }
    let (Some(key), Some(seq)) = (key, seq) else { return };
    let mut last = arrivals.last_seq.lock().unwrap();
    match last.insert(key, seq) {
        Some(before) if ordered && before > seq => {
            arrivals.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// The process's CPU time so far, user and system, in seconds (the 14th and
/// 15th fields of /proc/PID/stat, in clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // After the name: field 3 is at index 0, so utime (14) is at 11, stime at 12.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The process's peak resident memory so far (VmHWM), in KiB.
fn peak_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
