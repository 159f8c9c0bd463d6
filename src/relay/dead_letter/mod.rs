//! Dead letters: messages set aside because the target kept refusing them
//! while it took the others. The relay moves them ([`publish`]); operators
//! look at them ([`inspect`], `handler dead-letter list`) and put them back
//! ([`replay`], `handler dead-letter replay`, and `purge`). [`headers`] says
//! what a dead letter carries and reads it back.
//!
//! For queue `Q` they live in the queue `Q.dead-letter`, fed by the fanout
//! exchange of the same name (`handler setup --dead-letter`).

pub mod headers;
pub mod inspect;
pub mod publish;
pub mod replay;

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

pub use publish::{DeadLetterError, DeadLetters, Reason};

/// Whether the broker said NOT_FOUND: a passive declare or a publish named a
/// queue or exchange that is not there.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(e) if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}
