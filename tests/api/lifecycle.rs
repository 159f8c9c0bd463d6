//! Start-up and shutdown: settings errors, readiness, graceful SIGTERM.

use std::time::Duration;

use test_support::AppSettings;
use test_support::broker::{GUEST_AUTH, Topology};
use test_support::process::Served;
use test_support::stub::{Act, StubBroker};

#[tokio::test]
async fn a_missing_endpoint_exits_non_zero_naming_the_setting() {
    let settings = AppSettings::new().with("AmqpAuthHeader", GUEST_AUTH);

    let Err((status, output)) = Served::start_with_args(&[], &settings).await else {
        panic!("started without AmqpEndpoint")
    };

    assert!(!status.success());
    assert!(
        output.contains("stderr: error: setting AmqpEndpoint is missing"),
        "{output}"
    );
}

#[tokio::test]
async fn a_malformed_auth_header_exits_non_zero_without_echoing_it() {
    let topology = Topology::declare().await;
    let settings = topology.settings().with("AmqpAuthHeader", "Basic hunter2-not-base64!");

    let Err((status, output)) = Served::start_with_args(&[], &settings).await else {
        panic!("started with a bad header")
    };

    assert!(!status.success());
    assert!(output.contains("setting AmqpAuthHeader is invalid"), "{output}");
    assert!(!output.contains("hunter2"), "{output}");
}

#[tokio::test]
async fn the_auth_header_is_accepted_with_the_basic_prefix() {
    let topology = Topology::declare().await;
    let auth = format!("Basic {GUEST_AUTH}");
    let app = Served::start(&topology.settings().with("AmqpAuthHeader", auth)).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"prefixed").await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"prefixed");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_publish_finish_then_exits_zero() {
    let stub = StubBroker::start(
        vec![Act::AnswerAfter(Duration::from_secs(1), 200, r#"{"routed":true}"#)],
        Act::Hang,
    )
    .await;
    let mut app = Served::start(&stub.settings()).await;

    let in_flight = app.forward("/api/WebhookForwarder", "text/plain", b"in flight");
    let terminate = async {
        // Signal while the stub is still holding the confirm.
        while stub.received().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.process.terminate();
    };
    let (response, ()) = tokio::join!(in_flight, terminate);

    assert_eq!(response.status(), 200);
    assert!(
        app.process
            .wait_for_exit(std::time::Duration::from_secs(30))
            .await
            .success()
    );
    assert!(
        app.process.output().contains("shutting down"),
        "{}",
        app.process.output()
    );
}

#[tokio::test]
async fn after_sigterm_new_connections_are_refused() {
    let topology = Topology::declare().await;
    let mut app = Served::start(&topology.settings()).await;

    app.process.terminate();
    assert!(
        app.process
            .wait_for_exit(std::time::Duration::from_secs(30))
            .await
            .success()
    );

    assert!(app.request(reqwest::Method::GET, "/").send().await.is_err());
}

#[tokio::test]
async fn a_mistyped_setting_gets_a_did_you_mean_warning() {
    let topology = Topology::declare().await;
    let app = Served::start(&topology.settings().with("PublishConcurency", "8")).await;

    let output = app.process.output();
    assert!(
        output.contains(
            "\"PublishConcurency\" is set but is not a setting handler reads; did you mean PublishConcurrency?"
        ),
        "{output}"
    );
}

// ---- exit codes: the host restarts any exit but 0, and never restarts 0 ----

#[tokio::test]
async fn a_port_already_taken_exits_non_zero_so_the_host_restarts_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let topology = Topology::declare().await;
    let settings = topology.settings().with("FUNCTIONS_CUSTOMHANDLER_PORT", port.as_str());

    let Err((status, output)) = Served::start_with_args(&[], &settings).await else {
        panic!("served on a port another socket holds")
    };

    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("stderr: error: could not listen on 127.0.0.1:"),
        "{output}"
    );
}

#[tokio::test]
async fn a_settings_error_exits_1_not_0() {
    let Err((status, _)) = Served::start_with_args(&[], &AppSettings::new()).await else {
        panic!("started without any broker setting")
    };

    assert_eq!(status.code(), Some(1));
}

/// The exit code of a serving handler sent `signal`, and what it printed.
async fn exit_code_after(signal: &str) -> (Option<i32>, String) {
    let topology = Topology::declare().await;
    let mut app = Served::start(&topology.settings()).await;
    app.process.signal(signal);
    let status = app.process.wait_for_exit(Duration::from_secs(30)).await;
    (status.code(), app.process.output())
}

#[tokio::test]
async fn sigterm_exits_0() {
    let (code, output) = exit_code_after("TERM").await;

    assert_eq!(code, Some(0), "{output}");
}

#[tokio::test]
async fn sigint_exits_0() {
    let (code, output) = exit_code_after("INT").await;

    assert_eq!(code, Some(0), "{output}");
}

#[tokio::test]
async fn start_up_answers_get_slash_well_inside_the_hosts_30_second_window() {
    let topology = Topology::declare().await;

    let app = Served::start(&topology.settings()).await;

    // Generous: the host waits 30 s (customHandler.initializationTimeout);
    // measured here in tens of milliseconds (docs/host-modes.md).
    eprintln!("start-up: spawn to first answered GET / in {:?}", app.ready_after);
    assert!(app.ready_after < Duration::from_secs(10), "{:?}", app.ready_after);
}
