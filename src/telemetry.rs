//! Logging to stdout, which the Functions host records as Information logs
//! (stderr lines would all become Error logs). `RUST_LOG` sets the level.

use tracing_subscriber::EnvFilter;

/// The AMQP client logs every closed channel and lost connection as an
/// error, even deliberate ones; each of its failures reaches our code as a
/// result, which logs it with context and the password taken out. So it is
/// quiet unless `RUST_LOG` asks for it.
pub const DEFAULT_FILTER: &str = "info,lapin=off";

/// Installs the subscriber once; `RUST_LOG` overrides [`DEFAULT_FILTER`].
pub fn init() {
    init_with_default(DEFAULT_FILTER);
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
