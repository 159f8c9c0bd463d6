//! Where and how to reach the broker: the transport (`PublishTransport`),
//! the publish endpoint and the credentials. Over HTTP (the default) they are
//! the seed's `AmqpEndpoint` + `AmqpAuthHeader` or derived from the `AmqpUrl`
//! CloudAMQP shows (the explicit settings win); over AMQP, everything comes
//! from `AmqpUrl` and `AmqpExchange`.

use super::SettingsError;
use crate::broker::AmqpUrl;
use crate::broker::amqp::connection_name;
use crate::broker::http::{Credentials, PublishEndpoint};
use crate::broker::routing_key::RoutingKey;
use crate::urls::{self, Echo};

/// What the AMQP transport's connection is called in the management UI,
/// before the app and instance (see [`connection_name`]).
pub const CONNECTION_ROLE: &str = "webhook-forwarder";

/// The exchange the seed declares, used with `AmqpUrl` when `AmqpExchange` is not set.
pub const DEFAULT_EXCHANGE: &str = "e-conomic.direct";
/// Routing key of every published message unless `AmqpRoutingKey` says otherwise.
pub const DEFAULT_ROUTING_KEY: &str = "webhook";
/// `app_id` of every published message unless `AmqpAppId` says otherwise.
pub const DEFAULT_APP_ID: &str = "e-conomic-webhook-forwarder";

/// How webhooks reach the broker: the `PublishTransport` setting.
#[derive(Debug, Clone)]
pub enum PublishTransport {
    /// RabbitMQ's HTTP publish endpoint (`http`, the default).
    Http,
    /// AMQP 0-9-1 with publisher confirms over one long-lived connection (`amqp`).
    Amqp {
        /// The broker, from `AmqpUrl`.
        url: AmqpUrl,
        /// The connection's name in the management UI: the app and the instance.
        connection_name: String,
    },
}

/// Where webhooks are published and what goes into each message.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// How messages reach the broker.
    pub transport: PublishTransport,
    /// The HTTP publish endpoint, with the management API beside it (over
    /// AMQP, the management API is used by `handler setup` and `check` only).
    pub endpoint: PublishEndpoint,
    /// Who the management API is asked as.
    pub credentials: Credentials,
    /// `AmqpUrl`, when it was set and used.
    pub amqp_url: Option<AmqpUrl>,
    /// Routing key of every published message: plain, or a template
    /// rendered per webhook.
    pub routing_key: RoutingKey,
    /// `app_id` property of every published message.
    pub app_id: String,
}

const ENDPOINT_HINT: &str = "set AmqpUrl to the AMQP URL on the CloudAMQP details page \
     (amqps://<user>:<password>@<host>/<vhost>), or AmqpEndpoint to \
     https://<host>/api/exchanges/<vhost>/<exchange>/publish \
     (locally http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish)";
const NO_BROKER_HINT: &str = "set it to the AMQP URL on the CloudAMQP details page \
     (amqps://<user>:<password>@<host>/<vhost>; locally amqp://guest:guest@127.0.0.1/), \
     or set the seed's AmqpEndpoint and AmqpAuthHeader instead";
const AUTH_HINT: &str = "set it to base64(\"<user>:<password>\"), with or without the \"Basic \" prefix \
     (`handler auth-header` prints it), or set AmqpUrl instead";
const TRANSPORT_HINT: &str = "set it to http (the default: the management API's publish endpoint) \
     or amqp (AMQP with publisher confirms to the broker AmqpUrl names)";
const AMQP_NEEDS_URL_HINT: &str = "PublishTransport=amqp publishes to the broker it names: set it to the AMQP URL \
     on the CloudAMQP details page, amqps://<user>:<password>@<host>/<vhost> (locally amqp://guest:guest@127.0.0.1/)";
const AMQP_ONLY_HINT: &str = "with PublishTransport=amqp the broker, the vhost and the credentials come from AmqpUrl \
     and the exchange from AmqpExchange: remove AmqpEndpoint and AmqpAuthHeader, or set PublishTransport=http";
/// How to write `AmqpUrl`, for its errors (the relay's too).
pub const AMQP_URL_HINT: &str = "set it to the AMQP URL on the CloudAMQP details page, \
     amqps://<user>:<password>@<host>/<vhost> (locally amqp://guest:guest@127.0.0.1/)";

