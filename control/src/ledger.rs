//! The accounting ledger of each sink: where every value handed to it went.
//!
//! For every sink, in values (points):
//!
//! ```text
//! enqueued = received + queued
//! received = delivered + in_flight + Σ dropped[reason]      (every reason but queue_full, route_dropped, sampled_out)
//! ```
//!
//! `enqueued` is counted by the shards (`switchyard_sink_enqueued_values_total`), `received`,
//! `delivered` and `dropped` by the sink (`switchyard_sink_received_values_total`,
//! `..._delivered_values_total`, `..._dropped_values_total{reason}`). `queued` (values still
//! in the sink's queue) and `in_flight` (values a worker holds: being sent or waiting for a
//! retry) are not counted anywhere: they are the remainders. `dropped.queue_full` are values
//! the shards could not enqueue (the queue was full), so they are outside both sums: what the
//! routes offered the sink is `enqueued + dropped.queue_full`. `dropped.route_dropped` (a
//! `drop` route discarded values that earlier routes sent to the sink) and
//! `dropped.sampled_out` (values outside a route's `sample`, that no other route sent to
//! the sink) are decided by the shards before enqueueing too, and are outside both sums.
//!
//! Counters are read one at a time while they move, and the shards publish theirs once a
//! second, so a snapshot taken under traffic can come out with a negative remainder. A
//! remainder is never reported negative: it is clamped to 0, named in `clamped`, and
//! `balanced` is false. At rest (nothing arriving, queues drained, the shards' counters
//! published) every ledger balances with `queued` and `in_flight` at 0.
//!
//! Bytes are tracked where the data has a byte size: `bytes.queued` is the HTTP payload body
//! bytes queued or being handled (`switchyard_sink_queue_bytes`), `bytes.delivered` and
//! `bytes.delivered_uncompressed` what was delivered after and before compression
//! (`switchyard_sink_bytes_total`, `switchyard_sink_uncompressed_bytes_total`). Statsd batches
//! have no byte size before a sink encodes them, so there is no byte identity.
//!
//! `distinct_series_1h` is the figure vendors bill by: the distinct series (name, tags and
//! host) the shards sent the sink over the last hour, estimated from the shards' merged
//! HyperLogLog counters (`switchyard_core::distinct`: about 1.6% typical error, exact below
//! 129; the window is the last 50 to 60 minutes, by 10-minute slices;
//! `switchyard_sink_distinct_series{window="1h"}`). It is not part of the identities.

use serde::Serialize;
use std::collections::BTreeMap;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::{DropReason, SinkProbe, SinkStats};

/// One sink's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkLedger {
    /// Sink name.
    pub sink: String,
    /// The identity in values.
    pub values: ValueLedger,
    /// Bytes where tracked.
    pub bytes: ByteLedger,
    /// Estimated distinct series sent to the sink over the last hour.
    pub distinct_series_1h: u64,
    /// Both identities hold without clamping.
    pub balanced: bool,
    /// Remainders that came out negative and were clamped to 0 (`queued`, `in_flight`).
    pub clamped: Vec<&'static str>,
}

/// The value counts of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueLedger {
    /// Handed to the sink's queue by the shards.
    pub enqueued: u64,
    /// Still in the queue (`enqueued - received`).
    pub queued: u64,
    /// Taken off the queue by the sink's workers.
    pub received: u64,
    /// Delivered.
    pub delivered: u64,
    /// Held by a worker: being sent or waiting to retry (`received - delivered - dropped`).
    pub in_flight: u64,
    /// Dropped, by reason (`queue_full`: by the shards, before enqueueing).
    pub dropped: BTreeMap<&'static str, u64>,
}

/// The byte counts of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ByteLedger {
    /// HTTP payload body bytes queued or being handled.
    pub queued: u64,
    /// Delivered, after compression (on the wire, or written).
    pub delivered: u64,
    /// Delivered, before compression.
    pub delivered_uncompressed: u64,
}

/// The raw counters of one sink, as read.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Values enqueued by the shards.
    pub enqueued: u64,
    /// Values the shards dropped because the queue was full.
    pub queue_full: u64,
    /// Values a `drop` route discarded from this sink.
    pub route_dropped: u64,
    /// Values outside a route's `sample` for this sink.
    pub sampled_out: u64,
    /// Values received by the sink.
    pub received: u64,
    /// Values delivered.
    pub delivered: u64,
    /// Values the sink dropped, by reason.
    pub dropped: Vec<(&'static str, u64)>,
    /// Bytes: queued, delivered, delivered uncompressed.
    pub bytes: (u64, u64, u64),
    /// Estimated distinct series sent over the last hour.
    pub distinct_series_1h: u64,
}

