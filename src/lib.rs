//! An Azure Functions custom handler that puts every e-conomic webhook on a
//! durable RabbitMQ queue through the broker's HTTP publish endpoint, and
//! answers 2xx only once the broker confirmed it.
//!
//! A webhook flows: [`routes`] (host protocol in [`host`]) -> [`webhook::Webhook`]
//! -> [`forward::Forwarder`] -> [`publisher::Publisher`] -> RabbitMQ; failures
//! become statuses in [`error`]. [`settings`] and [`startup`] set it up.

pub mod broker_http;
pub mod error;
pub mod forward;
pub mod host;
pub mod publisher;
pub mod routes;
pub mod secret;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod webhook;
