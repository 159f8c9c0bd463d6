//! `handler relay`: drain the queue into an HTTP endpoint (all of it lives in
//! [`crate::relay`]); here only the options are completed from the
//! environment and the run is tied to SIGTERM and Ctrl-C.

use crate::intake::startup;
use crate::relay::{self, RelayArgs, RelayError, RelayOptions, options::OptionsError};

/// Why the relay stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RelayCommandError {
    /// `AmqpUrl` is missing or malformed, or options do not fit together.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The relay could not start (its first connection failed).
    #[error(transparent)]
    Relay(#[from] RelayError),
}

/// Runs the relay until SIGTERM or Ctrl-C, then drains in-flight deliveries.
pub async fn run(args: RelayArgs) -> Result<(), RelayCommandError> {
    super::warn_about_mistyped_settings();
    let options = RelayOptions::from_env(args)?;
    relay::run(options, startup::shutdown_signal()).await?;
    Ok(())
}
