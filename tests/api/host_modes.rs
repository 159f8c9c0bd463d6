//! The real binary, started as the host starts it, serves all three of the
//! host's modes on its one port: which one the host uses depends only on
//! host.json and the host's version (docs/host-modes.md).

use test_support::broker::Topology;
use test_support::host::{CallerRequest, caller_response, host_envelope};
use test_support::process::Served;

#[tokio::test]
async fn the_handler_serves_proxying_payload_and_legacy_forwarding_mode_alike() {
    let topology = Topology::declare().await;
    let app = Served::start(&topology.settings()).await;
    let caller = |body: &[u8]| CallerRequest::post("/api/WebhookForwarder?code=k", "text/plain", body);

    let proxied = app.proxy(&caller(b"proxying"), "inv-proxy").await;
    let (payload_status, _, _) = caller_response(
        app.invoke(
            "inv-payload",
            &host_envelope("POST", "code=k", Some("text/plain"), b"payload"),
        )
        .await,
    )
    .await;
    let forwarded = app.forward_legacy(&caller(b"legacy"), "inv-legacy").await;

    assert_eq!(proxied.status(), 200);
    assert_eq!(payload_status, 200);
    assert_eq!(forwarded.status(), 200);
    let mut queued: Vec<(String, Vec<u8>)> = topology.take(3).await.into_iter().map(|m| (m.id(), m.body)).collect();
    queued.sort();
    assert_eq!(
        queued,
        [
            ("inv-legacy".to_owned(), b"legacy".to_vec()),
            ("inv-payload".to_owned(), b"payload".to_vec()),
            ("inv-proxy".to_owned(), b"proxying".to_vec()),
        ]
    );
}
