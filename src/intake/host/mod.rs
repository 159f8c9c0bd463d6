//! The Functions host's custom-handler protocol: wire types only.

pub mod invocation;
pub mod response;

/// Header carrying the host's id of this invocation (both modes).
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
