//! Memory and disk alarms on a RabbitMQ node of the alarm tests' own
//! (`scripts/alarm-broker-up`): an alarm blocks every publisher of its node,
//! so it is never raised on the shared brokers (5672, 5673), where other
//! tests publish at the same time.
//!
//! [`AlarmNode::under_test`] checks that the broker the test talks to (the
//! `TEST_RABBITMQ_*` ports of [`crate::broker`]) is such a node, and that
//! `TEST_RABBITMQCTL` reaches that same node. An [`Alarm`] clears itself when
//! dropped, so a failing test never leaves its node blocked. Every worktree
//! on the machine uses the same two nodes: `scripts/test` runs the alarm
//! tests under `flock /tmp/alarm-brokers.lock`, and so should a run by hand.

use std::time::{Duration, Instant};

use crate::broker::{amqp_port, api_get, management_port, rabbitmqctl_command};

/// The ports of the shared brokers, where no alarm may ever be raised.
const SHARED_AMQP_PORTS: [u16; 2] = [5672, 5673];
const SHARED_MANAGEMENT_PORTS: [u16; 2] = [15672, 15673];
/// The names `scripts/alarm-broker-up` gives its nodes start so.
const ALARM_NODE_PREFIX: &str = "alarm";
/// A free-disk limit above any disk's free space (1 PB): raises the disk alarm.
const DISK_LIMIT_ABOVE_FREE_SPACE: &str = "1000000000000000";
/// RabbitMQ's default free-disk limit: clears it.
const DISK_LIMIT_DEFAULT: &str = "50MB";
/// A memory watermark below what any node uses: raises the memory alarm.
const MEMORY_WATERMARK_BELOW_USE: &str = "0.0001";
/// 3.10.8's default watermark (4.x's is 0.6); either clears the alarm on an
/// idle node.
const MEMORY_WATERMARK_DEFAULT: &str = "0.4";

const NOT_AN_ALARM_NODE: &str = "the alarm tests run only against a broker node of their own: \
     run scripts/alarm-broker-up, then set TEST_RABBITMQ_AMQP_PORT=5674 TEST_RABBITMQ_MANAGEMENT_PORT=15674 \
     TEST_RABBITMQCTL=\"$PWD/scripts/alarm-broker-up ctl 3\" (or 5675, 15675 and `ctl 4` for RabbitMQ 4.x) \
     and run under `flock /tmp/alarm-brokers.lock`, as scripts/test does";

/// Which resource alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `set_vm_memory_high_watermark` below the node's use.
    Memory,
    /// `set_disk_free_limit` above the disk's free space.
    Disk,
}

impl Kind {
    /// The resource as `/api/health/checks/alarms` names it.
    fn resource(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk space",
        }
    }

    /// The broker's reason in `connection.blocked`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Memory => "low on memory",
            Self::Disk => "low on disk",
        }
    }

    fn raise_command(self) -> [&'static str; 2] {
        match self {
            Self::Memory => ["set_vm_memory_high_watermark", MEMORY_WATERMARK_BELOW_USE],
            Self::Disk => ["set_disk_free_limit", DISK_LIMIT_ABOVE_FREE_SPACE],
        }
    }

    fn clear_command(self) -> [&'static str; 2] {
        match self {
            Self::Memory => ["set_vm_memory_high_watermark", MEMORY_WATERMARK_DEFAULT],
            Self::Disk => ["set_disk_free_limit", DISK_LIMIT_DEFAULT],
        }
    }
}

/// The broker node under test, checked to be one of the alarm nodes.
#[derive(Debug, Clone)]
pub struct AlarmNode {
    /// Its Erlang node name, e.g. `alarm3@localhost`.
    pub name: String,
}

