//! Optional source checks, off by default: an allow-list of client networks
//! and a shared secret. The Functions host's function key already guards the
//! Azure deployment; these are for standalone deployments and defence in depth.
//!
//! Where the sender's address is (docs/host-modes.md has the evidence):
//! - Behind the Functions host: `X-Client-IP` (or `Client-IP`, with a port),
//!   which App Service's front end writes over any value the sender sent. In
//!   proxying mode `X-Forwarded-For` is only the host's own TCP peer (YARP
//!   sets it), so it is never used there; in payload and legacy forwarding
//!   mode its last entry (the front end's) is the fallback.
//! - Standalone: the last `X-Forwarded-For` entry (the one the proxy in front
//!   appends; it may carry a port), or, without that header, the TCP peer.
//!   Earlier entries are whatever the client claimed, so they are ignored.
//!   Without a proxy that sets the header, a client can forge it: the
//!   allow-list only holds behind such a proxy (or with the TCP peer itself).

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::settings::SourceChecks;

/// Header carrying the shared secret.
pub const SECRET_HEADER: &str = "x-webhook-secret";
/// Query parameter carrying the shared secret (for senders that cannot set
/// headers, like legacy e-conomic webhooks); removed before publishing.
pub const SECRET_PARAM: &str = "secret";

/// What a request tells about its caller.
#[derive(Debug, Clone, Default)]
pub struct Caller<'a> {
    /// The `X-Forwarded-For` header, when there is one.
    pub forwarded_for: Option<&'a str>,
    /// `X-Client-IP`, else `Client-IP`: the address App Service's front end saw.
    pub front_end_client: Option<&'a str>,
    /// Whether the host proxied the request (it carries `x-ms-invocation-id`):
    /// then `X-Forwarded-For` holds the host's own peer, not the sender.
    pub proxied: bool,
    /// The TCP peer; used standalone only (behind the Functions host it is the host).
    pub peer: Option<IpAddr>,
    /// The `X-Webhook-Secret` header, when there is one.
    pub secret_header: Option<&'a str>,
    /// The query string (function key already removed).
    pub query: &'a str,
}

/// Why a request was refused; the text is for the log, never the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No client address could be found; the text says where it was looked for.
    #[error("no client address to check against AllowedSourceNetworks: {0}")]
    NoClientAddress(&'static str),
    /// The client address is not in the allow-list.
    #[error("client address {0} is not in AllowedSourceNetworks")]
    SourceNotAllowed(IpAddr),
    /// No secret was presented.
    #[error("no shared secret (header X-Webhook-Secret or query parameter secret) although WebhookSecret is set")]
    SecretMissing,
    /// The presented secret is wrong.
    #[error("the shared secret presented does not match WebhookSecret")]
    SecretWrong,
}

/// The checks the settings turned on, run for each webhook.
#[derive(Debug, Clone, Default)]
pub struct Admission(SourceChecks);

impl Admission {
    /// Enforces `checks`.
    pub fn new(checks: SourceChecks) -> Self {
        Self(checks)
    }

    /// Runs the checks that are on.
    pub fn check(&self, caller: &Caller<'_>) -> Result<(), Refusal> {
        let SourceChecks {
            allowed_networks,
            shared_secret,
            behind_functions_host,
        } = &self.0;
        if let Some(networks) = allowed_networks {
            let address = client_address(caller, *behind_functions_host)?;
            if !networks.iter().any(|net| net.contains(&address)) {
                return Err(Refusal::SourceNotAllowed(address));
            }
        }
        if let Some(expected) = shared_secret {
            let presented = caller
                .secret_header
                .map(str::to_owned)
                .or_else(|| query_value(caller.query, SECRET_PARAM))
                .ok_or(Refusal::SecretMissing)?;
            if !same_secret(&presented, expected.expose()) {
                return Err(Refusal::SecretWrong);
            }
        }
        Ok(())
    }

    /// Query parameters to remove before publishing, besides the function key.
    pub fn secret_params(&self) -> &'static [&'static str] {
        if self.0.shared_secret.is_some() {
            &[SECRET_PARAM]
        } else {
            &[]
        }
    }
}

