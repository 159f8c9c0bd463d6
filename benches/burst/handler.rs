//! The handler under test: started as the Functions host starts it, with its
//! start-up time, peak memory and CPU read from /proc.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A running handler.
pub struct Handler {
    child: Child,
    /// Its base URL.
    pub base: String,
    /// From spawning the process to the first answered `GET /`.
    pub ready_after: Duration,
}

impl Handler {
    /// Starts the release `handler` publishing to `endpoint`, polling `GET /`
    /// every 5 ms (the host polls every 25 ms) to time its readiness.
    pub async fn start(endpoint: &str, extra: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_handler"))
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("AmqpEndpoint", endpoint)
            .env("AmqpAuthHeader", "Z3Vlc3Q6Z3Vlc3Q=")
            .env("RUST_LOG", "warn")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the handler starts");
        let base = format!("http://127.0.0.1:{port}");
        let probe = reqwest::Client::new();
        loop {
            if probe.get(format!("{base}/")).send().await.is_ok() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "handler not ready in 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Self {
            child,
            base,
            ready_after: started.elapsed(),
        }
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(f64::NAN);
        kib / 1024.0
    }

    /// User plus system CPU time used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the ")" that closes the command name; utime and stime are 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        // CLK_TCK is 100 on Linux x86-64.
        Duration::from_millis(ticks * 10)
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the handler is running")
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
