//! The template language: text with placeholders read from a webhook, such
//! as `{query.type}:{form.old}` or `webhook.{query.type|other}`. The relay's
//! `--order-by` renders one into an ordering key; `AmqpRoutingKey` renders
//! one into a routing key. One module owns the language, so both read a
//! webhook the same way.
//!
//! A template is parsed once, at start-up, into a [`Template`] whose errors
//! name the option or setting and the column; rendering is then a cheap
//! function of one webhook's [`Fields`] (its parts, as the message format
//! defines them, read lazily: [`fields`]).
//!
//! The syntax:
//! - `{query.NAME}`: a parameter of the query the sender called the forwarder
//!   with (the function key is never there);
//! - `{form.NAME}`: a field of the body read as `application/x-www-form-urlencoded`;
//! - `{json.PATH}`: a dotted path into the body read as JSON (`{json.data.id}`;
//!   a number picks an array element: `{json.lines.0.sku}`); strings, numbers
//!   and booleans render, anything else is missing;
//! - `{header.NAME}`: a request header the forwarder kept: `Content-Type`;
//! - `{SOURCE.NAME|DEFAULT}`: `DEFAULT` when the value is missing;
//! - `{{` and `}}`: a literal brace.
//!
//! A value is missing when the parameter, field or path is absent, or empty.
//! The body is read as form fields or as JSON whatever its `Content-Type`
//! says: senders mislabel bodies, and a body that is not of the kind asked
//! for simply has no such field.

pub mod fields;

use std::borrow::Cow;
use std::fmt;

pub use fields::Fields;

/// The request headers the forwarder keeps, lower case: what `{header.NAME}` can read.
pub const KEPT_HEADERS: &[&str] = &["content-type"];

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The text it was parsed from.
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Placeholder),
}

/// One `{…}` of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// Where its value comes from.
    pub source: Source,
    /// The value used when the webhook has none.
    pub default: Option<String>,
    /// How it was written, braces included: for messages about it.
    text: String,
}

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A query parameter, by name.
    Query(String),
    /// A form field of the body, by name.
    Form(String),
    /// A path into the JSON body, one key or array index per segment.
    Json(Vec<String>),
    /// A kept request header, by its lower-case name (one of [`KEPT_HEADERS`]).
    Header(String),
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A template that cannot be parsed: which option or setting, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {template:?}: at column {column}: {fault}")]
pub struct TemplateError {
    /// The option or setting that holds the template, e.g. `--order-by`.
    pub option: String,
    /// The template as given.
    pub template: String,
    /// The column (1-based, in characters) where the fault is.
    pub column: usize,
    /// What is wrong, and how to write it instead.
    pub fault: String,
}

impl Template {
    /// Parses `text`; `option` names where it came from (`--order-by`,
    /// `setting AmqpRoutingKey`) in the error.
    pub fn parse(option: &str, text: &str) -> Result<Self, TemplateError> {
        let fail = |column: usize, fault: String| TemplateError {
            option: option.to_owned(),
            template: text.to_owned(),
            column,
            fault,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, next)| next == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, next)| next == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(fail(
                        at + 1,
                        "a } closes no placeholder: write }} for a literal brace".to_owned(),
                    ));
                }
                '{' => {
                    let mut inside = String::new();
                    let closed = loop {
                        match chars.next() {
                            Some((_, '}')) => break true,
                            Some((nested, '{')) => {
                                return Err(fail(
                                    nested + 1,
                                    "a { inside a placeholder: placeholders do not nest".to_owned(),
                                ));
                            }
                            Some((_, c)) => inside.push(c),
                            None => break false,
                        }
                    };
                    if !closed {
                        return Err(fail(at + 1, "this placeholder is not closed: add a }".to_owned()));
                    }
                    let placeholder = placeholder(&inside).map_err(|(offset, fault)| fail(at + 2 + offset, fault))?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(placeholder));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its placeholders, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(placeholder) => Some(placeholder),
            Part::Text(_) => None,
        })
    }

    /// The literal text between the placeholders, in order.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Text(text) => Some(text.as_str()),
            Part::Field(_) => None,
        })
    }

    /// Whether it has no placeholder: it renders the same for every webhook.
    pub fn is_plain(&self) -> bool {
        self.placeholders().next().is_none()
    }

    /// Renders it for one webhook: each placeholder's value, or its default;
    /// `None` when a value is missing and has no default.
    pub fn render(&self, fields: &Fields<'_>) -> Option<String> {
        self.render_with(fields, |placeholder, value| {
            value
                .map(Cow::Borrowed)
                .or_else(|| placeholder.default.as_deref().map(Cow::Borrowed))
        })
    }

    /// Renders it with each placeholder's text chosen by `choose` from the
    /// value the webhook has (`None`: missing); `choose` answering `None`
    /// makes the whole rendering `None`. For renderings with rules of their
    /// own (a routing key replaces values it cannot carry).
    pub fn render_with<F>(&self, fields: &Fields<'_>, mut choose: F) -> Option<String>
    where
        F: for<'v> FnMut(&'v Placeholder, Option<&'v str>) -> Option<Cow<'v, str>>,
    {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(placeholder) => {
                    let value = fields.value(&placeholder.source);
                    out.push_str(&choose(placeholder, value.as_deref())?);
                }
            }
        }
        Some(out)
    }
}

