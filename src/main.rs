//! The `handler` executable: the Functions host starts it with no arguments
//! (serve); operators run its other subcommands. This file only dispatches.

use std::fmt::Display;
use std::process::ExitCode;

use clap::Parser;
use webhook_forwarder::cli::{Cli, Command, RelaySecretCommand};
use webhook_forwarder::{commands, telemetry};

// glibc's malloc and free were 14 to 19 % of the handler's CPU under a
// burst (perf); mimalloc cut the CPU per webhook at the cost of about twice
// the peak memory (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    if !matches!(command, Command::Serve) {
        // Rust ignores SIGPIPE, so a println! to a closed pipe
        // (`handler check | head -1`) panics. The subcommands end as `ls |
        // head` does instead: killed quietly by SIGPIPE. Sockets are not
        // affected (Rust writes to them with MSG_NOSIGNAL). The server keeps
        // Rust's default: its stdout belongs to the Functions host.
        sigpipe::reset();
    }
    if matches!(command, Command::DeadLetter(_) | Command::RelaySecret(_)) {
        // Their stdout is a table, JSON or a secret: logs go to stderr.
        telemetry::init_on_stderr();
    } else {
        telemetry::init();
    }
    match command {
        Command::Serve => exit_code(commands::serve::run().await),
        Command::Setup(args) => exit_code(commands::setup::run(args).await),
        Command::Check(args) => exit_code(commands::check::run(args).await),
        Command::AuthHeader => exit_code(commands::auth_header::run()),
        Command::Relay(args) => exit_code(commands::relay::run(*args).await),
        Command::DeadLetter(command) => exit_code(commands::dead_letter::run(command).await),
        Command::RelaySecret(RelaySecretCommand::New) => exit_code(commands::relay_secret::new()),
    }
}

/// Failures go to stderr, which the Functions host shows as Error logs.
fn exit_code(result: Result<(), impl Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
