//! Running the docs' commands as a user types them, on a vhost of their own,
//! and comparing what they print with what the page shows (snapbox).
//!
//! A page's commands say `amqp://guest:guest@127.0.0.1/` (the default vhost
//! `/`), `rabbitmqctl list_queues`, `.../api/queues/%2F/...`. Run as typed,
//! they would share `/` with every test of every engineer on the machine. So
//! each run gets a vhost of its own, and the [`Sandbox`] moves each command
//! there before it runs (the URL's vhost, `%2F`, `rabbitmqctl -p`) and shows
//! the vhost back as `/` in what it printed: the page keeps what a user types
//! and sees. Ports a page names (the quick start's 8080 and 8000) are moved
//! to free ones the same way, both ways.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use regex::Regex;
use snapbox::{Assert, Data, Redactions};
use tokio::process::{Child, Command};

use super::page::{Example, Page};
use crate::broker::{api_send, delete_now};
use crate::process::Handler;

/// How long one command of a page may take (a hang guard, not a measurement).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A vhost of the run's own (deleted when dropped), and the moves between
/// what a page says and where the run really is.
pub struct Sandbox {
    vhost: String,
    root: PathBuf,
    path: String,
    /// (as the page says it, as it is in this run), e.g. ("127.0.0.1:8080", "127.0.0.1:41234").
    moves: Vec<(String, String)>,
    env: Vec<(String, String)>,
}

/// What a command did.
#[derive(Debug)]
pub struct Ran {
    /// Its exit code; None when a signal ended it.
    pub code: Option<i32>,
    /// stdout and stderr together, in the order written, shown as the page would show it.
    pub output: String,
}

