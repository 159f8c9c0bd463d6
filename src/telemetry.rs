//! Logging to stdout, which the Functions host records as Information logs
//! (stderr lines would all become Error logs). `RUST_LOG` sets the level.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; `RUST_LOG` overrides the default `info`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        // The host's log viewers show escape codes as garbage.
        .with_ansi(false)
        .with_target(false)
        .init();
}
