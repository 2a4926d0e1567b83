//! Integration tests of the Hub client against a local Hub (`server`) on loopback.
#![allow(clippy::unwrap_used)]

mod pull;
mod python;
mod server;