impl Sandbox {
    /// Creates the vhost `docs-<label>-<random>` with `guest` allowed on it;
    /// commands run in `root` with the `handler` in `handler_dir` on `PATH`.
    pub async fn create(label: &str, root: &Path, handler_dir: &Path) -> Self {
        let vhost = format!("docs-{label}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let created = api_send(reqwest::Method::PUT, &format!("vhosts/{vhost}"), None).await;
        assert!((200..300).contains(&created), "creating vhost {vhost}: {created}");
        let everything = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        let allowed = api_send(
            reqwest::Method::PUT,
            &format!("permissions/{vhost}/guest"),
            Some(&everything),
        )
        .await;
        assert!((200..300).contains(&allowed), "permissions on {vhost}: {allowed}");
        let path = format!(
            "{}:{}",
            handler_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Self {
            vhost,
            root: root.to_owned(),
            path,
            moves: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The vhost's name.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// `amqp://guest:guest@127.0.0.1/<vhost>`: the page's local broker URL, moved.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1/{}", self.vhost)
    }

    /// Moves `as_written` (a port, `127.0.0.1:8080`) to `really` in commands, and back in output.
    pub fn moving(mut self, as_written: &str, really: &str) -> Self {
        self.moves.push((as_written.to_owned(), really.to_owned()));
        self
    }

    /// Sets an environment variable for every command (the quick start's
    /// `ListenAddress` and `AmqpUrl` for `scripts/run-local`).
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The command as it runs here: moved to the vhost and ports of the run.
    pub fn command_as_run(&self, typed: &str) -> String {
        let vhost = &self.vhost;
        // The URL of the local broker with the default vhost, `…@127.0.0.1/`.
        let url = Regex::new(r#"(@127\.0\.0\.1(?::\d+)?/)([\s'"]|$)"#).expect("a valid pattern");
        let mut command = url.replace_all(typed, format!("${{1}}{vhost}${{2}}")).into_owned();
        command = command.replace("/%2F/", &format!("/{vhost}/"));
        let rabbitmqctl = Regex::new(r"\brabbitmqctl ([a-z_]+)").expect("a valid pattern");
        command = rabbitmqctl
            .replace_all(&command, format!("rabbitmqctl $1 -p {vhost}"))
            .into_owned();
        for (as_written, really) in &self.moves {
            command = command.replace(as_written, really);
        }
        command
    }

    /// What a command printed, as the page shows it: the vhost as `/`, ports as written.
    pub fn output_as_shown(&self, printed: &str) -> String {
        let vhost = &self.vhost;
        let mut output = printed
            .replace(&format!("/{vhost}/"), "/%2F/")
            .replace(&format!("/{vhost}"), "/")
            .replace(vhost, "/");
        for (as_written, really) in self.moves.iter().rev() {
            output = output.replace(really, as_written);
        }
        output
    }

    /// A command for `bash -c`, in the page's directory, with a clean
    /// environment: `PATH` (the `handler` first), `HOME`, `LANG`.
    pub fn bash(&self, typed: &str) -> Command {
        let mut bash = Command::new("bash");
        bash.arg("-c")
            .arg(self.command_as_run(typed))
            .current_dir(&self.root)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned()))
            .env("LANG", "C.UTF-8")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        bash
    }

    /// Runs `typed` to its end, stdout and stderr into one pipe as on a terminal.
    pub async fn run(&self, typed: &str) -> Ran {
        let (reader, writer) = tokio::net::unix::pipe::pipe().map(|(tx, rx)| (rx, tx)).expect("a pipe");
        let writer = writer.into_blocking_fd().expect("the pipe's writing end");
        let mut bash = self.bash(typed);
        bash.stdout(Stdio::from(writer.try_clone().expect("a second writing end")))
            .stderr(Stdio::from(writer));
        let mut child: Child = bash.spawn().expect("bash starts");
        // Drop our copies of the writing end (moved into the Command above),
        // so the reader sees the end when the command and its children close theirs.
        drop(bash);
        let read = async {
            let mut reader = reader;
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut bytes)
                .await
                .expect("the output is readable");
            bytes
        };
        let (bytes, status) = tokio::time::timeout(COMMAND_LIMIT, async { tokio::join!(read, child.wait()) })
            .await
            .unwrap_or_else(|_| panic!("`{typed}` did not finish within {COMMAND_LIMIT:?}"));
        Ran {
            code: status.expect("the command can be awaited").code(),
            output: self.output_as_shown(&String::from_utf8_lossy(&bytes)),
        }
    }
}

impl Sandbox {
    /// Starts `typed` in a terminal of its own, as a server is: it runs
    /// until stopped, and what it prints is collected (shown as the page would).
    pub fn start(&self, typed: &str) -> Handler {
        Handler::spawn_command(self.bash(typed))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        delete_now(vec![format!("vhosts/{}", self.vhost)]);
    }
}

/// The placeholders a page may use besides snapbox's own `[..]` (any text
/// within a line) and `...` (any lines): values that differ each run.
pub fn placeholders() -> Redactions {
    let mut redactions = Redactions::new();
    let uuid = Regex::new(r"(?<redacted>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
        .expect("a valid pattern");
    let timestamp = Regex::new(r"(?<redacted>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)").expect("a valid pattern");
    redactions.insert("[UUID]", uuid).expect("a valid placeholder");
    redactions
        .insert("[TIMESTAMP]", timestamp)
        .expect("a valid placeholder");
    redactions
}

/// One example that did not print what its page shows.
#[derive(Debug)]
pub struct Drift {
    /// `file:line` of its command.
    pub at: String,
    /// What went wrong, with the diff.
    pub report: String,
    /// What it printed, with the page's placeholders kept where they
    /// matched: what the page should show instead.
    pub shown: String,
    /// Where the page's expected output is.
    pub example: Example,
}

/// Runs every tested example of `page` in order in `sandbox`: the drifts.
/// `export NAME=value` holds for the page's later commands, and `unset NAME`
/// ends it, as in a terminal.
pub async fn run_page(page: &Page, sandbox: &mut Sandbox) -> Vec<Drift> {
    let export = Regex::new(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.+)$").expect("a valid pattern");
    let unset = Regex::new(r"^unset ([A-Za-z_][A-Za-z0-9_]*)$").expect("a valid pattern");
    let assert = Assert::new().redact_with(placeholders());
    let mut drifts = Vec::new();
    for block in page.tested_blocks() {
        let Ok(examples) = block.examples() else {
            continue; // Page::rule_breaches reports it
        };
        for example in examples {
            if let Some(set) = export.captures(example.command.trim()) {
                let value = shell_value(&sandbox.command_as_run(&set[2]));
                sandbox.env.retain(|(name, _)| name != &set[1]);
                sandbox.env.push((set[1].to_owned(), value));
            } else if let Some(gone) = unset.captures(example.command.trim()) {
                sandbox.env.retain(|(name, _)| name != &gone[1]);
            }
            let ran = sandbox.run(&example.command).await;
            let at = page.at(example.line);
            let printed = ran.output.trim_end_matches('\n').to_owned();
            let expected = Data::text(example.expected.clone());
            let (shown, _) = assert.normalize(Data::text(printed.clone()), expected.clone());
            let shown = shown.render().unwrap_or_default();
            let mut problems = Vec::new();
            if !example.status.admits(ran.code) {
                problems.push(format!(
                    "exit code {:?}, the page shows {:?} (add `? <code>` below the command for a failure)",
                    ran.code, example.status
                ));
            }
            if let Err(diff) = assert.try_eq(Some(&at), Data::text(printed), expected) {
                problems.push(diff.to_string());
            }
            if !problems.is_empty() {
                drifts.push(Drift {
                    report: format!("{at}: `$ {}`\n{}", example.command, problems.join("\n")),
                    at,
                    shown,
                    example,
                });
            }
        }
    }
    drifts
}

/// What bash makes of the right-hand side of an assignment, quotes and all
/// (`'webhook.{query.type|other}'` is `webhook.{query.type|other}`).
fn shell_value(written: &str) -> String {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("value={written}; printf '%s' \"$value\""))
        .output()
        .expect("bash runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes what the drifted examples printed into the page, in place of what
/// it showed (placeholders kept where they matched): `DOCS_EXAMPLES=overwrite`.
pub fn overwrite(page: &Page, drifts: &[Drift]) {
    let mut text = page.text.clone();
    let mut ranges: Vec<(&std::ops::Range<usize>, &str)> = drifts
        .iter()
        .map(|d| (&d.example.expected_range, d.shown.as_str()))
        .collect();
    ranges.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    for (range, shown) in ranges {
        let indent = {
            let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
            " ".repeat(range.start - line_start)
        };
        let mut replacement = shown.replace('\n', &format!("\n{indent}"));
        if range.is_empty() && !shown.is_empty() {
            replacement.push('\n');
            replacement.push_str(&indent);
        }
        text.replace_range(range.clone(), &replacement);
    }
    std::fs::write(&page.path, text).unwrap_or_else(|e| panic!("{}: {e}", page.path.display()));
}
