//! The `handler` executable the Functions host starts.

use std::process::ExitCode;

use webhook_forwarder::settings::Settings;
use webhook_forwarder::{startup, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
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
