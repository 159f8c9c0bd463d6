//! The package test: `scripts/package` builds `dist/functionapp.zip`, and
//! the `handler` unpacked from it (by `unzip`, as a deploy would) sets up a
//! topology, answers `GET /` and queues a webhook on the real RabbitMQ.
//!
//! It runs a release build, so `scripts/test` runs it as its own step
//! (`cargo test --test package`) after the fast tests.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const MANAGEMENT: &str = "http://127.0.0.1:15672";

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

/// The unpacked `handler` with the local broker's settings and `exchange`.
fn handler(dir: &Path, exchange: &str) -> Command {
    let mut command = Command::new(dir.join("handler"));
    command
        .current_dir(dir)
        .env_clear()
        .env("AmqpUrl", "amqp://guest:guest@127.0.0.1/")
        .env("AmqpExchange", exchange);
    command
}

/// Kills the served handler and deletes the test's broker objects, pass or fail.
struct Cleanup {
    dir: PathBuf,
    exchange: String,
    queue: String,
    child: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for path in [
            format!("queues/%2F/{}", self.queue),
            format!("exchanges/%2F/{}", self.exchange),
        ] {
            let _ = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-u", "guest:guest", "-X", "DELETE"])
                .arg(format!("{MANAGEMENT}/api/{path}"))
                .status();
        }
    }
}

#[tokio::test]
async fn the_packaged_handler_runs_when_unpacked_and_queues_a_webhook() {
    run(Command::new(repo().join("scripts/package")).current_dir(repo()));
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

    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut cleanup = Cleanup {
        dir: std::env::temp_dir().join(format!("functionapp-{id}")),
        exchange: format!("test-package-{id}.direct"),
        queue: format!("test-package-{id}"),
        child: None,
    };
    run(Command::new("unzip").arg("-q").arg(&zip).arg("-d").arg(&cleanup.dir));
    let host_json: Value = serde_json::from_slice(&std::fs::read(cleanup.dir.join("host.json")).unwrap()).unwrap();
    assert_eq!(
        host_json["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );

    run(handler(&cleanup.dir, &cleanup.exchange).args(["setup", "--queue", &cleanup.queue]));
    run(handler(&cleanup.dir, &cleanup.exchange).arg("check"));

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    cleanup.child = Some(
        handler(&cleanup.dir, &cleanup.exchange)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut health = None;
    for _ in 0..400 {
        if let Ok(response) = client.get(format!("{base}/")).send().await {
            health = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let health = health.expect("the unpacked handler answers GET / within 10 s");
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let webhook = client
        .post(format!("{base}/api/WebhookForwarder?type=product"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("old=101&new=101")
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 200);
    let queued: Vec<Value> = client
        .post(format!("{MANAGEMENT}/api/queues/%2F/{}/get", cleanup.queue))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued[0]["payload"], "old=101&new=101");
}
