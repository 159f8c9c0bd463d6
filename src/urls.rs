//! URLs that people type (`--to`, `AmqpUrl`, `AmqpEndpoint`,
//! `AmqpManagementUrl`): parsed, and their scheme checked, in one place, so
//! that a URL written without a scheme gets the form to write. `url` reads
//! `127.0.0.1:8001/webhook.php` as a relative URL and `localhost:8001/x` as
//! the scheme "localhost"; neither error tells a user what to type.

use url::Url;

/// Whether an error may show the value back to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// A command-line value the user just typed: the fix is shown written
    /// out, any password in it masked.
    Masked,
    /// A setting that may hold a secret: the fix is described, never shown.
    Never,
}

/// Parses `raw` as a URL with one of `schemes` (most likely first).
pub fn parse(raw: &str, schemes: &[&str], echo: Echo) -> Result<Url, String> {
    let raw = raw.trim();
    if !raw.contains("://") {
        return Err(no_scheme(raw, schemes, echo));
    }
    let url = Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "the scheme {:?} is not {}",
            url.scheme(),
            alternatives(schemes)
        ));
    }
    Ok(url)
}

/// "it has no scheme: write http://127.0.0.1:8001/webhook.php (or https://…)".
fn no_scheme(raw: &str, schemes: &[&str], echo: Echo) -> String {
    match (echo, schemes) {
        (Echo::Masked, [first, rest @ ..]) if !raw.is_empty() => {
            let others: Vec<String> = rest.iter().map(|scheme| format!("{scheme}://…")).collect();
            let or = if others.is_empty() {
                String::new()
            } else {
                format!(" (or {})", others.join(", "))
            };
            format!("it has no scheme: write {first}://{}{or}", masked(raw))
        }
        _ => {
            let forms: Vec<String> = schemes.iter().map(|scheme| format!("{scheme}://")).collect();
            format!("it has no scheme: write it starting with {}", forms.join(" or "))
        }
    }
}

/// `user:password@host/...` with the password replaced by `***`.
fn masked(raw: &str) -> String {
    let authority_end = raw.find(['/', '?', '#']).unwrap_or(raw.len());
    let (authority, rest) = raw.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{user}{hidden}@{host}{rest}")
        }
        None => raw.to_owned(),
    }
}

/// "http or https", "amqps or amqp".
fn alternatives(schemes: &[&str]) -> String {
    match schemes {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &[&str] = &["http", "https"];

    #[test]
    fn an_address_without_a_scheme_gets_the_form_to_write() {
        let err = parse("127.0.0.1:8001/webhook.php", WEB, Echo::Masked).unwrap_err();
        assert_eq!(
            err,
            "it has no scheme: write http://127.0.0.1:8001/webhook.php (or https://…)"
        );
        // `url` would take "localhost" for the scheme.
        let err = parse("localhost:8001/x", WEB, Echo::Masked).unwrap_err();
        assert_eq!(err, "it has no scheme: write http://localhost:8001/x (or https://…)");
    }

    #[test]
    fn the_form_to_write_masks_a_password() {
        let err = parse("user:s3cret@example.com/hook?a=b", WEB, Echo::Masked).unwrap_err();
        assert!(err.contains("http://user:***@example.com/hook?a=b"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_secret_setting_gets_the_schemes_not_its_value() {
        let err = parse("guest:s3cret@127.0.0.1/", &["amqps", "amqp"], Echo::Never).unwrap_err();
        assert_eq!(err, "it has no scheme: write it starting with amqps:// or amqp://");
    }

    #[test]
    fn another_scheme_is_named_with_the_ones_taken() {
        let err = parse("ftp://example.com/x", WEB, Echo::Masked).unwrap_err();
        assert_eq!(err, "the scheme \"ftp\" is not http or https");
        assert!(parse(" https://example.com/x ", WEB, Echo::Masked).is_ok());
    }
}
