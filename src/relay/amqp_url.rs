//! The `AmqpUrl` setting: where the relay consumes from, with the password
//! kept out of every log line and error message.

use std::fmt;

use lapin::uri::AMQPUri;
use url::Url;

/// Name of the setting (an environment variable, like the forwarder's settings).
pub const SETTING: &str = "AmqpUrl";

/// Printed in place of the password.
const REDACTED: &str = "***";

/// An `amqp://` or `amqps://` URL; `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl(Url);

/// Why a value is not a usable AMQP URL. Never holds the value itself: it
/// would carry the password into the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmqpUrlError {
    /// The setting is absent or empty.
    #[error(
        "setting {SETTING} is missing: set it to amqp(s)://<user>:<password>@<host>[:<port>]/<vhost> \
             (locally amqp://guest:guest@127.0.0.1:5672/%2F)"
    )]
    Missing,
    /// The value is not a URL, or not an AMQP one.
    #[error("setting {SETTING} is invalid: {0}; write it as amqp(s)://<user>:<password>@<host>[:<port>]/<vhost>")]
    Invalid(String),
}

impl AmqpUrl {
    /// Parses and checks the value: scheme `amqp` or `amqps`, a host, a vhost
    /// path that the AMQP client accepts.
    pub fn parse(raw: &str) -> Result<Self, AmqpUrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(AmqpUrlError::Missing);
        }
        // `url`'s errors name the problem ("invalid port number"), not the input.
        let url = Url::parse(raw).map_err(|e| AmqpUrlError::Invalid(e.to_string()))?;
        if !matches!(url.scheme(), "amqp" | "amqps") {
            return Err(AmqpUrlError::Invalid(format!(
                "the scheme is {:?}, not amqp or amqps",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(AmqpUrlError::Invalid("it names no host".to_owned()));
        }
        let parsed = Self(url);
        // The client's own parser has stricter rules (one path segment for
        // the vhost); fail here, at start-up, rather than at the first connect.
        parsed.to_lapin()?;
        Ok(parsed)
    }

    /// The URL with the password replaced, for logs.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host, so it can carry credentials.
            let _ = url.set_password(Some(REDACTED));
        }
        url.to_string()
    }

    /// Whether the connection uses TLS (`amqps`, as CloudAMQP requires).
    pub fn is_tls(&self) -> bool {
        self.0.scheme() == "amqps"
    }

    /// The URL as the AMQP client wants it: the only place the password leaves.
    pub(crate) fn to_lapin(&self) -> Result<AMQPUri, AmqpUrlError> {
        // amq-protocol's messages are fixed strings about the part at fault.
        let mut uri: AMQPUri = self
            .0
            .as_str()
            .parse()
            .map_err(|e: String| AmqpUrlError::Invalid(e.replace(self.0.as_str(), &self.redacted())))?;
        // The client reads `amqp://host/` as the vhost "" (empty); the
        // forwarder's AmqpUrl, CloudAMQP and everyone else read it as "/".
        if matches!(self.0.path(), "" | "/") {
            uri.vhost = "/".to_owned();
        }
        Ok(uri)
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_url_parses_and_keeps_its_parts() {
        let url = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2F").unwrap();
        let uri = url.to_lapin().unwrap();
        assert_eq!(uri.authority.host, "127.0.0.1");
        assert_eq!(uri.authority.port, 5672);
        assert_eq!(uri.vhost, "/");
        assert_eq!(uri.authority.userinfo.username, "guest");
        assert!(!url.is_tls());
    }

    #[test]
    fn no_vhost_or_an_empty_one_means_the_default_vhost_as_for_the_forwarder() {
        for raw in [
            "amqp://guest:guest@127.0.0.1/",
            "amqp://guest:guest@127.0.0.1",
            "amqp://u:p@h/%2F",
        ] {
            let uri = AmqpUrl::parse(raw).unwrap().to_lapin().unwrap();
            assert_eq!(uri.vhost, "/", "{raw}");
            assert_eq!(uri.authority.port, 5672, "{raw}");
        }
        let named = AmqpUrl::parse("amqps://u:p@h/my%20vhost").unwrap().to_lapin().unwrap();
        assert_eq!(named.vhost, "my vhost");
    }

    #[test]
    fn an_amqps_url_uses_tls_on_the_amqps_port() {
        let url = AmqpUrl::parse("amqps://user:pw@antelope.rmq.cloudamqp.com/user").unwrap();
        assert!(url.is_tls());
        let uri = url.to_lapin().unwrap();
        assert_eq!(uri.authority.port, 5671);
        assert_eq!(uri.vhost, "user");
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = AmqpUrl::parse("amqps://user:hunter2@host.example/vh").unwrap();
        for shown in [format!("{url}"), format!("{url:?}"), url.redacted()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("user:***@host.example"), "{shown}");
        }
    }

    #[test]
    fn a_url_without_password_prints_unchanged() {
        let url = AmqpUrl::parse("amqp://127.0.0.1:5672/%2F").unwrap();
        assert_eq!(url.redacted(), "amqp://127.0.0.1:5672/%2F");
    }

    #[test]
    fn an_http_url_is_refused_naming_the_setting_not_the_value() {
        let err = AmqpUrl::parse("https://user:hunter2@host/api").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("setting AmqpUrl is invalid"), "{message}");
        assert!(message.contains("\"https\""), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let err = AmqpUrl::parse("amqp://user:hunter2@host:notaport/").unwrap_err();
        assert!(matches!(err, AmqpUrlError::Invalid(_)));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn empty_is_missing() {
        assert_eq!(AmqpUrl::parse("  ").unwrap_err(), AmqpUrlError::Missing);
        assert!(AmqpUrlError::Missing.to_string().contains("setting AmqpUrl is missing"));
    }
}
