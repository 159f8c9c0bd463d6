//! The routing key of each message: `AmqpRoutingKey`, a plain key (`webhook`,
//! the same for every webhook, as the seed has it) or a template in the
//! template language ([`crate::template`]), `webhook.{query.type|other}`,
//! rendered per webhook so the exchange can sort webhooks by type.
//!
//! The rules, so that no webhook is ever refused because of its key:
//! - a value that is missing, longer than [`MAX_VALUE_BYTES`], or holds a
//!   character outside `A-Z a-z 0-9 _ - .` renders as the placeholder's
//!   default, or [`FALLBACK`] when it has none; the caller logs which value
//!   was replaced ([`Rendered::replaced`]);
//! - checked once, at start-up: every default is itself a valid value, and
//!   the longest key the template can render fits AMQP's [`MAX_KEY_BYTES`].
//!
//! A plain key is parsed once and rendered as a borrowed string: it costs
//! the hot path nothing.

use std::borrow::Cow;
use std::fmt;

use super::message::WebhookParts;
use crate::template::{Fields, Template, TemplateError};

/// Longest value a placeholder may put into a key, in bytes.
pub const MAX_VALUE_BYTES: usize = 64;
/// Longest routing key AMQP carries (a short string), in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// What a replaced value without a default renders as.
pub const FALLBACK: &str = "_";
/// The characters a rendered value may hold, in words, for messages.
pub const ALLOWED: &str = "A-Z a-z 0-9 _ - .";

/// A parsed `AmqpRoutingKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingKey {
    template: Template,
    /// The key, when the template has no placeholder (braces unescaped).
    plain: Option<String>,
}

/// Why `AmqpRoutingKey` cannot be used; the setting is named by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingKeyError {
    /// The template does not parse.
    #[error("{:?}: at column {}: {}", .0.template, .0.column, .0.fault)]
    Template(TemplateError),
    /// A default could never be used as a value.
    #[error("the default of {placeholder} {problem}: a default must be 1 to {MAX_VALUE_BYTES} bytes of {ALLOWED}")]
    BadDefault {
        /// The placeholder as written.
        placeholder: String,
        /// What is wrong with its default.
        problem: String,
    },
    /// The key could exceed what AMQP carries.
    #[error(
        "{template:?} can render keys of up to {longest} bytes ({literal} of text, and up to {MAX_VALUE_BYTES} per placeholder); AMQP allows {MAX_KEY_BYTES}: shorten the text or use fewer placeholders"
    )]
    TooLong {
        /// The setting as written.
        template: String,
        /// The longest key it can render.
        longest: usize,
        /// The bytes of literal text in it.
        literal: usize,
    },
}

/// Why a value was replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flaw {
    /// The webhook has no such value, or it is empty.
    Missing,
    /// Longer than [`MAX_VALUE_BYTES`].
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// Holds a character outside [`ALLOWED`].
    Forbidden {
        /// The first such character.
        character: char,
    },
}

/// One value the key could not carry, and what stood in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The placeholder, as written in the setting.
    pub placeholder: String,
    /// What was wrong with the webhook's value.
    pub flaw: Flaw,
    /// What the key holds instead: the default, or [`FALLBACK`].
    pub with: String,
}

/// The key of one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered<'k> {
    /// The routing key.
    pub key: Cow<'k, str>,
    /// The values replaced, in the template's order; empty for most webhooks.
    pub replaced: Vec<Replaced>,
}

impl RoutingKey {
    /// Parses `AmqpRoutingKey` and checks that every webhook gets a valid key.
    pub fn parse(text: &str) -> Result<Self, RoutingKeyError> {
        let template = Template::parse("setting AmqpRoutingKey", text).map_err(RoutingKeyError::Template)?;
        for placeholder in template.placeholders() {
            if let Some(default) = &placeholder.default
                && let Some(problem) = value_flaw(Some(default))
            {
                let problem = match problem {
                    Flaw::Missing => "is empty".to_owned(),
                    Flaw::TooLong { bytes } => format!("is {bytes} bytes"),
                    Flaw::Forbidden { character } => format!("holds {character:?}"),
                };
                return Err(RoutingKeyError::BadDefault {
                    placeholder: placeholder.to_string(),
                    problem,
                });
            }
        }
        let literal: usize = template.literals().map(str::len).sum();
        let longest = literal + MAX_VALUE_BYTES * template.placeholders().count();
        if longest > MAX_KEY_BYTES {
            return Err(RoutingKeyError::TooLong {
                template: text.to_owned(),
                longest,
                literal,
            });
        }
        let plain = template.is_plain().then(|| template.literals().collect());
        Ok(Self { template, plain })
    }

