//! Confirm-mode channels on the one connection, each carrying one publish at
//! a time; idle ones are kept for the next publish.
//!
//! Why one publish per channel: a `basic.return` (the message was not
//! routed) names no delivery tag. RabbitMQ sends it before the `basic.ack`
//! that covers the message, but it acknowledges several messages at once
//! (`multiple`), and the AMQP client hands the return to whichever pending
//! publish of the batch it completes first. With several publishes in flight
//! on one channel, an unrouted message could then be answered 2xx while a
//! routed one is reported unrouted: with all publishes pipelined on one
//! channel, the test `a_binding_that_comes_and_goes_mid_burst_never_gets_a_dropped_webhook_a_2xx`
//! (tests/api/amqp_transport.rs) saw webhooks answered 200 and dropped by
//! the broker in 2 of 3 runs. With one publish per channel, a return
//! on that channel is that publish's: exact. Many publishes still fly at
//! once, one per channel, over the same connection, and no lock is held
//! while the broker answers: the pool's lock only guards taking and putting
//! back an idle channel.

use std::sync::Mutex;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};

/// Idle confirm-mode channels of the current connection.
#[derive(Debug, Default)]
pub struct Channels {
    idle: Mutex<Vec<Channel>>,
}

impl Channels {
    /// An idle channel of `connection`, or a new one in confirm mode.
    /// Channels of a lost connection are dropped on the way.
    pub async fn take(&self, connection: &Connection) -> Result<Channel, lapin::Error> {
        while let Some(channel) = self.pop() {
            if channel.status().connected() && channel.status().confirm() {
                return Ok(channel);
            }
        }
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(channel)
    }

    /// Keeps `channel` for the next publish. Only a channel whose publish
    /// ended in a confirm comes back: after a timeout, a late `basic.return`
    /// could still arrive on it and be taken for the next publish's.
    pub fn put_back(&self, channel: Channel) {
        if channel.status().connected() {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(channel);
        }
    }

    fn pop(&self) -> Option<Channel> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }
}
