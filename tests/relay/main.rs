//! Black-box tests of `handler relay`: the real binary, the real local
//! RabbitMQ, and a recording HTTP target in the test. The broker-restart test
//! lives in its own binary (`tests/relay_restart.rs`) so that it never runs
//! alongside these.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod coalescing;
mod config;
mod credentials;
mod dead_letters;
mod delivery;
mod failures;
mod metrics;
mod ordering;
mod outage;
mod pace;
mod poison;
mod reconnect;
mod shutdown;
mod signing;
mod standby;
