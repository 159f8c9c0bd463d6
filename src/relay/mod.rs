//! `handler relay`: the subscriber. Drains the queue the forwarder fills into
//! the user's existing HTTP endpoint, at the pace it can take, losing nothing.
//!
//! A message flows: [`consumer`] (AMQP over [`connection`], reconnects) ->
//! [`order`] (waits behind earlier messages of its keys; [`coalesce`]
//! collapses identical copies) -> [`worker`] (one task per message) ->
//! [`gate`] (the [`circuit`]: is the target up?) and [`rate`] ->
//! [`target`] (HTTP, the request rebuilt from
//! [`crate::broker::message`], signed by [`signing`], with the
//! [`endpoint_headers`]) -> ack. When the target is down the circuit
//! pauses everything; a message the target refuses while it takes the
//! others is tried again ([`retry`]) and finally set aside
//! ([`dead_letter`], which also lists and replays them). [`attempts`]
//! recognises repeats after a lost connection; [`standby`] warns when
//! another consumer would break the order; [`metrics`] counts (and
//! [`expiry`] adds the queue's TTL), [`progress`] prints and
//! [`metrics_server`] serves what happened;
//! [`options`] say what to do. The message format and the AMQP URL are the
//! forwarder's own ([`crate::broker`]).

pub mod attempts;
pub mod circuit;
pub mod coalesce;
pub mod connection;
pub mod consumer;
pub mod dead_letter;
pub mod endpoint_headers;
pub mod expiry;
pub mod gate;
pub mod metrics;
pub mod metrics_server;
pub mod options;
pub mod order;
pub mod progress;
pub mod rate;
pub mod retry;
pub mod signing;
pub mod standby;
pub mod target;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::broker::amqp::ConnectError;
use crate::broker::{AmqpUrl, AmqpUrlError};

pub use metrics::Snapshot;
pub use options::{RelayArgs, RelayOptions};

use attempts::AttemptLog;
use circuit::Policy;
use gate::Gate;
use metrics::Metrics;
use rate::Pace;
use target::Target;
use worker::Shared;

/// Why the relay stopped with an error, worded like `handler check`'s
/// findings: what is wrong and which setting or command fixes it. Every
/// variant prints the AMQP URL redacted.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The `AmqpUrl` setting cannot be used.
    #[error(transparent)]
    AmqpUrl(#[from] AmqpUrlError),
    /// The broker refused the user or password.
    #[error(
        "the broker at {url} refused the credentials of user {user:?} (ACCESS_REFUSED): the user name or password in setting AmqpUrl is wrong"
    )]
    Refused {
        /// The redacted URL.
        url: String,
        /// The user that tried.
        user: String,
    },
    /// The vhost does not exist, or the user may not use it.
    #[error(
        "vhost {vhost:?} does not exist at {url}, or user {user:?} may not use it (NOT_ALLOWED): fix the vhost in setting AmqpUrl (on CloudAMQP it is your user name; amqp://host/ means the vhost /)"
    )]
    VhostNotAllowed {
        /// The redacted URL.
        url: String,
        /// The vhost.
        vhost: String,
        /// The user that tried.
        user: String,
    },
    /// The HTTP client for the target could not be built (TLS set-up).
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The broker did not answer in time.
    #[error("could not connect to {url}: no answer within {after:?}")]
    ConnectTimeout {
        /// The redacted URL.
        url: String,
        /// How long was waited.
        after: Duration,
    },
    /// Connecting or setting up the channel failed otherwise.
    #[error("AMQP error with {url}: {detail}")]
    Amqp {
        /// The redacted URL.
        url: String,
        /// What the client said, password taken out.
        detail: String,
    },
    /// The queue to drain does not exist.
    #[error(
        "the queue {0:?} does not exist on the broker: check --queue, or declare it with `handler setup --queue {0} --dead-letter` (the same AmqpUrl)"
    )]
    QueueMissing(String),
    /// The dead-letter queue of the queue named does not exist.
    #[error(
        "the queue {0:?} has no dead-letter queue (\"{0}.dead-letter\"): check --queue, or declare it with `handler setup --queue {0} --dead-letter` (the same AmqpUrl)"
    )]
    DeadLetterQueueMissing(String),
    /// `replay --message-id` found no such dead letter.
    #[error("no dead letter with message id {message_id:?} in {queue:?} (`handler dead-letter list` shows them)")]
    NoSuchDeadLetter {
        /// The id asked for.
        message_id: String,
        /// The dead-letter queue searched.
        queue: String,
    },
    /// The broker did not take a replayed copy; the dead letter stays.
    #[error("could not replay message {message_id:?}: {why}; it stays in the dead-letter queue")]
    ReplayRefused {
        /// The message's id.
        message_id: String,
        /// What went wrong.
        why: String,
    },
    /// `--metrics` names an address that cannot be listened on.
    #[error("cannot serve metrics on {addr} (--metrics): {detail}")]
    MetricsAddress {
        /// The address given.
        addr: std::net::SocketAddr,
        /// What the system said.
        detail: String,
    },
}

