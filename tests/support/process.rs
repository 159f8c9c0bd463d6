//! The real `handler` binary in a child process: `handler relay ...` as an
//! operator starts it, or `handler` serving as the Functions host starts it.

use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::broker::{AMQP_URL, TestQueue};

/// Runs `handler <args>` to completion (setup, check) and returns its status and output.
pub async fn run_to_end(args: &[&str], settings: &[(&str, String)]) -> (ExitStatus, String) {
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut handler = Handler::spawn(args, &settings, "info");
    let status = handler.wait_for_exit(Duration::from_secs(60)).await;
    (status, handler.output())
}

/// A running `handler` process and everything it printed.
pub struct Handler {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Handler {
    /// `handler relay --queue Q --to URL <extra>` with `AmqpUrl` set for the
    /// local broker; quick progress lines so tests can see them.
    pub fn relay(queue: &TestQueue, to: &str, extra: &[&str]) -> Self {
        let mut args = vec!["relay", "--queue", &queue.name, "--to", to, "--progress-interval", "1s"];
        args.extend_from_slice(extra);
        Self::spawn(&args, &[("AmqpUrl", AMQP_URL)], "info")
    }

    /// The binary with exactly these arguments, settings and log level.
    pub fn spawn(args: &[&str], settings: &[(&str, &str)], log: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", log)
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the handler binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        super::common::collect_lines(child.stdout.take().unwrap(), output.clone(), "");
        super::common::collect_lines(child.stderr.take().unwrap(), output.clone(), "stderr: ");
        Self { child, output }
    }

    /// Everything printed so far, stdout and stderr.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle`; panics after `limit`.
    pub async fn wait_for_output(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} after {limit:?} in:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM, as systemd, a container runtime or the Functions host does.
    pub fn terminate(&self) {
        super::common::terminate(&self.child);
    }

    /// Waits for the process to exit (at most `limit`) and lets the output drain.
    pub async fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {limit:?}:\n{}", self.output()))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }

    /// SIGTERM, then asserts a clean exit within 30 s.
    pub async fn stop(&mut self) {
        self.terminate();
        let status = self.wait_for_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "exit {status}:\n{}", self.output());
    }
}

/// The forwarder, serving standalone on a free port.
pub struct Forwarder {
    /// The running process.
    pub process: Handler,
    /// Its base URL.
    pub base: String,
}

impl Forwarder {
    /// Starts the forwarder with these settings and waits until it answers.
    pub async fn start(settings: &[(&str, String)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let mut settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        settings.push(("FUNCTIONS_CUSTOMHANDLER_PORT", &port));
        let process = Handler::spawn(&[], &settings, "info");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..400 {
            if reqwest::get(&base).await.is_ok() {
                return Self { process, base };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("forwarder not ready after 10 s:\n{}", process.output());
    }

    /// Sends a webhook as e-conomic does, with the function key in the query.
    pub async fn send(&self, query: &str, content_type: &str, body: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/api/WebhookForwarder?{query}", self.base))
            .header("Content-Type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}
