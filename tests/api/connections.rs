//! Connections that never complete a request: trickled headers (slowloris)
//! and thousands of idle sockets. They are closed after `HeaderReadTimeout`
//! and never stop real webhooks from being served. The idle crowd runs
//! against the real process, whose memory it measures.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use test_support::broker::Topology;
use test_support::host::HostClient;
use test_support::process::Served;

use crate::app::spawn_app;

/// Sends a webhook on a new connection. The app's pooled client may hold a
/// connection that the server has just closed for idling past the short
/// `HeaderReadTimeout` these tests set, and would fail on reusing it.
async fn webhook_on_a_new_connection(app: &HostClient, body: &'static str) -> reqwest::Response {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(app.url("/api/WebhookForwarder"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Reads until the server closes the connection (EOF or reset).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let topology = Topology::declare().await;
    let app = spawn_app(&topology.settings().with("HeaderReadTimeout", "1s")).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /api/WebhookForwarder HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    // One header byte every 200 ms would take 60 s for these 300 bytes.
    let mut cut_off = false;
    for _ in 0..300 {
        if stream.write_all(b"X").await.is_err() {
            cut_off = true;
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut probe)).await {
            cut_off = true;
            break;
        }
    }

    assert!(cut_off, "the trickling connection stayed open");
    let normal = webhook_on_a_new_connection(&app, "still served").await;
    assert_eq!(normal.status(), 200);
}

#[tokio::test]
async fn thousands_of_idle_connections_neither_block_webhooks_nor_linger() {
    let topology = Topology::declare().await;
    let mut app = Served::start(&topology.settings().with("HeaderReadTimeout", "2s")).await;
    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }

    let response = webhook_on_a_new_connection(&app, "past the idle crowd").await;
    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"past the idle crowd");

    for stream in &mut idle {
        let closed = tokio::time::timeout(Duration::from_secs(30), closed_by_server(stream)).await;
        assert!(closed.is_ok(), "an idle connection was still open 30 s later");
    }
    assert!(app.process.is_running());
    let peak_mib = app.process.peak_rss_kib() / 1024;
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB with 3,000 idle connections");
}
