//! The one long-lived AMQP connection of the process, kept up in the
//! background: opened after start-up (so `GET /` answers at once), watched,
//! and reopened with backoff and jitter whenever it is lost. It never gives
//! up and never ends the process: the Functions host stops an app whose
//! handler exits three times in 30 minutes, and a broker that is down or
//! refuses the credentials now may be fixed in a minute.
//!
//! Publishes ask for the connection with [`Link::connection`], which waits
//! for one within their own timeout, and fails at once only when the broker
//! refused the credentials (no wait will fix that). The broker's
//! `connection.blocked` and `connection.unblocked` go to [`Link::flow`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::{Connection, Event};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::flow::{Ended, Flow};
use crate::broker::AmqpUrl;
use crate::broker::amqp::{self, ConnectError, reconnect_delays};
use crate::publish::PublishError;

/// How often the connection's state is looked at, besides its events: a
/// broker that closes the connection may not raise an error event.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How long closing the connection may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the connection stands.
#[derive(Clone)]
enum State {
    /// The first attempt is under way.
    Starting,
    /// Connected.
    Up(Arc<Connection>),
    /// Not connected: the last failure; the next attempt is scheduled.
    Down(Failure),
    /// Shut down.
    Closed,
}

/// Why there is no connection, kept to answer publishes with.
#[derive(Clone, Debug)]
enum Failure {
    /// The broker refused the user or password: publishes fail at once.
    Refused { user: String },
    /// The vhost was refused (missing, no permission, connection limit, or
    /// a broker still starting).
    Vhost {
        vhost: String,
        user: String,
        reason: String,
    },
    /// The broker could not be reached, or the connection was lost.
    Unreachable(String),
}

impl Failure {
    fn to_publish_error(&self) -> PublishError {
        match self {
            Self::Refused { user } => PublishError::LoginRefused {
                user: user.clone(),
                setting: "AmqpUrl",
            },
            Self::Vhost { vhost, user, reason } => PublishError::VhostRefused {
                vhost: vhost.clone(),
                user: user.clone(),
                reason: reason.clone(),
                setting: "AmqpUrl",
            },
            Self::Unreachable(detail) => PublishError::NotConnected(detail.clone()),
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::Refused { user, .. } => Self::Refused { user },
            ConnectError::VhostNotAllowed {
                vhost, user, reason, ..
            } => Self::Vhost { vhost, user, reason },
            other @ (ConnectError::Timeout { .. } | ConnectError::Failed { .. }) => {
                Self::Unreachable(other.to_string())
            }
        }
    }
}

/// The connection, kept up by a background task that stops when this is
/// dropped or [`Link::close`]d.
pub struct Link {
    state: watch::Receiver<State>,
    flow: Arc<Flow>,
    stop: CancellationToken,
    task: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    /// Starts connecting to `url` in the background, as `name`; returns at
    /// once. Needs a Tokio runtime.
    pub fn start(url: AmqpUrl, name: String) -> Self {
        let (state_tx, state) = watch::channel(State::Starting);
        let stop = CancellationToken::new();
        let flow = Arc::new(Flow::default());
        let task = tokio::spawn(keep_connected(url, name, state_tx, flow.clone(), stop.clone()));
        Self {
            state,
            flow,
            stop,
            task: AbortOnDropHandle::new(task),
        }
    }

    /// The connection, waiting for one up to `within`. Fails at once when
    /// the broker refused the credentials, else with the last failure when
    /// none came in time.
    pub async fn connection(&self, within: Duration) -> Result<Arc<Connection>, PublishError> {
        let mut state = self.state.clone();
        let wait = async {
            loop {
                // The borrow ends before the await below.
                let now = state.borrow_and_update().clone();
                match now {
                    State::Up(connection) if connection.status().connected() => return Ok(connection),
                    State::Down(failure @ Failure::Refused { .. }) => return Err(failure.to_publish_error()),
                    State::Closed => return Err(PublishError::NotConnected("the handler is stopping".to_owned())),
                    State::Starting | State::Up(_) | State::Down(_) => {}
                }
                if state.changed().await.is_err() {
                    return Err(PublishError::NotConnected("the handler is stopping".to_owned()));
                }
            }
        };
        match tokio::time::timeout(within, wait).await {
            Ok(result) => result,
            Err(_) => Err(match &*self.state.borrow() {
                State::Down(failure) => failure.to_publish_error(),
                State::Up(_) => PublishError::NotConnected("the connection is being replaced".to_owned()),
                State::Starting => {
                    PublishError::NotConnected(format!("the first connection attempt did not finish within {within:?}"))
                }
                State::Closed => PublishError::NotConnected("the handler is stopping".to_owned()),
            }),
        }
    }

