//! Endpoint credentials: `RelayHeaders` reach the endpoint on every request
//! and nowhere else (no log at any level, no `--help`, no error); a password
//! in `--to` is refused with the way to `RelayHeaders`.

use std::time::Duration;

use test_support::broker::{TestMessage, Topology, amqp_url};
use test_support::process::{Handler, run_to_end};
use test_support::target::TestTarget;
use test_support::{AppSettings, assert_no_secret};

use crate::config::exits_with_failure;

const TOKEN: &str = "tok-3f9a-never-logged";
const API_KEY: &str = "key-77c1-never-logged";

/// The relay's output, once it exited with a failure; every log written.
pub async fn fails_at_start(args: &[&str], settings: AppSettings) -> String {
    let mut relay = Handler::spawn(args, &settings.with("AmqpUrl", amqp_url()), "trace");
    exits_with_failure(&mut relay).await
}

#[tokio::test]
async fn relay_headers_reach_the_endpoint_on_every_request_and_never_a_log() {
    let queue = Topology::with_dead_letter().await;
    let messages = [TestMessage::post("old=1&new=2"), TestMessage::post("old=3&new=4")];
    queue.publish(&messages).await;
    let target = TestTarget::accepting().await;
    let headers = format!("Authorization: Bearer {TOKEN} | X-Api-Key: {API_KEY}");
    let settings = AppSettings::new()
        .with("AmqpUrl", amqp_url())
        .with("RelayHeaders", headers.as_str());

    // Every log the relay, its HTTP client and the AMQP client can write.
    let to = target.url("/hook.php");
    let mut relay = Handler::spawn(&["relay", "--queue", &queue.queue, "--to", &to], &settings, "trace");
    target
        .wait_until(Duration::from_secs(30), "2 deliveries", |seen| seen.len() >= 2)
        .await;
    relay.stop().await;

    for request in target.seen() {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.header("x-api-key"), Some(API_KEY));
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(request.attempt(), 1);
    }
    let output = relay.output();
    assert!(
        output
            .contains(r#"adding EndpointHeaders(["authorization", "x-api-key"], values [redacted]) from RelayHeaders"#),
        "{output}"
    );
    assert_no_secret(&output, &[TOKEN, API_KEY]);

    let help = run_to_end(&["relay", "--help"], &settings, "").await;
    assert!(help.status.success(), "{}", help.output());
    assert!(help.stdout.contains("RelayHeaders"), "{}", help.stdout);
    assert_no_secret(&help.output(), &[TOKEN, API_KEY]);
}

#[tokio::test]
async fn a_malformed_relay_headers_stops_the_relay_at_start_without_printing_it() {
    let queue = Topology::with_dead_letter().await;
    let args = ["relay", "--queue", &queue.queue, "--to", "http://127.0.0.1:9/"];
    // A credential pasted without its header name.
    let settings = AppSettings::new().with("RelayHeaders", format!("X-Api-Key: {API_KEY}|Bearer {TOKEN}"));

    let output = fails_at_start(&args, settings).await;
    assert!(
        output.contains(
            "stderr: error: setting RelayHeaders is invalid: header 2 has no ':' between its name and its value; "
        ),
        "{output}"
    );
    assert_no_secret(&output, &[TOKEN, API_KEY]);
}

#[tokio::test]
async fn a_password_in_to_is_refused_pointing_to_relay_headers() {
    let queue = Topology::with_dead_letter().await;
    let to = format!("https://webhooks:{TOKEN}@example.com/hook.php");
    let args = ["relay", "--queue", &queue.queue, "--to", &to];

    let output = fails_at_start(&args, AppSettings::new()).await;
    assert!(
        output.contains("stderr: error: --to holds a user name or password (user:password@host)"),
        "{output}"
    );
    assert!(
        output.contains("set RelayHeaders='Authorization: Basic <base64 of user:password>'"),
        "{output}"
    );
    assert_no_secret(&output, &[TOKEN]);
}
