//! The sinks' metrics (`switchyard_sink_*`, label `sink`): what the shards enqueued (their
//! counters) and what each sink took, delivered, dropped by reason and how its requests went
//! (the sink's own atomics). The shards' own reasons in `switchyard_sink_dropped_values_total`:
//! `queue_full` (the queue had no room), `route_dropped` (a `drop` route discarded values
//! earlier routes sent to the sink), `sampled_out` (outside a route's `sample`). Payload
//! body bytes: `switchyard_sink_enqueued_payload_bytes_total` and
//! `switchyard_sink_payload_bytes_total{stage=received|delivered|dropped,reason}`. Stream
//! sinks: `switchyard_sink_stream_{calls,user_records,bytes,shard_refreshes,points_moved}_total` and
//! `switchyard_sink_stream_records_total{outcome=put|throttled|failed}`.
//! Spilling sinks (`spill = true`): `switchyard_sink_circuit_open`,
//! `switchyard_sink_circuit_opens_total`, `switchyard_sink_spool_bytes`,
//! `switchyard_sink_replayed_values_total`; the drop reason
//! `spilled` (in the spool, replayed later: not lost) and `spool_full`.
//! Dead letters (HTTP vendor sinks with a `state_dir`, see `switchyard_sinks::deadletter`):
//! `switchyard_sink_deadletter_entries_total`, `switchyard_sink_deadletter_values_total`,
//! `switchyard_sink_deadletter_bytes` (gauge), `switchyard_sink_deadletter_evicted_entries_total`.
//! `switchyard_sink_distinct_series{sink,window="1h"}` (gauge): the distinct series the
//! shards sent the sink over the last hour, the figure vendors bill by (HyperLogLog
//! estimate merged over shards, `switchyard_core::distinct`).

use super::Out;
use switchyard_core::telemetry::ShardCounters;
use switchyard_sinks::{DropReason, RequestOutcome, SinkProbe, SinkStats, LATENCY_BUCKETS};

type PerSink = fn(&SinkProbe) -> f64;

/// Families with one value per sink, read from the sink itself.
const PER_SINK: [(&str, &str, &str, PerSink); 18] = [
    (
        "switchyard_sink_deadletter_entries_total",
        "counter",
        "Requests a vendor refused with a 4xx that cannot succeed, kept as dead letters (their values are dropped, reason=\"rejected\").",
        |p| dead_letters(p).written_entries as f64,
    ),
    (
        "switchyard_sink_deadletter_values_total",
        "counter",
        "Values of the requests kept as dead letters.",
        |p| dead_letters(p).written_values as f64,
    ),
    (
        "switchyard_sink_deadletter_bytes",
        "gauge",
        "Bytes a sink's dead letters hold (at most deadletter_max_bytes, plus one entry).",
        |p| dead_letters(p).bytes as f64,
    ),
    (
        "switchyard_sink_deadletter_evicted_entries_total",
        "counter",
        "Dead letters removed (the oldest segment) to stay under deadletter_max_bytes.",
        |p| dead_letters(p).evicted_entries as f64,
    ),
    (
        "switchyard_sink_circuit_open",
        "gauge",
        "1 while a spilling sink's circuit is open (items go to its spool without a request).",
        |p| SinkStats::get(&p.stats.circuit_open) as f64,
    ),
    (
        "switchyard_sink_circuit_opens_total",
        "counter",
        "Times a spilling sink's circuit opened after items in a row failed.",
        |p| SinkStats::get(&p.stats.circuit_opens) as f64,
    ),
    (
        "switchyard_sink_replayed_values_total",
        "counter",
        "Values handed to a sink by stream workers (its spool's replay, or workers sharing its ledger) rather than taken off its queue: counted in received too.",
        |p| SinkStats::get(&p.stats.values_replayed) as f64,
    ),
    (
        "switchyard_sink_spool_bytes",
        "gauge",
        "Bytes of a spilling sink's spool files, as last seen when it spilled.",
        |p| SinkStats::get(&p.stats.spool_bytes) as f64,
    ),
    (
        "switchyard_sink_queue_bytes",
        "gauge",
        "Bytes of HTTP payload bodies queued for a sink or being delivered.",
        |p| SinkStats::get(&p.stats.queued_bytes) as f64,
    ),
    (
        "switchyard_sink_queue_max_bytes",
        "gauge",
        "queue_max_bytes: past it the intake answers 503.",
        |p| p.queue_max_bytes as f64,
    ),
    (
        "switchyard_sink_received_values_total",
        "counter",
        "Values (points) a sink took off its queue.",
        |p| SinkStats::get(&p.stats.values_received) as f64,
    ),
    (
        "switchyard_sink_received_series_total",
        "counter",
        "Series (checks, events) a sink took off its queue.",
        |p| SinkStats::get(&p.stats.series_received) as f64,
    ),
    (
        "switchyard_sink_delivered_values_total",
        "counter",
        "Values a sink delivered.",
        |p| SinkStats::get(&p.stats.values_delivered) as f64,
    ),
    (
        "switchyard_sink_uncompressed_bytes_total",
        "counter",
        "Bytes of delivered bodies before compression (with switchyard_sink_bytes_total: the compression ratio).",
        |p| SinkStats::get(&p.stats.bytes_uncompressed) as f64,
    ),
    (
        "switchyard_sink_bytes_total",
        "counter",
        "Bytes a sink delivered after compression (on the wire, or written).",
        |p| SinkStats::get(&p.stats.bytes) as f64,
    ),
    (
        "switchyard_sink_retries_total",
        "counter",
        "Delivery retries.",
        |p| SinkStats::get(&p.stats.retries) as f64,
    ),
    (
        "switchyard_sink_queue_depth_batches",
        "gauge",
        "Items (batches and payloads) waiting in a sink's queue.",
        |p| p.queue_depth() as f64,
    ),
    (
        "switchyard_sink_queue_capacity_batches",
        "gauge",
        "Capacity of a sink's queue, in items.",
        |p| p.queue_capacity() as f64,
    ),
];

