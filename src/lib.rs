//! An Azure Functions custom handler that puts every e-conomic webhook on a
//! durable RabbitMQ queue, and answers 2xx only once the broker confirmed it.
//!
//! A webhook flows: [`intake`] (the host's request, in either mode) ->
//! [`webhook::Webhook`] -> [`publish`] (a confirmed publish, retried within a
//! deadline) -> RabbitMQ, in the format [`broker::message`] defines. Later
//! [`relay`] takes it off the queue and hands it to the user's own endpoint.
//!
//! Around that: [`settings`] read once at start-up, [`broker`] (everything
//! that knows RabbitMQ: the URL, the message format, the topology, the
//! management API), [`template`] (the little language that turns a webhook
//! into a key: the relay's ordering keys, the routing key), and the
//! executable's subcommands ([`cli`], one module each in [`commands`]).

pub mod broker;
pub mod cli;
pub mod commands;
pub mod http_client;
pub mod intake;
pub mod publish;
pub mod relay;
pub mod secret;
pub mod settings;
pub mod telemetry;
pub mod template;
pub mod urls;
pub mod webhook;
