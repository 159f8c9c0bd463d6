//! The webhook's way in, in the order it travels: [`startup`] binds and
//! [`server`] accepts; [`routes`] tells the host's modes apart (their wire
//! types in [`host`]) and reads the body; [`forward`] checks the source
//! ([`admission`]) and hands the [`crate::webhook::Webhook`] to
//! [`crate::publish`]; [`error`] is the one place a failure becomes the
//! caller's status.

pub mod admission;
pub mod error;
pub mod forward;
pub mod host;
pub mod routes;
pub mod server;
pub mod startup;
