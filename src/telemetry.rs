//! Logging to stdout, which the Functions host records as Information logs
//! (stderr lines would all become Error logs). `RUST_LOG` sets the level.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The AMQP client logs every closed channel and lost connection as an
/// error, even deliberate ones; each of its failures reaches our code as a
/// result, which logs it with context and the password taken out. So it is
/// quiet unless `RUST_LOG` asks for it.
pub const DEFAULT_FILTER: &str = "info,lapin=off";

/// Installs the subscriber once, logging to stdout; `RUST_LOG` overrides
/// [`DEFAULT_FILTER`].
pub fn init() {
    install(std::io::stdout);
}

/// Like [`init`], logging to stderr: for commands whose stdout is their
/// product (a table, JSON), which logs must not mix into.
pub fn init_on_stderr() {
    install(std::io::stderr);
}

fn install<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // The host's log viewers show escape codes as garbage.
        .with_ansi(false)
        .with_target(false)
        .init();
}