    /// The setting as written.
    pub fn as_str(&self) -> &str {
        self.template.as_str()
    }

    /// The key, when it is the same for every webhook.
    pub fn plain(&self) -> Option<&str> {
        self.plain.as_deref()
    }

    /// Whether the template reads `{query.NAME}`.
    pub fn reads_query(&self, name: &str) -> bool {
        self.template
            .placeholders()
            .any(|p| matches!(&p.source, crate::template::Source::Query(n) if n == name))
    }

    /// The key of the webhook with these parts.
    pub fn render(&self, parts: WebhookParts<'_>) -> Rendered<'_> {
        if let Some(plain) = &self.plain {
            return Rendered {
                key: Cow::Borrowed(plain),
                replaced: Vec::new(),
            };
        }
        let mut replaced = Vec::new();
        let key = self.template.render_with(&Fields::new(parts), |placeholder, value| {
            let Some(flaw) = value_flaw(value) else {
                return value.map(Cow::Borrowed);
            };
            let with = placeholder.default.as_deref().unwrap_or(FALLBACK);
            replaced.push(Replaced {
                placeholder: placeholder.to_string(),
                flaw,
                with: with.to_owned(),
            });
            Some(Cow::Borrowed(with))
        });
        Rendered {
            // Every placeholder renders (a value, a default or the fallback).
            key: Cow::Owned(key.unwrap_or_default()),
            replaced,
        }
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What keeps `value` out of a key, if anything.
fn value_flaw(value: Option<&str>) -> Option<Flaw> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Some(Flaw::Missing);
    };
    if value.len() > MAX_VALUE_BYTES {
        return Some(Flaw::TooLong { bytes: value.len() });
    }
    value
        .chars()
        .find(|&c| !allowed(c))
        .map(|character| Flaw::Forbidden { character })
}

/// `A-Z a-z 0-9 _ - .`: nothing a topic binding reads as a wildcard (`*`,
/// `#`), nothing outside ASCII.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl fmt::Display for Replaced {
    /// `{query.type} was missing, used "other"`, for the log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flaw {
            Flaw::Missing => write!(f, "{} was missing", self.placeholder)?,
            Flaw::TooLong { bytes } => write!(f, "{} was {bytes} bytes (over {MAX_VALUE_BYTES})", self.placeholder)?,
            Flaw::Forbidden { character } => write!(f, "{} held {character:?} (outside {ALLOWED})", self.placeholder)?,
        }
        write!(f, ", used {:?}", self.with)
    }
}

