//! The burst benchmark: e-conomic's 100,000 webhooks in one go, through the
//! forwarder over each transport (HTTP publish endpoint, AMQP with publisher
//! confirms) and in each host mode, beside the two ceilings measured in the
//! same run with the same bodies and concurrency: the load generator
//! publishing the same messages straight to the HTTP publish endpoint, and
//! straight over AMQP with confirms; and that AMQP publisher behind a bare
//! HTTP server, sent the forwarder's requests: the floor of any forwarder
//! fed over HTTP ([`behind_http`]); and the forwarder over AMQP rendering a
//! routing-key template per webhook, against the fixed key in the same run.
//! Every message is read back and compared, its routing key too.
//!
//! Run it with `scripts/bench` (see docs/benchmarks.md); `--help` lists the
//! knobs. The handler, the broker topology and the readback are the test
//! support's (`tests/support`), as in every test.

#![allow(clippy::unwrap_used, missing_docs)]

mod behind_http;
mod direct;
mod forwarder;
mod http1;
mod load;
mod report;
mod usage;
mod webhooks;

use std::collections::HashMap;

use clap::{Parser, ValueEnum};
use serde_json::json;
use test_support::broker::{QueuedMessage, Topology, api_get};
use webhook_forwarder::settings::broker::DEFAULT_ROUTING_KEY;

use behind_http::BehindHttp;
use direct::{AmqpPublisher, Channels};
use forwarder::{HostMode, Transport};
use load::Sample;
use report::{Ceilings, Medians, Phase, TABLE_HEADER};

/// Fire bursts of webhooks through the forwarder over each transport, and at
/// the broker directly over each, with the same bodies and concurrency.
#[derive(Parser, Debug)]
struct Options {
    /// Webhooks per burst.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Webhooks in flight at once (HTTP connections, or AMQP publishes awaiting their confirm).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Runs of every phase; the medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Phases of each run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = PhaseKind::all())]
    phases: Vec<PhaseKind>,
    /// Connections of the overload runs (one per transport; 0 skips them).
    #[arg(long, default_value_t = 2_000)]
    overload_connections: usize,
    /// Requests of each overload run.
    #[arg(long, default_value_t = 20_000)]
    overload_requests: usize,
    /// Declare each burst's queue as a quorum queue instead of a classic one
    /// (scripts/bench-cluster passes it for its runs on the cluster).
    #[arg(long)]
    quorum: bool,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One phase of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
enum PhaseKind {
    /// The load generator POSTs each message to the HTTP publish endpoint.
    DirectHttp,
    /// The load generator publishes each message over AMQP with confirms, on one channel.
    DirectAmqp,
    /// That publisher behind a bare HTTP server, sent the forwarder's requests: the floor of any forwarder fed over HTTP.
    DirectAmqpBehindHttp,
    /// The direct AMQP publisher on a channel per publish in flight (the forwarder's way two versions ago).
    DirectAmqpPerPublish,
    /// The forwarder over HTTP, sent the caller's requests.
    HttpForwarding,
    /// The forwarder over HTTP, sent the host's invocations.
    HttpPayload,
    /// The forwarder over AMQP, sent the caller's requests.
    AmqpForwarding,
    /// The same with AmqpRoutingKey=webhook.{query.type} (rendered per webhook, routed by a binding webhook.product).
    AmqpForwardingTemplateKey,
    /// The forwarder over AMQP, sent the host's invocations.
    AmqpPayload,
}

impl PhaseKind {
    fn all() -> Vec<Self> {
        Self::value_variants().to_vec()
    }

    fn name(self) -> &'static str {
        match self {
            Self::DirectHttp => "direct HTTP publish (ceiling)",
            Self::DirectAmqp => "direct AMQP publisher, 1 channel",
            Self::DirectAmqpBehindHttp => "direct AMQP publisher behind bare HTTP (floor)",
            Self::DirectAmqpPerPublish => "direct AMQP publisher, channel per publish",
            Self::HttpForwarding => "forwarder over HTTP, forwarding mode",
            Self::HttpPayload => "forwarder over HTTP, payload mode",
            Self::AmqpForwarding => "forwarder over AMQP, forwarding mode",
            Self::AmqpForwardingTemplateKey => "forwarder over AMQP, forwarding mode, template routing key",
            Self::AmqpPayload => "forwarder over AMQP, payload mode",
        }
    }

