//! Reading a placeholder's value out of one webhook. The webhook comes as
//! the message format's [`WebhookParts`], so the forwarder (before it
//! publishes) and the relay (after it consumes) read the same values. The
//! body is parsed as JSON at most once, and only when a template asks.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::Value;

use super::Source;
use crate::broker::message::WebhookParts;

/// One webhook's values, as templates read them.
#[derive(Debug)]
pub struct Fields<'a> {
    parts: WebhookParts<'a>,
    /// The body parsed as JSON, once asked for; `None` when it is not JSON.
    json: OnceCell<Option<Value>>,
}

impl<'a> Fields<'a> {
    /// The values of this webhook.
    pub fn new(parts: WebhookParts<'a>) -> Self {
        Self {
            parts,
            json: OnceCell::new(),
        }
    }

    /// The value `source` names, `None` when it is absent or empty.
    pub fn value(&self, source: &Source) -> Option<Cow<'_, str>> {
        let value = match source {
            Source::Query(name) => form_value(self.parts.query.as_bytes(), name),
            Source::Form(name) => form_value(self.parts.body, name),
            Source::Json(path) => self.json_value(path),
            // The only kept header (super::KEPT_HEADERS).
            Source::Header(_) => self.parts.content_type.map(Cow::Borrowed),
        };
        value.filter(|v| !v.is_empty())
    }

    fn json_value(&self, path: &[String]) -> Option<Cow<'_, str>> {
        let root = self
            .json
            .get_or_init(|| serde_json::from_slice(self.parts.body).ok())
            .as_ref()?;
        let found = path.iter().try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })?;
        match found {
            Value::String(text) => Some(Cow::Borrowed(text)),
            Value::Number(number) => Some(Cow::Owned(number.to_string())),
            Value::Bool(flag) => Some(Cow::Borrowed(if *flag { "true" } else { "false" })),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }
}

/// The first value named `name` in `application/x-www-form-urlencoded`
/// bytes (a query string or a body), names and values decoded.
fn form_value<'b>(encoded: &'b [u8], name: &str) -> Option<Cow<'b, str>> {
    url::form_urlencoded::parse(encoded).find_map(|(key, value)| (key == name).then_some(value))
}
