//! Optional source checks: an allow-list of client networks and a shared
//! secret. Refused requests get 403 and are not published. Behind the
//! Functions host the sender's address is App Service's front-end header
//! `X-Client-IP` in every mode; standalone it is the last `X-Forwarded-For`
//! entry, else the TCP peer (docs/host-modes.md).

use reqwest::Method;

use test_support::assert_no_secret;
use test_support::broker::Topology;
use test_support::host::{CallerRequest, HOST_PEER, caller_response, host_envelope};
use test_support::process::Served;

use crate::app::spawn_app;

const SHARED_SECRET: &str = "shared-Secret-4242";

#[tokio::test]
async fn standalone_the_allow_list_reads_the_last_forwarded_entry() {
    let topology = Topology::declare().await;
    let app = Served::start_standalone(&topology.settings().with("AllowedSourceNetworks", "e-conomic")).await;
    let send_from = |address: &'static str| {
        app.request(Method::POST, "/api/WebhookForwarder")
            .header("x-forwarded-for", address)
            .header("content-type", "text/plain")
            .body(address)
            .send()
    };

    let allowed = send_from("54.72.52.167:51234").await.unwrap();
    let forged_first = send_from("54.72.52.167, 203.0.113.7:4000").await.unwrap();
    let other = send_from("203.0.113.7:4000").await.unwrap();

    assert_eq!(allowed.status(), 200);
    assert_eq!(forged_first.status(), 403);
    assert_eq!(other.status(), 403);
    let queued = topology.take(1).await;
    assert_eq!(queued[0].body, b"54.72.52.167:51234");
    assert!(topology.take_all().await.is_empty(), "a refused webhook was published");
    assert!(
        app.process
            .output()
            .contains("client address 203.0.113.7 is not in AllowedSourceNetworks"),
        "{}",
        app.process.output()
    );
}

#[tokio::test]
async fn in_payload_mode_the_allow_list_reads_the_front_ends_client_ip() {
    let topology = Topology::declare().await;
    let app = Served::start(&topology.settings().with("AllowedSourceNetworks", "e-conomic")).await;
    let mut refused = host_envelope("POST", "", Some("text/plain"), b"refused");
    let headers = &mut refused["Data"]["req"]["Headers"];
    headers["X-Client-IP"] = serde_json::json!(["198.51.100.1"]);
    headers["Client-IP"] = serde_json::json!(["198.51.100.1:999"]);
    // A sender's own X-Forwarded-For entry, which the front end keeps first.
    headers["X-Forwarded-For"] = serde_json::json!(["54.72.52.167, 198.51.100.1:999"]);

    let (allowed_status, _, _) = caller_response(
        app.invoke("inv-a", &host_envelope("POST", "", Some("text/plain"), b"ok"))
            .await,
    )
    .await;
    let (refused_status, _, body) = caller_response(app.invoke("inv-r", &refused).await).await;

    assert_eq!(allowed_status, 200);
    assert_eq!(refused_status, 403);
    assert_eq!(body["error"], "request not allowed");
    assert_eq!(topology.take(1).await[0].body, b"ok");
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn in_proxying_mode_the_allow_list_reads_the_front_ends_client_ip_not_the_hosts_peer() {
    let topology = Topology::declare().await;
    // Even a list that holds the host's peer admits nothing on that alone.
    let settings = topology
        .settings()
        .with("AllowedSourceNetworks", format!("e-conomic,{HOST_PEER}"))
        .with("FUNCTIONS_CUSTOMHANDLER_PORT", "0");
    let app = spawn_app(&settings).await;
    let from_e_conomic = CallerRequest::post("/api/WebhookForwarder?code=k", "text/plain", b"e-conomic");

    let allowed = app.proxy(&from_e_conomic, "inv-allowed").await;
    let without_client_ip = app
        .request(Method::POST, "/api/WebhookForwarder")
        .header("x-ms-invocation-id", "inv-refused")
        .header("x-forwarded-for", HOST_PEER)
        .body("host peer only")
        .send()
        .await
        .unwrap();

    assert_eq!(allowed.status(), 200);
    assert_eq!(without_client_ip.status(), 403);
    assert_eq!(topology.take(1).await[0].body, b"e-conomic");
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn in_legacy_forwarding_mode_the_allow_list_reads_the_front_ends_client_ip() {
    let topology = Topology::declare().await;
    let settings = topology
        .settings()
        .with("AllowedSourceNetworks", "e-conomic")
        .with("FUNCTIONS_CUSTOMHANDLER_PORT", "0");
    let app = spawn_app(&settings).await;
    let forged = app
        .request(Method::POST, "/api/WebhookForwarder")
        .header("x-forwarded-for", "54.72.52.167")
        .header("x-client-ip", "203.0.113.7")
        .body("forged")
        .send()
        .await
        .unwrap();

    let allowed = app
        .forward_legacy(
            &CallerRequest::post("/api/WebhookForwarder", "text/plain", b"legacy"),
            "inv-legacy",
        )
        .await;

    assert_eq!(forged.status(), 403);
    assert_eq!(allowed.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"legacy");
    assert!(topology.take_all().await.is_empty());
}

#[tokio::test]
async fn standalone_without_a_proxy_the_tcp_peer_is_checked() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings().with("AllowedSourceNetworks", "127.0.0.0/8")).await;

    let response = app
        .request(Method::POST, "/api/WebhookForwarder")
        .body("from loopback")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"from loopback");
}

#[tokio::test]
async fn the_shared_secret_is_required_and_never_published() {
    let topology = Topology::declare().await;
    let app = Served::start(&topology.settings().with("WebhookSecret", SHARED_SECRET)).await;
    let post = |path: String| app.request(Method::POST, &path).header("content-type", "text/plain");

    let in_header = post("/api/WebhookForwarder?n=1".into())
        .header("x-webhook-secret", SHARED_SECRET)
        .body("header")
        .send()
        .await
        .unwrap();
    let in_query = post(format!("/api/WebhookForwarder?n=2&secret={SHARED_SECRET}"))
        .body("query")
        .send()
        .await
        .unwrap();
    let wrong = post("/api/WebhookForwarder?secret=guess".into())
        .body("wrong")
        .send()
        .await
        .unwrap();
    let missing = post("/api/WebhookForwarder".into())
        .body("missing")
        .send()
        .await
        .unwrap();

    assert_eq!(in_header.status(), 200);
    assert_eq!(in_query.status(), 200);
    assert_eq!(wrong.status(), 403);
    assert_eq!(missing.status(), 403);
    let queued = topology.take(2).await;
    assert_eq!(queued.len(), 2);
    let queries: Vec<Option<String>> = queued.iter().map(|m| m.header("x-http-query")).collect();
    assert!(
        queries.contains(&Some("n=1".to_owned())) && queries.contains(&Some("n=2".to_owned())),
        "{queries:?}"
    );
    assert!(topology.take_all().await.is_empty());
    let published: String = queued.iter().map(|m| m.properties.to_string()).collect();
    assert_no_secret(&published, &[SHARED_SECRET]);
    assert_no_secret(&app.process.output(), &[SHARED_SECRET]);
}
