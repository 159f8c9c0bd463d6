//! Logging to stdout, which the Functions host records as Information logs
//! (stderr lines would all become Error logs). `RUST_LOG` sets the level.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; `RUST_LOG` overrides the default `info`.
pub fn init() {
    init_with_default("info");
}

/// Installs the subscriber once; `RUST_LOG` overrides `default`, a filter
/// like `info,lapin=off`.
pub fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        // The host's log viewers show escape codes as garbage.
        .with_ansi(false)
        .with_target(false)
        .init();
}

/// Like [`init_with_default`], logging to stderr: for commands whose stdout
/// is their product (a table, JSON), which logs must not mix into.
pub fn init_on_stderr(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // The host's log viewers show escape codes as garbage.
        .with_ansi(false)
        .with_target(false)
        .init();
}
