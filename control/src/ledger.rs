//! The accounting ledger of each sink: where every value handed to it went.
//!
//! For every sink, in values (points):
//!
//! ```text
//! enqueued + replayed = received + queued
//! received = delivered + in_flight + Σ dropped[reason]      (every reason but queue_full, route_dropped, sampled_out)
//! ```
//!
//! `replayed` are values stream workers handed the sink directly rather than through its
//! queue: a spilling sink's spool replay (its `spilled` values come back), or workers that
//! share its ledger (`switchyard_sink_replayed_values_total`).
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
//! The same identities hold in bytes for HTTP payloads (`bytes`), in body bytes as accepted
//! (before any re-encoding): the shards count what they enqueued and what a full queue
//! refused (`queue_full`), the sink what it took off the queue, and when it is done with a
//! payload it splits the payload's bytes between `delivered` and the drop reasons in
//! proportion to its values. `bytes.held` is the gauge of payload bytes queued or being
//! handled (`switchyard_sink_queue_bytes`: `queued + in_flight` read at another instant).
//! Statsd batches have no byte size before a sink encodes them, so they are only in
//! `bytes.sent` and `bytes.sent_uncompressed`: what the sink delivered after and before
//! compression, every item included (`switchyard_sink_bytes_total`,
//! `switchyard_sink_uncompressed_bytes_total`).
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
    /// The identities in values.
    pub values: FlowLedger,
    /// The identities in HTTP payload body bytes, and the bytes sent.
    pub bytes: ByteLedger,
    /// Estimated distinct series sent to the sink over the last hour.
    pub distinct_series_1h: u64,
    /// Every identity holds without clamping.
    pub balanced: bool,
    /// Remainders that came out negative and were clamped to 0 (`queued`, `in_flight`,
    /// `bytes.queued`, `bytes.in_flight`).
    pub clamped: Vec<&'static str>,
}

/// One unit's identities: `enqueued + replayed = received + queued`, `received = delivered + in_flight
/// + Σ dropped` (the shards' reasons excepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowLedger {
    /// Handed to the sink's queue by the shards.
    pub enqueued: u64,
    /// Handed to the sink by stream workers (its spool's replay), not through its queue
    /// (always 0 for payload bytes).
    pub replayed: u64,
    /// Still in the queue (`enqueued + replayed - received`).
    pub queued: u64,
    /// Taken off the queue by the sink's workers.
    pub received: u64,
    /// Delivered.
    pub delivered: u64,
    /// Held by a worker: being sent or waiting to retry (`received - delivered - dropped`).
    pub in_flight: u64,
    /// Dropped, by reason (`queue_full`, `route_dropped`, `sampled_out`: by the shards,
    /// before enqueueing).
    pub dropped: BTreeMap<&'static str, u64>,
}

/// The byte side of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ByteLedger {
    /// HTTP payload body bytes, with the same identities as values.
    #[serde(flatten)]
    pub payloads: FlowLedger,
    /// Payload body bytes queued or being handled right now (a gauge).
    pub held: u64,
    /// Bytes delivered after compression (on the wire, or written), every item included.
    pub sent: u64,
    /// The same before compression.
    pub sent_uncompressed: u64,
}

