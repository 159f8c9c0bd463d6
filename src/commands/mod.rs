//! One `run` function per subcommand. Each returns its own error type;
//! `main.rs` prints the error and turns it into the exit code.

pub mod auth_header;
pub mod check;
pub mod relay;
pub mod serve;
pub mod setup;
