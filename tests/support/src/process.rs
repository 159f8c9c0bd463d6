//! The real `handler` binary in a child process: serving as the Functions
//! host starts it (port from the environment, readiness by polling `GET /`),
//! or running a subcommand (`setup`, `check`, `relay`, ...) as an operator does.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::AppSettings;
use crate::broker::{Topology, amqp_url, management_port, management_url};
use crate::host::HostClient;

/// The `handler` binary cargo built beside the running test or benchmark
/// (`target/<profile>/handler`; tests run from `target/<profile>/deps/`).
pub fn handler_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let mut dir = exe.parent().expect("the test binary is in a directory").to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    let binary = dir.join("handler");
    assert!(
        binary.exists(),
        "{} does not exist: build it first (cargo test and cargo bench do)",
        binary.display()
    );
    binary
}

/// A running `handler` process and everything it printed.
pub struct Handler {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Handler {
    /// `handler <args>` with exactly `settings` as its environment (plus
    /// `PATH`) and `RUST_LOG=<log>`.
    pub fn spawn(args: &[&str], settings: &AppSettings, log: &str) -> Self {
        Self::spawn_program(&handler_binary(), args, settings, log)
    }

    /// `handler relay --queue Q --to URL <extra>` with `AmqpUrl` set for the
    /// local broker; a progress line every second, so tests can read them.
    pub fn relay(topology: &Topology, to: &str, extra: &[&str]) -> Self {
        Self::relay_with(topology, to, extra, AppSettings::new())
    }

    /// Like [`Handler::relay`], with `settings` set too (`RelaySigningSecret`, ...).
    pub fn relay_with(topology: &Topology, to: &str, extra: &[&str], settings: AppSettings) -> Self {
        let mut args = vec![
            "relay",
            "--queue",
            &topology.queue,
            "--to",
            to,
            "--progress-interval",
            "1s",
        ];
        args.extend_from_slice(extra);
        let mut settings = settings.with("AmqpUrl", amqp_url());
        if management_port() != 15672 {
            // The relay reads the management API beside AmqpUrl's broker.
            settings = settings.with("AmqpManagementUrl", management_url());
        }
        Self::spawn(&args, &settings, "info")
    }

    /// Like [`Handler::spawn`], for another copy of the binary (the package test's).
    pub fn spawn_program(program: &Path, args: &[&str], settings: &AppSettings, log: &str) -> Self {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", log)
            .envs(settings.pairs())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = program.parent() {
            command.current_dir(dir);
        }
        Self::spawn_command(command)
    }

    /// Starts `command` (its stdout and stderr piped here), collecting what it prints.
    pub fn spawn_command(mut command: Command) -> Self {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the command starts");
        let output = Arc::new(Mutex::new(String::new()));
        collect_lines(child.stdout.take().expect("piped"), output.clone(), "");
        collect_lines(child.stderr.take().expect("piped"), output.clone(), "stderr: ");
        Self { child, output }
    }

    /// Writes `input` to its standard input and closes it.
    pub async fn send_input(&mut self, input: &str) {
        let mut stdin = self.child.stdin.take().expect("stdin is piped once");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("the handler reads its input");
    }

    /// Everything printed so far: stdout lines, and stderr lines after `stderr: `.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
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

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("the child can be polled").is_none()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the child can be polled")
    }

    /// Sends SIGTERM, as the Functions host, systemd or a container runtime does.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, ...).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `limit`) and lets the output drain.
    pub async fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {limit:?}:\n{}", self.output()))
            .expect("the child can be awaited");
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }

    /// SIGTERM, then asserts a clean exit within 30 s.
    pub async fn stop(&mut self) {
        self.terminate();
        let status = self.wait_for_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "exit {status}:\n{}", self.output());
    }

    /// Peak resident memory of the process so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc is readable");
        let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("VmHWM");
        line.trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("a number of kB")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the handler is running")
    }
}

