//! Fault injection: the real `switchyard` binary on loopback against destinations that fail
//! in scripted ways, checking that what was accepted ends where `docs/GUARANTEES.md` says and
//! that the ledger balances:
//! - `vendor`: a `loadgen vendor` answering 500s, 429s, 400s and slowly, in turns;
//! - `slow`: a vendor taking 5 s per request (the backlog spills, the intake keeps accepting);
//! - `disk`: the vendor down and the spool full (`spill_max_bytes`): the intake pushes back;
//! - `kafka` (cargo feature `kafka`): a tansu broker of the test's own (not the shared one on
//!   :9092; the binary `.ci/servers/tansu.sh` installs, or `TANSU_BIN`) killed and restarted
//!   under statsd and HTTP load;
//! - `kinesis`: the wire-level fake (`switchyard_testkit::kinesis_fake`) throttling and
//!   failing single entries and whole calls.
//!
//! Spill and restart faults are in the `e2e` target (`e2e::spill`); the sinks' and workers'
//! own fault tests in `switchyard-sinks` and `switchyard-workers`.

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The e2e harness; this target uses part of it.
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;

/// Readings shared by the fault tests (the sink under test is always `dd`).
mod support {
    use crate::harness::Instance;
    use serde_json::Value;

    /// A per-sink family's value for sink `dd`.
    pub fn sink(sy: &Instance, family: &str) -> f64 {
        sy.metric(&format!("{family}{{sink=\"dd\"}}"))
    }

    /// `dd`'s dropped values for `reason`.
    pub fn dropped(sy: &Instance, reason: &str) -> f64 {
        sy.metric(&format!(
            "switchyard_sink_dropped_values_total{{sink=\"dd\",reason=\"{reason}\"}}"
        ))
    }

    /// The point values the vendor kept for `metric` (`--keep-values`), in arrival order.
    pub fn kept_values(stats: &Value, metric: &str) -> Vec<u32> {
        stats["metrics"][metric]["values"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_f64)
                    .map(|x| x as u32)
                    .collect()
            })
            .unwrap_or_default()
    }
}

mod faults {
    mod disk;
    #[cfg(feature = "kafka")]
    mod kafka;
    mod kill;
    mod kinesis;
    mod slow;
    mod vendor;
}
