//! Reading a relay's `/metrics` as a Prometheus server would: fetched over
//! HTTP and parsed by a Prometheus text parser, every line accounted for.

use std::collections::HashMap;

use prometheus_parse::{Sample, Scrape, Value};

/// The metrics address in a relay's `serving metrics on http://ADDR/metrics` line.
pub fn metrics_url(output: &str) -> Option<String> {
    let rest = output.split("serving metrics on http://").nth(1)?;
    let addr = rest.split(|c: char| c.is_whitespace() || c == '/').next()?;
    Some(format!("http://{addr}/metrics"))
}

/// A parsed scrape, by metric name (and labels).
pub struct Metrics {
    /// What the parser made of it.
    pub scrape: Scrape,
    /// The text as served.
    pub text: String,
}

impl Metrics {
    /// Fetches `url` and parses it. Asserts the Prometheus text content type,
    /// and that every line is a comment the format defines (`# HELP`,
    /// `# TYPE`) or a sample the parser read, so nothing is silently skipped.
    pub async fn scrape(url: &str) -> Self {
        let response = reqwest::get(url).await.expect("the metrics answer");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let text = response.text().await.unwrap();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = Scrape::parse(lines).expect("Prometheus text");
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("# HELP ") && !l.starts_with("# TYPE "))
            .count();
        let buckets: usize = scrape
            .samples
            .iter()
            .map(|s| match &s.value {
                Value::Histogram(b) => b.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(samples, buckets, "lines the parser did not read:\n{text}");
        Self { scrape, text }
    }

    /// The sample `name` with exactly `labels`.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> &Sample {
        let wanted: HashMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.scrape
            .samples
            .iter()
            .find(|s| s.metric == name && *s.labels == wanted)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{}", self.text))
    }

    /// A counter's value; panics if `name` is not a counter.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.sample(name, labels).value {
            Value::Counter(v) => v,
            ref other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    /// A gauge's value; panics if `name` is not a gauge.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.sample(name, labels).value {
            Value::Gauge(v) => v,
            ref other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// A histogram's buckets (upper bound, cumulative count); panics if not one.
    pub fn histogram(&self, name: &str) -> Vec<(f64, f64)> {
        match &self.sample(name, &[]).value {
            Value::Histogram(buckets) => buckets.iter().map(|b| (b.less_than, b.count)).collect(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }
}
