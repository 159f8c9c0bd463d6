//! Everything that knows RabbitMQ: where it is ([`url`], [`http`]), how to
//! open an AMQP connection to it ([`amqp`]), what a queued webhook looks
//! like ([`message`]) and which key it is routed with ([`routing_key`]),
//! what must exist on it ([`topology`]), how the exchange routes a key
//! ([`routing`]), and the management API that declares and checks that
//! ([`management`]). The publish transports build on these in
//! [`crate::publish`]; the relay reads with them.

pub mod amqp;
pub mod http;
pub mod management;
pub mod message;
pub mod routing;
pub mod routing_key;
pub mod topology;
pub mod url;

pub use url::{AmqpUrl, AmqpUrlError};
