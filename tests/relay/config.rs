//! Start-up: what is wrong is said at once, naming the setting, never
//! printing the password.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use test_support::AppSettings;
use test_support::broker::{Topology, amqp_port, amqp_url, amqp_url_shown};
use test_support::process::Handler;

const WRONG_PASSWORD: &str = "hunter2-wrong-Pa55";

/// Waits for the relay to exit, asserts it failed, and returns what it printed.
pub async fn exits_with_failure(relay: &mut Handler) -> String {
    let status = relay.wait_for_exit(Duration::from_secs(60)).await;
    assert!(!status.success(), "exit {status}:\n{}", relay.output());
    relay.output()
}

#[tokio::test]
async fn a_wrong_password_fails_at_start_up_without_printing_it() {
    let queue = Topology::with_dead_letter().await;
    let url = format!("amqp://guest:{WRONG_PASSWORD}@127.0.0.1:{}/%2F", amqp_port());
    // Every log the AMQP client can write, frames included: none may carry
    // the password.
    let mut relay = Handler::spawn(
        &["relay", "--queue", &queue.queue, "--to", "http://127.0.0.1:9/"],
        &AppSettings::new().with("AmqpUrl", url.as_str()),
        "trace",
    );

    let output = exits_with_failure(&mut relay).await;
    assert!(
        output.contains(&format!(
            "stderr: error: the broker at {} refused the credentials of user \"guest\" (ACCESS_REFUSED)",
            amqp_url_shown()
        )),
        "{output}"
    );
    assert!(!output.contains(WRONG_PASSWORD), "{output}");
}

#[tokio::test]
async fn a_missing_queue_fails_at_start_up_naming_it() {
    let mut relay = Handler::spawn(
        &[
            "relay",
            "--queue",
            "test-relay-no-such-queue",
            "--to",
            "http://127.0.0.1:9/",
        ],
        &AppSettings::new().with("AmqpUrl", amqp_url()),
        "info",
    );

    let output = exits_with_failure(&mut relay).await;
    assert!(
        output.contains("stderr: error: the queue \"test-relay-no-such-queue\" does not exist"),
        "{output}"
    );
    assert!(
        output.contains("handler setup --queue test-relay-no-such-queue"),
        "{output}"
    );
}

#[tokio::test]
async fn a_missing_amqp_url_fails_naming_the_setting() {
    let mut relay = Handler::spawn(&["relay", "--to", "http://127.0.0.1:9/"], &AppSettings::new(), "info");

    let output = exits_with_failure(&mut relay).await;
    assert!(output.contains("stderr: error: setting AmqpUrl is missing"), "{output}");
}

#[tokio::test]
async fn an_amqps_url_speaks_tls() {
    // A listener standing in for CloudAMQP's port 5671: the first bytes the
    // relay sends must be a TLS handshake, not AMQP's "AMQP\0\0\9\1".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "amqps://guest:{WRONG_PASSWORD}@127.0.0.1:{}/%2F",
        listener.local_addr().unwrap().port()
    );
    let mut relay = Handler::spawn(
        &["relay", "--to", "http://127.0.0.1:9/"],
        &AppSettings::new().with("AmqpUrl", url.as_str()),
        "debug",
    );

    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .expect("the relay connects")
        .unwrap();
    let mut first = [0u8; 3];
    stream.read_exact(&mut first).await.unwrap();
    drop(stream);

    // A TLS record: handshake (22), protocol version 3.x.
    assert_eq!(first[..2], [22, 3], "not a TLS ClientHello: {first:?}");
    let output = exits_with_failure(&mut relay).await;
    assert!(!output.contains(WRONG_PASSWORD), "{output}");
}
