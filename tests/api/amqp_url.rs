//! The `AmqpUrl` setting: the URL from the CloudAMQP details page is all the
//! handler needs; the seed's two settings still win when given.

use test_support::broker::{GUEST_AUTH, Topology, amqp_url_settings_for, management_url};
use test_support::process::Served;
use test_support::{AppSettings, assert_no_secret};

fn amqp_url_settings(url: &str, exchange: &str) -> AppSettings {
    amqp_url_settings_for(url).with("AmqpExchange", exchange)
}

#[tokio::test]
async fn amqp_url_alone_is_enough_to_serve_and_publish() {
    let topology = Topology::declare().await;
    let app = Served::start(&amqp_url_settings("amqp://guest:guest@127.0.0.1/", &topology.exchange)).await;

    let response = app
        .forward(
            "/api/WebhookForwarder?type=product",
            "application/x-www-form-urlencoded",
            b"old=101&new=101",
        )
        .await;

    assert_eq!(response.status(), 200);
    let queued = topology.take(1).await;
    assert_eq!(queued[0].body, b"old=101&new=101");
    assert!(
        app.process
            .output()
            .contains(&format!("publish endpoint {}/api/exchanges/%2F/", management_url())),
        "{}",
        app.process.output()
    );
    assert_no_secret(&app.process.output(), &[]);
}

#[tokio::test]
async fn explicit_endpoint_and_auth_header_win_over_amqp_url() {
    let topology = Topology::declare().await;
    // If AmqpUrl won, the broker would refuse these credentials and the caller would get 502.
    let mut settings = amqp_url_settings("amqp://nobody:n0t-the-pa55word@127.0.0.1/", "unused.direct");
    settings = settings
        .with("AmqpEndpoint", topology.endpoint())
        .with("AmqpAuthHeader", GUEST_AUTH);
    let app = Served::start(&settings).await;

    let response = app
        .forward("/api/WebhookForwarder", "text/plain", b"explicit wins")
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"explicit wins");
    assert_no_secret(&app.process.output(), &["n0t-the-pa55word"]);
}

#[tokio::test]
async fn a_malformed_amqp_url_exits_non_zero_without_echoing_it() {
    let settings = amqp_url_settings("amqps://user:s3cret-in-url@/vhost", "x");

    let Err((status, output)) = Served::start_with_args(&[], &settings).await else {
        panic!("started with a URL without a host")
    };

    assert!(!status.success());
    assert!(output.contains("setting AmqpUrl is invalid"), "{output}");
    assert_no_secret(&output, &["s3cret-in-url"]);
}

#[tokio::test]
async fn a_wrong_password_in_amqp_url_is_blamed_on_amqp_url_not_on_the_auth_header() {
    let topology = Topology::declare().await;
    let settings = topology
        .amqp_url_settings()
        .with("AmqpUrl", "amqp://guest:wr0ng-pa55@127.0.0.1/");
    let app = Served::start(&settings).await;

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"x").await;

    assert_eq!(response.status(), 502);
    let output = app.process.output();
    assert!(output.contains("check setting AmqpUrl"), "{output}");
    assert!(!output.contains("AmqpAuthHeader"), "{output}");
    assert_no_secret(&output, &["wr0ng-pa55"]);
}