    /// The forwarder's transport and host mode, for forwarder phases.
    fn forwarder(self) -> Option<(Transport, HostMode)> {
        match self {
            Self::HttpForwarding => Some((Transport::Http, HostMode::Forwarding)),
            Self::HttpPayload => Some((Transport::Http, HostMode::Payload)),
            Self::AmqpForwarding | Self::AmqpForwardingTemplateKey => Some((Transport::Amqp, HostMode::Forwarding)),
            Self::AmqpPayload => Some((Transport::Amqp, HostMode::Payload)),
            Self::DirectHttp | Self::DirectAmqp | Self::DirectAmqpBehindHttp | Self::DirectAmqpPerPublish => None,
        }
    }

    /// The routing key the phase's messages carry, and the `AmqpRoutingKey`
    /// the forwarder is given for it (`None`: its default, the fixed key).
    fn routing_key(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::AmqpForwardingTemplateKey => (webhooks::TEMPLATE_KEY, Some(webhooks::ROUTING_KEY_TEMPLATE)),
            _ => (DEFAULT_ROUTING_KEY, None),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(behind_http::SERVE_FLAG) {
        let (exchange, routing_key) = (args.next().unwrap(), args.next().unwrap());
        return behind_http::serve(exchange, routing_key);
    }
    // One thread: the load generator stands in for e-conomic and the
    // Functions host, which run on other machines in Azure; here it shares
    // the two cores with the broker and the handler, so it keeps its own
    // switching to a minimum (a multi-threaded runtime switched threads two
    // to three times as often; the direct publisher measured alike on
    // either, within the noise).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(bench(Options::parse()));
}

async fn bench(options: Options) {
    println!("# Burst benchmark\n");
    println!("{}", machine_details().await);
    let (one, five, fifteen) = report::load_average();
    println!(
        "load average at the start: {one:.2} {five:.2} {fifteen:.2} (other work on this machine slows every figure; the ratios within one run are the fairest comparison)"
    );
    let phases: Vec<String> = options
        .phases
        .iter()
        .map(|p| {
            p.to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_owned())
        })
        .collect();
    println!(
        "command: scripts/bench --requests {} --concurrency {} --runs {} --phases {} --overload-connections {} --overload-requests {}{}",
        options.requests,
        options.concurrency,
        options.runs,
        phases.join(","),
        options.overload_connections,
        options.overload_requests,
        if options.quorum { " --quorum" } else { "" }
    );
    println!(
        "\n## {} webhooks per burst, {} in flight, {} run(s)\n\n{TABLE_HEADER}",
        options.requests, options.concurrency, options.runs
    );
    let mut by_kind: HashMap<PhaseKind, Vec<(Phase, Ceilings)>> = HashMap::new();
    let mut template_to_fixed = Vec::new();
    for run in 1..=options.runs {
        let mut measured = Vec::new();
        for &kind in &options.phases {
            // Progress on stderr; the tables (stdout) come when the run is complete.
            eprintln!("run {run}/{}: {} ...", options.runs, kind.name());
            measured.push((kind, run_phase(kind, &options, run).await));
        }
        let rate_of = |wanted: PhaseKind| {
            measured
                .iter()
                .find(|(kind, _)| *kind == wanted)
                .map_or(f64::NAN, |(_, p)| p.rate())
        };
        let ceilings = Ceilings {
            http: rate_of(PhaseKind::DirectHttp),
            amqp: rate_of(PhaseKind::DirectAmqp),
        };
        template_to_fixed.push(rate_of(PhaseKind::AmqpForwardingTemplateKey) / rate_of(PhaseKind::AmqpForwarding));
        for (kind, phase) in measured {
            println!("{}", report::row(&run.to_string(), &phase, ceilings));
            by_kind.entry(kind).or_default().push((phase, ceilings));
        }
    }
    println!("\n## Medians\n\n{TABLE_HEADER}");
    let medians: HashMap<PhaseKind, Medians> = options
        .phases
        .iter()
        .map(|kind| (*kind, Medians::of(&by_kind[kind])))
        .collect();
    for kind in &options.phases {
        println!("{}", medians[kind].row());
    }
    print_targets(&options, &medians, &template_to_fixed);
    if options.overload_connections > 0 {
        for transport in [Transport::Http, Transport::Amqp] {
            overload(&options, transport).await;
        }
    }
    let (one, five, fifteen) = report::load_average();
    println!("\nload average at the end: {one:.2} {five:.2} {fifteen:.2}");
}

