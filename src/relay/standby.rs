//! What the relay says at start about the other consumers of its queue. With
//! `--order-by`, a second consumer on the same queue breaks the order (each
//! takes its own share of every key) unless the queue has a single active
//! consumer (`handler setup --single-active-consumer`): then one relay
//! delivers and the others stand by, and a standby that takes over gets the
//! held messages back first, in queue order.
//!
//! AMQP tells how many consumers a queue has but not its arguments: those
//! come from the management API, asked only when there is another consumer.

use std::time::Duration;

use tracing::{info, warn};

use super::options::RelayOptions;
use crate::broker::http::Credentials;
use crate::broker::management::ManagementApi;
use crate::broker::topology::has_single_active_consumer;

/// How long the management API may take to answer; the relay starts anyway.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The fix the warnings name.
const FIX: &str = "run one relay per queue, or move to a queue declared with `handler setup --single-active-consumer` \
     (docs/relay.md, \"A standby relay\")";

/// Warns when `--order-by` meets a queue that `others` other consumers
/// share and that has no single active consumer.
pub async fn look(options: &RelayOptions, others: u32) {
    if options.order_by.is_empty() || others == 0 {
        return;
    }
    let queue = &options.queue;
    let arguments = async {
        let credentials = Credentials::from_amqp_url(&options.amqp_url);
        let api = ManagementApi::new(&options.management, &credentials, LOOK_TIMEOUT)?;
        api.queue(queue).await
    };
    match arguments.await {
        Ok(Some(info)) if has_single_active_consumer(&info.arguments) => info!(
            "queue {queue:?} has a single active consumer and {others} other consumer(s): this relay stands by \
             while another is active, and takes over, in order, when it goes"
        ),
        Ok(_) => warn!(
            "queue {queue:?} already has {others} other consumer(s) and no single active consumer: a second consumer \
             breaks the order --order-by keeps; {FIX}"
        ),
        Err(e) => warn!(
            "queue {queue:?} already has {others} other consumer(s), and whether it has a single active consumer \
             could not be read from the management API ({e}); without one, a second consumer breaks the order \
             --order-by keeps: {FIX}"
        ),
    }
}