/// The raw counters of one flow (values or payload bytes), as read.
#[derive(Debug, Clone, Default)]
pub struct Flow {
    /// Enqueued by the shards.
    pub enqueued: u64,
    /// Handed to the sink by stream workers.
    pub replayed: u64,
    /// Dropped by the shards before enqueueing, by reason.
    pub shard_dropped: Vec<(&'static str, u64)>,
    /// Received by the sink.
    pub received: u64,
    /// Delivered.
    pub delivered: u64,
    /// Dropped by the sink, by reason.
    pub dropped: Vec<(&'static str, u64)>,
}

/// The raw counters of one sink, as read.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Values.
    pub values: Flow,
    /// Payload body bytes.
    pub payload_bytes: Flow,
    /// Payload bytes queued or being handled (gauge).
    pub held: u64,
    /// Bytes sent after and before compression.
    pub sent: (u64, u64),
    /// Estimated distinct series sent over the last hour.
    pub distinct_series_1h: u64,
}

/// Settles one flow, clamping negative remainders (named `prefix` + the remainder).
fn settle(f: &Flow, prefix: &'static str, clamped: &mut Vec<&'static str>) -> FlowLedger {
    let name = |r: &'static str| -> &'static str {
        match (prefix, r) {
            ("", r) => r,
            (_, "queued") => "bytes.queued",
            _ => "bytes.in_flight",
        }
    };
    let queued = f
        .enqueued
        .saturating_add(f.replayed)
        .checked_sub(f.received)
        .unwrap_or_else(|| {
            clamped.push(name("queued"));
            0
        });
    let accounted = f
        .dropped
        .iter()
        .fold(f.delivered, |acc, (_, n)| acc.saturating_add(*n));
    let in_flight = f.received.checked_sub(accounted).unwrap_or_else(|| {
        clamped.push(name("in_flight"));
        0
    });
    let dropped = f.dropped.iter().chain(&f.shard_dropped).copied().collect();
    FlowLedger {
        enqueued: f.enqueued,
        replayed: f.replayed,
        queued,
        received: f.received,
        delivered: f.delivered,
        in_flight,
        dropped,
    }
}

/// Builds a ledger from raw counters (clamping and flagging negative remainders).
pub fn compute(sink: &str, c: &Counters) -> SinkLedger {
    let mut clamped = Vec::new();
    let values = settle(&c.values, "", &mut clamped);
    let payloads = settle(&c.payload_bytes, "bytes", &mut clamped);
    SinkLedger {
        sink: sink.to_string(),
        values,
        bytes: ByteLedger {
            payloads,
            held: c.held,
            sent: c.sent.0,
            sent_uncompressed: c.sent.1,
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
            let values = Flow {
                delivered: SinkStats::get(&s.values_delivered),
                replayed: SinkStats::get(&s.values_replayed),
                dropped: DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), s.dropped(*r)))
                    .collect(),
                ..Flow::default()
            };
            let payload_bytes = Flow {
                delivered: SinkStats::get(&s.payload_bytes_delivered),
                dropped: DropReason::ALL
                    .iter()
                    .zip(&s.payload_bytes_dropped)
                    .map(|(r, c)| (r.as_str(), SinkStats::get(c)))
                    .collect(),
                ..Flow::default()
            };
            let sent = (
                SinkStats::get(&s.bytes),
                SinkStats::get(&s.bytes_uncompressed),
            );
            let held = SinkStats::get(&s.queued_bytes);
            let received = (
                SinkStats::get(&s.values_received),
                SinkStats::get(&s.payload_bytes_received),
            );
            Counters {
                values: Flow {
                    received: received.0,
                    ..values
                },
                payload_bytes: Flow {
                    received: received.1,
                    ..payload_bytes
                },
                held,
                sent,
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
            if let Some(e) = total.sinks.get(i) {
                c.values.enqueued = e.values_enqueued;
                c.values.shard_dropped = vec![
                    ("queue_full", e.values_dropped_full),
                    ("route_dropped", e.values_route_dropped),
                    ("sampled_out", e.values_sampled_out),
                ];
                c.payload_bytes.enqueued = e.payload_bytes_enqueued;
                c.payload_bytes.shard_dropped = vec![("queue_full", e.payload_bytes_dropped_full)];
            }
            c.distinct_series_1h = distinct.get(i).copied().unwrap_or(0);
            compute(&p.name, &c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainders_are_queued_and_in_flight_in_values_and_bytes() {
        let l = compute(
            "s",
            &Counters {
                values: Flow {
                    enqueued: 100,
                    shard_dropped: vec![
                        ("queue_full", 7),
                        ("route_dropped", 3),
                        ("sampled_out", 4),
                    ],
                    // 8 values spilled, then handed back by the spool's replay.
                    replayed: 8,
                    received: 98,
                    delivered: 60,
                    dropped: vec![("retries_exhausted", 20), ("rejected", 5), ("spilled", 8)],
                },
                payload_bytes: Flow {
                    enqueued: 1000,
                    shard_dropped: vec![("queue_full", 70)],
                    received: 900,
                    delivered: 600,
                    dropped: vec![("retries_exhausted", 200), ("rejected", 50)],
                    ..Flow::default()
                },
                held: 150,
                sent: (20, 30),
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
            l.values.enqueued + l.values.replayed,
            l.values.received + l.values.queued,
            "{l:?}"
        );
        assert_eq!(
            (l.bytes.payloads.queued, l.bytes.payloads.in_flight),
            (100, 50)
        );
        assert_eq!(l.bytes.payloads.dropped["queue_full"], 70);
        assert_eq!(
            (l.bytes.held, l.bytes.sent, l.bytes.sent_uncompressed),
            (150, 20, 30)
        );
        assert_eq!(l.distinct_series_1h, 42);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["bytes"]["in_flight"], 50, "{json}");
    }

    #[test]
    fn negative_remainders_are_clamped_and_flagged() {
        let l = compute(
            "s",
            &Counters {
                values: Flow {
                    enqueued: 5,
                    received: 10,
                    delivered: 8,
                    dropped: vec![("fatal", 3)],
                    ..Flow::default()
                },
                payload_bytes: Flow {
                    enqueued: 5,
                    received: 4,
                    delivered: 9,
                    ..Flow::default()
                },
                ..Counters::default()
            },
        );
        assert!(!l.balanced);
        assert_eq!(l.clamped, vec!["queued", "in_flight", "bytes.in_flight"]);
        assert_eq!((l.values.queued, l.values.in_flight), (0, 0));
    }
}
