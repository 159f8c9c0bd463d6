//! Shared by the relay's two test binaries (`relay` and `relay_restart`):
//! the real broker, the real binary, a recording HTTP target.

// Each binary uses only part of this.
#![allow(dead_code)]

pub mod broker;
pub mod process;
pub mod target;
