//! The burst benchmark: e-conomic's 100,000 webhooks in one go, through the
//! handler in both host modes, beside the broker's own ceiling (the same
//! client publishing directly), with every message read back and compared.
//!
//! Run it with `scripts/bench` (see docs/benchmarks.md); `--help` lists the knobs.

#![allow(clippy::unwrap_used, missing_docs)]

mod broker;
mod handler;
mod load;
mod report;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use futures_util::stream;

use broker::BenchTopology;
use handler::Handler;
use load::{MakeRequest, Sample};
use report::Phase;

/// Fire bursts of webhooks through the handler and at the broker directly.
#[derive(Parser, Debug)]
struct Options {
    /// Webhooks per burst.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Connections sending at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Runs of (direct, forwarding, payload); medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Connections of the overload run (0 skips it).
    #[arg(long, default_value_t = 2_000)]
    overload_connections: usize,
    /// Requests of the overload run.
    #[arg(long, default_value_t = 20_000)]
    overload_requests: usize,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Direct,
    Forwarding,
    Payload,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct to broker (ceiling)",
            Mode::Forwarding => "handler, forwarding mode",
            Mode::Payload => "handler, payload mode",
        }
    }
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    println!("{}", machine_details().await);
    println!(
        "\nburst: {} webhooks at concurrency {}, {} run(s)\n",
        options.requests, options.concurrency, options.runs
    );
    println!("{}", report::TABLE_HEADER);
    let mut by_mode: HashMap<&str, Vec<(Phase, f64)>> = HashMap::new();
    for run in 1..=options.runs {
        let ceiling = run_phase(Mode::Direct, &options, run).await;
        let ceiling_rate = ceiling.rate();
        println!("{}", report::row(&run.to_string(), &ceiling, ceiling_rate));
        by_mode
            .entry(Mode::Direct.name())
            .or_default()
            .push((ceiling, ceiling_rate));
        for mode in [Mode::Forwarding, Mode::Payload] {
            let phase = run_phase(mode, &options, run).await;
            println!("{}", report::row(&run.to_string(), &phase, ceiling_rate));
            by_mode.entry(mode.name()).or_default().push((phase, ceiling_rate));
        }
    }
    println!();
    println!("{}", report::TABLE_HEADER);
    for mode in [Mode::Direct, Mode::Forwarding, Mode::Payload] {
        println!("{}", report::median_row(&by_mode[mode.name()]));
    }
    if options.overload_connections > 0 {
        overload(&options).await;
    }
}

/// One burst of one mode on a fresh topology, read back and checked.
async fn run_phase(mode: Mode, options: &Options, run: usize) -> Phase {
    let topology = BenchTopology::declare("burst").await;
    let run_id = format!("r{run}-{}", uuid::Uuid::new_v4().simple());
    let client = load::client(options.concurrency);
    let handler = match mode {
        Mode::Direct => None,
        _ => Some(Handler::start(&topology.endpoint(), &[]).await),
    };
    let cpu_before = handler.as_ref().map(Handler::cpu_time);
    let make = request_maker(
        mode,
        &topology,
        handler.as_ref().map(|h| h.base.clone()),
        run_id.clone(),
        options.requests,
    );

    let (samples, elapsed) = load::burst(&client, options.requests, options.concurrency, make).await;

    let mut phase = Phase::from_samples(mode.name(), &samples, elapsed);
    if let (Some(handler), Some(before)) = (&handler, cpu_before) {
        let cpu = handler.cpu_time().saturating_sub(before).as_secs_f64();
        phase.cpu_s_per_1000 = Some(cpu / (options.requests as f64 / 1000.0));
        phase.peak_rss_mib = Some(handler.peak_rss_mib());
        phase.ready_ms = Some(handler.ready_after.as_secs_f64() * 1000.0);
    }
    if let Some(handler) = handler {
        handler.stop().await;
    }
    check_queue(&mut phase, &samples, &topology.drain().await, |index| {
        webhooks::body(&run_id, index)
    });
    topology.delete().await;
    phase
}

