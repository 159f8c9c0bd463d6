//! An Azure Functions custom handler that puts every e-conomic webhook on a
//! durable RabbitMQ queue through the broker's HTTP publish endpoint, and
//! answers 2xx only once the broker confirmed it.
//!
//! A webhook flows: [`routes`] (host protocol in [`host`]) -> [`webhook::Webhook`]
//! -> [`forward::Forwarder`] -> [`publisher::Publisher`] -> RabbitMQ; failures
//! become statuses in [`error`]. [`settings`] and [`startup`] set it up.
//!
//! The executable's subcommands ([`cli`], one module each in [`commands`])
//! also set up and check the queue [`topology`] through the broker's
//! [`management`] API; [`broker_http`] is the HTTP configuration both share.
//!
//! The other half, [`relay`], drains the queue into the user's own endpoint.

pub mod admission;
pub mod broker_http;
pub mod cli;
pub mod commands;
pub mod error;
pub mod forward;
pub mod host;
pub mod management;
pub mod publisher;
pub mod relay;
pub mod routes;
pub mod secret;
pub mod server;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod topology;
pub mod webhook;
