//! The names of every app setting the product reads, and a hint for a
//! setting that looks like one of them but is not: a mistyped name is
//! otherwise silently ignored and its default used.

/// Every app setting `handler` reads (the Functions host's own variables aside).
pub const KNOWN: &[&str] = &[
    "PublishTransport",
    "AmqpUrl",
    "AmqpManagementUrl",
    "AmqpEndpoint",
    "AmqpAuthHeader",
    "AmqpExchange",
    "AmqpRoutingKey",
    "AmqpAppId",
    "MaxBodyBytes",
    "PublishConcurrency",
    "PublishSlotWait",
    "PublishAttemptTimeout",
    "PublishDeadline",
    "ShutdownGrace",
    "HeaderReadTimeout",
    "ListenAddress",
    "AllowedSourceNetworks",
    "WebhookSecret",
    "RelaySigningSecret",
    "RelayHeaders",
];

/// A variable that is not one of ours but looks like one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookalike {
    /// The name as set.
    pub set: String,
    /// The setting it probably means.
    pub meant: &'static str,
}

impl std::fmt::Display for Lookalike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is set but is not a setting handler reads; did you mean {}? (names are case-sensitive)",
            self.set, self.meant
        )
    }
}

/// The names among `names` that are close to a known setting without being
/// one: another case, a letter missing, doubled or swapped, `_` added.
pub fn lookalikes<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Lookalike> {
    let mut found: Vec<Lookalike> = names
        .into_iter()
        .filter(|name| !KNOWN.contains(name))
        .filter_map(|name| {
            let lower = name.to_ascii_lowercase();
            KNOWN
                .iter()
                // Optimal string alignment: a swapped pair of letters
                // (`AmqpUlr`) is one slip, as a missing or doubled one is.
                .map(|known| (strsim::osa_distance(&lower, &known.to_ascii_lowercase()), *known))
                .filter(|(distance, known)| *distance <= allowed_typos(known))
                .min()
                .map(|(_, meant)| Lookalike {
                    set: name.to_owned(),
                    meant,
                })
        })
        .collect();
    found.sort_by(|a, b| a.set.cmp(&b.set));
    found
}

/// The lookalikes among the process's environment variables.
pub fn lookalikes_in_env() -> Vec<Lookalike> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    lookalikes(names.iter().map(String::as_str))
}

/// Short names tolerate one slip, longer ones two: few enough that unrelated
/// variables (`PATH`, `WEBSITE_SITE_NAME`) never match.
fn allowed_typos(known: &str) -> usize {
    if known.len() >= 12 { 2 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meant(names: &[&str]) -> Vec<(String, &'static str)> {
        lookalikes(names.iter().copied())
            .into_iter()
            .map(|l| (l.set, l.meant))
            .collect()
    }

    #[test]
    fn a_mistyped_setting_gets_a_did_you_mean() {
        assert_eq!(
            meant(&["PublishConcurency"]),
            [("PublishConcurency".to_owned(), "PublishConcurrency")]
        );
        assert_eq!(meant(&["AMQPURL", "AMQP_URL"]).len(), 2);
        assert_eq!(meant(&["amqpExchange"])[0].1, "AmqpExchange");
    }

    #[test]
    fn a_swapped_pair_of_letters_gets_a_did_you_mean() {
        assert_eq!(meant(&["AmqpUlr"]), [("AmqpUlr".to_owned(), "AmqpUrl")]);
        assert_eq!(meant(&["PublishDaedline"])[0].1, "PublishDeadline");
        assert_eq!(meant(&["AmqpExhcange"])[0].1, "AmqpExchange");
    }

    #[test]
    fn our_own_and_unrelated_variables_are_left_alone() {
        let environment = [
            "AmqpUrl",
            "PublishConcurrency",
            "PATH",
            "HOME",
            "RUST_LOG",
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            "FUNCTIONS_WORKER_RUNTIME",
            "WEBSITE_SITE_NAME",
            "APPSETTING_AmqpUrl",
            "AzureWebJobsStorage",
        ];
        assert_eq!(meant(&environment), []);
    }

    #[test]
    fn the_hint_names_both_spellings() {
        let hint = lookalikes(["PublishDeadLine"])[0].to_string();
        assert!(hint.contains("\"PublishDeadLine\""), "{hint}");
        assert!(hint.contains("did you mean PublishDeadline?"), "{hint}");
    }
}