/// How a subcommand that ran to its end finished.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// stdout and stderr together, for messages and secret checks.
    pub fn output(&self) -> String {
        format!("{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `handler <args>` to its end (at most 60 s) with exactly `settings`,
/// `stdin` piped in, and debug logs on so the secret checks see everything.
pub async fn run_to_end(args: &[&str], settings: &AppSettings, stdin: &str) -> Finished {
    let mut command = subcommand(args, settings);
    command
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = command.spawn().expect("the handler binary starts");
    let mut input = child.stdin.take().expect("piped");
    input.write_all(stdin.as_bytes()).await.expect("stdin is writable");
    drop(input);
    to_the_end(child).await
}

/// Runs `handler <args>` to its end (at most 60 s) with exactly `settings`
/// and its stdout a pipe whose reading end is already closed, as in
/// `handler check | head -1` once `head` has its line: what it printed on
/// stderr and how it ended.
pub async fn run_into_closed_pipe(args: &[&str], settings: &AppSettings) -> Finished {
    let (writer, reader) = tokio::net::unix::pipe::pipe().expect("a pipe");
    drop(reader);
    let stdout = writer.into_blocking_fd().expect("the pipe's writing end");
    let mut command = subcommand(args, settings);
    command.stdin(Stdio::null()).stdout(Stdio::from(stdout));
    to_the_end(command.spawn().expect("the handler binary starts")).await
}

/// `handler <args>` with exactly `settings` (and `PATH`), stderr piped.
fn subcommand(args: &[&str], settings: &AppSettings) -> Command {
    let mut command = Command::new(handler_binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(settings.pairs())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Waits (at most 60 s) for `child` to end; what it printed on the pipes it has.
async fn to_the_end(child: Child) -> Finished {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the subcommand finishes within 60 s")
        .expect("the child can be awaited");
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The handler serving, started as the Functions host starts it: the
/// host's variables set, the port 0 (the handler logs the one it bound), and
/// `GET /` polled every 25 ms until it answers. Derefs to a [`HostClient`]
/// for sending it requests.
pub struct Served {
    /// The process.
    pub process: Handler,
    /// Where it listens.
    pub addr: SocketAddr,
    /// From spawning the process to its first answer to `GET /`: what the
    /// host's `customHandler.initializationTimeout` (30 s) bounds.
    pub ready_after: Duration,
    host: HostClient,
}

impl Served {
    /// Starts `handler` serving with `settings`; panics if it exits instead.
    pub async fn start(settings: &AppSettings) -> Self {
        Self::start_with_args(&[], settings)
            .await
            .unwrap_or_else(|(status, output)| panic!("handler exited with {status} at start-up:\n{output}"))
    }

    /// Like [`Served::start`] with `RUST_LOG=<log>` instead of `debug`: for
    /// benchmarks, where a debug line per webhook would cost CPU and memory.
    pub async fn start_logging(settings: &AppSettings, log: &str) -> Self {
        Self::launch(&handler_binary(), &[], settings, log)
            .await
            .unwrap_or_else(|(status, output)| panic!("handler exited with {status} at start-up:\n{output}"))
    }

    /// Starts `handler <args>`; on an early exit returns its status and output.
    pub async fn start_with_args(args: &[&str], settings: &AppSettings) -> Result<Self, (ExitStatus, String)> {
        Self::start_program(&handler_binary(), args, settings).await
    }

    /// Starts another copy of the binary (the package test's) the same way.
    pub async fn start_program(
        program: &Path,
        args: &[&str],
        settings: &AppSettings,
    ) -> Result<Self, (ExitStatus, String)> {
        // Debug logs: the secret checks must see everything the handler can print.
        Self::launch(program, args, settings, "debug").await
    }

    async fn launch(
        program: &Path,
        args: &[&str],
        settings: &AppSettings,
        log: &str,
    ) -> Result<Self, (ExitStatus, String)> {
        let app_root = program.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let mut environment = AppSettings::new()
            .with("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
            .with("FUNCTIONS_HTTPWORKER_PORT", "0")
            .with("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", uuid::Uuid::new_v4().to_string())
            .with("FUNCTIONS_APP_ROOT_PATH", app_root);
        for (name, value) in settings.pairs() {
            environment = environment.with(name, value);
        }
        Self::spawn_and_wait(program, args, &environment, log).await
    }

    /// Starts `handler` standalone, as an operator runs it outside Azure: none
    /// of the host's variables, `ListenAddress` 127.0.0.1 on port 0.
    pub async fn start_standalone(settings: &AppSettings) -> Self {
        let environment = settings.clone().with("ListenAddress", "127.0.0.1:0");
        // Debug logs: the secret checks must see everything the handler can print.
        Self::spawn_and_wait(&handler_binary(), &[], &environment, "debug")
            .await
            .unwrap_or_else(|(status, output)| panic!("handler exited with {status} at start-up:\n{output}"))
    }

    async fn spawn_and_wait(
        program: &Path,
        args: &[&str],
        environment: &AppSettings,
        log: &str,
    ) -> Result<Self, (ExitStatus, String)> {
        let spawned = Instant::now();
        let mut process = Handler::spawn_program(program, args, environment, log);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            if let Some(addr) = bound_address(&process.output()) {
                break addr;
            }
            if let Some(status) = process.exited() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err((status, process.output()));
            }
            assert!(
                Instant::now() < deadline,
                "no listening line after 10 s:\n{}",
                process.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let host = HostClient::new(addr);
        host.wait_until_ready().await;
        Ok(Self {
            process,
            addr,
            ready_after: spawned.elapsed(),
            host,
        })
    }
}

impl Deref for Served {
    type Target = HostClient;

    fn deref(&self) -> &HostClient {
        &self.host
    }
}

/// The address in the handler's `listening on http://ADDR;` line.
fn bound_address(output: &str) -> Option<SocketAddr> {
    let rest = output.split("listening on http://").nth(1)?;
    rest.split(|c: char| c == ';' || c.is_whitespace()).next()?.parse().ok()
}

/// Appends every line of `pipe` to `into`, each after `prefix`.
fn collect_lines(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
    prefix: &'static str,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut output = into.lock().expect("output lock");
            output.push_str(prefix);
            output.push_str(&line);
            output.push('\n');
        }
    });
}
