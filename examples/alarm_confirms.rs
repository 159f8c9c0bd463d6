//! What RabbitMQ does with publishes in flight when an alarm blocks their
//! connection: the measurement behind the AMQP transport's choice to give
//! them a short grace for their confirms and then answer them 503, rather
//! than wait for the alarm to clear (`BLOCK_GRACE` in
//! src/publish/amqp/pipeline.rs, docs/reliability.md).
//!
//! Streams persistent publishes with confirms, at most `in-flight` at once,
//! over one connection to an alarm node (`scripts/alarm-broker-up`; the
//! test support's `AlarmNode` refuses any other), raises the alarm after 2 s
//! and stops sending once the client says the connection is blocked. Then
//! prints how many confirms came after `connection.blocked`, and after the
//! alarm was cleared. Meanwhile a second connection that only consumes takes
//! and acknowledges a message, to show it is not blocked.
//!
//! Usage (RabbitMQ 3.10.8; `5675`, `15675` and `ctl 4` for 4.0.5):
//!   scripts/alarm-broker-up
//!   TEST_RABBITMQ_AMQP_PORT=5674 TEST_RABBITMQ_MANAGEMENT_PORT=15674 \
//!     TEST_RABBITMQCTL="$PWD/scripts/alarm-broker-up ctl 3" \
//!     cargo run --example alarm_confirms -- [memory|disk] [in-flight] [runs]

// A measuring tool: a panic is a failed run.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Event};
use test_support::alarm::{AlarmNode, Kind};
use test_support::broker::{TestMessage, Topology, connect};
use tokio::task::JoinSet;

/// How long publishes stream before the alarm is raised.
const BEFORE_THE_ALARM: Duration = Duration::from_secs(2);
/// How long to wait for late confirms once blocked, and after clearing.
const SETTLE: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = match args.get(1).map_or("memory", String::as_str) {
        "memory" => Kind::Memory,
        "disk" => Kind::Disk,
        other => panic!("unknown alarm {other:?}: memory or disk"),
    };
    let in_flight: usize = args.get(2).map_or(64, |a| a.parse().unwrap());
    let runs: usize = args.get(3).map_or(1, |a| a.parse().unwrap());
    let node = AlarmNode::under_test().await;
    println!("node {}, {kind:?} alarm, {in_flight} publishes in flight", node.name);
    for run in 1..=runs {
        measure(&node, kind, in_flight, run).await;
    }
}

/// Confirms (of publish `sent_at`), as they came, measured from the start.
type Confirmed = (Duration, bool);

async fn measure(node: &AlarmNode, kind: Kind, in_flight: usize, run: usize) {
    let topology = Topology::declare().await;
    topology
        .publish(&[TestMessage::post("to consume during the alarm")])
        .await;
    let start = Instant::now();
    let publisher = connect().await;
    let blocked_at = Arc::new(Mutex::new(None::<Duration>));
    let mut events = publisher.events_listener();
    tokio::spawn({
        let blocked_at = blocked_at.clone();
        async move {
            while let Some(event) = events.next().await {
                if let Event::ConnectionBlocked(_) = event {
                    *blocked_at.lock().unwrap() = Some(start.elapsed());
                }
            }
        }
    });
    let channel = publisher.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();

    let mut publishes = JoinSet::new();
    let mut confirmed: Vec<Confirmed> = Vec::new();
    let mut sent = 0;
    let alarm_due = start + BEFORE_THE_ALARM;
    while Instant::now() < alarm_due {
        while publishes.len() < in_flight {
            publishes.spawn(publish(channel.clone(), topology.queue.clone(), start));
            sent += 1;
        }
        confirmed.push(publishes.join_next().await.unwrap().unwrap());
    }
    let alarm = {
        let raising = node.raise(kind);
        tokio::pin!(raising);
        // Go on publishing while the alarm is being raised, until blocked.
        loop {
            while publishes.len() < in_flight && !publisher.status().blocked() {
                publishes.spawn(publish(channel.clone(), topology.queue.clone(), start));
                sent += 1;
            }
            tokio::select! {
                alarm = &mut raising => break alarm,
                Some(done) = publishes.join_next() => confirmed.push(done.unwrap()),
            }
        }
    };
    while publisher.status().blocked() && blocked_at.lock().unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let settle = tokio::time::sleep(SETTLE);
    tokio::pin!(settle);
    loop {
        tokio::select! {
            () = &mut settle => break,
            Some(done) = publishes.join_next() => confirmed.push(done.unwrap()),
        }
    }
    let blocked = *blocked_at.lock().unwrap();
    let waiting_at_block = publishes.len();
    let late: Vec<Duration> = blocked.map_or_else(Vec::new, |at| {
        confirmed
            .iter()
            .filter(|(when, _)| *when > at)
            .map(|(when, _)| *when - at)
            .collect()
    });
    let after_block = late.len();
    let last_late = late.iter().max().copied().unwrap_or_default();

    // A connection that only consumes, during the alarm.
    let consumer = connect().await;
    let consuming = consumer.create_channel().await.unwrap();
    let message = consuming
        .basic_get(topology.queue.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("the message published before the alarm");
    message.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
    let consumer_blocked = consumer.status().blocked();

    alarm.clear().await;
    let mut after_clearing = 0;
    while let Ok(Some(done)) = tokio::time::timeout(SETTLE, publishes.join_next()).await {
        if done.unwrap().1 {
            after_clearing += 1;
        }
    }
    println!(
        "run {run}: {sent} sent; blocked {} ms after the alarm was raised; {} confirmed before the block, \
         {after_block} after it while the alarm was on (the last {} ms after it); {waiting_at_block} unconfirmed, {after_clearing} of them \
         confirmed after clearing; a consume-only connection took and acked a message during the alarm, blocked: \
         {consumer_blocked}",
        blocked.map_or(-1, |at| i128::try_from(at.saturating_sub(BEFORE_THE_ALARM).as_millis())
            .unwrap()),
        confirmed.len() - after_block,
        last_late.as_millis(),
    );
    let _ = publisher.close(200, "measured".into()).await;
    let _ = consumer.close(200, "measured".into()).await;
}

/// One persistent publish and its confirm: when the confirm came, and whether it was an ack.
async fn publish(channel: Channel, queue: String, start: Instant) -> Confirmed {
    let confirmation = async {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await
    }
    .await;
    (start.elapsed(), confirmation.is_ok_and(|c| c.is_ack()))
}
