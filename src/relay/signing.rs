//! Signing what the relay delivers, as the Standard Webhooks specification
//! (standardwebhooks.com) says, so the endpoint can tell the relay's requests
//! from anyone else's: `webhook-id` (the message id), `webhook-timestamp`
//! (this attempt's time) and `webhook-signature`, `v1,` and the base64
//! HMAC-SHA256 of `id.timestamp.body`, once per secret of the setting
//! `RelaySigningSecret`.
//!
//! Pure functions (the clock is an argument), unit-tested against the
//! example the specification's libraries test with; the relay's real
//! requests are checked with the published `standardwebhooks` crate in
//! `tests/relay/signing.rs`.

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{HeaderMap, HeaderValue};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::broker::message::Original;
use crate::secret::Secret;
use crate::settings::SettingsError;

/// The setting holding the signing secret(s).
pub const SIGNING_SECRET_SETTING: &str = "RelaySigningSecret";
/// Header carrying the message's id, the same on every attempt.
pub const ID_HEADER: &str = "webhook-id";
/// Header carrying the attempt's time, seconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying the signatures, separated by spaces.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// How the specification writes a symmetric secret: this prefix, then base64.
const PREFIX: &str = "whsec_";
/// The specification's bounds on a secret's size, in bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Bytes of a secret `handler relay-secret new` makes.
const NEW_SECRET_BYTES: usize = 32;
/// How a `webhook-id` made from a hash starts, and how many hex digits
/// (128 bits) of the hash follow.
const DERIVED_PREFIX: &str = "sha256-";
const DERIVED_HEX_DIGITS: usize = 32;

const HINT: &str = "write one secret as whsec_ and its base64 (`handler relay-secret new` prints a fresh one), \
    or several separated by spaces while rotating";

/// The keys of `RelaySigningSecret`, one per secret, in the order given.
/// Its `Debug` shows how many there are, never a key.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<hmac::Key>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({} secret(s), [redacted])", self.keys.len())
    }
}

impl Signer {
    /// Parses a `RelaySigningSecret` value: one or more `whsec_<base64>`
    /// separated by whitespace, each 24 to 64 bytes once decoded. Errors name
    /// the setting and which secret is wrong, never what it holds.
    pub fn parse(value: &Secret) -> Result<Self, SettingsError> {
        let secrets: Vec<&str> = value.expose().split_whitespace().collect();
        let count = secrets.len();
        let invalid = |problem: String| SettingsError::Invalid {
            name: SIGNING_SECRET_SETTING,
            problem,
            hint: HINT,
        };
        let which = |i: usize| {
            if count == 1 {
                "the secret".to_owned()
            } else {
                format!("secret {} of {count}", i + 1)
            }
        };
        if count == 0 {
            return Err(invalid("it holds no secret".to_owned()));
        }
        let mut keys = Vec::with_capacity(count);
        for (i, secret) in secrets.into_iter().enumerate() {
            let encoded = secret
                .strip_prefix(PREFIX)
                .ok_or_else(|| invalid(format!("{} does not start with {PREFIX}", which(i))))?;
            let decoded = BASE64
                .decode(encoded)
                .map_err(|_| invalid(format!("{} is not base64 after {PREFIX}", which(i))))?;
            if !SECRET_BYTES.contains(&decoded.len()) {
                return Err(invalid(format!(
                    "{} is {} bytes once decoded; the specification asks for {} to {}",
                    which(i),
                    decoded.len(),
                    SECRET_BYTES.start(),
                    SECRET_BYTES.end()
                )));
            }
            keys.push(hmac::Key::new(hmac::HMAC_SHA256, &decoded));
        }
        Ok(Self { keys })
    }

    /// The `webhook-signature` value for one attempt: `v1,<base64>` per
    /// secret, separated by spaces.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let mut header = String::with_capacity(self.keys.len() * 48);
        for key in &self.keys {
            // Fed in pieces: the body is never copied to build "id.timestamp.body".
            let mut context = hmac::Context::with_key(key);
            for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
                context.update(part);
            }
            if !header.is_empty() {
                header.push(' ');
            }
            header.push_str("v1,");
            BASE64.encode_string(context.sign().as_ref(), &mut header);
        }
        header
    }

    /// The three headers of one attempt of `original` at `now`: its
    /// [`webhook_id`], the timestamp and the signatures.
    pub fn headers(&self, original: &Original, body: &[u8], now: SystemTime) -> HeaderMap {
        let id = webhook_id(original, body);
        // A clock before 1970 is no clock: sign with 0, which every verifier refuses.
        let timestamp = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let signature = self.sign(&id, timestamp, body);
        let mut headers = HeaderMap::with_capacity(3);
        for (name, value) in [
            (ID_HEADER, id.into_owned()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, signature),
        ] {
            let value = HeaderValue::try_from(value).expect("ids, digits and base64 are valid header values");
            headers.insert(name, value);
        }
        headers
    }
}

