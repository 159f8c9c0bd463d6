//! The package test: `scripts/package` builds `dist/functionapp.zip`, and
//! the `handler` unpacked from it (by `unzip`, as a deploy would) sets up a
//! topology, answers `GET /` and queues a webhook on the real RabbitMQ.
//!
//! It runs a release build, so `scripts/test` runs it as its own step
//! (`cargo test --test package`) after the fast tests.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use test_support::broker::Topology;
use test_support::process::{Handler, Served};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Removes the unpacked package, pass or fail.
struct Unpacked(PathBuf);

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the unpacked `handler <args>` to its end and asserts it succeeded.
async fn run_unpacked(binary: &Path, args: &[&str], topology: &Topology) {
    let mut handler = Handler::spawn_program(binary, args, &topology.amqp_url_settings(), "info");
    let status = handler.wait_for_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "handler {args:?}: {status}\n{}", handler.output());
}

#[tokio::test]
async fn the_packaged_handler_runs_when_unpacked_and_queues_a_webhook() {
    // Its output goes straight to the terminal: the release build takes minutes.
    let built = Command::new(repo().join("scripts/package"))
        .current_dir(repo())
        .status()
        .expect("scripts/package starts");
    assert!(built.success(), "scripts/package failed: {built}");
    let zip = repo().join("dist/functionapp.zip");

    // Exactly the three files, the executable bit kept, nothing secret.
    let listing = run(Command::new("unzip").arg("-Z").arg(&zip));
    let listing = String::from_utf8(listing.stdout).unwrap();
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter(|line| line.starts_with('-'))
        .map(|line| {
            (
                line.split_whitespace().next().unwrap(),
                line.split_whitespace().last().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("-rw-r--r--", "host.json"),
            ("-rw-r--r--", "WebhookForwarder/function.json"),
            ("-rwxr-xr-x", "handler"),
        ],
        "{listing}"
    );

    let unpacked = Unpacked(std::env::temp_dir().join(format!("functionapp-{}", uuid::Uuid::new_v4().simple())));
    run(Command::new("unzip").arg("-q").arg(&zip).arg("-d").arg(&unpacked.0));
    let host_json: Value = serde_json::from_slice(&std::fs::read(unpacked.0.join("host.json")).unwrap()).unwrap();
    assert_shipped_host_json(&host_json);
    let binary = unpacked.0.join("handler");

    let topology = Topology::names();
    run_unpacked(&binary, &["setup", "--queue", &topology.queue], &topology).await;
    run_unpacked(&binary, &["check"], &topology).await;

    let served = Served::start_program(&binary, &[], &topology.amqp_url_settings())
        .await
        .unwrap_or_else(|(status, output)| panic!("the unpacked handler exited with {status}:\n{output}"));
    let health = served.request(reqwest::Method::GET, "/").send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let webhook = served
        .request(reqwest::Method::POST, "/api/WebhookForwarder?type=product")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("old=101&new=101")
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 200);
    let queued = topology.take(1).await;
    assert_eq!(queued[0].body, b"old=101&new=101");
}

/// The host.json the package ships, value by value (docs/host-modes.md says
/// why each is what it is).
fn assert_shipped_host_json(host_json: &Value) {
    let handler = &host_json["customHandler"];
    assert_eq!(handler["description"]["defaultExecutablePath"], "handler");
    // Proxying mode: the body byte for byte; a host without it falls back to
    // payload mode, which the handler serves too.
    assert_eq!(handler["enableProxyingHttpRequest"], true);
    assert_eq!(handler["enableForwardingHttpRequest"], false);
    assert_eq!(
        host_json["extensions"]["http"],
        json!({
            "routePrefix": "api",
            "maxConcurrentRequests": 128,
            "maxOutstandingRequests": 256,
            "dynamicThrottlesEnabled": false,
        })
    );
    // Above the handler's own worst case (slot wait 5 s + publish deadline
    // 30 s), below Consumption's 10-minute cap and Azure's 230 s cut.
    assert_eq!(host_json["functionTimeout"], "00:02:00");
    // HTTP is built into the host: no extension bundle to download.
    assert!(host_json.get("extensionBundle").is_none(), "{host_json}");
}
