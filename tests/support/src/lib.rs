//! The one test support library of webhook-forwarder, shared by every
//! black-box test binary, the benchmarks and the examples. Split by concern:
//!
//! - [`alarm`]: memory and disk alarms, raised only on a broker node of the
//!   alarm tests' own;
//! - [`cluster`]: scripts/cluster-up's three nodes behind HAProxy: queue
//!   leaders, connections' nodes, a node killed and started again;
//! - [`process`]: the real `handler` binary in a child process (serving as
//!   the Functions host starts it, or running a subcommand to its end);
//! - [`broker`]: the real local RabbitMQ: topologies of a test's own, deleted
//!   when the test ends, messages published and read back over AMQP, the
//!   management API;
//! - [`host`]: requests shaped exactly as the Functions host sends them, in
//!   each of its modes;
//! - [`network`]: a port where the broker is unreachable until the test
//!   opens it;
//! - [`stub`]: a fake publish endpoint, only for faults a real broker cannot
//!   produce on demand;
//! - [`target`]: a recording HTTP endpoint for the relay to deliver to;
//! - [`ordering`]: webhooks with ordering keys, and checks of their order;
//! - [`metrics`]: a relay's `/metrics`, scraped and parsed as Prometheus would;
//! - [`docs`]: the docs' command examples, run on a vhost of their own and
//!   compared with what the pages show.
//!
//! Nothing here imports the product's code: the tests see it as a user does.

pub mod alarm;
pub mod broker;
pub mod cluster;
pub mod docs;
pub mod host;
pub mod metrics;
pub mod network;
pub mod ordering;
pub mod process;
pub mod stub;
pub mod target;

/// App settings, as the Functions host passes them: environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSettings(Vec<(String, String)>);

impl AppSettings {
    /// No settings at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// These settings plus `name` = `value`, replacing an earlier `name`.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.retain(|(n, _)| n != name);
        self.0.push((name.to_owned(), value.into()));
        self
    }

    /// These settings without `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.0.retain(|(n, _)| n != name);
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Name and value of each setting.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A function key as the host passes it in `Url`, `Query` and the query
/// string: it must never be published or printed.
pub const FUNCTION_KEY: &str = "fnKEY-must-never-leak-7f3a";

/// Asserts that no secret appears in `text`: not the local broker's auth
/// header, not the function key, not any of `secrets`.
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets.iter().chain([&FUNCTION_KEY, &broker::GUEST_AUTH]) {
        assert!(!text.contains(secret), "secret {secret:?} found in:\n{text}");
    }
}