/// One burst of one phase on a fresh topology, read back and checked.
async fn run_phase(kind: PhaseKind, options: &Options, run: usize) -> Phase {
    // x-expires: an interrupted run's queue (and its messages) goes away within the hour.
    let mut arguments = json!({ "x-expires": 3_600_000 });
    if options.quorum {
        arguments["x-queue-type"] = json!("quorum");
    }
    let topology = Topology::declare_with_queue_arguments(arguments).await;
    let (routing_key, template) = kind.routing_key();
    if routing_key != topology.routing_key {
        topology.bind_key(routing_key).await;
    }
    let run_id = format!("r{run}-{}", uuid::Uuid::new_v4().simple());
    let (count, concurrency) = (options.requests, options.concurrency);
    let mut phase = match kind.forwarder() {
        None => {
            let (samples, elapsed, spent) = match kind {
                PhaseKind::DirectHttp => {
                    let send = direct::http(&topology, concurrency, &run_id, count);
                    measured_burst(count, concurrency, send, None).await
                }
                PhaseKind::DirectAmqpBehindHttp => {
                    let server = BehindHttp::start(&topology).await;
                    let authority = server.addr.to_string();
                    let send = forwarder::requests(HostMode::Forwarding, &authority, concurrency, &run_id, count);
                    let burst = measured_burst(count, concurrency, send, Some(server.pid())).await;
                    server.stop().await;
                    burst
                }
                _ => {
                    let channels = if kind == PhaseKind::DirectAmqp {
                        Channels::One
                    } else {
                        Channels::PerPublish
                    };
                    let publisher = AmqpPublisher::start(&topology, &run_id, count, concurrency, channels).await;
                    let burst = measured_burst(count, concurrency, publisher.send.clone(), None).await;
                    publisher.close().await;
                    burst
                }
            };
            let mut phase = checked(kind.name(), &samples, elapsed, &topology, &run_id, routing_key).await;
            phase.spent = spent;
            phase
        }
        Some((transport, mode)) => {
            let mut served = forwarder::start(&topology, transport, template).await;
            let send = forwarder::requests(mode, &served.addr.to_string(), concurrency, &run_id, count);
            let handler = Some(served.process.pid());
            let (samples, elapsed, spent) = measured_burst(count, concurrency, send, handler).await;
            let peak_rss_mib = served.process.peak_rss_kib() as f64 / 1024.0;
            served.process.stop().await;
            let mut phase = checked(kind.name(), &samples, elapsed, &topology, &run_id, routing_key).await;
            phase.spent = spent;
            phase.peak_rss_mib = Some(peak_rss_mib);
            phase.ready_ms = Some(served.ready_after.as_secs_f64() * 1000.0);
            phase
        }
    };
    phase.name = kind.name().to_owned();
    phase
}

/// The burst, and what the broker, the handler (`handler`'s pid, if one
/// runs) and the load generator spent during it.
async fn measured_burst(
    count: usize,
    concurrency: usize,
    send: std::sync::Arc<load::Send>,
    handler: Option<u32>,
) -> (Vec<Sample>, std::time::Duration, usage::Spent) {
    let before = usage::Reading::now(handler);
    let (samples, elapsed) = load::burst(count, concurrency, send).await;
    (samples, elapsed, before.spent_until_now(count))
}

/// The phase's figures, with what reached the queue compared to what was
/// answered 2xx. In payload mode a 2xx is the status inside the host
/// answer, so every answer is checked by its queued body rather than trusted.
/// A message that reached the queue with another key than `routing_key`
/// counts as altered.
async fn checked(
    name: &str,
    samples: &[Sample],
    elapsed: std::time::Duration,
    topology: &Topology,
    run: &str,
    routing_key: &str,
) -> Phase {
    let mut phase = Phase::from_samples(name, samples, elapsed);
    let queued = topology.drain().await;
    check_queue(&mut phase, samples, &queued, routing_key, |index| {
        webhooks::body(run, index)
    });
    phase
}

fn check_queue(
    phase: &mut Phase,
    samples: &[Sample],
    queued: &[QueuedMessage],
    routing_key: &str,
    body_of: impl Fn(usize) -> Vec<u8>,
) {
    let mut on_queue: HashMap<&[u8], usize> = HashMap::new();
    for message in queued.iter().filter(|m| m.routing_key == routing_key) {
        *on_queue.entry(message.body.as_slice()).or_default() += 1;
    }
    let mut matched = 0;
    for sample in samples {
        let body = body_of(sample.index);
        let found = on_queue.get(body.as_slice()).copied().unwrap_or(0);
        matched += found;
        if sample.answer.status.is_some_and(|s| (200..300).contains(&s)) && found == 0 {
            phase.lost += 1;
        }
    }
    phase.altered = queued.len() - matched;
    phase.extra = queued.len().saturating_sub(phase.ok + phase.altered);
}

