//! When the queue's webhooks expire, for the metrics: the queue's message
//! TTL and the timestamp of its oldest ready message. With both, an alert
//! can page before the queue's TTL drops a webhook nobody delivered
//! (deploy/prometheus/relay-alerts.yml, `RelayWebhooksWillExpire`). AMQP
//! tells neither; the management API tells both, so with `--metrics` the
//! relay asks it every [`EVERY`]. Without the API the relay works as
//! before: the two gauges stay -1 and the log says why, once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::metrics::Metrics;
use super::options::RelayOptions;
use crate::broker::http::Credentials;
use crate::broker::management::{ManagementApi, ManagementError};

/// Time between two looks: the management API refreshes its queue figures
/// every 5 s by default (`collect_statistics_interval`), so asking more often
/// reads the same numbers.
pub const EVERY: Duration = Duration::from_secs(5);

/// How long one look may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts reading the queue's TTL and oldest message into `metrics` every
/// [`EVERY`], until the handle drops. A failed look leaves the last figures.
pub fn watch(options: &RelayOptions, metrics: Arc<Metrics>) -> AbortOnDropHandle<()> {
    let queue = options.queue.clone();
    let credentials = Credentials::from_amqp_url(&options.amqp_url);
    let api = ManagementApi::new(&options.management, &credentials, LOOK_TIMEOUT);
    AbortOnDropHandle::new(tokio::spawn(async move {
        match api {
            Ok(api) => look_every(&api, &queue, &metrics).await,
            Err(e) => cannot_read(&queue, &e),
        }
    }))
}

async fn look_every(api: &ManagementApi, queue: &str, metrics: &Metrics) {
    let mut failing = false;
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        match api.queue(queue).await {
            Ok(Some(info)) => {
                metrics.set_message_ttl(info.message_ttl());
                metrics.set_oldest_message(info.oldest_message_timestamp());
                if failing {
                    info!("the management API answers again: the queue's TTL and oldest message are read");
                }
                failing = false;
            }
            // The consumer reports a missing queue; nothing to add here.
            Ok(None) => {}
            Err(e) => {
                // Once per stretch of failures: every 5 s would flood the log.
                if !failing {
                    cannot_read(queue, &e);
                }
                failing = true;
            }
        }
    }
}

fn cannot_read(queue: &str, error: &ManagementError) {
    warn!(
        "cannot read queue {queue:?}'s message TTL and oldest message from the management API ({error}): \
         relay_queue_message_ttl_seconds and relay_queue_oldest_message_timestamp_seconds keep their last values \
         (-1 before the first), so the alert on expiring webhooks cannot fire; the relay goes on delivering"
    );
}
