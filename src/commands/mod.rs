//! One `run` function per subcommand. Each returns its own error type;
//! `main.rs` prints the error and turns it into the exit code.

use crate::settings::names;

pub mod auth_header;
pub mod check;
pub mod dead_letter;
pub mod relay;
pub mod relay_secret;
pub mod serve;
pub mod setup;

/// Logs a warning for every environment variable that looks like one of our
/// settings but is not (`PublishConcurency`): it would be silently ignored.
pub fn warn_about_mistyped_settings() {
    for lookalike in names::lookalikes_in_env() {
        tracing::warn!(setting = %lookalike.set, meant = lookalike.meant, "{lookalike}");
    }
}