/// The `RelaySigningSecret` setting read through `lookup`: `None` when it is
/// absent or blank (the relay then signs nothing).
pub fn signer(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Signer>, SettingsError> {
    match lookup(SIGNING_SECRET_SETTING).map(Secret::new) {
        Some(value) if !value.expose().trim().is_empty() => Signer::parse(&value).map(Some),
        _ => Ok(None),
    }
}

/// The `webhook-id` of a message: its message id, which every attempt and
/// every replay of a dead letter keeps. The specification wants an id that
/// holds no `.` (it separates the signed parts). An id that holds one, or
/// that cannot be a header, becomes `sha256-` and 32 hex digits of its own
/// SHA-256; a message without an id (published by something else than the
/// forwarder) gets the same prefix and the webhook's digest
/// ([`WebhookParts::digest`](crate::broker::message::WebhookParts::digest)):
/// either stays the same on every attempt.
pub fn webhook_id<'a>(original: &'a Original, body: &[u8]) -> Cow<'a, str> {
    let derived = |hex: &str| format!("{DERIVED_PREFIX}{}", &hex[..DERIVED_HEX_DIGITS]);
    match original.message_id.as_deref() {
        Some(id) if usable_as_id(id) => Cow::Borrowed(id),
        Some(id) => {
            let hex: String = Sha256::digest(id.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Cow::Owned(derived(&hex))
        }
        None => Cow::Owned(derived(&original.parts(body).digest())),
    }
}

/// Visible ASCII without `.`: a header value as it is, with nothing an HTTP
/// stack could trim or a verifier could split on.
fn usable_as_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
}

