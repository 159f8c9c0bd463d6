//! How an exchange picks the bindings a routing key matches, as RabbitMQ
//! does it, for `handler check` to say which queue each webhook type
//! reaches without publishing anything.

/// Whether an exchange of type `kind` sends a message published with
/// `routing_key` along a binding made with `binding_key`; `None` for types
/// that do not route by key alone (`headers`, plugins' types).
pub fn binding_matches(kind: &str, binding_key: &str, routing_key: &str) -> Option<bool> {
    match kind {
        "direct" => Some(binding_key == routing_key),
        "fanout" => Some(true),
        "topic" => Some(topic_matches(binding_key, routing_key)),
        _ => None,
    }
}

/// A topic binding against a routing key: both are words separated by
/// dots; in the binding, `*` stands for exactly one word and `#` for zero
/// or more.
pub fn topic_matches(binding_key: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = binding_key.split('.').collect();
    let words: Vec<&str> = routing_key.split('.').collect();
    matches(&pattern, &words)
}

fn matches(pattern: &[&str], words: &[&str]) -> bool {
    match pattern.split_first() {
        None => words.is_empty(),
        Some((&"#", rest)) => (0..=words.len()).any(|skip| matches(rest, &words[skip..])),
        Some((&first, rest)) => match words.split_first() {
            Some((&word, remaining)) if first == "*" || first == word => matches(rest, remaining),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_wildcards_match_as_rabbitmq_documents_them() {
        let cases = [
            ("webhook.#", "webhook.invoice", true),
            ("webhook.#", "webhook", true),
            ("webhook.#", "webhook.a.b", true),
            ("webhook.#", "webhooks.a", false),
            ("webhook.*", "webhook.invoice", true),
            ("webhook.*", "webhook", false),
            ("webhook.*", "webhook.a.b", false),
            ("*.invoice", "webhook.invoice", true),
            ("#", "anything.at.all", true),
            ("#", "", true),
            ("#.invoice", "invoice", true),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
            ("webhook.invoice", "webhook.invoice", true),
            ("webhook.invoice", "webhook.product", false),
        ];
        for (binding, key, expected) in cases {
            assert_eq!(topic_matches(binding, key), expected, "{binding} vs {key}");
        }
    }

    #[test]
    fn direct_needs_the_same_key_and_fanout_takes_any() {
        assert_eq!(binding_matches("direct", "webhook.#", "webhook.a"), Some(false));
        assert_eq!(binding_matches("direct", "webhook.a", "webhook.a"), Some(true));
        assert_eq!(binding_matches("fanout", "", "webhook.a"), Some(true));
        assert_eq!(binding_matches("headers", "", "webhook.a"), None);
    }
}
