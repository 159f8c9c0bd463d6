//! What the relay and the dead-letter commands ask of a queue over AMQP.
//! (Connections are opened by [`crate::broker::amqp::connect`], the one
//! place for that, whose errors become a [`super::RelayError`].)

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use super::dead_letter::is_not_found;

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
