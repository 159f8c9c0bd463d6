//! `handler dead-letter list`: read dead letters without taking them.
//!
//! AMQP 0-9-1 cannot browse a queue, so the listing takes up to `limit`
//! messages with `basic.get` and acknowledgements on, holds them all (so
//! each get returns the next one, not the same one again), then hands every
//! one back at once with `basic.nack` (requeue, multiple): they return to
//! their places in the queue. If the command dies half-way, closing the
//! connection returns them all the same. Nothing is ever acknowledged here.

use lapin::options::{BasicGetOptions, BasicNackOptions};

use super::headers::Entry;
use crate::broker::AmqpUrl;
use crate::broker::amqp::connect;
use crate::broker::topology::dead_letter_name;
use crate::relay::RelayError;
use crate::relay::connection::ready_messages;

/// What `list` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    /// The dead-letter queue read.
    pub queue: String,
    /// How many messages it holds.
    pub count: u32,
    /// The first `limit` of them, oldest first.
    pub messages: Vec<Entry>,
}

/// Reads up to `limit` dead letters of `queue` (the main queue's name) and
/// leaves every one where it was.
pub async fn list(url: &AmqpUrl, queue: &str, limit: usize) -> Result<Listing, RelayError> {
    let dead_letter = dead_letter_name(queue);
    let connection = connect(url, &format!("handler dead-letter list: {queue}")).await?;
    let amqp = |e: lapin::Error| RelayError::from_amqp(url, &e);
    let channel = connection.create_channel().await.map_err(amqp)?;
    let count = ready_messages(&channel, &dead_letter)
        .await
        .map_err(amqp)?
        .ok_or_else(|| RelayError::DeadLetterQueueMissing(queue.to_owned()))?;
    let mut messages = Vec::new();
    let mut last_tag = None;
    while messages.len() < limit {
        let Some(got) = channel
            .basic_get(dead_letter.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(amqp)?
        else {
            break;
        };
        let delivery = got.delivery;
        messages.push(Entry::read(&delivery.properties, delivery.data.len()));
        last_tag = Some(delivery.delivery_tag);
    }
    if let Some(tag) = last_tag {
        let back = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        channel.basic_nack(tag, back).await.map_err(amqp)?;
    }
    let _ = channel.close(200, "listed".into()).await;
    let _ = connection.close(200, "listed".into()).await;
    Ok(Listing {
        queue: dead_letter,
        count,
        messages,
    })
}

/// How many dead letters `queue` has.
pub async fn count(url: &AmqpUrl, queue: &str) -> Result<u32, RelayError> {
    let connection = connect(url, &format!("handler dead-letter: {queue}")).await?;
    let amqp = |e: lapin::Error| RelayError::from_amqp(url, &e);
    let channel = connection.create_channel().await.map_err(amqp)?;
    let count = ready_messages(&channel, &dead_letter_name(queue)).await.map_err(amqp)?;
    let _ = connection.close(200, "counted".into()).await;
    count.ok_or_else(|| RelayError::DeadLetterQueueMissing(queue.to_owned()))
}
