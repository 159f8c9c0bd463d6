//! What `handler relay` is told: the command line, plus the `AmqpUrl`,
//! `RelaySigningSecret` and `RelayHeaders` settings from the environment (a
//! password does not belong on a command line, where `ps` shows it to every
//! user of the machine).

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::endpoint_headers::{self, EndpointHeaders};
use super::order::OrderBy;
use super::retry::RetryPolicy;
use super::signing::{self, Signer};
use crate::broker::AmqpUrl;
use crate::broker::http::PublishEndpoint;
use crate::broker::topology::{DEFAULT_QUEUE, dead_letter_name};
use crate::settings::{self, SettingsError, broker::AMQP_URL_HINT};
use crate::template::TemplateError;
use crate::urls::{self, Echo};

/// The default prefetch per unit of `--concurrency`: unordered, and with
/// `--order-by` (where messages waiting behind busy keys take prefetch slots
/// too; docs/relay.md).
const PREFETCH_PER_SLOT: u16 = 4;
const ORDERED_PREFETCH_PER_SLOT: u16 = 16;

/// AMQP short strings hold 255 bytes, and the dead-letter exchange's name
/// adds `.dead-letter` to the queue's.
fn max_queue_name() -> usize {
    255 - dead_letter_name("").len()
}

/// `handler relay`: drain a queue into an HTTP endpoint at the pace it can take.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "The broker comes from the environment variable AmqpUrl, \
    e.g. AmqpUrl='amqps://<user>:<password>@<host>/<vhost>' (locally amqp://guest:guest@127.0.0.1/). \
    RelaySigningSecret (whsec_..., from `handler relay-secret new`) signs every delivery as Standard Webhooks says; \
    RelayHeaders ('Name: value', several separated by |) adds headers, e.g. a credential. Every setting: docs/settings.md.")]
pub struct RelayArgs {
    /// The endpoint every queued webhook is delivered to (http or https); the
    /// webhook's own query string is appended to any query it already has.
    #[arg(long, value_name = "URL", value_parser = parse_target)]
    pub to: Url,
    /// The queue to drain.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_QUEUE, value_parser = parse_queue)]
    pub queue: String,
    /// Most requests to the target in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Most messages held unacknowledged at once (the AMQP prefetch): in
    /// flight, waiting to be retried, or paused with the circuit; at least
    /// --concurrency. Messages backing off use it up: when it is full of
    /// them, nothing new comes in until one is settled. [default: 4 x
    /// --concurrency; 16 x with --order-by]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: Option<u16>,
    /// Keep the order of the webhooks that share a key: a message is sent only
    /// when every earlier one with one of its keys was delivered or
    /// dead-lettered. TEMPLATE renders the key from the webhook: {query.NAME},
    /// {form.NAME}, {json.PATH}, {header.Content-Type}, {SOURCE.NAME|DEFAULT};
    /// a template with a missing field gives no key. Repeatable: each gives
    /// one key. For e-conomic: --order-by '{query.type}:{form.old}' --order-by
    /// '{query.type}:{form.new}'.
    #[arg(long = "order-by", value_name = "TEMPLATE")]
    pub order_by: Vec<String>,
    /// Acknowledge a held message undelivered when an identical one (same
    /// method, query, content type and body) arrives before its delivery
    /// began; the newer copy keeps its own place. For notifications whose
    /// receiver fetches the current state, like e-conomic's.
    #[arg(long)]
    pub coalesce: bool,
    /// Most requests per second sent to the target, retries included (a
    /// decimal, e.g. 0.5 or 200); unlimited when absent.
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub rate: Option<Rate>,
    /// Attempts per message before it moves to the dead-letter queue. Only
    /// the message's own failures count (a 4xx, or a 5xx while other
    /// messages get through): while the target is down, nothing counts.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// How long one request to the target may take before it counts as failed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Wait after a first failed attempt, and before the first probe of a
    /// target that seems down; doubles with every further failure.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// Longest wait between two attempts of one message, between two probes,
    /// and for a Retry-After.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub max_retry_delay: Duration,
    /// How often a progress line is printed.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub progress_interval: Duration,
    /// How long in-flight deliveries may take to finish after SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187;
    /// port 0 picks a free one and logs it); none when absent.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// A rate limit: requests per second, possibly fractional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    /// A rate above 0 and at most a million a second (beyond it the limit is
    /// meaningless and the period would round to zero); `None` otherwise.
    pub fn new(per_second: f64) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0 && per_second <= 1_000_000.0).then_some(Self(per_second))
    }

    /// Requests per second.
    pub fn per_second(self) -> f64 {
        self.0
    }

    /// The time between two request starts.
    pub fn period(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }
}