impl BrokerSettings {
    /// Reads the broker settings through `get` (trimmed, empty = absent).
    pub(super) fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let (transport, endpoint, credentials, amqp_url) = match parse_transport(get("PublishTransport"))? {
            Kind::Http => {
                let (endpoint, credentials, amqp_url) = http_broker(get)?;
                (PublishTransport::Http, endpoint, credentials, amqp_url)
            }
            Kind::Amqp => {
                let url = amqp_broker_url(get)?;
                let name = connection_name(
                    CONNECTION_ROLE,
                    get("WEBSITE_SITE_NAME").as_deref(),
                    get("WEBSITE_INSTANCE_ID").as_deref(),
                );
                let transport = PublishTransport::Amqp {
                    url: url.clone(),
                    connection_name: name,
                };
                let endpoint = derived_endpoint(get, &url)?;
                (transport, endpoint, Credentials::from_amqp_url(&url), Some(url))
            }
        };
        Ok(BrokerSettings {
            transport,
            endpoint,
            credentials,
            amqp_url,
            routing_key: parse_routing_key(get("AmqpRoutingKey").as_deref().unwrap_or(DEFAULT_ROUTING_KEY))?,
            app_id: get("AmqpAppId").unwrap_or_else(|| DEFAULT_APP_ID.to_owned()),
        })
    }
}

/// The two values `PublishTransport` takes.
enum Kind {
    Http,
    Amqp,
}

/// `http` (the default) or `amqp`, in any case.
fn parse_transport(raw: Option<String>) -> Result<Kind, SettingsError> {
    match raw.map(|raw| raw.to_ascii_lowercase()).as_deref() {
        None | Some("http") => Ok(Kind::Http),
        Some("amqp") => Ok(Kind::Amqp),
        Some(other) => Err(SettingsError::Invalid {
            name: "PublishTransport",
            problem: format!("{other:?} is not http or amqp"),
            hint: TRANSPORT_HINT,
        }),
    }
}

/// Over AMQP, `AmqpUrl` is the broker, and the HTTP-only settings would only
/// name a second, possibly different, exchange or user: refused.
fn amqp_broker_url(get: &dyn Fn(&str) -> Option<String>) -> Result<AmqpUrl, SettingsError> {
    for name in ["AmqpEndpoint", "AmqpAuthHeader"] {
        if get(name).is_some() {
            return Err(SettingsError::Invalid {
                name,
                problem: "it is set, but PublishTransport=amqp does not use it".to_owned(),
                hint: AMQP_ONLY_HINT,
            });
        }
    }
    match get("AmqpUrl") {
        Some(raw) => parse_amqp_url(&raw),
        None => Err(SettingsError::Missing {
            name: "AmqpUrl",
            hint: AMQP_NEEDS_URL_HINT,
        }),
    }
}

/// Over HTTP: the endpoint, the credentials and `AmqpUrl` if it was used.
fn http_broker(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(PublishEndpoint, Credentials, Option<AmqpUrl>), SettingsError> {
    // AmqpUrl is read only when an explicit setting is missing: it is the
    // easy way in, and the explicit settings override it.
    let explicit_endpoint = get("AmqpEndpoint");
    let explicit_auth = get("AmqpAuthHeader");
    let amqp_url = match (&explicit_endpoint, &explicit_auth) {
        (Some(_), Some(_)) => None,
        _ => get("AmqpUrl").map(|raw| parse_amqp_url(&raw)).transpose()?,
    };

    let endpoint = match (explicit_endpoint, &amqp_url) {
        (Some(raw), _) => PublishEndpoint::parse(&raw).map_err(|problem| SettingsError::Invalid {
            name: "AmqpEndpoint",
            problem,
            hint: ENDPOINT_HINT,
        })?,
        (None, Some(amqp)) => derived_endpoint(get, amqp)?,
        // Neither is set: most users set AmqpUrl, so the error names it first.
        (None, None) if explicit_auth.is_none() => {
            return Err(SettingsError::Missing {
                name: "AmqpUrl",
                hint: NO_BROKER_HINT,
            });
        }
        (None, None) => {
            return Err(SettingsError::Missing {
                name: "AmqpEndpoint",
                hint: ENDPOINT_HINT,
            });
        }
    };
    let credentials = match (explicit_auth, &amqp_url) {
        (Some(raw), _) => Credentials::from_auth_header(&raw).map_err(|problem| SettingsError::Invalid {
            name: "AmqpAuthHeader",
            problem: problem.to_owned(),
            hint: AUTH_HINT,
        })?,
        (None, Some(amqp)) => Credentials::from_amqp_url(amqp),
        (None, None) => {
            return Err(SettingsError::Missing {
                name: "AmqpAuthHeader",
                hint: AUTH_HINT,
            });
        }
    };
    Ok((endpoint, credentials, amqp_url))
}

/// The publish endpoint (and so the management API) of the broker `AmqpUrl`
/// names, for the exchange `AmqpExchange`; `AmqpManagementUrl` moves the API.
/// The relay reads the management API through it too.
pub fn derived_endpoint(
    get: &dyn Fn(&str) -> Option<String>,
    amqp: &AmqpUrl,
) -> Result<PublishEndpoint, SettingsError> {
    let base = match get("AmqpManagementUrl") {
        Some(raw) => parse_management_url(&raw)?,
        None => amqp.management_base(),
    };
    let exchange = get("AmqpExchange").unwrap_or_else(|| DEFAULT_EXCHANGE.to_owned());
    Ok(PublishEndpoint::from_amqp_url_at(amqp, base, &exchange))
}

/// Parses `AmqpManagementUrl`: where the management API is when it is not
/// where `AmqpUrl` implies (a self-hosted broker with the API on another port,
/// or behind a reverse proxy). Credentials come from `AmqpUrl`, never from here.
fn parse_management_url(raw: &str) -> Result<url::Url, SettingsError> {
    let invalid = |problem: String| SettingsError::Invalid {
        name: "AmqpManagementUrl",
        problem,
        hint: "set it to the management API's base URL, e.g. http://127.0.0.1:15673/, or unset it",
    };
    let url = urls::parse(raw, &["http", "https"], Echo::Never).map_err(invalid)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it contains credentials; they come from AmqpUrl".to_owned()));
    }
    Ok(url)
}