/// Builds a ledger from raw counters (clamping and flagging negative remainders).
pub fn compute(sink: &str, c: &Counters) -> SinkLedger {
    let mut clamped = Vec::new();
    let queued = c.enqueued.checked_sub(c.received).unwrap_or_else(|| {
        clamped.push("queued");
        0
    });
    let accounted = c
        .dropped
        .iter()
        .fold(c.delivered, |acc, (_, n)| acc.saturating_add(*n));
    let in_flight = c.received.checked_sub(accounted).unwrap_or_else(|| {
        clamped.push("in_flight");
        0
    });
    let mut dropped: BTreeMap<&'static str, u64> = c.dropped.iter().copied().collect();
    dropped.insert("queue_full", c.queue_full);
    dropped.insert("route_dropped", c.route_dropped);
    dropped.insert("sampled_out", c.sampled_out);
    SinkLedger {
        sink: sink.to_string(),
        values: ValueLedger {
            enqueued: c.enqueued,
            queued,
            received: c.received,
            delivered: c.delivered,
            in_flight,
            dropped,
        },
        bytes: ByteLedger {
            queued: c.bytes.0,
            delivered: c.bytes.1,
            delivered_uncompressed: c.bytes.2,
        },
        distinct_series_1h: c.distinct_series_1h,
        balanced: clamped.is_empty(),
        clamped,
    }
}

/// Every sink's ledger. The sink's outcomes are read before what it received, and the
/// shards' counters last, so that counters moving during the read inflate the remainders
/// rather than make them negative.
pub fn ledgers(t: &Telemetry, sinks: &[SinkProbe]) -> Vec<SinkLedger> {
    let raw: Vec<Counters> = sinks
        .iter()
        .map(|p| {
            let s = &p.stats;
            let delivered = SinkStats::get(&s.values_delivered);
            let dropped = DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), s.dropped(*r)))
                .collect();
            let bytes = (
                SinkStats::get(&s.queued_bytes),
                SinkStats::get(&s.bytes),
                SinkStats::get(&s.bytes_uncompressed),
            );
            let received = SinkStats::get(&s.values_received);
            Counters {
                received,
                delivered,
                dropped,
                bytes,
                ..Counters::default()
            }
        })
        .collect();
    let total = t.total();
    let distinct = t.distinct_series(sinks.len());
    sinks
        .iter()
        .zip(raw)
        .enumerate()
        .map(|(i, (p, mut c))| {
            c.distinct_series_1h = distinct.get(i).copied().unwrap_or(0);
            if let Some(e) = total.sinks.get(i) {
                c.enqueued = e.values_enqueued;
                c.queue_full = e.values_dropped_full;
                c.route_dropped = e.values_route_dropped;
                c.sampled_out = e.values_sampled_out;
            }
            compute(&p.name, &c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainders_are_queued_and_in_flight() {
        let l = compute(
            "s",
            &Counters {
                enqueued: 100,
                queue_full: 7,
                route_dropped: 3,
                sampled_out: 4,
                received: 90,
                delivered: 60,
                dropped: vec![("retries_exhausted", 20), ("rejected", 5)],
                bytes: (10, 20, 30),
                distinct_series_1h: 42,
            },
        );
        assert!(l.balanced);
        assert!(l.clamped.is_empty());
        assert_eq!(l.values.queued, 10);
        assert_eq!(l.values.in_flight, 5);
        assert_eq!(l.values.dropped["queue_full"], 7);
        assert_eq!(l.values.dropped["route_dropped"], 3);
        assert_eq!(l.values.dropped["sampled_out"], 4);
        assert_eq!(l.values.dropped["retries_exhausted"], 20);
        assert_eq!(
            l.values.enqueued,
            l.values.received + l.values.queued,
            "{l:?}"
        );
        assert_eq!(l.bytes.delivered_uncompressed, 30);
        assert_eq!(l.distinct_series_1h, 42);
    }

    #[test]
    fn negative_remainders_are_clamped_and_flagged() {
        let l = compute(
            "s",
            &Counters {
                enqueued: 5,
                received: 10,
                delivered: 8,
                dropped: vec![("fatal", 3)],
                ..Counters::default()
            },
        );
        assert!(!l.balanced);
        assert_eq!(l.clamped, vec!["queued", "in_flight"]);
        assert_eq!((l.values.queued, l.values.in_flight), (0, 0));
    }
}
