//! Figures of one phase, medians across runs, and the markdown tables.

use std::time::Duration;

use crate::load::Sample;

/// What one phase of a run measured.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Which phase.
    pub name: String,
    /// Requests sent.
    pub requests: usize,
    /// Answers 2xx.
    pub ok: usize,
    /// Answers 503 with `Retry-After`.
    pub rejected: usize,
    /// Other statuses, errors, timeouts.
    pub failed: usize,
    /// Wall-clock time of the burst.
    pub elapsed: Duration,
    /// Latency percentiles and maximum, in ms.
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
    /// Handler's peak RSS, MiB (handler phases).
    pub peak_rss_mib: Option<f64>,
    /// Handler CPU seconds per 1,000 webhooks (handler phases).
    pub cpu_s_per_1000: Option<f64>,
    /// Handler start to first answered `GET /`, ms (handler phases).
    pub ready_ms: Option<f64>,
}

impl Phase {
    /// Counts and latency figures from the samples.
    pub fn from_samples(name: &str, samples: &[Sample], elapsed: Duration) -> Self {
        let mut latencies: Vec<f64> = samples.iter().map(|s| s.latency.as_secs_f64() * 1000.0).collect();
        latencies.sort_by(f64::total_cmp);
        let ok = samples
            .iter()
            .filter(|s| s.status.is_some_and(|c| (200..300).contains(&c)))
            .count();
        let rejected = samples
            .iter()
            .filter(|s| s.status == Some(503) && s.retry_after)
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
            ..Self::default()
        }
    }

    /// 2xx answers per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
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

/// Header of the per-phase table.
pub const TABLE_HEADER: &str = "| run | phase | requests | 2xx | 503+Retry-After | other | lost | extra | altered | webhooks/s | ratio to direct | p50 ms | p99 ms | max ms | peak RSS MiB | CPU s / 1,000 | ready ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// One row of the per-phase table.
pub fn row(run: &str, phase: &Phase, ceiling: f64) -> String {
    format!(
        "| {run} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.0} | {} | {} | {} |",
        phase.name,
        phase.requests,
        phase.ok,
        phase.rejected,
        phase.failed,
        phase.lost,
        phase.extra,
        phase.altered,
        phase.rate(),
        phase.rate() / ceiling,
        phase.p50_ms,
        phase.p99_ms,
        phase.max_ms,
        opt(phase.peak_rss_mib, 1),
        opt(phase.cpu_s_per_1000, 3),
        opt(phase.ready_ms, 1),
    )
}

/// The medians row of a phase across runs, each run's ratio taken against its own ceiling.
pub fn median_row(phases: &[(Phase, f64)]) -> String {
    let pick = |f: &dyn Fn(&Phase) -> f64| median(phases.iter().map(|(p, _)| f(p)).collect());
    let pick_opt = |f: &dyn Fn(&Phase) -> Option<f64>| {
        let values: Vec<f64> = phases.iter().filter_map(|(p, _)| f(p)).collect();
        (!values.is_empty()).then(|| median(values))
    };
    let total = |f: &dyn Fn(&Phase) -> usize| phases.iter().map(|(p, _)| f(p)).sum::<usize>();
    format!(
        "| median of {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} (sum) | {} (sum) | {} (sum) | {:.0} | {:.2} | {:.1} | {:.1} | {:.0} | {} | {} | {} |",
        phases.len(),
        phases.first().map_or("", |(p, _)| p.name.as_str()),
        pick(&|p| p.requests as f64),
        pick(&|p| p.ok as f64),
        pick(&|p| p.rejected as f64),
        pick(&|p| p.failed as f64),
        total(&|p| p.lost),
        total(&|p| p.extra),
        total(&|p| p.altered),
        pick(&|p| p.rate()),
        median(phases.iter().map(|(p, ceiling)| p.rate() / ceiling).collect()),
        pick(&|p| p.p50_ms),
        pick(&|p| p.p99_ms),
        pick(&|p| p.max_ms),
        opt(pick_opt(&|p| p.peak_rss_mib), 1),
        opt(pick_opt(&|p| p.cpu_s_per_1000), 3),
        opt(pick_opt(&|p| p.ready_ms), 1),
    )
}
