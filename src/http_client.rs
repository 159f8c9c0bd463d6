//! The one way this crate builds an outbound HTTP client (to the broker's
//! management API, to the relay's target) and describes its failures.

use std::time::Duration;

/// A pooled rustls client keeping up to `max_idle` connections alive, with
/// no redirects: a redirected POST would turn into a GET and lose its body,
/// a redirected PUT could declare on a server nobody configured.
pub fn client(max_idle: usize, connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(max_idle)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// An error with its cause chain, which holds the useful part ("connection
/// refused"): `error sending request: client error (Connect): tcp connect
/// error: Connection refused (os error 111)`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause() {
        let error = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&error), "outer: connection refused");
    }
}
