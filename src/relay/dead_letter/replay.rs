//! `handler dead-letter replay` and `purge`: dead letters back to the main
//! queue, or gone for good.
//!
//! Replay publishes each copy straight to the main queue (the default
//! exchange, routing key = the queue's name), not to the webhook exchange, so
//! no other queue bound there gets a duplicate. The copy keeps the body, every
//! property and the message id, and counts one more replay in
//! [`super::headers::REPLAYS_HEADER`] (a running relay tells it from a
//! repeat by that). The dead letter is acknowledged only once the broker
//! confirmed the copy (`mandatory`, so an unroutable copy is an error, not a
//! loss): a crash in between leaves both, never neither.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions,
};

use super::headers::replayed;
use crate::broker::AmqpUrl;
use crate::broker::amqp::connect;
use crate::broker::topology::dead_letter_name;
use crate::relay::RelayError;
use crate::relay::connection::ready_messages;

/// Which dead letters to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// At most this many; all when `None`.
    pub limit: Option<usize>,
    /// Only the one(s) with this message id.
    pub message_id: Option<String>,
}

/// Moves the dead letters of `queue` that `selection` picks back to `queue`;
/// returns how many moved. On an error, those moved before it stay moved and
/// the rest stay dead letters.
pub async fn replay(url: &AmqpUrl, queue: &str, selection: &Selection) -> Result<usize, RelayError> {
    let dead_letter = dead_letter_name(queue);
    let connection = connect(url, &format!("handler dead-letter replay: {queue}")).await?;
    let amqp = |e: lapin::Error| RelayError::from_amqp(url, &e);
    let channel = connection.create_channel().await.map_err(amqp)?;
    if ready_messages(&channel, queue).await.map_err(amqp)?.is_none() {
        return Err(RelayError::QueueMissing(queue.to_owned()));
    }
    let count = ready_messages(&channel, &dead_letter)
        .await
        .map_err(amqp)?
        .ok_or_else(|| RelayError::DeadLetterQueueMissing(queue.to_owned()))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp)?;

    let (mut moved, mut looked) = (0, 0);
    let mut skipped = None;
    let outcome = loop {
        // Only those there at the start: a copy replayed now and dead-lettered
        // again by a running relay is not looked at twice.
        if looked >= count || selection.limit.is_some_and(|limit| moved >= limit) {
            break Ok(());
        }
        let got = match channel
            .basic_get(dead_letter.as_str().into(), BasicGetOptions { no_ack: false })
            .await
        {
            Ok(Some(got)) => got,
            Ok(None) => break Ok(()),
            Err(e) => break Err(amqp(e)),
        };
        looked += 1;
        let delivery = got.delivery;
        let id = delivery.properties.message_id().as_ref().map(|id| id.to_string());
        if selection
            .message_id
            .as_ref()
            .is_some_and(|wanted| id.as_ref() != Some(wanted))
        {
            skipped = Some(delivery.delivery_tag);
            continue;
        }
        let not_taken = |why: String| RelayError::ReplayRefused {
            message_id: id.clone().unwrap_or_default(),
            why,
        };
        let publish = async {
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    replayed(&delivery.properties),
                )
                .await?
                .await
        };
        let confirmation = match publish.await {
            Ok(confirmation) => confirmation,
            Err(e) => break Err(amqp(e)),
        };
        if confirmation.is_nack() {
            break Err(not_taken("the broker did not confirm the copy".to_owned()));
        }
        if confirmation.take_message().is_some() {
            break Err(not_taken(format!("no queue {queue:?} took the copy")));
        }
        if let Err(e) = channel
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await
        {
            break Err(amqp(e));
        }
        moved += 1;
    };
    if let Some(tag) = skipped {
        let back = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        let _ = channel.basic_nack(tag, back).await;
    }
    // Closing returns anything still held (an error half-way) to the queue.
    let _ = channel.close(200, "replayed".into()).await;
    let _ = connection.close(200, "replayed".into()).await;
    if let Err(e) = outcome {
        if moved > 0 {
            tracing::warn!(moved, "replayed {moved} message(s) before the error");
        }
        return Err(e);
    }
    if let Some(wanted) = &selection.message_id
        && moved == 0
    {
        return Err(RelayError::NoSuchDeadLetter {
            message_id: wanted.clone(),
            queue: dead_letter,
        });
    }
    Ok(moved)
}

/// Deletes every dead letter of `queue`; returns how many.
pub async fn purge(url: &AmqpUrl, queue: &str) -> Result<u32, RelayError> {
    let dead_letter = dead_letter_name(queue);
    let connection = connect(url, &format!("handler dead-letter purge: {queue}")).await?;
    let amqp = |e: lapin::Error| RelayError::from_amqp(url, &e);
    let channel = connection.create_channel().await.map_err(amqp)?;
    if ready_messages(&channel, &dead_letter).await.map_err(amqp)?.is_none() {
        return Err(RelayError::DeadLetterQueueMissing(queue.to_owned()));
    }
    let purged = channel
        .queue_purge(dead_letter.as_str().into(), QueuePurgeOptions::default())
        .await
        .map_err(amqp)?;
    let _ = connection.close(200, "purged".into()).await;
    Ok(purged)
}