    /// Whether the broker blocks the connection (a memory or disk alarm).
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Stops reconnecting and closes the connection (at most a few seconds).
    pub async fn close(&self) {
        self.stop.cancel();
        let mut state = self.state.clone();
        let closed = async {
            while !matches!(*state.borrow_and_update(), State::Closed) {
                if state.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), closed)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Connects, waits for the connection to be lost, reconnects; until `stop`.
async fn keep_connected(
    url: AmqpUrl,
    name: String,
    state: watch::Sender<State>,
    flow: Arc<Flow>,
    stop: CancellationToken,
) {
    let mut delays = reconnect_delays();
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => break,
            attempt = amqp::connect(&url, &name) => attempt,
        };
        match attempt {
            Ok(connection) => {
                let connection = Arc::new(connection);
                let configuration = connection.configuration();
                info!(
                    connection = name,
                    heartbeat_s = configuration.heartbeat(),
                    channel_max = configuration.channel_max(),
                    "connected to {url}"
                );
                flow.attach(connection.status().clone());
                state.send_replace(State::Up(connection.clone()));
                delays = reconnect_delays();
                let lost = tokio::select! {
                    () = stop.cancelled() => {
                        close(&connection).await;
                        break;
                    }
                    lost = until_lost(&connection, &url, &flow) => lost,
                };
                warn!(error = lost, "lost the connection to {url}; reconnecting");
                if let Some(ended) = flow.detach(Instant::now()) {
                    log_unblocked(
                        ended,
                        "the block ended with the lost connection; publishing on the next one",
                    );
                }
                state.send_replace(State::Down(Failure::Unreachable(format!("connection lost: {lost}"))));
            }
            Err(error) => {
                warn!(error = %error, "could not connect to the broker; trying again");
                state.send_replace(State::Down(error.into()));
            }
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    state.send_replace(State::Closed);
}

/// Resolves, with the reason, when the connection fails or closes; follows
/// the broker's flow control on the way (a memory or disk alarm blocks every
/// publish until it clears), logging each block once as it starts and once
/// as it ends.
async fn until_lost(connection: &Connection, url: &AmqpUrl, flow: &Flow) -> String {
    let mut events = connection.events_listener();
    let mut ticks = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            event = events.next() => match event {
                // The client reports a channel the broker closed (a publish
                // to a missing exchange) as an error event too: only one
                // that took the connection down is a loss.
                Some(Event::Error(error)) if !connection.status().connected() => {
                    return url.redact(&error.to_string());
                }
                Some(Event::ConnectionBlocked(reason)) => {
                    flow.blocked(&reason, Instant::now());
                    warn!(
                        reason = url.redact(&reason),
                        "the broker blocked the connection (a memory or disk alarm): until it clears, \
                         webhooks are answered 503 with Retry-After and nothing is published"
                    );
                }
                Some(Event::ConnectionUnblocked) => match flow.unblocked(Instant::now()) {
                    Some(ended) => log_unblocked(ended, "the broker unblocked the connection: publishing again"),
                    None => info!("the broker unblocked the connection"),
                },
                Some(_) => {}
                None => return "the connection's events ended".to_owned(),
            },
            _ = ticks.tick() => {
                if !connection.status().connected() {
                    return "the connection closed".to_owned();
                }
            }
        }
    }
}

/// The block's last line, `what` happened: how long it lasted and how many
/// webhooks it cost.
fn log_unblocked(ended: Ended, what: &str) {
    let lasted = Duration::from_millis(u64::try_from(ended.lasted.as_millis()).unwrap_or(u64::MAX));
    info!(
        blocked_for = %humantime::format_duration(lasted),
        answered_503 = ended.refused,
        "{what}"
    );
}

/// Closes the connection so the broker logs a clean close, not a dropped socket.
async fn close(connection: &Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "handler stopping".into())).await;
}