/// The replaced values of one key, for one log field.
pub fn describe(replaced: &[Replaced]) -> String {
    replaced.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> WebhookParts<'_> {
        WebhookParts {
            method: "POST",
            query,
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"old=101&new=102",
        }
    }

    fn key(template: &str, query: &str) -> (String, Vec<Replaced>) {
        let parsed = RoutingKey::parse(template).unwrap();
        let rendered = parsed.render(parts(query));
        (rendered.key.into_owned(), rendered.replaced)
    }

    #[test]
    fn a_plain_key_is_the_key_for_every_webhook_and_borrowed() {
        let plain = RoutingKey::parse("webhook").unwrap();
        assert_eq!(plain.plain(), Some("webhook"));
        let rendered = plain.render(parts("type=invoice"));
        assert!(matches!(rendered.key, Cow::Borrowed("webhook")));
        assert!(rendered.replaced.is_empty());
        assert_eq!(RoutingKey::parse("a{{b}}").unwrap().plain(), Some("a{b}"));
    }

    #[test]
    fn a_template_renders_the_webhooks_type() {
        assert_eq!(key("webhook.{query.type}", "type=invoice").0, "webhook.invoice");
        assert_eq!(key("webhook.{form.old}", "").0, "webhook.101");
        assert!(key("webhook.{query.type|other}", "type=Product_2-b.c").1.is_empty());
    }

    #[test]
    fn a_missing_value_renders_as_its_default_or_the_fallback() {
        assert_eq!(
            key("webhook.{query.type|other}", ""),
            (
                "webhook.other".to_owned(),
                vec![Replaced {
                    placeholder: "{query.type|other}".to_owned(),
                    flaw: Flaw::Missing,
                    with: "other".to_owned(),
                }]
            )
        );
        assert_eq!(key("webhook.{query.type}", "type=").0, "webhook._");
    }

    #[test]
    fn hostile_values_render_as_the_default() {
        let long = format!("type={}", "x".repeat(10 * 1024));
        let cases = [
            (long.as_str(), Flaw::TooLong { bytes: 10 * 1024 }),
            ("type=%23", Flaw::Forbidden { character: '#' }),
            ("type=a*", Flaw::Forbidden { character: '*' }),
            ("type=%C3%A6ble", Flaw::Forbidden { character: 'æ' }),
            ("type=a+b", Flaw::Forbidden { character: ' ' }),
            ("type=", Flaw::Missing),
        ];
        for (query, flaw) in cases {
            let (rendered, replaced) = key("webhook.{query.type|other}", query);
            assert_eq!(rendered, "webhook.other", "{query}");
            assert_eq!(replaced[0].flaw, flaw, "{query}");
        }
        let exactly_64 = format!("type={}", "x".repeat(64));
        assert!(key("w.{query.type}", &exactly_64).1.is_empty());
    }

    #[test]
    fn the_log_text_says_which_value_was_replaced_and_by_what() {
        let (_, replaced) = key("{query.type|other}.{query.id}", "type=a%23b");
        assert_eq!(
            describe(&replaced),
            "{query.type|other} held '#' (outside A-Z a-z 0-9 _ - .), used \"other\"; {query.id} was missing, used \"_\""
        );
        let long = format!("type={}", "y".repeat(100));
        let (_, replaced) = key("{query.type}", &long);
        assert_eq!(describe(&replaced), "{query.type} was 100 bytes (over 64), used \"_\"");
    }

    #[test]
    fn defaults_must_be_valid_values() {
        let err = RoutingKey::parse("webhook.{query.type|a*b}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the default of {query.type|a*b} holds '*': a default must be 1 to 64 bytes of A-Z a-z 0-9 _ - ."
        );
        assert!(
            RoutingKey::parse("{query.type|}")
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        let long = format!("{{query.type|{}}}", "d".repeat(65));
        assert!(
            RoutingKey::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("is 65 bytes")
        );
    }

    #[test]
    fn the_longest_possible_key_must_fit_amqp() {
        // 3 placeholders (192) + 63 bytes of text = 255: fits.
        let fits = format!("{}{{query.a}}{{query.b}}{{query.c}}", "t".repeat(63));
        assert!(RoutingKey::parse(&fits).is_ok());
        let over = format!("{}{{query.a}}{{query.b}}{{query.c}}", "t".repeat(64));
        let err = RoutingKey::parse(&over).unwrap_err().to_string();
        assert!(err.contains("up to 256 bytes (64 of text"), "{err}");
        assert!(RoutingKey::parse(&"k".repeat(256)).is_err(), "a plain key too");
        assert!(RoutingKey::parse(&"k".repeat(255)).is_ok());
        // Whatever the webhook holds, a key that parsed fits.
        let huge = format!("type={}&b={}", "x".repeat(5000), "y".repeat(64));
        let (rendered, _) = key(&fits, &huge.replace("type", "a"));
        assert!(rendered.len() <= MAX_KEY_BYTES);
    }

    #[test]
    fn a_template_that_does_not_parse_shows_where() {
        let err = RoutingKey::parse("webhook.{query.type").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"webhook.{query.type\": at column 9: this placeholder is not closed: add a }"
        );
    }

    #[test]
    fn it_knows_whether_it_reads_a_query_parameter() {
        assert!(RoutingKey::parse("w.{query.type|x}").unwrap().reads_query("type"));
        assert!(!RoutingKey::parse("w.{form.type}").unwrap().reads_query("type"));
    }
}
