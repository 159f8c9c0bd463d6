//! Which of its three HTTP modes the Functions host uses, read from the
//! app's host.json as the host reads it (HttpWorkerOptions,
//! DefaultHttpWorkerService): `enableProxyingHttpRequest` wins, then
//! `enableForwardingHttpRequest`, else payload mode. `handler check` reports
//! it, since what the handler receives (and what the source checks can see)
//! depends on it; docs/host-modes.md has the details.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The host's HTTP mode for an HTTP-only function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// `enableProxyingHttpRequest`: the caller's request streamed through YARP.
    Proxying,
    /// `enableForwardingHttpRequest` (legacy): the request rebuilt by the host.
    LegacyForwarding,
    /// Neither: the invocation JSON posted to `/{FunctionName}`.
    Payload,
}

impl HostMode {
    /// The mode a host.json selects; an error names what is malformed.
    pub fn from_host_json(text: &str) -> Result<Self, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let Some(handler) = json.get("customHandler") else {
            return Err("it has no customHandler section".to_owned());
        };
        // The host binds these with .NET's configuration binder: any case,
        // and a string "true" counts too.
        let flag = |name: &str| {
            handler
                .as_object()
                .and_then(|object| object.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)))
                .is_some_and(|(_, value)| match value {
                    Value::Bool(on) => *on,
                    Value::String(text) => text.eq_ignore_ascii_case("true"),
                    _ => false,
                })
        };
        Ok(if flag("enableProxyingHttpRequest") {
            Self::Proxying
        } else if flag("enableForwardingHttpRequest") {
            Self::LegacyForwarding
        } else {
            Self::Payload
        })
    }
}

impl fmt::Display for HostMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Proxying => "proxying mode (enableProxyingHttpRequest)",
            Self::LegacyForwarding => "legacy forwarding mode (enableForwardingHttpRequest)",
            Self::Payload => "payload mode (neither enableProxyingHttpRequest nor enableForwardingHttpRequest)",
        })
    }
}

/// The host.json an operator's `handler check` most likely means: in
/// `app_root` (`FUNCTIONS_APP_ROOT_PATH`, set by the host), else in the
/// working directory (the repository or the unpacked package), else beside
/// the executable (the package's layout).
pub fn find_host_json(app_root: Option<&Path>, working_dir: Option<&Path>, exe_dir: Option<&Path>) -> Option<PathBuf> {
    [app_root, working_dir, exe_dir]
        .into_iter()
        .flatten()
        .map(|dir| dir.join("host.json"))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxying_wins_over_forwarding_as_in_the_host() {
        let both = r#"{"customHandler":{"enableProxyingHttpRequest":true,"enableForwardingHttpRequest":true}}"#;
        assert_eq!(HostMode::from_host_json(both), Ok(HostMode::Proxying));
        let legacy = r#"{"customHandler":{"EnableForwardingHttpRequest":"True"}}"#;
        assert_eq!(HostMode::from_host_json(legacy), Ok(HostMode::LegacyForwarding));
        let neither = r#"{"customHandler":{"enableProxyingHttpRequest":false}}"#;
        assert_eq!(HostMode::from_host_json(neither), Ok(HostMode::Payload));
    }

    #[test]
    fn the_shipped_host_json_selects_proxying() {
        let shipped = include_str!("../../../host.json");
        assert_eq!(HostMode::from_host_json(shipped), Ok(HostMode::Proxying));
    }

    #[test]
    fn a_host_json_without_a_custom_handler_is_named() {
        assert!(HostMode::from_host_json("{}").unwrap_err().contains("customHandler"));
        assert!(HostMode::from_host_json("{").unwrap_err().starts_with("not JSON"));
    }
}
