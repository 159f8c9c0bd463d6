//! Start-up and shutdown: settings errors, readiness, graceful SIGTERM.

use std::time::Duration;

use crate::helpers::{GUEST_AUTH, TestApp, Topology, settings_for, with};
use crate::stub::{Act, StubBroker};

#[tokio::test]
async fn a_missing_endpoint_exits_non_zero_naming_the_setting() {
    let settings = vec![("AmqpAuthHeader".to_owned(), GUEST_AUTH.to_owned())];

    let Err((status, output)) = TestApp::try_start(&settings).await else {
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
    let settings = with(
        settings_for(&topology.endpoint()),
        &[("AmqpAuthHeader", "Basic hunter2-not-base64!")],
    );

    let Err((status, output)) = TestApp::try_start(&settings).await else {
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
    let app = TestApp::start(&with(settings_for(&topology.endpoint()), &[("AmqpAuthHeader", &auth)])).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"prefixed").await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].payload, b"prefixed");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_publish_finish_then_exits_zero() {
    let stub = StubBroker::start(
        vec![Act::AnswerAfter(Duration::from_secs(1), 200, r#"{"routed":true}"#)],
        Act::Hang,
    )
    .await;
    let mut app = TestApp::start(&settings_for(&stub.endpoint())).await;

    let in_flight = app.forward("/api/WebhookForwarder", "text/plain", b"in flight");
    let terminate = async {
        // Signal while the stub is still holding the confirm.
        while stub.received().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.terminate();
    };
    let (response, ()) = tokio::join!(in_flight, terminate);

    assert_eq!(response.status(), 200);
    assert!(app.wait_for_exit().await.success());
    assert!(app.output().contains("shutting down"), "{}", app.output());
}

#[tokio::test]
async fn after_sigterm_new_connections_are_refused() {
    let topology = Topology::declare().await;
    let mut app = TestApp::for_topology(&topology, &[]).await;

    app.terminate();
    assert!(app.wait_for_exit().await.success());

    assert!(app.request(reqwest::Method::GET, "/").send().await.is_err());
}
