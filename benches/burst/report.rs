//! Figures of one phase, medians across runs, the markdown tables, and the
//! issue's targets checked against the medians.

use std::time::Duration;

use crate::load::Sample;
use crate::usage::{PerThousand, Spent};

/// What one phase of a run measured.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Which phase.
    pub name: String,
    /// Webhooks sent.
    pub requests: usize,
    /// Answers 2xx (payload mode: the caller's status inside the host answer).
    pub ok: usize,
    /// Answers 503 with `Retry-After`.
    pub rejected: usize,
    /// Other statuses, errors, timeouts.
    pub failed: usize,
    /// Wall-clock time of the burst, first send to last answer.
    pub elapsed: Duration,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest answer, ms.
    pub max_ms: f64,
    /// 2xx answers whose message is not on the queue.
    pub lost: usize,
    /// Messages on the queue beyond one per 2xx answer (duplicates, or published but not confirmed in time).
    pub extra: usize,
    /// Messages whose body matches nothing that was sent.
    pub altered: usize,
    /// Handler's peak RSS, MiB (forwarder phases).
    pub peak_rss_mib: Option<f64>,
    /// CPU seconds and context switches per 1,000 webhooks of the broker,
    /// the handler (forwarder phases) and the load generator, during the burst.
    pub spent: Spent,
    /// Handler start to first answered `GET /`, ms (forwarder phases).
    pub ready_ms: Option<f64>,
    /// The machine's 1-minute load average when the burst ended.
    pub load: f64,
}

impl Phase {
    /// Counts and latency figures from the samples.
    pub fn from_samples(name: &str, samples: &[Sample], elapsed: Duration) -> Self {
        let mut latencies: Vec<f64> = samples.iter().map(|s| s.latency.as_secs_f64() * 1000.0).collect();
        latencies.sort_by(f64::total_cmp);
        let ok = samples
            .iter()
            .filter(|s| s.answer.status.is_some_and(|c| (200..300).contains(&c)))
            .count();
        let rejected = samples
            .iter()
            .filter(|s| s.answer.status == Some(503) && s.answer.retry_after)
            .count();
        Self {
            name: name.to_owned(),
            requests: samples.len(),
            ok,
            rejected,
            failed: samples.len() - ok - rejected,
            elapsed,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(f64::NAN),
            load: load_average().0,
            ..Self::default()
        }
    }

