//! A broker restart mid-drain loses nothing. A test binary of its own, with
//! this one test: restarting the shared broker would break tests running
//! alongside it, and cargo runs test binaries one after another.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::broker::{TestMessage, TestQueue};
use support::process::Handler;
use support::target::TestTarget;

/// The broker's application stopped (the Erlang node stays up) until
/// [`BrokerOutage::end`], or until dropped, so a failing test never leaves
/// the machine without a broker.
struct BrokerOutage {
    over: bool,
}

impl BrokerOutage {
    fn begin() -> Self {
        rabbitmqctl("stop_app").expect("rabbitmqctl stop_app");
        Self { over: false }
    }

    fn end(&mut self) {
        self.over = true;
        rabbitmqctl("start_app").expect("rabbitmqctl start_app");
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        if !self.over {
            // No panic here: this may run while a failed assertion unwinds.
            if let Err(e) = rabbitmqctl("start_app") {
                eprintln!("could not restart the broker's app: {e}; run `rabbitmqctl start_app`");
            }
        }
    }
}

fn rabbitmqctl(command: &str) -> Result<(), String> {
    let status = std::process::Command::new("rabbitmqctl")
        .args(["-q", command])
        .status()
        .map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| format!("exit {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_drain_loses_nothing() {
    const COUNT: usize = 3_000;
    let queue = TestQueue::with_dead_letter().await;
    let messages = TestMessage::many(COUNT, "restart");
    queue.publish(&messages).await;
    let target = TestTarget::start(|_| (Duration::from_millis(5), 200)).await;
    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &["--concurrency", "8"]);
    target
        .wait_until(Duration::from_secs(60), "300 deliveries", |seen| seen.len() >= 300)
        .await;

    let mut outage = tokio::task::block_in_place(BrokerOutage::begin);
    relay
        .wait_for_output(
            "lost the connection to amqp://guest:***@127.0.0.1:5672/%2F",
            Duration::from_secs(60),
        )
        .await;
    // Let the relay fail to reconnect a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| outage.end());
    relay.wait_for_output("reconnected to", Duration::from_secs(60)).await;
    support::wait_until_drained(&queue, &target, &relay, COUNT).await;
    relay.stop().await;

    support::assert_each_arrived_with_distinct_attempts(&messages, &target.seen());
    assert_eq!(queue.depth().await, 0, "messages left behind");
    assert!(queue.take_dead_letters().await.is_empty());
    let output = relay.output();
    assert!(output.contains("could not reconnect"), "{output}");
}
