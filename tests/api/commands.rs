//! The command line: `serve` is the default, `auth-header` prints exactly
//! what the AmqpAuthHeader setting takes, and a closed stdout ends a
//! subcommand quietly.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use test_support::AppSettings;
use test_support::broker::Topology;
use test_support::process::{Served, run_into_closed_pipe, run_to_end};

#[tokio::test]
async fn serve_is_also_an_explicit_subcommand() {
    let topology = Topology::declare().await;

    let app = Served::start_with_args(&["serve"], &topology.settings())
        .await
        .unwrap_or_else(|(status, output)| panic!("exited with {status}:\n{output}"));

    let response = app.forward("/api/WebhookForwarder", "text/plain", b"served").await;
    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"served");
}

#[tokio::test]
async fn auth_header_prints_the_base64_of_user_and_password_from_piped_lines() {
    let run = run_to_end(&["auth-header"], &AppSettings::new(), "someone\nhunter2 pw\n").await;

    assert!(run.status.success(), "{}", run.output());
    assert_eq!(run.stdout, format!("{}\n", BASE64.encode("someone:hunter2 pw")));
    assert!(!run.output().contains("hunter2"), "{}", run.output());
}

#[tokio::test]
async fn the_printed_auth_header_is_accepted_by_the_handler_and_the_broker() {
    let topology = Topology::declare().await;
    let run = run_to_end(&["auth-header"], &AppSettings::new(), "guest\nguest\n").await;
    assert!(run.status.success(), "{}", run.output());

    let settings = topology.settings().with("AmqpAuthHeader", run.stdout.trim());
    let app = Served::start(&settings).await;
    let response = app
        .forward("/api/WebhookForwarder", "text/plain", b"via auth-header")
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(topology.take(1).await[0].body, b"via auth-header");
}

#[tokio::test]
async fn auth_header_without_a_password_fails_and_prints_no_header() {
    let run = run_to_end(&["auth-header"], &AppSettings::new(), "guest\n").await;

    assert!(!run.status.success());
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("no password was given"), "{}", run.output());
}

#[tokio::test]
async fn an_unknown_subcommand_is_a_usage_error() {
    let run = run_to_end(&["frobnicate"], &AppSettings::new(), "").await;

    assert_eq!(run.status.code(), Some(2), "{}", run.output());
    assert!(run.stderr.contains("unrecognized subcommand"), "{}", run.output());
}

/// `handler check | head -1`, `handler dead-letter list | head -1`, ...: once
/// the reader is gone, every subcommand ends as `ls | head` does, killed
/// quietly by SIGPIPE, instead of panicking with "failed printing to stdout".
#[tokio::test]
async fn no_subcommand_panics_on_a_closed_stdout() {
    use std::os::unix::process::ExitStatusExt;

    let topology = Topology::with_dead_letter().await;
    let queue = topology.queue.as_str();
    let settings = topology
        .amqp_url_settings()
        .with("AmqpRoutingKey", topology.routing_key.as_str());
    let commands: [&[&str]; 6] = [
        &["check"],
        &["setup", "--queue", queue],
        &["dead-letter", "list", "--queue", queue],
        &["dead-letter", "list", "--queue", queue, "--json"],
        &["dead-letter", "purge", "--queue", queue, "--yes"],
        &["relay-secret", "new"],
    ];
    for args in commands {
        let run = run_into_closed_pipe(args, &settings).await;

        assert!(!run.stderr.contains("panicked"), "handler {args:?}: {}", run.stderr);
        assert_eq!(
            run.status.signal(),
            Some(13),
            "handler {args:?} was not ended by SIGPIPE: {}\n{}",
            run.status,
            run.stderr
        );
    }
    // clap writes the help itself and ignores the closed pipe: exit 0, quietly.
    let help = run_into_closed_pipe(&["--help"], &settings).await;
    assert!(
        help.status.success() && help.stderr.is_empty(),
        "{}: {}",
        help.status,
        help.stderr
    );
}
