//! Benchmark of `handler relay`: messages per second delivered to a fast local
//! target. Run it through `scripts/bench-relay`, which builds the release
//! binary first.
//!
//! Each run declares a queue of its own on the local broker, publishes the
//! messages (forwarder format, persistent), starts `handler relay` against an
//! in-process target that answers 200 at once, and times the deliveries from
//! the first request's arrival to the last one's, so start-up and connection
//! set-up are left out. Prints every run and the median.
//!
//! Usage: relay_bench <handler binary> [messages] [runs] [concurrency]

// A benchmark tool: a panic is a failed run.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warp::Filter;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2F";

/// Arrivals at the target: how many, the first and the last.
#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    span: Mutex<Option<(Instant, Instant)>>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let handler = args
        .get(1)
        .expect("usage: relay_bench <handler binary> [messages] [runs] [concurrency]");
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().unwrap());
    let (messages, runs, concurrency) = (arg(2, 20_000), arg(3, 5), arg(4, 64));
    println!("relay benchmark: {messages} messages per run, {runs} runs, --concurrency {concurrency}");

    let mut rates = Vec::new();
    for run in 1..=runs {
        let rate = one_run(handler, messages, concurrency).await;
        println!("run {run}: {rate:.0} messages/s");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} messages/s", rates[rates.len() / 2]);
}

async fn one_run(handler: &str, messages: usize, concurrency: usize) -> f64 {
    let queue = format!("bench-relay-{}", uuid::Uuid::new_v4().simple());
    fill(&queue, messages).await;

    let arrivals = Arc::new(Arrivals::default());
    let seen = arrivals.clone();
    let target = warp::body::bytes().map(move |_body: bytes::Bytes| {
        let now = Instant::now();
        let mut span = seen.span.lock().unwrap();
        *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
        seen.count.fetch_add(1, Ordering::Relaxed);
        warp::reply()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = format!("http://{}/hook.php", listener.local_addr().unwrap());
    let server = tokio::spawn(warp::serve(target).incoming(listener).run());

    let mut relay = tokio::process::Command::new(handler)
        .args([
            "relay",
            "--queue",
            &queue,
            "--to",
            &to,
            "--concurrency",
            &concurrency.to_string(),
        ])
        .env("AmqpUrl", AMQP_URL)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals.count.load(Ordering::Relaxed) < messages {
        assert!(
            Instant::now() < deadline,
            "the relay did not deliver everything in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (first, last) = arrivals.span.lock().unwrap().unwrap();

    let pid = relay.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    relay.wait().await.unwrap();
    server.abort();
    delete(&queue).await;
    (messages - 1) as f64 / (last - first).as_secs_f64()
}

/// Declares the queue and publishes `count` messages in the forwarder's format.
async fn fill(queue: &str, count: usize) {
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(600_000));
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..count {
        let mut headers = FieldTable::default();
        headers.insert("x-http-method".into(), AMQPValue::LongString(LongString::from("POST")));
        headers.insert(
            "x-http-query".into(),
            AMQPValue::LongString(LongString::from("type=product")),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/x-www-form-urlencoded".into())
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_headers(headers);
        let body = format!("old={i}&new={i}");
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .unwrap();
    }
    assert!(channel.wait_for_confirms().await.unwrap().is_empty());
    connection.close(200, "filled".into()).await.unwrap();
}

async fn delete(queue: &str) {
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
}