/// Compares digests in constant time, so neither the content nor the length
/// of the expected secret leaks through timing.
fn same_secret(presented: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// The sender's address, read where the module doc says.
fn client_address(caller: &Caller<'_>, behind_functions_host: bool) -> Result<IpAddr, Refusal> {
    if behind_functions_host {
        if let Some(address) = caller.front_end_client.and_then(|value| parse_address(value.trim())) {
            return Ok(address);
        }
        if caller.proxied {
            return Err(Refusal::NoClientAddress(
                "no X-Client-IP or Client-IP header from App Service's front end, and in proxying mode X-Forwarded-For is only the host's own peer",
            ));
        }
        return last_forwarded(caller).ok_or(Refusal::NoClientAddress(
            "no X-Client-IP, Client-IP or X-Forwarded-For header from App Service's front end",
        ));
    }
    match caller.forwarded_for {
        Some(_) => last_forwarded(caller).ok_or(Refusal::NoClientAddress("X-Forwarded-For holds no address")),
        None => caller
            .peer
            .ok_or(Refusal::NoClientAddress("no X-Forwarded-For header and no TCP peer")),
    }
}

/// The last `X-Forwarded-For` entry without its port.
fn last_forwarded(caller: &Caller<'_>) -> Option<IpAddr> {
    parse_address(caller.forwarded_for?.rsplit(',').next()?.trim())
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_address(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    entry.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::secret::Secret;
    use crate::settings::parse_networks;

    fn allow(list: &str) -> Admission {
        Admission::new(SourceChecks {
            allowed_networks: Some(parse_networks(list).unwrap()),
            ..SourceChecks::default()
        })
    }

    fn allow_behind_host(list: &str) -> Admission {
        Admission::new(SourceChecks {
            allowed_networks: Some(parse_networks(list).unwrap()),
            behind_functions_host: true,
            ..SourceChecks::default()
        })
    }

    fn secret(value: &str) -> Admission {
        Admission::new(SourceChecks {
            shared_secret: Some(Secret::new(value)),
            ..SourceChecks::default()
        })
    }

    fn from(forwarded_for: &str) -> Caller<'_> {
        Caller {
            forwarded_for: Some(forwarded_for),
            ..Caller::default()
        }
    }

    #[test]
    fn off_by_default_admits_everyone() {
        assert!(Admission::default().check(&Caller::default()).is_ok());
    }

    #[test]
    fn e_conomic_expands_to_its_addresses_with_or_without_port() {
        let admission = allow("e-conomic");
        assert!(admission.check(&from("54.72.52.167:51234")).is_ok());
        assert!(admission.check(&from("54.76.161.29")).is_ok());
        assert_eq!(
            admission.check(&from("203.0.113.9:1")),
            Err(Refusal::SourceNotAllowed("203.0.113.9".parse().unwrap()))
        );
    }

    #[test]
    fn only_the_last_forwarded_entry_counts() {
        let admission = allow("10.0.0.0/8");
        assert!(admission.check(&from("54.72.52.167, 10.1.2.3:443")).is_ok());
        assert!(
            admission.check(&from("10.1.2.3, 203.0.113.9")).is_err(),
            "a forged first entry is ignored"
        );
    }

    #[test]
    fn ipv6_with_brackets_and_port_is_understood() {
        assert!(allow("2001:db8::/32").check(&from("[2001:db8::1]:443")).is_ok());
    }

    #[test]
    fn without_forwarded_for_the_peer_is_used_and_without_either_it_is_refused() {
        let admission = allow("127.0.0.1");
        let peer = Caller {
            peer: Some("127.0.0.1".parse().unwrap()),
            ..Caller::default()
        };
        assert!(admission.check(&peer).is_ok());
        assert!(matches!(
            admission.check(&Caller::default()),
            Err(Refusal::NoClientAddress(_))
        ));
    }

    #[test]
    fn behind_the_host_the_front_ends_client_ip_wins_over_forwarded_for() {
        let admission = allow_behind_host("e-conomic");
        let forged = Caller {
            forwarded_for: Some("54.72.52.167"),
            front_end_client: Some("203.0.113.9"),
            ..Caller::default()
        };
        assert_eq!(
            admission.check(&forged),
            Err(Refusal::SourceNotAllowed("203.0.113.9".parse().unwrap()))
        );
        let with_port = Caller {
            front_end_client: Some("54.72.52.167:51234"),
            ..Caller::default()
        };
        assert!(admission.check(&with_port).is_ok());
    }

    #[test]
    fn proxied_the_hosts_forwarded_for_is_never_taken_for_the_sender() {
        let admission = allow_behind_host("169.254.0.0/16");
        let proxied = Caller {
            forwarded_for: Some("169.254.129.1"),
            proxied: true,
            ..Caller::default()
        };
        assert!(matches!(admission.check(&proxied), Err(Refusal::NoClientAddress(_))));
        let forwarded = Caller {
            forwarded_for: Some("169.254.129.1"),
            ..Caller::default()
        };
        assert!(
            admission.check(&forwarded).is_ok(),
            "payload and legacy modes fall back to it"
        );
    }

    #[test]
    fn behind_the_host_the_tcp_peer_is_never_the_sender() {
        let peer = Caller {
            peer: Some("127.0.0.1".parse().unwrap()),
            ..Caller::default()
        };
        assert!(matches!(
            allow_behind_host("127.0.0.1").check(&peer),
            Err(Refusal::NoClientAddress(_))
        ));
    }

    #[test]
    fn the_secret_is_accepted_from_the_header_or_the_query() {
        let admission = secret("s3cret");
        let header = Caller {
            secret_header: Some("s3cret"),
            ..Caller::default()
        };
        let query = Caller {
            query: "type=x&secret=s3cret",
            ..Caller::default()
        };
        assert!(admission.check(&header).is_ok());
        assert!(admission.check(&query).is_ok());
        assert_eq!(admission.secret_params(), &["secret"]);
    }

    #[test]
    fn a_missing_or_wrong_secret_is_refused() {
        let admission = secret("s3cret");
        assert_eq!(admission.check(&Caller::default()), Err(Refusal::SecretMissing));
        let wrong = Caller {
            secret_header: Some("s3cret "),
            ..Caller::default()
        };
        assert_eq!(admission.check(&wrong), Err(Refusal::SecretWrong));
    }
}
