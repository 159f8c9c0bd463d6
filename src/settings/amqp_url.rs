//! `AmqpUrl`: the AMQP URL CloudAMQP shows on its details page
//! (`amqps://<user>:<password>@<host>/<vhost>`), turned into the management
//! API's publish endpoint and credentials so nobody builds them by hand.
//!
//! Errors never contain the URL: it holds the password.

use url::Url;

use super::SettingsError;
use super::broker::PublishEndpoint;
use crate::secret::Secret;

/// The management API's port when the AMQP URL is plain `amqp://` (a
/// self-hosted broker); `amqps://` means a hosted one with the API on 443.
pub const PLAIN_MANAGEMENT_PORT: u16 = 15672;

const HINT: &str = "set it to the AMQP URL on the CloudAMQP details page, amqps://<user>:<password>@<host>/<vhost> \
     (locally amqp://guest:guest@127.0.0.1/)";

/// The parts of an AMQP URL the publisher needs.
#[derive(Debug, Clone)]
pub struct AmqpUrl {
    /// The broker user, percent-decoded.
    pub user: String,
    /// The password, percent-decoded.
    pub password: Secret,
    /// Where the management API is: `https://host` or `http://host:15672`.
    management: Url,
    /// The virtual host, percent-decoded; `/` when the URL names none.
    vhost: String,
}

impl AmqpUrl {
    /// `{management}/api/exchanges/{vhost}/{exchange}/publish`, percent-encoded.
    pub fn publish_endpoint(&self, exchange: &str) -> PublishEndpoint {
        let mut url = self.management.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear()
                .extend(["api", "exchanges", &self.vhost, exchange, "publish"]);
        }
        PublishEndpoint {
            url,
            vhost: self.vhost.clone(),
            exchange: exchange.to_owned(),
        }
    }
}

/// Parses `AmqpUrl`. The port in it is the AMQP port and says nothing about
/// the management API, so it is not used.
pub fn parse(raw: &str) -> Result<AmqpUrl, SettingsError> {
    let invalid = |problem: String| SettingsError::Invalid {
        name: "AmqpUrl",
        problem,
        hint: HINT,
    };
    let url = Url::parse(raw).map_err(|e| invalid(format!("not a URL ({e})")))?;
    let management = match (url.scheme(), url.host_str()) {
        (_, None | Some("")) => return Err(invalid("it has no host".to_owned())),
        ("amqps", Some(host)) => format!("https://{host}/"),
        ("amqp", Some(host)) => format!("http://{host}:{PLAIN_MANAGEMENT_PORT}/"),
        (scheme, _) => return Err(invalid(format!("scheme {scheme:?} is not amqps or amqp"))),
    };
    let management = Url::parse(&management).map_err(|e| invalid(format!("its host is not usable ({e})")))?;

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
    let vhost = if vhost.is_empty() { "/".to_owned() } else { vhost };

    Ok(AmqpUrl {
        user,
        password: Secret::new(password),
        management,
        vhost,
    })
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

    fn endpoint(raw: &str) -> String {
        parse(raw).unwrap().publish_endpoint("e-conomic.direct").url.to_string()
    }

    fn error_for(raw: &str) -> String {
        parse(raw).unwrap_err().to_string()
    }

    #[test]
    fn amqps_means_https_on_the_default_port() {
        assert_eq!(
            endpoint("amqps://u:p@antelope.rmq.cloudamqp.com/u"),
            "https://antelope.rmq.cloudamqp.com/api/exchanges/u/e-conomic.direct/publish"
        );
    }

    #[test]
    fn amqp_means_http_on_the_management_port() {
        assert_eq!(
            endpoint("amqp://guest:guest@127.0.0.1/"),
            "http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish"
        );
    }

    #[test]
    fn the_amqp_port_is_not_the_management_port() {
        assert_eq!(
            endpoint("amqps://u:p@host.example:5671/u"),
            "https://host.example/api/exchanges/u/e-conomic.direct/publish"
        );
        assert_eq!(
            endpoint("amqp://u:p@host.example:5672/u"),
            "http://host.example:15672/api/exchanges/u/e-conomic.direct/publish"
        );
    }

    #[test]
    fn no_vhost_and_an_empty_vhost_mean_the_default_vhost() {
        for raw in ["amqp://u:p@h", "amqp://u:p@h/", "amqp://u:p@h/%2F"] {
            let amqp = parse(raw).unwrap();
            let endpoint = amqp.publish_endpoint("x");
            assert_eq!(endpoint.vhost, "/", "{raw}");
            assert_eq!(endpoint.url.path(), "/api/exchanges/%2F/x/publish", "{raw}");
        }
    }

    #[test]
    fn a_vhost_with_special_characters_is_decoded_then_encoded_for_the_api() {
        let endpoint = parse("amqps://u:p@h/my%20v%2Fhost%3F").unwrap().publish_endpoint("e x");
        assert_eq!(endpoint.vhost, "my v/host?");
        assert_eq!(endpoint.exchange, "e x");
        assert_eq!(endpoint.url.path(), "/api/exchanges/my%20v%2Fhost%3F/e%20x/publish");
    }

    #[test]
    fn user_and_password_are_percent_decoded() {
        let amqp = parse("amqps://us%40er:p%40ss%3Aw0rd@h/v").unwrap();
        assert_eq!(amqp.user, "us@er");
        assert_eq!(amqp.password.expose(), "p@ss:w0rd");
    }

    #[test]
    fn a_missing_user_is_named() {
        assert!(error_for("amqps://h/v").contains("no user name"));
        assert!(error_for("amqps://:secret@h/v").contains("no user name"));
    }

    #[test]
    fn a_missing_password_is_named() {
        assert!(error_for("amqps://user@h/v").contains("no password"));
        assert!(error_for("amqps://user:@h/v").contains("no password"));
    }

    #[test]
    fn another_scheme_is_rejected() {
        let err = error_for("https://u:s3cret@h/v");
        assert!(err.contains("AmqpUrl is invalid"), "{err}");
        assert!(err.contains("not amqps or amqp"), "{err}");
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
            "amqps://u%3Ax:s3cret@h/v",
        ] {
            let err = error_for(raw);
            assert!(!err.contains("s3cret"), "{raw}: {err}");
        }
    }
}