/// The counts of a sink's dead letters (zero when it keeps none).
fn dead_letters(p: &SinkProbe) -> switchyard_sinks::deadletter::Counts {
    p.stats
        .deadletter
        .get()
        .map(|d| d.counts())
        .unwrap_or_default()
}

/// Renders every sink family.
pub(super) fn render(o: &mut Out, total: &ShardCounters, distinct: &[u64], sinks: &[SinkProbe]) {
    type Enqueued = fn(&switchyard_core::telemetry::SinkEnqueueCounters) -> u64;
    let enqueued: [(&str, &str, Enqueued); 3] = [
        (
            "switchyard_sink_enqueued_values_total",
            "Values handed to a sink's queue.",
            |c| c.values_enqueued,
        ),
        (
            "switchyard_sink_enqueued_payload_bytes_total",
            "HTTP payload body bytes (as accepted) handed to a sink's queue.",
            |c| c.payload_bytes_enqueued,
        ),
        (
            "switchyard_sink_enqueued_batches_total",
            "Items (statsd batches, HTTP payloads) handed to a sink's queue.",
            |c| c.batches_enqueued,
        ),
    ];
    for (name, help, field) in enqueued {
        o.family(name, "counter", help);
        for (i, p) in sinks.iter().enumerate() {
            let v = total.sinks.get(i).map_or(0, field);
            o.value(name, &[("sink", &p.name)], v as f64);
        }
    }
    let name = "switchyard_sink_distinct_series";
    o.family(
        name,
        "gauge",
        "Distinct series (name, tags, host) sent to a sink over the window: the figure vendors bill by (HyperLogLog estimate, ~1.6% error).",
    );
    for (i, p) in sinks.iter().enumerate() {
        let v = distinct.get(i).copied().unwrap_or(0);
        o.value(name, &[("sink", &p.name), ("window", "1h")], v as f64);
    }
    for (name, kind, help, value) in PER_SINK {
        o.family(name, kind, help);
        for p in sinks {
            o.value(name, &[("sink", &p.name)], value(p));
        }
    }
    o.family(
        "switchyard_sink_received_total",
        "counter",
        "Queue items a sink took: statsd batches and HTTP intake payloads.",
    );
    for p in sinks {
        for (kind, c) in [("batch", &p.stats.batches), ("payload", &p.stats.payloads)] {
            o.value(
                "switchyard_sink_received_total",
                &[("sink", &p.name), ("kind", kind)],
                SinkStats::get(c) as f64,
            );
        }
    }
    o.family(
        "switchyard_sink_dropped_values_total",
        "counter",
        "Values dropped on the way to a sink, by reason.",
    );
    for (i, p) in sinks.iter().enumerate() {
        let shard = total.sinks.get(i).cloned().unwrap_or_default();
        for (reason, v) in [
            ("queue_full", shard.values_dropped_full),
            ("route_dropped", shard.values_route_dropped),
            ("sampled_out", shard.values_sampled_out),
        ] {
            o.value(
                "switchyard_sink_dropped_values_total",
                &[("sink", &p.name), ("reason", reason)],
                v as f64,
            );
        }
        for r in DropReason::ALL {
            let v = p
                .stats
                .values_dropped
                .get(r as usize)
                .map_or(0, SinkStats::get);
            o.value(
                "switchyard_sink_dropped_values_total",
                &[("sink", &p.name), ("reason", r.as_str())],
                v as f64,
            );
        }
    }
    o.family(
        "switchyard_sink_payload_bytes_total",
        "counter",
        "HTTP payload body bytes (as accepted) a sink took off its queue (stage=received) and, once done, delivered or dropped by reason (split in proportion to the payload's values).",
    );
    for (i, p) in sinks.iter().enumerate() {
        let full = total
            .sinks
            .get(i)
            .map_or(0, |c| c.payload_bytes_dropped_full);
        let stats = &p.stats;
        let mut rows = vec![
            (
                "received",
                "",
                SinkStats::get(&stats.payload_bytes_received),
            ),
            (
                "delivered",
                "",
                SinkStats::get(&stats.payload_bytes_delivered),
            ),
            ("dropped", "queue_full", full),
        ];
        for (r, c) in DropReason::ALL.iter().zip(&stats.payload_bytes_dropped) {
            rows.push(("dropped", r.as_str(), SinkStats::get(c)));
        }
        for (stage, reason, v) in rows {
            let mut labels = vec![("sink", p.name.as_str()), ("stage", stage)];
            if !reason.is_empty() {
                labels.push(("reason", reason));
            }
            o.value("switchyard_sink_payload_bytes_total", &labels, v as f64);
        }
    }
    let stream: [(&str, &str, PerSink); 5] = [
        (
            "switchyard_sink_stream_calls_total",
            "Stream write calls answered (Kinesis PutRecords).",
            |p| SinkStats::get(&p.stats.stream.calls) as f64,
        ),
        (
            "switchyard_sink_stream_user_records_total",
            "User records (batch envelopes) inside the stream records put.",
            |p| SinkStats::get(&p.stats.stream.user_records_put) as f64,
        ),
        (
            "switchyard_sink_stream_bytes_total",
            "Bytes of the stream records put (data and partition key).",
            |p| SinkStats::get(&p.stats.stream.bytes_put) as f64,
        ),
        (
            "switchyard_sink_stream_shard_refreshes_total",
            "Reloads of a stream's shard map after the first.",
            |p| SinkStats::get(&p.stats.stream.shard_refreshes) as f64,
        ),
        (
            "switchyard_sink_stream_points_moved_total",
            "Points a reshard put on a shard that does not hold their series, sent again to the right shard.",
            |p| SinkStats::get(&p.stats.stream.points_moved) as f64,
        ),
    ];
    for (name, help, value) in stream {
        o.family(name, "counter", help);
        for p in sinks {
            o.value(name, &[("sink", &p.name)], value(p));
        }
    }
    o.family(
        "switchyard_sink_stream_records_total",
        "counter",
        "Stream records by outcome: put, throttled (over the shard's throughput), failed.",
    );
    for p in sinks {
        let st = &p.stats.stream;
        for (outcome, c) in [
            ("put", &st.records_put),
            ("throttled", &st.records_throttled),
            ("failed", &st.records_failed),
        ] {
            o.value(
                "switchyard_sink_stream_records_total",
                &[("sink", &p.name), ("outcome", outcome)],
                SinkStats::get(c) as f64,
            );
        }
    }
    o.family(
        "switchyard_sink_requests_total",
        "counter",
        "HTTP request attempts by outcome: success (2xx), retryable (5xx, 408, 429), rejected (other statuses, not retried), error (no response).",
    );
    for p in sinks {
        for r in RequestOutcome::ALL {
            o.value(
                "switchyard_sink_requests_total",
                &[("sink", &p.name), ("outcome", r.as_str())],
                p.stats.requests(r) as f64,
            );
        }
    }
    let h = "switchyard_sink_request_duration_seconds";
    o.family(
        h,
        "histogram",
        "HTTP request attempt latency, response included.",
    );
    for p in sinks {
        let les = LATENCY_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_string()));
        for (le, v) in les.zip(p.stats.latency.cumulative()) {
            o.value(
                &format!("{h}_bucket"),
                &[("sink", &p.name), ("le", &le)],
                v as f64,
            );
        }
        o.value(
            &format!("{h}_sum"),
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.latency.sum_micros) as f64 / 1e6,
        );
        o.value(
            &format!("{h}_count"),
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.latency.count) as f64,
        );
    }
}