    /// 2xx answers per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// The same run's two ceilings, which ratios are taken against (NaN when
/// that phase did not run).
#[derive(Debug, Clone, Copy)]
pub struct Ceilings {
    /// The direct HTTP publish rate.
    pub http: f64,
    /// The direct AMQP publisher's rate (one channel).
    pub amqp: f64,
}

/// The 1-, 5- and 15-minute load averages, as `uptime` shows them.
pub fn load_average() -> (f64, f64, f64) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(f64::NAN));
    let mut next = || fields.next().unwrap_or(f64::NAN);
    (next(), next(), next())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The median of `values` (NaN when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Header of the tables.
pub const TABLE_HEADER: &str = "| run | phase | requests | 2xx | 503+Retry-After | other | lost | extra | altered | webhooks/s | × direct HTTP | × direct AMQP | p50 ms | p99 ms | max ms | burst s | peak RSS MiB | CPU s / 1,000: broker | handler | load gen | switches / webhook: broker | handler | load gen | ready ms | load 1 min |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// One row of the per-phase table.
pub fn row(run: &str, phase: &Phase, ceilings: Ceilings) -> String {
    format!(
        "| {run} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {:.2} |",
        phase.name,
        phase.requests,
        phase.ok,
        phase.rejected,
        phase.failed,
        phase.lost,
        phase.extra,
        phase.altered,
        phase.rate(),
        phase.rate() / ceilings.http,
        phase.rate() / ceilings.amqp,
        phase.p50_ms,
        phase.p99_ms,
        phase.max_ms,
        phase.elapsed.as_secs_f64(),
        opt(phase.peak_rss_mib, 1),
        spent_cells(&[phase.spent]),
        opt(phase.ready_ms, 1),
        phase.load,
    )
}

/// The six usage cells (CPU, then switches, of broker, handler and load
/// generator), as medians over `spent`.
fn spent_cells(spent: &[Spent]) -> String {
    let median_of = |who: usize, figure: fn(PerThousand) -> f64| {
        let values: Vec<f64> = spent.iter().filter_map(|s| s.by_process()[who]).map(figure).collect();
        (!values.is_empty()).then(|| median(values))
    };
    let cpu = (0..3).map(|who| opt(median_of(who, |p| p.cpu_s), 3));
    let switches = (0..3).map(|who| opt(median_of(who, |p| p.switches / 1000.0), 2));
    cpu.chain(switches).collect::<Vec<_>>().join(" | ")
}

/// The medians of one phase over the runs; each run's ratios are taken
/// against that run's own ceilings; lost, extra and altered are summed.
#[derive(Debug, Clone)]
pub struct Medians {
    /// How many runs.
    pub runs: usize,
    /// Median 2xx per second.
    pub rate: f64,
    /// Median ratio to the direct HTTP ceiling.
    pub to_http: f64,
    /// Median ratio to the direct AMQP publisher.
    pub to_amqp: f64,
    /// Median burst time, s.
    pub burst_s: f64,
    /// Lost over all runs.
    pub lost: usize,
    row: String,
}

impl Medians {
    /// The medians of `phases`, each with its run's ceilings.
    pub fn of(phases: &[(Phase, Ceilings)]) -> Self {
        let pick = |f: &dyn Fn(&Phase) -> f64| median(phases.iter().map(|(p, _)| f(p)).collect());
        let pick_opt = |f: &dyn Fn(&Phase) -> Option<f64>| {
            let values: Vec<f64> = phases.iter().filter_map(|(p, _)| f(p)).collect();
            (!values.is_empty()).then(|| median(values))
        };
        let total = |f: &dyn Fn(&Phase) -> usize| phases.iter().map(|(p, _)| f(p)).sum::<usize>();
        let name = phases.first().map_or("", |(p, _)| p.name.as_str()).to_owned();
        let to_http = median(phases.iter().map(|(p, c)| p.rate() / c.http).collect());
        let to_amqp = median(phases.iter().map(|(p, c)| p.rate() / c.amqp).collect());
        let (rate, burst_s, lost) = (
            pick(&|p| p.rate()),
            pick(&|p| p.elapsed.as_secs_f64()),
            total(&|p| p.lost),
        );
        let row = format!(
            "| median of {} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {lost} (sum) | {} (sum) | {} (sum) | {rate:.0} | {to_http:.2} | {to_amqp:.2} | {:.1} | {:.1} | {:.0} | {burst_s:.1} | {} | {} | {} | {:.2} |",
            phases.len(),
            pick(&|p| p.requests as f64),
            pick(&|p| p.ok as f64),
            pick(&|p| p.rejected as f64),
            pick(&|p| p.failed as f64),
            total(&|p| p.extra),
            total(&|p| p.altered),
            pick(&|p| p.p50_ms),
            pick(&|p| p.p99_ms),
            pick(&|p| p.max_ms),
            opt(pick_opt(&|p| p.peak_rss_mib), 1),
            spent_cells(&phases.iter().map(|(p, _)| p.spent).collect::<Vec<_>>()),
            opt(pick_opt(&|p| p.ready_ms), 1),
            pick(&|p| p.load),
        );
        Self {
            runs: phases.len(),
            rate,
            to_http,
            to_amqp,
            burst_s,
            lost,
            row,
        }
    }

    /// The medians row of the table.
    pub fn row(&self) -> &str {
        &self.row
    }
}

/// A target of the issue, checked against a median: "MET", "NOT MET", or
/// "not measured" when a phase it needs did not run.
pub fn verdict(value: f64, at_least: f64) -> &'static str {
    if value.is_nan() {
        "not measured"
    } else if value >= at_least {
        "MET"
    } else {
        "NOT MET"
    }
}
