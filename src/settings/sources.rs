//! `AllowedSourceNetworks` and `WebhookSecret`: which source checks are on.
//! They are enforced in [`crate::intake::admission`].

use std::net::IpAddr;

use ipnet::IpNet;

use crate::secret::Secret;

/// The addresses e-conomic sends webhooks from (its article's list).
pub const E_CONOMIC_ADDRESSES: &[&str] = &[
    "54.72.52.167",
    "54.72.183.215",
    "54.194.169.90",
    "54.72.183.216",
    "54.72.217.203",
    "54.76.161.29",
];

/// Which checks are on; all off by default.
#[derive(Debug, Clone, Default)]
pub struct SourceChecks {
    /// Networks allowed to send; `None` allows all.
    pub allowed_networks: Option<Vec<IpNet>>,
    /// The shared secret callers must present; `None` requires none.
    pub shared_secret: Option<Secret>,
    /// Whether the Functions host started us (`FUNCTIONS_CUSTOMHANDLER_PORT`
    /// is set): then the sender's address is in App Service's front-end
    /// headers, and the TCP peer is the host itself.
    pub behind_functions_host: bool,
}

impl SourceChecks {
    /// Whether any check is on.
    pub fn is_enabled(&self) -> bool {
        self.allowed_networks.is_some() || self.shared_secret.is_some()
    }
}

/// Parses `AllowedSourceNetworks`: comma-separated addresses or CIDR
/// networks; the word `e-conomic` stands for e-conomic's sending addresses.
pub fn parse_networks(raw: &str) -> Result<Vec<IpNet>, String> {
    let mut networks = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        if item.eq_ignore_ascii_case("e-conomic") {
            networks.extend(
                E_CONOMIC_ADDRESSES
                    .iter()
                    .map(|a| IpNet::from(a.parse::<IpAddr>().expect("valid"))),
            );
        } else if let Ok(network) = item.parse::<IpNet>() {
            networks.push(network);
        } else if let Ok(address) = item.parse::<IpAddr>() {
            networks.push(IpNet::from(address));
        } else {
            return Err(format!(
                "{item:?} is neither an IP address nor a network like 10.0.0.0/8"
            ));
        }
    }
    if networks.is_empty() {
        return Err("it lists no address".to_owned());
    }
    Ok(networks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_network_lists_are_named() {
        assert!(parse_networks("10.0.0.0/8, nonsense").unwrap_err().contains("nonsense"));
        assert!(parse_networks(" , ").is_err());
    }

    #[test]
    fn e_conomic_stands_for_its_six_addresses() {
        let networks = parse_networks("e-conomic, 10.0.0.0/8").unwrap();
        assert_eq!(networks.len(), 7);
        assert!(networks.contains(&"54.76.161.29/32".parse().unwrap()));
    }
}