impl AlarmNode {
    /// The node behind the ports under test. Panics (before touching
    /// anything) unless it is an alarm node and `TEST_RABBITMQCTL` reaches
    /// it; then clears any alarm a killed run left on it.
    pub async fn under_test() -> Self {
        assert!(
            !SHARED_AMQP_PORTS.contains(&amqp_port()) && !SHARED_MANAGEMENT_PORTS.contains(&management_port()),
            "AMQP port {} / management port {} belong to a shared broker: {NOT_AN_ALARM_NODE}",
            amqp_port(),
            management_port()
        );
        let (status, overview) = api_get("overview").await;
        assert_eq!(status, 200, "{NOT_AN_ALARM_NODE}");
        let name = overview["node"].as_str().unwrap_or_default().to_owned();
        assert!(
            name.starts_with(ALARM_NODE_PREFIX),
            "the broker on {} is node {name:?}: {NOT_AN_ALARM_NODE}",
            management_port()
        );
        let reached = ctl(&["eval", "node()."]).unwrap_or_else(|e| panic!("{e}: {NOT_AN_ALARM_NODE}"));
        assert_eq!(
            reached.trim().trim_matches('\''),
            name,
            "TEST_RABBITMQCTL reaches another node than the ports under test: {NOT_AN_ALARM_NODE}"
        );
        let node = Self { name };
        for kind in [Kind::Memory, Kind::Disk] {
            node.clear(kind).expect("clearing a leftover alarm");
        }
        node
    }

    /// Raises `kind` and waits (up to 30 s) until the node reports it; it
    /// clears when the returned guard is cleared or dropped.
    pub async fn raise(&self, kind: Kind) -> Alarm<'_> {
        let [command, value] = kind.raise_command();
        let alarm = Alarm {
            node: self,
            kind,
            cleared: false,
        };
        blocking(move || ctl(&["-q", command, value]))
            .await
            .expect("raising the alarm");
        self.wait_until(kind, true).await;
        alarm
    }

    fn clear(&self, kind: Kind) -> Result<String, String> {
        let [command, value] = kind.clear_command();
        ctl(&["-q", command, value])
    }

    /// The alarms the node reports now (`/api/health/checks/alarms`).
    pub async fn alarms(&self) -> Vec<String> {
        let (_, health) = api_get("health/checks/alarms").await;
        health["alarms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|alarm| alarm["node"] == self.name.as_str())
            .filter_map(|alarm| alarm["resource"].as_str().map(str::to_owned))
            .collect()
    }

    async fn wait_until(&self, kind: Kind, on: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.alarms().await.iter().any(|r| r == kind.resource()) != on {
            assert!(
                Instant::now() < deadline,
                "the {kind:?} alarm on {} is not {} after 30 s",
                self.name,
                if on { "on" } else { "off" }
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A raised alarm; cleared by [`Alarm::clear`], or when dropped (a failing
/// test too).
pub struct Alarm<'a> {
    node: &'a AlarmNode,
    kind: Kind,
    cleared: bool,
}

impl Alarm<'_> {
    /// Clears it and waits until the node no longer reports it.
    pub async fn clear(mut self) {
        self.cleared = true;
        let (node, kind) = (self.node.clone(), self.kind);
        blocking(move || node.clear(kind)).await.expect("clearing the alarm");
        self.node.wait_until(self.kind, false).await;
    }
}

impl Drop for Alarm<'_> {
    fn drop(&mut self) {
        // No panic here: this may run while a failed assertion unwinds.
        if !self.cleared
            && let Err(e) = self.node.clear(self.kind)
        {
            let [command, value] = self.kind.clear_command();
            eprintln!(
                "could not clear the {:?} alarm on {}: {e}; run `scripts/alarm-broker-up ctl N {command} {value}`",
                self.kind, self.node.name
            );
        }
    }
}

/// Runs `TEST_RABBITMQCTL ARGS`: its output, or why it failed.
fn ctl(args: &[&str]) -> Result<String, String> {
    let program = rabbitmqctl_command();
    let output = std::process::Command::new(&program[0])
        .args(&program[1..])
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} {}: exit {}: {stdout}{}",
            program.join(" "),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("rabbitmqctl ran")
}
