//! The three-node RabbitMQ cluster of `scripts/cluster-up`, behind HAProxy
//! on 5690 (AMQP) and 15690 (management): which node leads a quorum queue,
//! which node holds a client's connection, a node killed with SIGKILL and
//! started again, and messages read back once the cluster is whole.
//!
//! The tests talk to the cluster as to any broker, through the
//! `TEST_RABBITMQ_*` ports of [`crate::broker`] set to HAProxy's; the node
//! control goes through `TEST_CLUSTER_UP` (default: this repository's
//! `scripts/cluster-up`). Every worktree on the machine uses the same
//! cluster: `scripts/test` runs the cluster tests under
//! `flock /tmp/cluster.lock`, and so should a run by hand.
//!
//! Count by reading back: right after a leader change a surviving node's
//! message count can be a thousand short of what the queue holds
//! (../shared/reference/rabbitmq-cluster.md), so [`read_back`] consumes
//! until the queue stays quiet, after the killed node is back.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::broker::{
    QueuedMessage, Topology, amqp_port, api_get, close_connections_named, connect, consume_no_ack, management_port,
};
use crate::process::run_to_end;

/// HAProxy's ports in front of the cluster.
const FRONT_AMQP_PORT: u16 = 5690;
const FRONT_MANAGEMENT_PORT: u16 = 15690;

const NOT_THE_CLUSTER: &str = "the cluster tests run only against scripts/cluster-up's cluster: run it, then set \
     TEST_RABBITMQ_AMQP_PORT=5690 TEST_RABBITMQ_MANAGEMENT_PORT=15690 and run under `flock /tmp/cluster.lock`, \
     as scripts/test does";

/// The cluster under test, checked to be scripts/cluster-up's with its
/// three nodes running.
#[derive(Debug)]
pub struct Cluster {
    script: String,
}

