//! The setting `RelayHeaders`: request headers added to every delivery, for
//! an endpoint that wants a credential (`Authorization: Bearer …`, an API-key
//! header, basic auth). Its values are secrets: they are marked sensitive in
//! the request, never logged, and no error ever quotes them.
//!
//! Written `Name: value`, several separated by `|` (a character no sensible
//! credential holds, and one that needs no quoting on one line of a systemd
//! `EnvironmentFile`, a Docker `--env-file` or a shell); a line break
//! separates them too, for values set from YAML or a quoted multi-line value.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::signing::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::target::{ATTEMPT_HEADER, MESSAGE_ID_HEADER};
use crate::secret::Secret;
use crate::settings::SettingsError;

/// The setting holding the extra headers.
pub const HEADERS_SETTING: &str = "RelayHeaders";

const HINT: &str = "write each header as Name: value, several separated by |, \
    e.g. RelayHeaders='Authorization: Bearer <token>|X-Api-Key: <key>'";

/// Headers the relay sets itself from the message, or that would break the
/// request or its signature if replaced.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
    ID_HEADER,
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
];

/// The headers of `RelayHeaders`, values marked sensitive. Its `Debug` shows
/// the names only.
#[derive(Clone, Default)]
pub struct EndpointHeaders(HeaderMap);

impl fmt::Debug for EndpointHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.keys().map(HeaderName::as_str).collect();
        write!(f, "EndpointHeaders({names:?}, values [redacted])")
    }
}

impl EndpointHeaders {
    /// Parses a `RelayHeaders` value. Errors name the setting, the header's
    /// place and (once it is a valid name) the header's name; never a value.
    pub fn parse(value: &Secret) -> Result<Self, SettingsError> {
        let invalid = |problem: String| SettingsError::Invalid {
            name: HEADERS_SETTING,
            problem,
            hint: HINT,
        };
        let mut headers = HeaderMap::new();
        let entries = value
            .expose()
            .split(['|', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (i, entry) in entries.enumerate() {
            let place = i + 1;
            // Without a colon the whole entry may be the credential: say where, not what.
            let (name, raw) = entry
                .split_once(':')
                .ok_or_else(|| invalid(format!("header {place} has no ':' between its name and its value")))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                invalid(format!(
                    "header {place} does not start with a header name before its ':'"
                ))
            })?;
            if RESERVED.contains(&name.as_str())
                || name.as_str().eq_ignore_ascii_case(MESSAGE_ID_HEADER)
                || name.as_str().eq_ignore_ascii_case(ATTEMPT_HEADER)
            {
                return Err(invalid(format!(
                    "header {place} ({name}) is one the relay sets itself for every delivery"
                )));
            }
            let raw = raw.trim();
            if raw.is_empty() {
                return Err(invalid(format!("header {place} ({name}) has no value")));
            }
            let mut value = HeaderValue::from_str(raw).map_err(|_| {
                invalid(format!(
                    "the value of header {place} ({name}) holds a character a header cannot carry"
                ))
            })?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        if headers.is_empty() {
            return Err(invalid("it holds no header".to_owned()));
        }
        Ok(Self(headers))
    }

    /// The headers, for the request.
    pub fn map(&self) -> &HeaderMap {
        &self.0
    }
}

/// The `RelayHeaders` setting read through `lookup`: none when it is absent
/// or blank.
pub fn endpoint_headers(lookup: impl Fn(&str) -> Option<String>) -> Result<EndpointHeaders, SettingsError> {
    match lookup(HEADERS_SETTING).map(Secret::new) {
        Some(value) if !value.expose().trim().is_empty() => EndpointHeaders::parse(&value),
        _ => Ok(EndpointHeaders::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<EndpointHeaders, SettingsError> {
        EndpointHeaders::parse(&Secret::new(value))
    }

    #[test]
    fn headers_are_read_with_their_values_marked_sensitive() {
        let headers = parse(" Authorization: Bearer abc.def-ghi | X-Api-Key:k3y:with:colons|").unwrap();
        let map = headers.map();
        assert_eq!(map.len(), 2);
        assert_eq!(map["authorization"], "Bearer abc.def-ghi");
        assert_eq!(map["x-api-key"], "k3y:with:colons");
        assert!(map.values().all(HeaderValue::is_sensitive));
        let shown = format!("{headers:?}");
        assert_eq!(
            shown,
            r#"EndpointHeaders(["authorization", "x-api-key"], values [redacted])"#
        );
    }

    #[test]
    fn line_breaks_separate_headers_too() {
        let headers = parse("Authorization: Basic dTpw\r\nX-Tenant: 7\n").unwrap();
        assert_eq!(headers.map()["authorization"], "Basic dTpw");
        assert_eq!(headers.map()["x-tenant"], "7");
    }

    #[test]
    fn a_header_named_twice_is_sent_twice() {
        let headers = parse("X-Key: a|x-key: b").unwrap();
        let values: Vec<_> = headers.map().get_all("x-key").iter().collect();
        assert_eq!(values, ["a", "b"]);
    }

    #[test]
    fn errors_say_which_header_and_never_its_value() {
        let cases = [
            (
                "Bearer s3cret-token",
                "header 1 has no ':' between its name and its value",
            ),
            (
                "X-Ok: 1|Bad Name: s3cret-token",
                "header 2 does not start with a header name",
            ),
            ("X-Key:   ", "header 1 (x-key) has no value"),
            (
                "Content-Type: s3cret-token",
                "header 1 (content-type) is one the relay sets itself",
            ),
            (
                "X-Webhook-Attempt: s3cret-token",
                "header 1 (x-webhook-attempt) is one the relay sets",
            ),
            (
                "webhook-signature: s3cret-token",
                "header 1 (webhook-signature) is one the relay sets",
            ),
            (
                "X-Key: s3cret-token\u{7f}",
                "the value of header 1 (x-key) holds a character",
            ),
            (" | \n", "it holds no header"),
        ];
        for (value, problem) in cases {
            let err = parse(value).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("setting RelayHeaders is invalid: {problem}")),
                "{value:?}: {err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn the_setting_is_optional() {
        let none = endpoint_headers(|_| None).unwrap();
        assert!(none.map().is_empty());
        assert!(endpoint_headers(|_| Some(" ".to_owned())).unwrap().map().is_empty());
        let one = endpoint_headers(|name| (name == "RelayHeaders").then(|| "X-Key: v".to_owned())).unwrap();
        assert_eq!(one.map()["x-key"], "v");
    }
}
