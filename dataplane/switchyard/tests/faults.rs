//! Fault injection: the real `switchyard` binary on loopback against a vendor (`loadgen
//! vendor`) that fails in scripted ways, checking that what was accepted ends where
//! `docs/GUARANTEES.md` says and that the ledger balances. Spill and restart faults are in
//! the `e2e` target (`e2e::spill`); Kinesis partial failures and throttling in
//! `switchyard-sinks` and `switchyard-workers` (wire-level fakes).

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The e2e harness; this target uses part of it.
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;

mod faults {
    #[cfg(feature = "kafka")]
    mod kafka;
    mod vendor;
}