/// Parses what stands between `{` and `}`; an error gives the offset (in
/// characters, within `inside`) and the fault.
fn placeholder(inside: &str) -> Result<Placeholder, (usize, String)> {
    const SOURCES: &str = "query, form, json or header";
    let (path, default) = match inside.split_once('|') {
        Some((path, default)) => (path, Some(default.to_owned())),
        None => (inside, None),
    };
    let Some((source, name)) = path.split_once('.') else {
        let fault = if path.is_empty() {
            format!("an empty placeholder: write {{SOURCE.NAME}}, SOURCE one of {SOURCES}")
        } else {
            format!("{path:?} has no name: write {{SOURCE.NAME}}, e.g. {{query.type}}")
        };
        return Err((0, fault));
    };
    let name_at = source.chars().count() + 1;
    if name.is_empty() {
        return Err((
            name_at,
            format!("{source}. names nothing: write the name after the dot"),
        ));
    }
    let source = match source {
        "query" => Source::Query(name.to_owned()),
        "form" => Source::Form(name.to_owned()),
        "json" => {
            let segments: Vec<String> = name.split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                return Err((name_at, format!("the JSON path {name:?} has an empty segment")));
            }
            Source::Json(segments)
        }
        "header" => {
            let lower = name.to_ascii_lowercase();
            if !KEPT_HEADERS.contains(&lower.as_str()) {
                return Err((
                    name_at,
                    format!("the forwarder does not keep header {name:?}; it keeps only Content-Type"),
                ));
            }
            Source::Header(lower)
        }
        other => return Err((0, format!("unknown source {other:?}: use {SOURCES}"))),
    };
    Ok(Placeholder {
        source,
        default,
        text: format!("{{{inside}}}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::WebhookParts;

    fn parts<'a>(query: &'a str, content_type: Option<&'a str>, body: &'a [u8]) -> WebhookParts<'a> {
        WebhookParts {
            method: "POST",
            query,
            content_type,
            body,
        }
    }

    fn render(template: &str, parts: WebhookParts<'_>) -> Option<String> {
        Template::parse("--order-by", template)
            .unwrap()
            .render(&Fields::new(parts))
    }

    fn error(template: &str) -> TemplateError {
        Template::parse("--order-by", template).unwrap_err()
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn e_conomic_renumbering_renders_a_key_per_number() {
        let webhook = parts("type=product", Some(FORM), b"old=101&new=102");
        assert_eq!(
            render("{query.type}:{form.old}", webhook).as_deref(),
            Some("product:101")
        );
        assert_eq!(
            render("{query.type}:{form.new}", webhook).as_deref(),
            Some("product:102")
        );
    }

    #[test]
    fn a_missing_or_empty_value_renders_nothing_unless_there_is_a_default() {
        let webhook = parts("type=product&empty=", Some(FORM), b"old=101");
        assert_eq!(render("{query.type}:{form.new}", webhook), None);
        assert_eq!(render("{query.empty}", webhook), None);
        assert_eq!(render("{query.nope}", webhook), None);
        assert_eq!(render("{form.new|none}", webhook).as_deref(), Some("none"));
        assert_eq!(render("{query.empty|}", webhook).as_deref(), Some(""));
    }

    #[test]
    fn values_are_decoded_and_the_first_of_a_repeated_name_wins() {
        let webhook = parts("na%6De=a%20b+c&name=second", None, b"k=%C3%A6+%26");
        assert_eq!(render("{query.name}", webhook).as_deref(), Some("a b c"));
        assert_eq!(render("{form.k}", webhook).as_deref(), Some("æ &"));
    }

    #[test]
    fn json_paths_reach_scalars_in_objects_and_arrays() {
        let body = br#"{"data":{"id":42,"name":"x","ok":true,"none":null,"lines":[{"sku":"A-1"}],"obj":{}}}"#;
        let webhook = parts("", Some("application/json"), body);
        assert_eq!(render("{json.data.id}", webhook).as_deref(), Some("42"));
        assert_eq!(render("{json.data.name}", webhook).as_deref(), Some("x"));
        assert_eq!(render("{json.data.ok}", webhook).as_deref(), Some("true"));
        assert_eq!(render("{json.data.lines.0.sku}", webhook).as_deref(), Some("A-1"));
        for missing in ["none", "obj", "lines", "lines.1.sku", "id.deeper", "absent"] {
            assert_eq!(render(&format!("{{json.data.{missing}}}"), webhook), None, "{missing}");
        }
    }

    #[test]
    fn a_body_is_read_whatever_its_content_type_says() {
        let form = parts("", Some("text/plain"), b"old=7");
        assert_eq!(render("{form.old}", form).as_deref(), Some("7"));
        let json = parts("", None, br#"{"id":"7"}"#);
        assert_eq!(render("{json.id}", json).as_deref(), Some("7"));
        let neither = parts("", Some("application/json"), b"\xff\xfe not json");
        assert_eq!(render("{json.id}", neither), None);
        assert_eq!(render("{form.id}", neither), None);
    }

    #[test]
    fn the_content_type_header_is_read_by_any_spelling() {
        let webhook = parts("", Some(FORM), b"");
        assert_eq!(render("{header.Content-Type}", webhook).as_deref(), Some(FORM));
        assert_eq!(render("{header.content-type}", parts("", None, b"")), None);
    }

    #[test]
    fn braces_are_escaped_by_doubling() {
        let webhook = parts("a=1", None, b"");
        assert_eq!(render("{{{query.a}}}", webhook).as_deref(), Some("{1}"));
        let plain = Template::parse("x", "a{{b}}").unwrap();
        assert!(plain.is_plain());
        assert_eq!(plain.literals().collect::<Vec<_>>(), ["a{b}"]);
    }

    #[test]
    fn render_with_lets_the_caller_replace_values() {
        let template = Template::parse("setting AmqpRoutingKey", "webhook.{query.type|other}.{query.x}").unwrap();
        let fields = Fields::new(parts("type=a*b", None, b""));
        let mut seen = Vec::new();
        let key = template.render_with(&fields, |placeholder, value| {
            seen.push((placeholder.to_string(), value.map(str::to_owned)));
            Some(match value {
                Some(v) if v.chars().all(char::is_alphanumeric) => Cow::Borrowed(v),
                _ => Cow::Owned(placeholder.default.clone().unwrap_or_else(|| "_".to_owned())),
            })
        });
        assert_eq!(key.as_deref(), Some("webhook.other._"));
        assert_eq!(
            seen,
            [
                ("{query.type|other}".to_owned(), Some("a*b".to_owned())),
                ("{query.x}".to_owned(), None)
            ]
        );
    }

    #[test]
    fn errors_name_the_option_the_column_and_the_fault() {
        let err = error("{query.type}:{form.old");
        assert_eq!(err.column, 14);
        assert_eq!(
            err.to_string(),
            "--order-by \"{query.type}:{form.old\": at column 14: this placeholder is not closed: add a }"
        );
        assert_eq!(error("a}b").column, 2);
        assert!(error("a}b").fault.contains("}}"));
        assert_eq!(
            error("{body.x}").fault,
            "unknown source \"body\": use query, form, json or header"
        );
        assert_eq!(error("x{}").column, 3);
        assert_eq!(
            error("{type}").fault,
            "\"type\" has no name: write {SOURCE.NAME}, e.g. {query.type}"
        );
        assert_eq!(error("{query.}").column, 8);
        assert_eq!(error("{json.a..b}").column, 7);
        assert_eq!(error("{q{x}}").column, 3);
        assert!(
            error("{header.authorization}")
                .fault
                .contains("keeps only Content-Type")
        );
    }

    #[test]
    fn placeholders_show_as_written() {
        let template = Template::parse("x", "{query.type|other}-{json.a.b}").unwrap();
        let shown: Vec<String> = template.placeholders().map(ToString::to_string).collect();
        assert_eq!(shown, ["{query.type|other}", "{json.a.b}"]);
        assert_eq!(template.as_str(), "{query.type|other}-{json.a.b}");
        assert_eq!(
            template.placeholders().next().unwrap().source,
            Source::Query("type".to_owned())
        );
    }
}