/// A fresh secret for `RelaySigningSecret`: `whsec_` and the base64 of 32
/// bytes from the operating system's random source.
pub fn new_secret() -> Result<Secret, ring::error::Unspecified> {
    let mut bytes = [0u8; NEW_SECRET_BYTES];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(Secret::new(format!("{PREFIX}{}", BASE64.encode(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks libraries' own tests.
    const EXAMPLE_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const EXAMPLE_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const EXAMPLE_TIMESTAMP: u64 = 1_649_367_553;
    const EXAMPLE_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXAMPLE_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn signer_of(value: &str) -> Result<Signer, SettingsError> {
        Signer::parse(&Secret::new(value))
    }

    fn message(id: Option<&str>) -> Original {
        Original {
            message_id: id.map(str::to_owned),
            method: "POST".to_owned(),
            query: "type=product".to_owned(),
            content_type: Some("application/x-www-form-urlencoded".to_owned()),
        }
    }

    #[test]
    fn the_specifications_example_signs_alike() {
        let signer = signer_of(EXAMPLE_SECRET).unwrap();
        assert_eq!(
            signer.sign(EXAMPLE_ID, EXAMPLE_TIMESTAMP, EXAMPLE_BODY),
            EXAMPLE_SIGNATURE
        );
    }

    #[test]
    fn several_secrets_give_one_signature_each_in_their_order() {
        let other = new_secret().unwrap();
        let both = signer_of(&format!("  {EXAMPLE_SECRET}\n\t{} ", other.expose())).unwrap();
        let alone = signer_of(other.expose()).unwrap();
        let header = both.sign(EXAMPLE_ID, EXAMPLE_TIMESTAMP, EXAMPLE_BODY);
        let expected = format!(
            "{EXAMPLE_SIGNATURE} {}",
            alone.sign(EXAMPLE_ID, EXAMPLE_TIMESTAMP, EXAMPLE_BODY)
        );
        assert_eq!(header, expected);
        assert_eq!(format!("{both:?}"), "Signer(2 secret(s), [redacted])");
    }

    #[test]
    fn the_signature_covers_id_timestamp_and_body() {
        let signer = signer_of(EXAMPLE_SECRET).unwrap();
        let base = signer.sign("a", 1, b"x");
        assert_ne!(signer.sign("b", 1, b"x"), base);
        assert_ne!(signer.sign("a", 2, b"x"), base);
        assert_ne!(signer.sign("a", 1, b"y"), base);
        // Binary bodies are signed byte for byte.
        assert_ne!(signer.sign("a", 1, b"\xff\x00"), signer.sign("a", 1, b"\xff\x01"));
    }

    #[test]
    fn an_attempt_carries_the_id_its_time_and_the_signature_of_both() {
        let signer = signer_of(EXAMPLE_SECRET).unwrap();
        let at = UNIX_EPOCH + std::time::Duration::from_millis(EXAMPLE_TIMESTAMP * 1000 + 999);
        let headers = signer.headers(&message(Some(EXAMPLE_ID)), EXAMPLE_BODY, at);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[ID_HEADER], EXAMPLE_ID);
        assert_eq!(headers[TIMESTAMP_HEADER], "1649367553");
        assert_eq!(headers[SIGNATURE_HEADER], EXAMPLE_SIGNATURE);
        let later = signer.headers(
            &message(Some(EXAMPLE_ID)),
            EXAMPLE_BODY,
            at + std::time::Duration::from_secs(1),
        );
        assert_eq!(later[ID_HEADER], EXAMPLE_ID);
        assert_eq!(later[TIMESTAMP_HEADER], "1649367554");
        assert_ne!(later[SIGNATURE_HEADER], EXAMPLE_SIGNATURE);
        let bare = signer.headers(&message(None), b"old=1", at);
        let id = bare[ID_HEADER].to_str().unwrap();
        assert_eq!(
            bare[SIGNATURE_HEADER],
            signer.sign(id, EXAMPLE_TIMESTAMP, b"old=1").as_str()
        );
    }

    #[test]
    fn a_malformed_secret_is_named_without_its_value() {
        let short = format!("whsec_{}", BASE64.encode([7u8; 23]));
        let long = format!("whsec_{}", BASE64.encode([7u8; 65]));
        let cases = [
            (
                "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "the secret does not start with whsec_",
            ),
            ("whsec_not*base64!", "the secret is not base64 after whsec_"),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7o",
                "the secret is not base64 after whsec_",
            ),
            (
                &short,
                "the secret is 23 bytes once decoded; the specification asks for 24 to 64",
            ),
            (
                &long,
                "the secret is 65 bytes once decoded; the specification asks for 24 to 64",
            ),
        ];
        for (value, problem) in cases {
            let err = signer_of(value).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("setting RelaySigningSecret is invalid: {problem}; ")),
                "{err}"
            );
            assert!(err.contains("handler relay-secret new"), "{err}");
            assert!(!err.contains(value.trim_start_matches("whsec_")), "{err}");
        }
        let second = signer_of(&format!("{EXAMPLE_SECRET} whsec_x")).unwrap_err().to_string();
        assert!(second.contains("secret 2 of 2 is not base64"), "{second}");
        assert!(signer_of(&format!("whsec_{}", BASE64.encode([7u8; 24]))).is_ok());
        assert!(signer_of(&format!("whsec_{}", BASE64.encode([7u8; 64]))).is_ok());
    }

    #[test]
    fn the_setting_is_optional_and_blank_means_absent() {
        let from = |value: Option<&str>| {
            signer(|name| {
                assert_eq!(name, "RelaySigningSecret");
                value.map(str::to_owned)
            })
        };
        assert!(from(None).unwrap().is_none());
        assert!(from(Some("  ")).unwrap().is_none());
        assert!(from(Some(EXAMPLE_SECRET)).unwrap().is_some());
        assert!(from(Some("secret")).is_err());
    }

    #[test]
    fn the_webhook_id_is_the_message_id_when_it_can_be() {
        let plain = message(Some("3f2a-9c1e"));
        assert_eq!(webhook_id(&plain, b"x"), "3f2a-9c1e");
        let dotted = message(Some("a.b"));
        // `printf 'a.b' | sha256sum`, its first 32 digits.
        assert_eq!(webhook_id(&dotted, b"x"), "sha256-2e7336dc8eba87ef472df568c35482ab");
        assert_eq!(
            webhook_id(&dotted, b"other body"),
            webhook_id(&dotted, b"x"),
            "from the id alone"
        );
        for odd in ["", "a b", "é", "tab\there"] {
            assert!(webhook_id(&message(Some(odd)), b"x").starts_with("sha256-"), "{odd:?}");
        }
    }

    #[test]
    fn a_message_without_an_id_gets_the_webhooks_digest() {
        let bare = message(None);
        let id = webhook_id(&bare, b"old=1&new=2");
        let digest = bare.parts(b"old=1&new=2").digest();
        assert_eq!(id, format!("sha256-{}", &digest[..32]));
        assert_eq!(webhook_id(&bare, b"old=1&new=2"), id, "the same on every attempt");
        assert_ne!(webhook_id(&bare, b"old=1&new=3"), id);
    }

    #[test]
    fn a_new_secret_is_32_random_bytes_that_parse() {
        let one = new_secret().unwrap();
        let two = new_secret().unwrap();
        assert_ne!(one, two);
        let encoded = one.expose().strip_prefix("whsec_").unwrap();
        assert_eq!(BASE64.decode(encoded).unwrap().len(), 32);
        assert!(Signer::parse(&one).is_ok());
        assert_eq!(format!("{one:?}"), "[redacted]");
    }
}
