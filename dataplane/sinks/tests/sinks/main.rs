//! The sinks against wire-level HTTP(S) servers run by the tests: exact decoded bodies,
//! headers, retries, rejections, TLS roots and per-sink isolation, through the real driver.

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod datadog;
mod isolation;
mod kafka;
mod kinesis;
mod server;
mod signalfx;
mod tls;
