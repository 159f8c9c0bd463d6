//! Opening an AMQP connection, for the relay and the dead-letter commands
//! alike: the one place that bounds the wait and turns what the broker said
//! into a [`RelayError`] worded like `handler check`'s findings.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

use super::RelayError;
use super::dead_letter::is_not_found;
use crate::broker::AmqpUrl;

/// How long one connection attempt may take (TCP, TLS and the AMQP handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects to `url`, naming the connection `name` (the management UI shows
/// it; it must hold no secret).
pub async fn connect(url: &AmqpUrl, name: String) -> Result<Connection, RelayError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let uri = url.lapin_uri()?;
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(RelayError::from_amqp(url, &source)),
        Err(_) => Err(RelayError::ConnectTimeout {
            url: url.to_string(),
            after: CONNECT_TIMEOUT,
        }),
    }
}

/// The ready messages in `queue`, by a passive declare (which never creates
/// it); `Ok(None)` when it does not exist. A missing queue closes the
/// channel: pass one that can be spared.
pub async fn ready_messages(channel: &Channel, queue: &str) -> Result<Option<u32>, lapin::Error> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(queue) => Ok(Some(queue.message_count())),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
