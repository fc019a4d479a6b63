//! End-to-end tests: the real `switchyard` binary on loopback sockets, driven by client
//! libraries nobody here wrote (PyPI `datadog` and `statsd`, npm `hot-shots`), with exact
//! assertions on the flushed NDJSON. `./test.sh` installs the clients first.
//!
//! Each test runs its own instance on its own ports with a one-hour flush interval, so every
//! value lands in the final flush that SIGTERM triggers: the assertions are exact and no test
//! depends on timing.

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod e2e {
    pub mod harness;

    mod cli;
    mod clients;
    mod control;
    mod deadletter;
    mod deploy;
    mod durable;
    mod forwarder;
    mod gostatsd;
    mod hostile_input;
    mod http;
    mod input;
    #[cfg(feature = "kafka")]
    mod kafka_workers;
    mod kinesis_workers;
    mod migration;
    mod proxy;
    mod reload;
    mod routes;
    mod secrets;
    mod shards;
    mod signalfx;
    mod spill;
    mod streams;
    mod tls;
}
