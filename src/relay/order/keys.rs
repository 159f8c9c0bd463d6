//! `--order-by`: the templates that give a message its ordering keys, read
//! through the one template language ([`crate::template`]) from the
//! message's parts as the message format defines them.

use crate::broker::message::WebhookParts;
use crate::template::{Fields, Template, TemplateError};

/// The option the templates come from, for their errors.
pub const OPTION: &str = "--order-by";

/// Every `--order-by` template, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderBy(Vec<Template>);

impl OrderBy {
    /// Parses each template; the first bad one is the error.
    pub fn parse(templates: &[String]) -> Result<Self, TemplateError> {
        templates
            .iter()
            .map(|text| Template::parse(OPTION, text))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no template was given: messages are unordered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The templates as given.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(Template::as_str)
    }

    /// The keys of one webhook: one per template that renders (a template
    /// with a missing field gives none), repeats left out.
    pub fn keys(&self, parts: WebhookParts<'_>) -> Vec<String> {
        let fields = Fields::new(parts);
        let mut keys: Vec<String> = Vec::with_capacity(self.0.len());
        for key in self.0.iter().filter_map(|template| template.render(&fields)) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(query: &'a str, body: &'a [u8]) -> WebhookParts<'a> {
        WebhookParts {
            method: "POST",
            query,
            content_type: Some("application/x-www-form-urlencoded"),
            body,
        }
    }

    fn economic() -> OrderBy {
        OrderBy::parse(&[
            "{query.type}:{form.old}".to_owned(),
            "{query.type}:{form.new}".to_owned(),
        ])
        .unwrap()
    }

    #[test]
    fn a_renumbering_has_a_key_for_each_number() {
        assert_eq!(
            economic().keys(parts("type=product", b"old=101&new=102")),
            ["product:101", "product:102"]
        );
    }

    #[test]
    fn an_update_in_place_has_one_key() {
        assert_eq!(
            economic().keys(parts("type=product", b"old=101&new=101")),
            ["product:101"]
        );
    }

    #[test]
    fn a_template_with_a_missing_field_gives_no_key() {
        assert_eq!(economic().keys(parts("type=order", b"new=5")), ["order:5"]);
        assert!(economic().keys(parts("", b"")).is_empty());
        assert!(OrderBy::default().keys(parts("type=x", b"old=1")).is_empty());
    }

    #[test]
    fn a_bad_template_names_the_option_and_the_column() {
        let err = OrderBy::parse(&["{query.type}".to_owned(), "{query.type}:{form.old".to_owned()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--order-by \"{query.type}:{form.old\": at column 14: this placeholder is not closed: add a }"
        );
    }
}
