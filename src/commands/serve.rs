//! `handler` / `handler serve`: read the settings, bind, serve until SIGTERM.

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
}

/// Serves webhooks until SIGTERM or Ctrl-C.
///
/// Start-up failures become a non-zero exit, which makes the Functions host
/// retry, then stop: better than a handler that answers but can publish nothing.
pub async fn run() -> Result<(), ServeError> {
    super::warn_about_mistyped_settings();
    let settings = Settings::from_env()?;
    let (_addr, server) = startup::bind(settings, startup::shutdown_signal()).await?;
    server.await;
    Ok(())
}
