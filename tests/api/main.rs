//! Black-box tests: the real `handler` binary against the real RabbitMQ
//! (stub endpoints only for faults a broker will not produce on demand).
//! Run them with the README's test command, which brings the broker up.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod amqp_url;
mod broker_answers;
mod check;
mod commands;
mod connections;
mod faults;
mod forwarding_mode;
mod helpers;
mod hostile;
mod lifecycle;
mod payload_mode;
mod secrets;
mod setup;
mod source_checks;
mod stub;
