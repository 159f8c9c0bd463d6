//! The Functions host's custom-handler protocol: wire types, the headers the
//! handler reads, and which mode host.json selects.

pub mod invocation;
pub mod mode;
pub mod response;

/// Header carrying the host's id of this invocation (both modes).
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
/// Header the host adds in proxying mode only (`enableProxyingHttpRequest`),
/// set to the same invocation id, over any value the caller sent.
pub const PROXY_INVOCATION_ID_HEADER: &str = "x-ms-invocation-id";
/// Headers App Service's front end writes with the sender's address
/// (`X-Client-IP`: address; `Client-IP`: address:port), in order of preference.
pub const FRONT_END_CLIENT_HEADERS: [&str; 2] = ["x-client-ip", "client-ip"];
