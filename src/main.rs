//! The `handler` executable: with no arguments (as the Functions host starts
//! it) it serves webhooks; `handler relay` drains the queue into an endpoint.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use webhook_forwarder::relay::{self, RelayArgs, RelayOptions};
use webhook_forwarder::settings::Settings;
use webhook_forwarder::{startup, telemetry};

/// Queues every e-conomic webhook on RabbitMQ, and relays the queue onwards.
#[derive(Parser)]
#[command(name = "handler", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Receive webhooks and queue them (the default).
    Serve,
    /// Drain the queue into an HTTP endpoint at the pace it can take.
    Relay(Box<RelayArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => {
            telemetry::init();
            serve().await
        }
        Command::Relay(args) => {
            // The AMQP client logs every closed channel as an error, even the
            // relay's deliberate probes; each of its failures reaches the relay
            // as a result, which logs it with context. RUST_LOG shows them all.
            telemetry::init_with_default("info,lapin=off");
            run_relay(*args).await
        }
    }
}

async fn serve() -> ExitCode {
    // Start-up failures go to stderr, which the host shows as Error logs. A
    // non-zero code makes the host retry, then stop: better than a handler
    // that answers but can publish nothing.
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match startup::bind(settings, startup::shutdown_signal()).await {
        Ok((_addr, server)) => {
            server.await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_relay(args: RelayArgs) -> ExitCode {
    let options = match RelayOptions::from_env(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match relay::run(options, startup::shutdown_signal()).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
