//! The README's quick start, run as written, from `scripts/run-local` to the
//! relay's delivery: the block marked `run by tests/docs/quick_start.rs` is
//! read from README.md, each command in it run in turn.
//!
//! Its first command (terminal 1) is a server: it runs until the handler
//! listens. A command ending in `&` starts in the background, as in a shell.
//! `handler relay` runs until the endpoint printed the webhook, then gets
//! Ctrl-C (SIGINT), as a user would. Every other command runs to its end and
//! must exit 0. The page's ports and vhost are moved to free ones and a vhost
//! of the run's own (see tests/support/src/docs/run.rs); `scripts/run-local`
//! takes them, as it takes a user's, from `AmqpUrl` and `ListenAddress`.

use std::path::Path;
use std::time::Duration;

use test_support::broker::take_all_in;
use test_support::docs::page::{Mark, Page};
use test_support::docs::run::Sandbox;
use test_support::process::handler_binary;
use test_support::target::free_address;

const THIS_FILE: &str = "tests/docs/quick_start.rs";
/// A hang guard for run-local's first release build on a loaded machine, not a measurement.
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);
const LIMIT: Duration = Duration::from_secs(120);

/// The commands of the block, `\` continuations joined.
fn quick_start(readme: &Page) -> Vec<String> {
    let block = readme
        .blocks
        .iter()
        .find(|b| b.mark == Some(Mark::RunBy(THIS_FILE.to_owned())))
        .expect("README.md has a block marked `docs-test: run by tests/docs/quick_start.rs`");
    let mut commands: Vec<String> = Vec::new();
    let mut continued = false;
    for (line, _) in &block.lines {
        match commands.last_mut() {
            Some(command) if continued => {
                command.push('\n');
                command.push_str(line);
            }
            _ => commands.push(line.clone()),
        }
        continued = line.trim_end().ends_with('\\');
    }
    commands.retain(|c| !c.trim().is_empty());
    commands
}

/// The command without its trailing `# comment`, and the comment.
fn split_comment(command: &str) -> (&str, &str) {
    match command.rfind("  #") {
        Some(at) => (command[..at].trim_end(), command[at..].trim_start_matches([' ', '#'])),
        None => (command.trim_end(), ""),
    }
}

/// `name count` pairs out of `rabbitmqctl list_queues name messages` (tab-separated rows).
fn queue_rows(listing: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(name, _)| *name != "name")
        .map(|(name, count)| (name.to_owned(), count.trim().to_owned()))
        .collect();
    rows.sort();
    rows
}

/// The same pairs out of the README's comment: `e-conomic-webhooks 1, e-conomic-webhooks.dead-letter 0`.
fn commented_rows(comment: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = comment
        .split(',')
        .filter_map(|pair| pair.trim().rsplit_once(' '))
        .map(|(name, count)| (name.to_owned(), count.to_owned()))
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_runs_as_written_from_run_local_to_the_relays_delivery() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = Page::read(&root.join("README.md"));
    let commands = quick_start(&readme);
    let handler_port = free_address().port().to_string();
    let endpoint_port = free_address().port().to_string();
    let handler = handler_binary();
    let sandbox = Sandbox::create("quickstart", root, handler.parent().expect("a directory")).await;
    let listen = format!("127.0.0.1:{handler_port}");
    let url = sandbox.amqp_url();
    let sandbox = sandbox
        .moving("127.0.0.1:8080", &listen)
        .moving("127.0.0.1:8000", &format!("127.0.0.1:{endpoint_port}"))
        .moving("demo-endpoint 8000", &format!("demo-endpoint {endpoint_port}"))
        .with_env("ListenAddress", &listen)
        .with_env("AmqpUrl", &url);

    let (first, rest) = commands.split_first().expect("the quick start has commands");
    assert!(
        split_comment(first).0 == "scripts/run-local" && split_comment(first).1.contains("terminal 1"),
        "the quick start begins with run-local in terminal 1: {first:?}"
    );
    let mut servers = vec![sandbox.start(first)];
    servers[0].wait_for_output("listening on", BUILD_LIMIT).await;

    let mut endpoint_index = None;
    let mut delivered = false;
    let mut sent_body = String::new();
    for command in rest {
        let (typed, comment) = split_comment(command);
        if let Some(background) = typed.strip_suffix('&') {
            servers.push(sandbox.start(background));
            if background.contains("demo-endpoint") {
                endpoint_index = Some(servers.len() - 1);
                // What a user sees before going on: it listens.
                servers[servers.len() - 1]
                    .wait_for_output("demo endpoint on", LIMIT)
                    .await;
            }
            continue;
        }
        if typed.contains("handler relay") {
            let endpoint = &servers[endpoint_index.expect("the endpoint starts before the relay")];
            let mut relay = sandbox.start(typed);
            let arrival = format!("body={sent_body}");
            endpoint.wait_for_output(&arrival, LIMIT).await;
            relay.signal("INT");
            let status = relay.wait_for_exit(LIMIT).await;
            assert!(status.success(), "the relay after Ctrl-C: {status}\n{}", relay.output());
            delivered = true;
            continue;
        }
        let ran = sandbox.run(typed).await;
        assert_eq!(ran.code, Some(0), "`{typed}` failed:\n{}", ran.output);
        if typed.starts_with("curl") {
            assert!(
                ran.output.contains("HTTP/1.1 200") && ran.output.contains("\"queued\":true"),
                "the webhook was not queued:\n{}",
                ran.output
            );
            sent_body = body_of(typed);
        }
        if typed.starts_with("rabbitmqctl list_queues name messages") {
            assert_eq!(
                queue_rows(&ran.output),
                commented_rows(comment),
                "README's comment on `{typed}` says {comment:?}; it printed:\n{}",
                ran.output
            );
        }
    }
    assert!(delivered, "the quick start has no `handler relay` line");

    let endpoint = &servers[endpoint_index.expect("a demo endpoint")];
    let printed = sandbox.output_as_shown(&endpoint.output());
    assert!(
        printed.contains("POST /webhook.php?type=product application/x-www-form-urlencoded id="),
        "the endpoint did not get the webhook as e-conomic sent it:\n{printed}"
    );
    // Over AMQP, not the management API, whose counts lag by seconds.
    let left = take_all_in(sandbox.vhost(), "e-conomic-webhooks", 10).await;
    assert!(left.is_empty(), "the relay left the webhook on the queue: {left:?}");
    for server in &mut servers {
        server.signal("INT");
        server.wait_for_exit(LIMIT).await;
    }
}

/// The `-d` body of the README's curl line.
fn body_of(curl: &str) -> String {
    let after = curl
        .split("-d '")
        .nth(1)
        .expect("the curl line sends a body with -d '...'");
    after.split('\'').next().unwrap_or_default().to_owned()
}
