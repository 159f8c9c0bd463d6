//! No secret anywhere: under every failure path, neither the auth header, nor
//! the decoded password, nor the function key appears in the handler's
//! output (debug level), in any answer, or in anything published.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;

use test_support::host::{HostClient, host_envelope};
use test_support::process::Served;
use test_support::stub::{Act, StubBroker};
use test_support::{AppSettings, FUNCTION_KEY, assert_no_secret};

const PASSWORD: &str = "Pa55-w0rd-never-printed";

/// Sends one webhook every way a caller or host can, keys included, and
/// returns every answer's status line, headers and body as text.
async fn exercise(app: &HostClient) -> String {
    let mut seen = String::new();
    let query = format!("type=product&code={FUNCTION_KEY}");
    let forwarded = app
        .request(Method::POST, &format!("/api/WebhookForwarder?{query}"))
        .header("x-functions-key", FUNCTION_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("old=1&new=2")
        .send()
        .await
        .unwrap();
    seen.push_str(&format!("{:?}", forwarded.headers()));
    seen.push_str(&forwarded.text().await.unwrap());
    let envelope = host_envelope("POST", &query, Some("text/plain"), b"payload");
    let invoked = app.invoke("inv-secret", &envelope).await;
    seen.push_str(&format!("{:?}", invoked.headers()));
    seen.push_str(&invoked.text().await.unwrap());
    let too_large = app
        .forward(&format!("/api/WebhookForwarder?{query}"), "text/plain", &[b'x'; 2048])
        .await;
    seen.push_str(&too_large.text().await.unwrap());
    let malformed = app
        .invoke(
            "inv-bad",
            &serde_json::json!({ "Data": { "req": { "Url": query, "Method": 5 } } }),
        )
        .await;
    seen.push_str(&malformed.text().await.unwrap());
    let wrong_method = app
        .request(Method::PUT, &format!("/api/WebhookForwarder?{query}"))
        .send()
        .await
        .unwrap();
    seen.push_str(&wrong_method.text().await.unwrap());
    seen
}

#[tokio::test]
async fn no_failure_path_reveals_a_secret() {
    let auth = BASE64.encode(format!("forwarder:{PASSWORD}"));
    let header_value = format!("Basic {auth}");
    let secrets = [PASSWORD, auth.as_str(), header_value.as_str(), FUNCTION_KEY];
    let failures = [
        (
            vec![],
            Act::Answer(401, r#"{"error":"not_authorized","reason":"Login failed"}"#),
        ),
        (vec![], Act::Answer(200, r#"{"routed":false}"#)),
        (vec![], Act::Answer(500, r#"{"error":"internal"}"#)),
        (
            vec![],
            Act::Answer(404, r#"{"error":"not_found","reason":"no exchange"}"#),
        ),
        (
            vec![],
            Act::Answer(400, r#"{"error":"bad_request","reason":"whatever"}"#),
        ),
        (vec![], Act::Hang),
        (vec![], Act::Drop),
        (vec![], Act::Answer(200, r#"{"routed":true}"#)),
    ];
    for (acts, then) in failures {
        let stub = StubBroker::start(acts, then).await;
        let settings = stub
            .settings()
            .with("AmqpAuthHeader", header_value.as_str())
            .with("MaxBodyBytes", "1024")
            .with("PublishDeadline", "600ms")
            .with("PublishAttemptTimeout", "200ms");
        let app = Served::start(&settings).await;

        let answers = exercise(&app).await;

        assert_no_secret(&answers, &secrets);
        assert_no_secret(&app.process.output(), &secrets);
        let published: String = stub.received().iter().map(ToString::to_string).collect();
        assert_no_secret(&published, &secrets);
        assert!(app.process.output().contains("DEBUG"), "debug logging was on");
    }
}

#[tokio::test]
async fn a_start_up_failure_does_not_print_the_password() {
    let auth = BASE64.encode(format!("forwarder:{PASSWORD}"));
    let settings = AppSettings::new()
        .with(
            "AmqpEndpoint",
            "https://user:pw@example.invalid/api/exchanges/v/x/publish",
        )
        .with("AmqpAuthHeader", auth.as_str());

    let Err((status, output)) = Served::start_with_args(&[], &settings).await else {
        panic!("started with credentials in the URL")
    };

    assert!(!status.success());
    assert!(output.contains("AmqpEndpoint"), "{output}");
    assert_no_secret(&output, &[PASSWORD, &auth, "user:pw"]);
}
