//! The one error type of settings parsing: it names the setting and the fix,
//! never the secret value.

/// A setting that is missing or malformed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A required setting is absent or empty.
    #[error("setting {name} is missing: {hint}")]
    Missing {
        /// The setting's name.
        name: &'static str,
        /// How to fix it.
        hint: &'static str,
    },
    /// A setting is present but unusable.
    #[error("setting {name} is invalid: {problem}; {hint}")]
    Invalid {
        /// The setting's name.
        name: &'static str,
        /// What is wrong (never the secret value itself).
        problem: String,
        /// How to fix it.
        hint: &'static str,
    },
}