/// Everything the relay needs, validated.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Where to consume from.
    pub amqp_url: AmqpUrl,
    /// The management API beside it (`AmqpManagementUrl` moves it), for
    /// what AMQP cannot tell: whether the queue has a single active consumer.
    pub management: PublishEndpoint,
    /// Where to deliver to.
    pub target: Url,
    /// The queue to drain.
    pub queue: String,
    /// Most requests in flight.
    pub concurrency: u16,
    /// Most messages held: the AMQP prefetch.
    pub prefetch: u16,
    /// The ordering keys' templates; empty when unordered.
    pub order_by: OrderBy,
    /// Whether identical held copies are coalesced.
    pub coalesce: bool,
    /// Most request starts per second; `None` is unlimited.
    pub rate: Option<Rate>,
    /// When to retry, when to give up.
    pub retry: RetryPolicy,
    /// Timeout of one request to the target.
    pub timeout: Duration,
    /// Time between two progress lines.
    pub progress_interval: Duration,
    /// Time in-flight deliveries get after SIGTERM.
    pub shutdown_grace: Duration,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// `RelaySigningSecret`: what signs every delivery, if anything does.
    pub signer: Option<Signer>,
    /// `RelayHeaders`: headers added to every delivery.
    pub headers: EndpointHeaders,
}

/// Options that parse one by one but do not fit together, or a bad `AmqpUrl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `AmqpUrl` is missing or malformed.
    #[error(transparent)]
    AmqpUrl(#[from] SettingsError),
    /// `--prefetch` is below `--concurrency`.
    #[error("--prefetch ({prefetch}) is below --concurrency ({concurrency}): the relay could never use its slots")]
    Prefetch {
        /// `--prefetch`.
        prefetch: u16,
        /// `--concurrency`.
        concurrency: u16,
    },
    /// `RelaySigningSecret` or `RelayHeaders` is malformed.
    #[error(transparent)]
    Setting(SettingsError),
    /// `--to` holds a user name or password.
    #[error(
        "--to holds a user name or password (user:password@host), which `ps` shows to every user of the machine: \
         take it out of --to and set RelayHeaders='Authorization: Basic <base64 of user:password>' in the environment \
         instead (`handler auth-header` prints that base64)"
    )]
    CredentialsInTarget,
    /// An `--order-by` template does not parse.
    #[error(transparent)]
    OrderBy(#[from] TemplateError),
    /// `--max-retry-delay` is below `--retry-delay`.
    #[error("--max-retry-delay ({max:?}) is shorter than --retry-delay ({first:?})")]
    RetryDelays {
        /// `--retry-delay`.
        first: Duration,
        /// `--max-retry-delay`.
        max: Duration,
    },
}

impl RelayOptions {
    /// Combines the command line with the settings read through `lookup`.
    pub fn new(args: RelayArgs, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OptionsError> {
        let amqp_url = amqp_url(&lookup)?;
        if !args.to.username().is_empty() || args.to.password().is_some() {
            return Err(OptionsError::CredentialsInTarget);
        }
        let signer = signing::signer(&lookup).map_err(OptionsError::Setting)?;
        let headers = endpoint_headers::endpoint_headers(&lookup).map_err(OptionsError::Setting)?;
        let management = settings::broker::derived_endpoint(&|name| lookup(name), &amqp_url)?;
        let order_by = OrderBy::parse(&args.order_by)?;
        let per_slot = if order_by.is_empty() {
            PREFETCH_PER_SLOT
        } else {
            ORDERED_PREFETCH_PER_SLOT
        };
        let prefetch = args.prefetch.unwrap_or(args.concurrency.saturating_mul(per_slot));
        if prefetch < args.concurrency {
            return Err(OptionsError::Prefetch {
                prefetch,
                concurrency: args.concurrency,
            });
        }
        if args.max_retry_delay < args.retry_delay {
            return Err(OptionsError::RetryDelays {
                first: args.retry_delay,
                max: args.max_retry_delay,
            });
        }
        Ok(Self {
            amqp_url,
            management,
            target: args.to,
            queue: args.queue,
            concurrency: args.concurrency,
            prefetch,
            order_by,
            coalesce: args.coalesce,
            rate: args.rate,
            retry: RetryPolicy {
                max_attempts: args.max_attempts,
                first_delay: args.retry_delay,
                max_delay: args.max_retry_delay,
            },
            timeout: args.timeout,
            progress_interval: args.progress_interval,
            shutdown_grace: args.shutdown_grace,
            metrics: args.metrics,
            signer,
            headers,
        })
    }

    /// Reads the settings from the process environment.
    pub fn from_env(args: RelayArgs) -> Result<Self, OptionsError> {
        Self::new(args, |name| std::env::var(name).ok())
    }
}

/// The `AmqpUrl` setting, read through `lookup`, required: the relay and
/// the dead-letter commands take the broker from it alike.
pub fn amqp_url(lookup: impl Fn(&str) -> Option<String>) -> Result<AmqpUrl, SettingsError> {
    match lookup("AmqpUrl").filter(|raw| !raw.trim().is_empty()) {
        Some(raw) => settings::parse_amqp_url(&raw),
        None => Err(SettingsError::Missing {
            name: "AmqpUrl",
            hint: AMQP_URL_HINT,
        }),
    }
}

fn parse_target(raw: &str) -> Result<Url, String> {
    let url = urls::parse(raw, &["http", "https"], Echo::Masked)?;
    if url.fragment().is_some() {
        return Err("a URL with a #fragment cannot be requested".to_owned());
    }
    Ok(url)
}

/// A queue name for `--queue`: not empty, and short enough for its
/// dead-letter exchange's name to fit too.
pub fn parse_queue(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("the queue name is empty".to_owned());
    }
    if raw.len() > max_queue_name() {
        return Err(format!(
            "the queue name is {} bytes; at most {} leave room for its dead-letter exchange's name",
            raw.len(),
            max_queue_name()
        ));
    }
    Ok(raw.to_owned())
}