impl Cluster {
    /// Checks the ports under test are HAProxy's, then runs
    /// `scripts/cluster-up` (which starts any node a failed test left
    /// killed) and checks the management API lists three running nodes.
    pub async fn under_test() -> Self {
        assert!(
            amqp_port() == FRONT_AMQP_PORT && management_port() == FRONT_MANAGEMENT_PORT,
            "AMQP port {} / management port {}: {NOT_THE_CLUSTER}",
            amqp_port(),
            management_port()
        );
        let script = std::env::var("TEST_CLUSTER_UP")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cluster-up").to_owned());
        let cluster = Self { script };
        cluster.script(&[]).await;
        let (_, nodes) = api_get("nodes").await;
        let running: Vec<&str> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["running"] == true)
            .filter_map(|n| n["name"].as_str())
            .collect();
        assert_eq!(running.len(), 3, "running nodes {running:?}: {NOT_THE_CLUSTER}");
        cluster
    }

    /// Kills `node` (`rc2@localhost`, say) with SIGKILL; the node is gone
    /// when this returns. The guard starts it again, when told or dropped.
    pub async fn kill(&self, node: &str) -> KilledNode {
        let number = node_number(node);
        self.script(&["kill", &number]).await;
        KilledNode {
            script: self.script.clone(),
            number,
            started: false,
        }
    }

    async fn script(&self, args: &[&str]) {
        let (script, args) = (
            self.script.clone(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        let output = tokio::task::spawn_blocking(move || std::process::Command::new(&script).args(&args).output())
            .await
            .expect("the script ran")
            .unwrap_or_else(|e| panic!("{}: {e}: {NOT_THE_CLUSTER}", self.script));
        assert!(
            output.status.success(),
            "{} failed: {}{}",
            self.script,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A node killed by [`Cluster::kill`]; started again by [`KilledNode::start`]
/// or when dropped (a failing test too), so the next test finds three nodes.
pub struct KilledNode {
    script: String,
    number: String,
    started: bool,
}

impl KilledNode {
    /// Starts the node again and waits until it is back in the cluster.
    pub async fn start(mut self) {
        self.started = true;
        let (script, number) = (self.script.clone(), self.number.clone());
        let output = tokio::task::spawn_blocking(move || start_node(&script, &number))
            .await
            .expect("the script ran");
        if let Err(e) = output {
            panic!("{e}");
        }
    }
}

impl Drop for KilledNode {
    fn drop(&mut self) {
        // No panic here: this may run while a failed assertion unwinds.
        if !self.started
            && let Err(e) = start_node(&self.script, &self.number)
        {
            eprintln!("could not start node {} again: {e}", self.number);
        }
    }
}

fn start_node(script: &str, number: &str) -> Result<(), String> {
    let output = std::process::Command::new(script)
        .args(["start", number])
        .output()
        .map_err(|e| format!("{script}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{script} start {number}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `rc2@localhost` -> `2`, the number the script takes.
fn node_number(node: &str) -> String {
    node.strip_prefix("rc")
        .and_then(|rest| rest.strip_suffix("@localhost"))
        .filter(|n| ["1", "2", "3"].contains(n))
        .unwrap_or_else(|| panic!("{node:?} is not a node of scripts/cluster-up"))
        .to_owned()
}

/// The queue's topology as a user on a cluster declares it: `handler setup
/// --quorum --dead-letter` (quorum queues for the webhooks and the dead
/// letters) under the names of a fresh [`Topology`], deleted when it drops.
/// Declared through HAProxy, so its leader is whichever node took the request.
pub async fn quorum_topology() -> Topology {
    let topology = Topology::names();
    let run = run_to_end(
        &["setup", "--queue", &topology.queue, "--quorum", "--dead-letter"],
        &topology.settings(),
        "",
    )
    .await;
    assert!(run.status.success(), "handler setup --quorum: {}", run.output());
    topology
}

/// The node leading quorum queue `queue` in the default vhost, waiting (up
/// to 30 s) until the cluster names one.
pub async fn leader_of(queue: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = queue_info(queue).await["leader"].as_str() {
            return leader.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "quorum queue {queue:?} has no leader after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The nodes quorum queue `queue` is replicated on.
pub async fn members_of(queue: &str) -> Vec<String> {
    let mut members: Vec<String> = queue_info(queue).await["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    members.sort();
    members
}

async fn queue_info(queue: &str) -> Value {
    api_get(&format!("queues/%2F/{}", crate::broker::encoded(queue)))
        .await
        .1
}

/// The node holding the one connection a client named `connection_name`,
/// waiting (up to 30 s: the broker's list lags) until it is listed.
pub async fn node_of_connection(connection_name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, listed) = api_get("connections?columns=user_provided_name,node").await;
        let nodes: Vec<&str> = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["user_provided_name"] == connection_name)
            .filter_map(|c| c["node"].as_str())
            .collect();
        if let [node] = nodes.as_slice() {
            return (*node).to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "connections named {connection_name:?} on {nodes:?}, not exactly one"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Makes the client's connection named `connection_name` land on `node`:
/// closes it until the client's reconnection through HAProxy (round robin)
/// reaches that node. The client must reconnect by itself.
pub async fn steer_connection(connection_name: &str, node: &str) {
    for _ in 0..10 {
        if node_of_connection(connection_name).await == node {
            return;
        }
        close_connections_named(connection_name).await;
        // Until the broker's list no longer shows the closed one.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    panic!("connection {connection_name:?} never landed on {node} in 10 reconnections");
}

/// Every message on `queue` (default vhost), taken off (no acknowledgement
/// mode): consumes until nothing came for 5 s. Call it once nothing
/// publishes and every node is back; never trust a message count taken
/// during a failover.
pub async fn read_back(queue: &str) -> Vec<QueuedMessage> {
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("a channel");
    let mut consumer = consume_no_ack(&channel, queue, "read-back").await;
    let mut taken = Vec::new();
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await {
        taken.push(delivery.into());
    }
    let _ = connection.close(200, "done".into()).await;
    taken
}
