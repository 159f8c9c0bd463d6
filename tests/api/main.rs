//! Tests of the forwarder against the real RabbitMQ (stub endpoints only for
//! faults a broker will not produce on demand). Routing, limits and hostile
//! input run in-process ([`app::spawn_app`]); the process lifecycle, logs,
//! secrets and the subcommands run the real binary ([`test_support::process`]).
//! Run them with the README's test command, which brings the broker up.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod amqp_connection;
mod amqp_transport;
mod amqp_url;
mod app;
mod broker_answers;
mod check;
mod commands;
mod connections;
mod faults;
mod forwarding_mode;
mod host_modes;
mod hostile;
mod lifecycle;
mod payload_mode;
mod proxying_mode;
mod routing;
mod routing_topology;
mod secrets;
mod setup;
mod source_checks;
