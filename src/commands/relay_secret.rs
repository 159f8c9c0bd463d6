//! `handler relay-secret new`: prints a fresh secret for the
//! `RelaySigningSecret` setting, so nobody invents one by hand or pastes a
//! secret into a website to generate it.

use std::io::IsTerminal;

use crate::relay::signing;

/// Why no secret was printed.
#[derive(Debug, thiserror::Error)]
pub enum RelaySecretError {
    /// The operating system gave no random bytes.
    #[error("the operating system's random source failed; no secret was made")]
    Random,
}

/// Prints the secret alone on stdout (so `$(handler relay-secret new)`
/// takes it whole); on a terminal, where it goes on stderr.
pub fn new() -> Result<(), RelaySecretError> {
    let secret = signing::new_secret().map_err(|_| RelaySecretError::Random)?;
    if std::io::stdout().is_terminal() {
        eprintln!(
            "Put this in the relay's RelaySigningSecret setting and give your endpoint the same secret; \
             it is as secret as a password:"
        );
    }
    println!("{}", secret.expose());
    Ok(())
}
