//! `AmqpUrl`: the AMQP URL CloudAMQP shows on its details page
//! (`amqps://<user>:<password>@<host>/<vhost>`), parsed once by the same
//! rules for every part of the product. It gives the forwarder its
//! management API and credentials, and the relay its AMQP connection.
//!
//! The password never leaves except through [`AmqpUrl::password`] and
//! [`AmqpUrl::lapin_uri`]: `Display`, `Debug` and every error hide it.

use std::fmt;

use lapin::uri::AMQPUri;
use url::Url;

use crate::secret::Secret;
use crate::urls::{self, Echo};

/// The management API's port when the AMQP URL is plain `amqp://` (a
/// self-hosted broker); `amqps://` means a hosted one with the API on 443.
pub const PLAIN_MANAGEMENT_PORT: u16 = 15672;

/// Printed in place of the password.
const REDACTED: &str = "***";

/// Why a value is not a usable AMQP URL. Never holds the value itself: it
/// would carry the password into the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AmqpUrlError(String);

/// An `amqp://` or `amqps://` URL with a user, a password, a host and at
/// most one vhost segment.
#[derive(Clone)]
pub struct AmqpUrl {
    url: Url,
    user: String,
    password: Secret,
    vhost: String,
}

impl AmqpUrl {
    /// Parses and checks the value. The same rules hold for the forwarder
    /// and the relay: both need the password, and `amqp://host/` means the
    /// default vhost `/`.
    pub fn parse(raw: &str) -> Result<Self, AmqpUrlError> {
        let invalid = |problem: String| AmqpUrlError(problem);
        // `url`'s errors name the problem ("invalid port number"), not the input.
        // The value holds the password: an error describes it, never shows it.
        let url = urls::parse(raw, &["amqps", "amqp"], Echo::Never).map_err(invalid)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host".to_owned()));
        }
        let user = decode(url.username()).ok_or_else(|| invalid("its user name is not UTF-8 text".to_owned()))?;
        if user.is_empty() {
            return Err(invalid("it has no user name before the @".to_owned()));
        }
        if user.contains(':') {
            return Err(invalid(
                "its user name contains a colon, which basic auth cannot carry".to_owned(),
            ));
        }
        let password = url.password().and_then(decode).unwrap_or_default();
        if password.is_empty() {
            return Err(invalid(
                "it has no password (write it after the user name and a colon)".to_owned(),
            ));
        }
        // The vhost is the one path segment; "/" inside it must be written %2F.
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        if path.contains('/') {
            return Err(invalid(format!(
                "its path {:?} has more than one segment; write a / inside the vhost as %2F",
                url.path()
            )));
        }
        let vhost = decode(path).ok_or_else(|| invalid("its vhost is not UTF-8 text".to_owned()))?;
        let parsed = Self {
            vhost: if vhost.is_empty() { "/".to_owned() } else { vhost },
            user,
            password: Secret::new(password),
            url,
        };
        // The AMQP client's own parser has rules of its own (a query it
        // understands); fail here, at start-up, rather than at the first connect.
        parsed.lapin_uri()?;
        Ok(parsed)
    }

    /// The broker user, percent-decoded.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password, percent-decoded.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// The virtual host, percent-decoded; `/` when the URL names none.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// Whether the connection uses TLS (`amqps`, as CloudAMQP requires).
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "amqps"
    }

    /// Where the management API is: `https://host/` for `amqps` (CloudAMQP
    /// serves it on 443), `http://host:15672/` for `amqp`. The port in the
    /// URL is the AMQP port and says nothing about the API.
    pub fn management_base(&self) -> Url {
        let base = if self.is_tls() {
            format!("https://{}/", self.url_host())
        } else {
            format!("http://{}:{PLAIN_MANAGEMENT_PORT}/", self.url_host())
        };
        Url::parse(&base).expect("a host that parsed in a URL parses again")
    }

    /// The URL as the AMQP client wants it: the only place the password
    /// leaves in a form a program can read.
    pub fn lapin_uri(&self) -> Result<AMQPUri, AmqpUrlError> {
        // amq-protocol's messages are fixed strings about the part at fault;
        // the replace is a second guard in case one ever quotes the input.
        let mut uri: AMQPUri = self
            .url
            .as_str()
            .parse()
            .map_err(|e: String| AmqpUrlError(e.replace(self.url.as_str(), &self.to_string())))?;
        // The client reads the path raw; ours is decoded, with "" meaning "/".
        uri.vhost.clone_from(&self.vhost);
        uri.authority.userinfo.username.clone_from(&self.user);
        uri.authority.userinfo.password = self.password.expose().to_owned();
        Ok(uri)
    }

    /// `text` with the password taken out wherever it appears, as typed or
    /// percent-encoded: for the AMQP client's own error messages, which may
    /// quote the URL they were given.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for form in [self.url.password().unwrap_or_default(), self.password.expose()] {
            if !form.is_empty() {
                text = text.replace(form, REDACTED);
            }
        }
        text
    }

    /// The host as written in a URL (IPv6 addresses in brackets).
    fn url_host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(address)) => format!("[{address}]"),
            _ => self.host().to_owned(),
        }
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        // Cannot fail: the URL has a host, so it can carry credentials.
        let _ = url.set_password(Some(REDACTED));
        f.write_str(url.as_str())
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn decode(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> AmqpUrl {
        AmqpUrl::parse(raw).unwrap()
    }

    fn error_for(raw: &str) -> String {
        AmqpUrl::parse(raw).unwrap_err().to_string()
    }

    #[test]
    fn amqps_means_the_management_api_on_https_443() {
        let url = parse("amqps://u:p@antelope.rmq.cloudamqp.com/u");
        assert_eq!(url.management_base().as_str(), "https://antelope.rmq.cloudamqp.com/");
        assert!(url.is_tls());
    }

    #[test]
    fn amqp_means_the_management_api_on_http_15672() {
        let url = parse("amqp://guest:guest@127.0.0.1/");
        assert_eq!(url.management_base().as_str(), "http://127.0.0.1:15672/");
        assert!(!url.is_tls());
    }

    #[test]
    fn the_amqp_port_is_not_the_management_port() {
        assert_eq!(
            parse("amqps://u:p@host.example:5671/u").management_base().as_str(),
            "https://host.example/"
        );
        assert_eq!(
            parse("amqp://u:p@host.example:5673/u").management_base().as_str(),
            "http://host.example:15672/"
        );
        assert_eq!(
            parse("amqp://u:p@host.example:5673/u")
                .lapin_uri()
                .unwrap()
                .authority
                .port,
            5673
        );
    }

    #[test]
    fn an_ipv6_host_keeps_its_brackets() {
        assert_eq!(
            parse("amqp://u:p@[::1]/").management_base().as_str(),
            "http://[::1]:15672/"
        );
    }

    #[test]
    fn no_vhost_and_an_empty_vhost_mean_the_default_vhost_for_every_part() {
        for raw in ["amqp://u:p@h", "amqp://u:p@h/", "amqp://u:p@h/%2F"] {
            let url = parse(raw);
            assert_eq!(url.vhost(), "/", "{raw}");
            assert_eq!(url.lapin_uri().unwrap().vhost, "/", "{raw}");
        }
    }

    #[test]
    fn a_vhost_with_special_characters_is_decoded() {
        let url = parse("amqps://u:p@h/my%20v%2Fhost%3F");
        assert_eq!(url.vhost(), "my v/host?");
        assert_eq!(url.lapin_uri().unwrap().vhost, "my v/host?");
    }

    #[test]
    fn the_lapin_uri_has_the_default_ports_and_decoded_credentials() {
        let uri = parse("amqps://us%40er:p%40ss%3Aw0rd@h/v").lapin_uri().unwrap();
        assert_eq!(uri.authority.port, 5671);
        assert_eq!(uri.authority.userinfo.username, "us@er");
        assert_eq!(uri.authority.userinfo.password, "p@ss:w0rd");
        assert_eq!(parse("amqp://u:p@h/v").lapin_uri().unwrap().authority.port, 5672);
    }

    #[test]
    fn user_and_password_are_percent_decoded() {
        let url = parse("amqps://us%40er:p%40ss%3Aw0rd@h/v");
        assert_eq!(url.user(), "us@er");
        assert_eq!(url.password().expose(), "p@ss:w0rd");
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = parse("amqps://user:hunter2@host.example/vh");
        for shown in [format!("{url}"), format!("{url:?}")] {
            assert_eq!(shown, "amqps://user:***@host.example/vh");
        }
    }

    #[test]
    fn redact_takes_the_password_out_of_any_text() {
        let url = parse("amqp://u:p%40ss@h/");
        assert_eq!(
            url.redact("failed amqp://u:p%40ss@h/ (p@ss)"),
            "failed amqp://u:***@h/ (***)"
        );
    }

    #[test]
    fn a_missing_user_or_password_is_named() {
        assert!(error_for("amqps://h/v").contains("no user name"));
        assert!(error_for("amqps://:secret@h/v").contains("no user name"));
        assert!(error_for("amqps://user@h/v").contains("no password"));
        assert!(error_for("amqps://user:@h/v").contains("no password"));
    }

    #[test]
    fn another_scheme_is_rejected() {
        assert!(error_for("https://u:s3cret@h/v").contains("not amqps or amqp"));
    }

    #[test]
    fn a_vhost_with_a_raw_slash_is_rejected() {
        assert!(error_for("amqp://u:p@h/a/b").contains("%2F"));
    }

    #[test]
    fn errors_never_contain_the_password() {
        for raw in [
            "amqps://u:s3cret@/v",
            "ftp://u:s3cret@h/v",
            "amqps://u:s3cret@h/a/b",
            "amqps://u:s3cret@h:99999/v",
            "amqps://u:s3cret@h:notaport/v",
            "amqps://u%3Ax:s3cret@h/v",
            "amqps://u:s3cret@h/v?heartbeat=abc",
        ] {
            let err = error_for(raw);
            assert!(!err.contains("s3cret"), "{raw}: {err}");
        }
    }
}