fn parse_rate(raw: &str) -> Result<Rate, String> {
    raw.parse()
        .ok()
        .and_then(Rate::new)
        .ok_or_else(|| "write a number of requests per second above 0, e.g. 0.5 or 200".to_owned())
}

fn parse_duration(raw: &str) -> Result<Duration, &'static str> {
    settings::parse_duration(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        relay: RelayArgs,
    }

    fn args(line: &[&str]) -> Result<RelayArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("relay").chain(line.iter().copied())).map(|cli| cli.relay)
    }

    fn local(name: &str) -> Option<String> {
        (name == "AmqpUrl").then(|| "amqp://guest:guest@127.0.0.1:5672/%2F".to_owned())
    }

    #[test]
    fn defaults_fill_everything_but_the_target() {
        let options = RelayOptions::new(args(&["--to", "http://127.0.0.1:9000/hook.php"]).unwrap(), local).unwrap();
        assert_eq!(options.target.as_str(), "http://127.0.0.1:9000/hook.php");
        assert_eq!(options.queue, "e-conomic-webhooks");
        assert_eq!(options.concurrency, 4);
        assert_eq!(options.prefetch, 16);
        assert_eq!(options.rate, None);
        assert_eq!(options.retry.max_attempts, 10);
        assert_eq!(options.retry.first_delay, Duration::from_secs(1));
        assert_eq!(options.retry.max_delay, Duration::from_secs(60));
        assert_eq!(options.timeout, Duration::from_secs(30));
        assert_eq!(options.metrics, None);
    }

    #[test]
    fn every_option_is_read() {
        let line = [
            "--to",
            "https://example.com/hook?a=1",
            "--queue",
            "q1",
            "--concurrency",
            "16",
            "--prefetch",
            "20",
            "--rate",
            "0.5",
            "--max-attempts",
            "3",
            "--timeout",
            "2s",
            "--retry-delay",
            "100ms",
            "--max-retry-delay",
            "1s",
            "--progress-interval",
            "1s",
            "--shutdown-grace",
            "5s",
            "--metrics",
            "127.0.0.1:9187",
        ];
        let options = RelayOptions::new(args(&line).unwrap(), local).unwrap();
        assert_eq!(options.queue, "q1");
        assert_eq!(options.concurrency, 16);
        assert_eq!(options.prefetch, 20);
        assert_eq!(options.rate.unwrap().period(), Duration::from_secs(2));
        assert_eq!(options.retry.max_attempts, 3);
        assert_eq!(options.retry.first_delay, Duration::from_millis(100));
        assert_eq!(options.timeout, Duration::from_secs(2));
        assert_eq!(options.shutdown_grace, Duration::from_secs(5));
        assert_eq!(options.metrics, Some("127.0.0.1:9187".parse().unwrap()));
    }

    #[test]
    fn the_target_is_required_and_must_be_http() {
        assert!(args(&[]).is_err());
        let err = args(&["--to", "ftp://example.com/x"]).unwrap_err().to_string();
        assert!(err.contains("is not http or https"), "{err}");
        let err = args(&["--to", "127.0.0.1:8001/webhook.php"]).unwrap_err().to_string();
        assert!(err.contains("write http://127.0.0.1:8001/webhook.php"), "{err}");
    }

    #[test]
    fn zero_concurrency_attempts_and_rate_are_refused() {
        for bad in [
            ["--concurrency", "0"],
            ["--max-attempts", "0"],
            ["--rate", "0"],
            ["--rate", "-1"],
            ["--rate", "NaN"],
            ["--timeout", "0s"],
            ["--metrics", "localhost"],
        ] {
            let line = [&["--to", "http://x/"][..], &bad[..]].concat();
            assert!(args(&line).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_overlong_queue_name_is_refused() {
        assert_eq!(max_queue_name(), 243);
        let long = "q".repeat(max_queue_name() + 1);
        assert!(args(&["--to", "http://x/", "--queue", &long]).is_err());
        let longest = "q".repeat(max_queue_name());
        assert!(args(&["--to", "http://x/", "--queue", &longest]).is_ok());
    }

    #[test]
    fn a_missing_amqp_url_names_the_setting() {
        let err = RelayOptions::new(args(&["--to", "http://x/"]).unwrap(), |_| None).unwrap_err();
        assert!(err.to_string().starts_with("setting AmqpUrl is missing"), "{err}");
    }

    #[test]
    fn credentials_in_the_target_are_refused_pointing_to_relay_headers() {
        for to in [
            "https://user:s3cret@example.com/hook.php",
            "https://user@example.com/hook.php",
        ] {
            let err = RelayOptions::new(args(&["--to", to]).unwrap(), local).unwrap_err();
            assert_eq!(err, OptionsError::CredentialsInTarget);
            let text = err.to_string();
            assert!(text.contains("RelayHeaders='Authorization: Basic "), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn signing_secret_and_headers_are_read_from_the_settings() {
        let settings = |name: &str| match name {
            "RelaySigningSecret" => Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned()),
            "RelayHeaders" => Some("Authorization: Bearer t0ken".to_owned()),
            other => local(other),
        };
        let options = RelayOptions::new(args(&["--to", "http://x/"]).unwrap(), settings).unwrap();
        assert!(options.signer.is_some());
        assert_eq!(options.headers.map()["authorization"], "Bearer t0ken");
        let shown = format!("{options:?}");
        assert!(!shown.contains("t0ken") && !shown.contains("C2FVsBQ"), "{shown}");

        let defaults = RelayOptions::new(args(&["--to", "http://x/"]).unwrap(), local).unwrap();
        assert!(defaults.signer.is_none() && defaults.headers.map().is_empty());
        let bad = |name: &str| match name {
            "RelaySigningSecret" => Some("hunter2".to_owned()),
            other => local(other),
        };
        let err = RelayOptions::new(args(&["--to", "http://x/"]).unwrap(), bad).unwrap_err();
        assert!(
            err.to_string().starts_with("setting RelaySigningSecret is invalid"),
            "{err}"
        );
    }

    #[test]
    fn the_prefetch_is_at_least_the_concurrency() {
        let line = ["--to", "http://x/", "--concurrency", "8", "--prefetch", "4"];
        let err = RelayOptions::new(args(&line).unwrap(), local).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--prefetch (4) is below --concurrency (8): the relay could never use its slots"
        );
        let most = ["--to", "http://x/", "--concurrency", "65535"];
        assert_eq!(RelayOptions::new(args(&most).unwrap(), local).unwrap().prefetch, 65535);
    }

    #[test]
    fn order_by_is_repeatable_and_raises_the_default_prefetch() {
        let line = [
            "--to",
            "http://x/",
            "--order-by",
            "{query.type}:{form.old}",
            "--order-by",
            "{query.type}:{form.new}",
            "--coalesce",
        ];
        let options = RelayOptions::new(args(&line).unwrap(), local).unwrap();
        assert_eq!(
            options.order_by.templates().collect::<Vec<_>>(),
            ["{query.type}:{form.old}", "{query.type}:{form.new}"]
        );
        assert!(options.coalesce);
        assert_eq!(options.prefetch, 64);
        let given = [&line[..4], &["--prefetch", "10"]].concat();
        assert_eq!(RelayOptions::new(args(&given).unwrap(), local).unwrap().prefetch, 10);
        let plain = RelayOptions::new(args(&["--to", "http://x/"]).unwrap(), local).unwrap();
        assert!(plain.order_by.is_empty());
        assert!(!plain.coalesce);
    }

    #[test]
    fn a_bad_order_by_template_names_the_option_the_column_and_the_fault() {
        let line = ["--to", "http://x/", "--order-by", "{query.type}:{body.old}"];
        let err = RelayOptions::new(args(&line).unwrap(), local).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--order-by \"{query.type}:{body.old}\": at column 15: unknown source \"body\": use query, form, json or header"
        );
    }

    #[test]
    fn retry_delays_must_fit_together() {
        let line = ["--to", "http://x/", "--retry-delay", "10s", "--max-retry-delay", "1s"];
        let err = RelayOptions::new(args(&line).unwrap(), local).unwrap_err();
        assert!(matches!(err, OptionsError::RetryDelays { .. }));
    }
}