/// The targets, checked against the medians (the template key's
/// against each run's own fixed-key phase: `template_to_fixed`).
fn print_targets(options: &Options, medians: &HashMap<PhaseKind, Medians>, template_to_fixed: &[f64]) {
    let figure = |kind: PhaseKind, f: &dyn Fn(&Medians) -> f64| medians.get(&kind).map_or(f64::NAN, f);
    println!("\n## Targets (medians; the ratios are per run, against the same run's ceilings)\n");
    for kind in [PhaseKind::AmqpForwarding, PhaseKind::AmqpPayload] {
        let (to_http, to_amqp) = (figure(kind, &|m| m.to_http), figure(kind, &|m| m.to_amqp));
        println!(
            "- {}: {to_http:.2} × the direct HTTP ceiling (target at least 5): {}; {to_amqp:.2} × the direct AMQP publisher (target at least 0.8): {}",
            kind.name(),
            report::verdict(to_http, 5.0),
            report::verdict(to_amqp, 0.8)
        );
    }
    let floor = figure(PhaseKind::DirectAmqpBehindHttp, &|m| m.to_amqp);
    if !floor.is_nan() {
        let forwarding = figure(PhaseKind::AmqpForwarding, &|m| m.to_amqp);
        println!(
            "- {}: {floor:.2} × the direct AMQP publisher: what receiving each webhook over HTTP costs here, before any forwarder work; the forwarder over AMQP (forwarding mode) reaches {:.2} of that (ratio of the medians)",
            PhaseKind::DirectAmqpBehindHttp.name(),
            forwarding / floor
        );
    }
    let ratio = report::median(template_to_fixed.to_vec());
    if !ratio.is_nan() {
        let runs: Vec<String> = template_to_fixed.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "- {}: {ratio:.3} × the fixed key in the same run (median of the runs' ratios {}; target at least 0.95): {}",
            PhaseKind::AmqpForwardingTemplateKey.name(),
            runs.join(", "),
            report::verdict(ratio, 0.95)
        );
    }
    let lost: usize = medians.values().map(|m| m.lost).sum();
    println!(
        "- lost (answered 2xx, not on the queue) over every phase and run: {lost} (target 0): {}",
        if lost == 0 { "MET" } else { "NOT MET" }
    );
    for kind in [
        PhaseKind::HttpForwarding,
        PhaseKind::HttpPayload,
        PhaseKind::AmqpForwarding,
        PhaseKind::AmqpForwardingTemplateKey,
        PhaseKind::AmqpPayload,
    ] {
        let (burst_s, rate) = (figure(kind, &|m| m.burst_s), figure(kind, &|m| m.rate));
        if !burst_s.is_nan() {
            println!(
                "- the {}-webhook burst, {}: {burst_s:.1} s ({rate:.0} webhooks/s, median of {})",
                options.requests,
                kind.name(),
                medians[&kind].runs
            );
        }
    }
}

/// Many more connections than publish slots: every request must be answered
/// (2xx, or 503 with Retry-After), none may hang, and memory must stay bounded.
async fn overload(options: &Options, transport: Transport) {
    let mut arguments = json!({ "x-expires": 3_600_000 });
    if options.quorum {
        arguments["x-queue-type"] = json!("quorum");
    }
    let topology = Topology::declare_with_queue_arguments(arguments).await;
    let mut served = forwarder::start(&topology, transport, None).await;
    let run_id = format!("overload-{}", uuid::Uuid::new_v4().simple());
    let count = options.overload_requests;
    let authority = served.addr.to_string();
    let send = forwarder::requests(
        HostMode::Forwarding,
        &authority,
        options.overload_connections,
        &run_id,
        count,
    );
    let handler = Some(served.process.pid());
    let (samples, elapsed, spent) = measured_burst(count, options.overload_connections, send, handler).await;
    let (name, over) = match transport {
        Transport::Http => ("overload, forwarder over HTTP", "HTTP"),
        Transport::Amqp => ("overload, forwarder over AMQP", "AMQP"),
    };
    let peak_rss_mib = served.process.peak_rss_kib() as f64 / 1024.0;
    served.process.stop().await;
    let mut phase = checked(name, &samples, elapsed, &topology, &run_id, DEFAULT_ROUTING_KEY).await;
    phase.peak_rss_mib = Some(peak_rss_mib);
    phase.spent = spent;
    let hung = samples.iter().filter(|s| s.answer.status.is_none()).count();
    println!(
        "\n## Overload, forwarder over {over}: {count} requests from {} connections at once (PublishConcurrency 64, PublishSlotWait 5 s)\n\n{TABLE_HEADER}",
        options.overload_connections
    );
    let none = Ceilings {
        http: f64::NAN,
        amqp: f64::NAN,
    };
    println!("{}", report::row("1", &phase, none));
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
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let (_, overview) = api_get("overview").await;
    format!(
        "machine: {cores} cores ({cpu}), {memory}; RabbitMQ {} on loopback, sharing the cores with the handler and the load generator",
        overview["rabbitmq_version"].as_str().unwrap_or("unknown")
    )
}