impl RelayError {
    /// Names what the broker refused, when it said so, instead of the AMQP
    /// client's raw text.
    pub fn from_amqp(url: &AmqpUrl, error: &lapin::Error) -> Self {
        ConnectError::from_lapin(url, error).into()
    }
}

impl From<ConnectError> for RelayError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::Refused { url, user } => Self::Refused { url, user },
            ConnectError::VhostNotAllowed { url, vhost, user, .. } => Self::VhostNotAllowed { url, vhost, user },
            ConnectError::Timeout { url, after } => Self::ConnectTimeout { url, after },
            ConnectError::Failed { url, detail } => Self::Amqp { url, detail },
        }
    }
}

/// Runs the relay until `shutdown` resolves, then finishes in-flight
/// deliveries and returns the final counts.
pub async fn run(
    options: RelayOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Snapshot, RelayError> {
    let concurrency = usize::from(options.concurrency);
    let target = Target::new(options.target.clone(), options.timeout, concurrency)?
        .signed_by(options.signer.clone())
        .with_headers(options.headers.clone());
    let metrics = Arc::new(Metrics::new());
    let _metrics_server = match options.metrics {
        Some(addr) => {
            let (bound, server) = metrics_server::bind(addr, metrics.clone()).await?;
            info!("serving metrics on http://{bound}/metrics");
            Some(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(server)))
        }
        None => None,
    };
    // Read for the metrics only: nothing else needs the management API.
    let _expiry = options.metrics.map(|_| expiry::watch(&options, metrics.clone()));
    info!(
        "relaying queue {:?} to {} (concurrency {}, rate {}, max attempts {}, timeout {:?})",
        options.queue,
        target.redacted(),
        options.concurrency,
        options
            .rate
            .map_or_else(|| "unlimited".to_owned(), |r| format!("{}/s", r.per_second())),
        options.retry.max_attempts,
        options.timeout,
    );
    if let Some(signer) = &options.signer {
        info!("signing every delivery (Standard Webhooks) with {signer:?} from RelaySigningSecret");
    }
    if !options.headers.map().is_empty() {
        info!("adding {:?} from RelayHeaders to every delivery", options.headers);
    }
    let shared = Arc::new(Shared {
        target,
        pace: Pace::new(options.rate),
        gate: Gate::new(Policy {
            concurrency,
            first_probe: options.retry.first_delay,
            max_probe: options.retry.max_delay,
        }),
        retry: options.retry.clone(),
        attempts: AttemptLog::default(),
        metrics,
    });

    let stop = CancellationToken::new();
    let _signal = tokio_util::task::AbortOnDropHandle::new(tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    }));
    let reporting = CancellationToken::new();
    let reporter = tokio::spawn({
        let (shared, reporting, every) = (shared.clone(), reporting.clone(), options.progress_interval);
        async move { progress::report(&shared.metrics, every, reporting).await }
    });

    let started = Instant::now();
    let outcome = consumer::consume(&options, shared.clone(), stop).await;
    reporting.cancel();
    let _ = reporter.await;
    // An error here means the first connection failed: nothing ran to report.
    outcome?;
    let last = shared.metrics.snapshot();
    println!(
        "{}",
        progress::line("stopped", &last, &Snapshot::default(), started.elapsed())
    );
    Ok(last)
}
