//! `handler` / `handler serve`: read the settings, bind, serve until SIGTERM.
//!
//! The exit code is the Functions host's only clue: it does not restart a
//! handler that exits 0, and restarts any other (stopping the app after 3
//! failures in 30 minutes). So 0 means exactly one thing here: a shutdown
//! signal asked us to stop. Every other way out is non-zero.

use std::future::Future;

use tokio::sync::oneshot;

use crate::intake::startup::{self, StartupError};
use crate::settings::{Settings, SettingsError};

/// Why the handler could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Binding or building the publisher failed.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The server stopped although no shutdown signal came: exiting 0 would
    /// leave the app dead until the instance recycles, so this is a failure.
    #[error("the server stopped without a shutdown signal; exiting non-zero so the host restarts the handler")]
    StoppedUnasked,
}

/// Serves webhooks until SIGTERM or Ctrl-C.
///
/// Start-up failures become a non-zero exit, which makes the Functions host
/// retry, then stop: better than a handler that answers but can publish nothing.
pub async fn run() -> Result<(), ServeError> {
    super::warn_about_mistyped_settings();
    let settings = Settings::from_env()?;
    serve_until(settings, startup::shutdown_signal()).await
}

/// Serves until `shutdown` resolves; `Ok` only if it did.
pub async fn serve_until(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (signalled, was_signalled) = oneshot::channel();
    let shutdown = async move {
        shutdown.await;
        let _ = signalled.send(());
    };
    let (_addr, server) = startup::bind(settings, shutdown).await?;
    server.await;
    stopped_because(was_signalled)
}

/// `Ok` when the shutdown signal is what stopped the server.
fn stopped_because(mut was_signalled: oneshot::Receiver<()>) -> Result<(), ServeError> {
    match was_signalled.try_recv() {
        Ok(()) => Ok(()),
        Err(_) => Err(ServeError::StoppedUnasked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_signal_makes_a_clean_stop() {
        let (signalled, was_signalled) = oneshot::channel();
        signalled.send(()).unwrap();
        assert!(stopped_because(was_signalled).is_ok());

        let (signalled, was_signalled) = oneshot::channel::<()>();
        drop(signalled);
        assert!(matches!(
            stopped_because(was_signalled),
            Err(ServeError::StoppedUnasked)
        ));
        let (_pending, was_signalled) = oneshot::channel::<()>();
        assert!(matches!(
            stopped_because(was_signalled),
            Err(ServeError::StoppedUnasked)
        ));
    }
}