/// Parses `AmqpRoutingKey`, a plain key or a template, naming the setting in the error.
fn parse_routing_key(raw: &str) -> Result<RoutingKey, SettingsError> {
    RoutingKey::parse(raw).map_err(|e| SettingsError::Invalid {
        name: "AmqpRoutingKey",
        problem: e.to_string(),
        hint: "write a plain key (webhook) or a template such as webhook.{query.type|other} (docs/routing.md)",
    })
}

/// Parses `AmqpUrl`, naming the setting in the error.
pub fn parse_amqp_url(raw: &str) -> Result<AmqpUrl, SettingsError> {
    AmqpUrl::parse(raw).map_err(|e| SettingsError::Invalid {
        name: "AmqpUrl",
        problem: e.to_string(),
        hint: AMQP_URL_HINT,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const AUTH: &str = "Z3Vlc3Q6Z3Vlc3Q="; // guest:guest
    const LOCAL_ENDPOINT: &str = "http://127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish";

    fn broker(pairs: &[(&str, &str)]) -> Result<BrokerSettings, SettingsError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        BrokerSettings::from_lookup(&|name| map.get(name).map(|v| (*v).to_owned()))
    }

    fn endpoint_url(pairs: &[(&str, &str)]) -> String {
        broker(pairs).unwrap().endpoint.url.to_string()
    }

    fn error_for(pairs: &[(&str, &str)]) -> String {
        broker(pairs).unwrap_err().to_string()
    }

    #[test]
    fn explicit_settings_give_endpoint_user_and_defaults() {
        let b = broker(&[("AmqpEndpoint", LOCAL_ENDPOINT), ("AmqpAuthHeader", AUTH)]).unwrap();
        assert_eq!(b.endpoint.vhost, "/");
        assert_eq!(b.endpoint.exchange, "e-conomic.direct");
        assert_eq!(b.credentials.user, "guest");
        assert_eq!(b.credentials.authorization.expose(), "Basic Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(b.routing_key.plain(), Some("webhook"));
        assert_eq!(b.app_id, "e-conomic-webhook-forwarder");
        assert!(b.amqp_url.is_none());
    }

    #[test]
    fn missing_endpoint_names_the_setting_and_both_fixes() {
        let err = error_for(&[("AmqpAuthHeader", AUTH)]);
        assert!(err.contains("AmqpEndpoint is missing"), "{err}");
        assert!(err.contains("/api/exchanges/"), "{err}");
        assert!(err.contains("AmqpUrl"), "{err}");
    }

    #[test]
    fn no_broker_setting_at_all_names_amqp_url_first() {
        let err = error_for(&[]);
        assert!(
            err.starts_with("setting AmqpUrl is missing: set it to the AMQP URL"),
            "{err}"
        );
        assert!(err.contains("AmqpEndpoint and AmqpAuthHeader"), "{err}");
    }

    #[test]
    fn missing_auth_header_points_to_the_auth_header_command() {
        let err = error_for(&[("AmqpEndpoint", LOCAL_ENDPOINT)]);
        assert!(err.contains("AmqpAuthHeader is missing"), "{err}");
        assert!(err.contains("handler auth-header"), "{err}");
    }

    #[test]
    fn a_bad_endpoint_or_auth_header_is_named_without_echoing_it() {
        let err = error_for(&[
            ("AmqpEndpoint", "https://u:s3cret@h/api/exchanges/v/x/publish"),
            ("AmqpAuthHeader", AUTH),
        ]);
        assert!(err.contains("AmqpEndpoint is invalid"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = error_for(&[("AmqpEndpoint", LOCAL_ENDPOINT), ("AmqpAuthHeader", "not*base64!")]);
        assert!(
            err.contains("AmqpAuthHeader is invalid: it is not valid base64"),
            "{err}"
        );
        assert!(!err.contains("not*base64!"), "{err}");
    }

    #[test]
    fn amqp_url_alone_gives_endpoint_and_credentials_named_after_it() {
        let b = broker(&[("AmqpUrl", "amqps://gtygdfsy:pa55@antelope.rmq.cloudamqp.com/gtygdfsy")]).unwrap();
        assert_eq!(
            b.endpoint.url.as_str(),
            "https://antelope.rmq.cloudamqp.com/api/exchanges/gtygdfsy/e-conomic.direct/publish"
        );
        assert_eq!(b.endpoint.setting, "AmqpUrl");
        assert_eq!(b.credentials.user, "gtygdfsy");
        assert_eq!(b.credentials.setting, "AmqpUrl");
        assert!(b.amqp_url.is_some());
    }

    #[test]
    fn amqp_exchange_names_the_exchange_of_the_derived_endpoint() {
        assert_eq!(
            endpoint_url(&[
                ("AmqpUrl", "amqp://guest:guest@127.0.0.1"),
                ("AmqpExchange", "other.direct"),
            ]),
            "http://127.0.0.1:15672/api/exchanges/%2F/other.direct/publish"
        );
    }

    #[test]
    fn amqp_management_url_says_where_the_api_of_an_amqp_url_is() {
        assert_eq!(
            endpoint_url(&[
                ("AmqpUrl", "amqp://guest:guest@127.0.0.1:5673/"),
                ("AmqpManagementUrl", "http://127.0.0.1:15673"),
            ]),
            "http://127.0.0.1:15673/api/exchanges/%2F/e-conomic.direct/publish"
        );
        let err = error_for(&[
            ("AmqpUrl", "amqp://guest:guest@127.0.0.1/"),
            ("AmqpManagementUrl", "http://u:s3cret@h/"),
        ]);
        assert!(err.contains("AmqpManagementUrl is invalid"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn explicit_settings_win_over_amqp_url_each_on_its_own() {
        let other = ("AmqpUrl", "amqps://other:secret@elsewhere.example/other");
        let both = broker(&[other, ("AmqpEndpoint", LOCAL_ENDPOINT), ("AmqpAuthHeader", AUTH)]).unwrap();
        assert_eq!(both.endpoint.url.as_str(), LOCAL_ENDPOINT);
        assert_eq!(both.credentials.user, "guest");
        let with_endpoint = broker(&[other, ("AmqpEndpoint", LOCAL_ENDPOINT)]).unwrap();
        assert_eq!(with_endpoint.endpoint.url.as_str(), LOCAL_ENDPOINT);
        assert_eq!(with_endpoint.credentials.user, "other");
        let with_auth = broker(&[other, ("AmqpAuthHeader", AUTH)]).unwrap();
        assert_eq!(with_auth.endpoint.vhost, "other");
        assert_eq!(with_auth.credentials.setting, "AmqpAuthHeader");
    }

    #[test]
    fn an_unused_amqp_url_is_not_parsed() {
        let pairs = [
            ("AmqpUrl", "not a url"),
            ("AmqpEndpoint", LOCAL_ENDPOINT),
            ("AmqpAuthHeader", AUTH),
        ];
        assert!(broker(&pairs).is_ok());
    }

    #[test]
    fn the_transport_is_http_unless_amqp_is_asked_for() {
        let b = broker(&[("AmqpEndpoint", LOCAL_ENDPOINT), ("AmqpAuthHeader", AUTH)]).unwrap();
        assert!(matches!(b.transport, PublishTransport::Http));
        let pairs = [
            ("PublishTransport", "HTTP"),
            ("AmqpEndpoint", LOCAL_ENDPOINT),
            ("AmqpAuthHeader", AUTH),
        ];
        assert!(matches!(broker(&pairs).unwrap().transport, PublishTransport::Http));
        let err = error_for(&[("PublishTransport", "kafka"), ("AmqpUrl", "amqp://u:p@h/")]);
        assert!(
            err.starts_with("setting PublishTransport is invalid: \"kafka\" is not http or amqp"),
            "{err}"
        );
    }

    #[test]
    fn amqp_takes_the_broker_from_amqp_url_and_the_exchange_from_amqp_exchange() {
        let b = broker(&[
            ("PublishTransport", "amqp"),
            ("AmqpUrl", "amqps://user:pa55@host.example/vh"),
            ("AmqpExchange", "other.direct"),
            ("AmqpRoutingKey", "rk"),
            ("WEBSITE_SITE_NAME", "my-app"),
            ("WEBSITE_INSTANCE_ID", "0a1b"),
        ])
        .unwrap();
        let PublishTransport::Amqp { url, connection_name } = &b.transport else {
            panic!("not amqp: {:?}", b.transport)
        };
        assert_eq!(url.to_string(), "amqps://user:***@host.example/vh");
        assert_eq!(connection_name, "webhook-forwarder: my-app instance 0a1b");
        assert_eq!(
            (b.endpoint.vhost.as_str(), b.endpoint.exchange.as_str()),
            ("vh", "other.direct")
        );
        assert_eq!(b.routing_key.plain(), Some("rk"));
        assert_eq!(b.credentials.setting, "AmqpUrl");
        let b = broker(&[("PublishTransport", "amqp"), ("AmqpUrl", "amqp://u:p@h/")]).unwrap();
        assert_eq!(b.endpoint.exchange, "e-conomic.direct");
    }

    #[test]
    fn amqp_without_amqp_url_names_it() {
        let err = error_for(&[("PublishTransport", "amqp")]);
        assert!(
            err.starts_with("setting AmqpUrl is missing: PublishTransport=amqp"),
            "{err}"
        );
    }

    #[test]
    fn amqp_refuses_the_http_only_settings_naming_them() {
        let url = ("AmqpUrl", "amqp://u:s3cret@h/");
        let err = error_for(&[("PublishTransport", "amqp"), url, ("AmqpEndpoint", LOCAL_ENDPOINT)]);
        assert!(err.starts_with("setting AmqpEndpoint is invalid"), "{err}");
        assert!(err.contains("PublishTransport=amqp"), "{err}");
        let err = error_for(&[("PublishTransport", "amqp"), url, ("AmqpAuthHeader", AUTH)]);
        assert!(err.starts_with("setting AmqpAuthHeader is invalid"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains(AUTH), "{err}");
    }

    #[test]
    fn a_routing_key_template_is_parsed_once_and_a_bad_one_names_the_setting() {
        let pairs = [("AmqpEndpoint", LOCAL_ENDPOINT), ("AmqpAuthHeader", AUTH)];
        let with = |key: &'static str| [pairs[0], pairs[1], ("AmqpRoutingKey", key)];
        let b = broker(&with("webhook.{query.type|other}")).unwrap();
        assert_eq!(b.routing_key.as_str(), "webhook.{query.type|other}");
        assert_eq!(b.routing_key.plain(), None);
        let err = error_for(&with("webhook.{query.type"));
        assert!(
            err.starts_with(
                "setting AmqpRoutingKey is invalid: \"webhook.{query.type\": at column 9: this placeholder is not closed"
            ),
            "{err}"
        );
        assert!(err.contains("docs/routing.md"), "{err}");
        let err = error_for(&with("webhook.{query.type|#}"));
        assert!(
            err.starts_with("setting AmqpRoutingKey is invalid: the default of"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_amqp_url_is_named_without_its_password() {
        let err = error_for(&[("AmqpUrl", "ftp://u:s3cret@h/v")]);
        assert!(
            err.starts_with("setting AmqpUrl is invalid: the scheme \"ftp\""),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn url_settings_without_a_scheme_say_which_to_write() {
        let err = error_for(&[("AmqpUrl", "u:s3cret@h/v")]);
        assert!(
            err.starts_with("setting AmqpUrl is invalid: it has no scheme: write it starting with amqps:// or amqp://"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        let endpoint = "127.0.0.1:15672/api/exchanges/%2F/e-conomic.direct/publish";
        let err = error_for(&[("AmqpEndpoint", endpoint), ("AmqpAuthHeader", AUTH)]);
        assert!(err.contains("write it starting with http:// or https://"), "{err}");
        let err = error_for(&[("AmqpUrl", "amqp://u:p@h/"), ("AmqpManagementUrl", "localhost:15673/")]);
        assert!(err.contains("write it starting with http:// or https://"), "{err}");
    }
}
