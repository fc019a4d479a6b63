//! Stream workers in `/metrics` and `/v1/stats` (the `workers` section).
//!
//! Metrics (label `worker`, the worker's consumer name; see `switchyard-workers`):
//! - `switchyard_worker_records_read_total`: records read from the stream;
//! - `switchyard_worker_batches_delivered_total`: records every `to` sink delivered;
//! - `switchyard_worker_redeliveries_total`: payloads sent again after a sink failed them;
//! - `switchyard_worker_decode_errors_total`: records that could not be decoded (skipped);
//! - `switchyard_worker_lag_records`: records behind the stream's durable end;
//! - `switchyard_worker_committed_offset`: the committed consumer offset (local log);
//! - `switchyard_worker_read_errors_total`: failed stream reads, retried (Kinesis);
//! - `switchyard_worker_leases_held`: shard leases held (Kinesis);
//! - `switchyard_worker_misplaced_points_total`: points of series outside the hash range of
//!   the shard they were read from, left out (Kinesis; put there during a reshard and sent
//!   again by the producer to the shard that holds them);
//! - `switchyard_lease_events_total{worker,event}`: lease events of a Kinesis worker
//!   (`renewed`, `renew_failed`, `lost`, `taken`, `stolen`, `conflict`, `store_error`,
//!   `deleted`).
//!
//! The leases themselves are served by [`crate::leases`].

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use switchyard_workers::kinesis::LeaseAccess;
use switchyard_workers::WorkerProbe;

/// The running workers, set by the binary once they started.
#[derive(Debug, Clone, Default)]
pub struct Workers {
    probes: Arc<RwLock<Vec<WorkerProbe>>>,
    leases: Arc<RwLock<Vec<LeaseAccess>>>,
}

const FAMILIES: [(&str, &str, &str); 9] = [
    (
        "switchyard_worker_records_read_total",
        "counter",
        "Records read from the stream.",
    ),
    (
        "switchyard_worker_batches_delivered_total",
        "counter",
        "Records every sink of the worker delivered.",
    ),
    (
        "switchyard_worker_redeliveries_total",
        "counter",
        "Payloads sent again after a sink failed them.",
    ),
    (
        "switchyard_worker_decode_errors_total",
        "counter",
        "Records that could not be decoded (skipped).",
    ),
    (
        "switchyard_worker_lag_records",
        "gauge",
        "Records behind the stream's durable end.",
    ),
    (
        "switchyard_worker_committed_offset",
        "gauge",
        "The committed consumer offset.",
    ),
    (
        "switchyard_worker_read_errors_total",
        "counter",
        "Failed stream reads (retried).",
    ),
    (
        "switchyard_worker_leases_held",
        "gauge",
        "Shard leases held.",
    ),
    (
        "switchyard_worker_misplaced_points_total",
        "counter",
        "Points of series outside the hash range of the shard they were read from, left out.",
    ),
];

impl Workers {
    /// Publishes the running workers.
    pub fn set(&self, probes: Vec<WorkerProbe>) {
        *self.probes.write().unwrap_or_else(|p| p.into_inner()) = probes;
    }

    /// Publishes the Kinesis workers' lease handles.
    pub fn set_leases(&self, leases: Vec<LeaseAccess>) {
        *self.leases.write().unwrap_or_else(|p| p.into_inner()) = leases;
    }

    /// The Kinesis workers' lease handles.
    pub fn leases(&self) -> Vec<LeaseAccess> {
        self.leases
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn probes(&self) -> Vec<WorkerProbe> {
        self.probes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Prometheus text of every worker (empty without workers).
    pub fn render(&self) -> String {
        let probes = self.probes();
        let mut o = String::new();
        if probes.is_empty() {
            return o;
        }
        let snaps: Vec<_> = probes.iter().map(|p| (p, p.snapshot())).collect();
        for (i, (name, kind, help)) in FAMILIES.iter().enumerate() {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (p, s) in &snaps {
                let v = s.get(i).copied().unwrap_or(0);
                let _ = writeln!(o, "{name}{{worker=\"{}\"}} {v}", escape(&p.name));
            }
        }
        let leases = self.leases();
        if !leases.is_empty() {
            let name = "switchyard_lease_events_total";
            let _ = writeln!(
                o,
                "# HELP {name} Lease events of a Kinesis worker.\n# TYPE {name} counter"
            );
            for l in &leases {
                let c = l.counters();
                for (event, v) in [
                    ("renewed", c.renewals),
                    ("renew_failed", c.renew_failures),
                    ("lost", c.lost),
                    ("taken", c.taken),
                    ("stolen", c.stolen),
                    ("conflict", c.conflicts),
                    ("store_error", c.store_errors),
                    ("deleted", c.deleted),
                ] {
                    let _ = writeln!(
                        o,
                        "{name}{{worker=\"{}\",event=\"{event}\"}} {v}",
                        escape(&l.worker)
                    );
                }
            }
        }
        o
    }

    /// The `workers` section of `/v1/stats`.
    pub fn json(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .probes()
            .iter()
            .map(|p| {
                let [read, delivered, redeliveries, decode_errors, lag, committed, read_errors, leases, misplaced] =
                    p.snapshot();
                serde_json::json!({
                    "worker": p.name, "from": p.from, "to": p.to,
                    "records_read": read, "batches_delivered": delivered,
                    "redeliveries": redeliveries, "decode_errors": decode_errors,
                    "lag_records": lag, "committed_offset": committed,
                    "read_errors": read_errors, "leases_held": leases,
                    "misplaced_points": misplaced,
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use switchyard_workers::WorkerStats;

    #[test]
    fn renders_each_worker_in_metrics_and_stats() {
        let w = Workers::default();
        assert_eq!(w.render(), "");
        let stats = Arc::new(WorkerStats::default());
        stats.records_read.store(7, Ordering::Relaxed);
        stats.lag.store(3, Ordering::Relaxed);
        w.set(vec![WorkerProbe {
            name: "stream.0".into(),
            from: "stream".into(),
            to: vec!["local".into()],
            stats,
        }]);
        let text = w.render();
        assert!(
            text.contains("switchyard_worker_records_read_total{worker=\"stream.0\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE switchyard_worker_lag_records gauge\nswitchyard_worker_lag_records{worker=\"stream.0\"} 3\n"), "{text}");
        let j = w.json();
        assert_eq!(j[0]["records_read"], 7);
        assert_eq!(j[0]["lag_records"], 3);
        assert_eq!(j[0]["to"][0], "local");
    }
}