/// Builds every request body before the burst starts, so the load
/// generator's own work per request (which shares the two cores with the
/// broker and the handler) is the same small clone in every mode.
fn request_maker(
    mode: Mode,
    topology: &BenchTopology,
    base: Option<String>,
    run_id: String,
    count: usize,
) -> Arc<MakeRequest> {
    let bodies: Vec<Bytes> = (0..count)
        .map(|index| {
            let body = webhooks::body(&run_id, index);
            Bytes::from(match mode {
                Mode::Direct => webhooks::publish_request(&body, index),
                Mode::Forwarding => body,
                Mode::Payload => webhooks::invocation(&body, index),
            })
        })
        .collect();
    match mode {
        Mode::Direct => {
            let endpoint = topology.endpoint();
            Arc::new(move |client: &reqwest::Client, index| {
                client
                    .post(&endpoint)
                    .basic_auth("guest", Some("guest"))
                    .header("content-type", "application/json")
                    .body(bodies[index].clone())
            })
        }
        Mode::Forwarding => {
            let url = format!("{}{}", base.unwrap(), webhooks::forwarding_path());
            Arc::new(move |client: &reqwest::Client, index| {
                client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-azure-functions-invocationid", format!("{run_id}-{index}"))
                    .body(bodies[index].clone())
            })
        }
        Mode::Payload => {
            let url = format!("{}/WebhookForwarder", base.unwrap());
            Arc::new(move |client: &reqwest::Client, index| {
                // The host sends invocations chunked, without Content-Length.
                let chunked =
                    reqwest::Body::wrap_stream(stream::iter([Ok::<_, std::io::Error>(bodies[index].clone())]));
                client
                    .post(&url)
                    .header("content-type", "application/json; charset=utf-8")
                    .header("x-azure-functions-invocationid", format!("{run_id}-{index}"))
                    .body(chunked)
            })
        }
    }
}

/// Compares what reached the queue with what was answered 2xx. In payload
/// mode a 2xx is the status inside the host answer, so every answer is
/// checked by its queued body rather than trusted.
fn check_queue(phase: &mut Phase, samples: &[Sample], queued: &[Vec<u8>], body_of: impl Fn(usize) -> Vec<u8>) {
    let mut on_queue: HashMap<&[u8], usize> = HashMap::new();
    for payload in queued {
        *on_queue.entry(payload.as_slice()).or_default() += 1;
    }
    let mut matched = 0;
    for sample in samples {
        let body = body_of(sample.index);
        let found = on_queue.get(body.as_slice()).copied().unwrap_or(0);
        matched += found;
        if sample.status.is_some_and(|s| (200..300).contains(&s)) && found == 0 {
            phase.lost += 1;
        }
    }
    phase.altered = queued.len() - matched;
    phase.extra = queued.len().saturating_sub(phase.ok + phase.altered);
}

/// Many more connections than publish slots: every request must be answered
/// (2xx, or 503 with Retry-After), none may hang, and memory must stay bounded.
async fn overload(options: &Options) {
    let topology = BenchTopology::declare("overload").await;
    let handler = Handler::start(&topology.endpoint(), &[]).await;
    let client = load::client(options.overload_connections);
    let run_id = format!("overload-{}", uuid::Uuid::new_v4().simple());
    let make = request_maker(
        Mode::Forwarding,
        &topology,
        Some(handler.base.clone()),
        run_id.clone(),
        options.overload_requests,
    );
    let (samples, elapsed) = load::burst(&client, options.overload_requests, options.overload_connections, make).await;
    let mut phase = Phase::from_samples("overload, forwarding mode", &samples, elapsed);
    phase.peak_rss_mib = Some(handler.peak_rss_mib());
    handler.stop().await;
    check_queue(&mut phase, &samples, &topology.drain().await, |index| {
        webhooks::body(&run_id, index)
    });
    topology.delete().await;
    println!(
        "\noverload: {} requests from {} connections\n\n{}",
        options.overload_requests,
        options.overload_connections,
        report::TABLE_HEADER
    );
    println!("{}", report::row("1", &phase, f64::NAN));
    let hung = samples.iter().filter(|s| s.status.is_none()).count();
    println!("\nunanswered (error or 120 s client timeout): {hung}");
}

async fn machine_details() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let rabbitmq = reqwest::Client::new()
        .get("http://127.0.0.1:15672/api/overview")
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .ok();
    let version = match rabbitmq {
        Some(r) => r
            .json::<serde_json::Value>()
            .await
            .map(|v| v["rabbitmq_version"].to_string())
            .unwrap_or_default(),
        None => "unreachable".to_owned(),
    };
    format!("machine: {cores} cores ({cpu}), {memory}; RabbitMQ {version} on loopback")
}
