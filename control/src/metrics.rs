//! Prometheus text exposition (format 0.0.4) of Switchyard's counters.
//!
//! Every series is rendered on each scrape, zeros included, so rates and alerts never see a
//! counter appear out of nowhere. Label values come from bounded sets only (reasons, sink
//! names from the config).

mod http;

use std::fmt::Write;
use switchyard_core::statsd::LineError;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::{DropReason, RequestOutcome, SinkProbe, SinkStats, LATENCY_BUCKETS};

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help);
        self.value(name, &[], v);
    }
}

/// Renders every metric.
pub fn render(t: &Telemetry, sinks: &[SinkProbe]) -> String {
    let total = t.total();
    let s = &total.statsd;
    let f = &total.flush;
    let mut o = Out(String::with_capacity(8192));
    o.family("switchyard_build_info", "gauge", "Build information.");
    o.value(
        "switchyard_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    o.one(
        "switchyard_uptime_seconds",
        "gauge",
        "Seconds since the dataplane started.",
        t.uptime_secs(),
    );
    o.one(
        "switchyard_shards",
        "gauge",
        "Dataplane shards.",
        t.shards() as f64,
    );

    o.one(
        "switchyard_statsd_datagrams_total",
        "counter",
        "Datagrams received.",
        s.datagrams as f64,
    );
    o.family(
        "switchyard_shard_datagrams_total",
        "counter",
        "Datagrams received, per shard.",
    );
    for i in 0..t.shards() {
        let v = t.shard(i).statsd.datagrams;
        o.value(
            "switchyard_shard_datagrams_total",
            &[("shard", &i.to_string())],
            v as f64,
        );
    }
    o.one(
        "switchyard_statsd_bytes_total",
        "counter",
        "Bytes received in datagrams.",
        s.bytes as f64,
    );
    o.one(
        "switchyard_statsd_truncated_datagrams_total",
        "counter",
        "Datagrams longer than statsd.max_datagram_bytes, cut by the kernel.",
        s.truncated_datagrams as f64,
    );
    o.one(
        "switchyard_statsd_recv_batches_total",
        "counter",
        "recvmmsg calls that returned data.",
        s.recv_batches as f64,
    );
    o.family(
        "switchyard_statsd_lines_total",
        "counter",
        "statsd lines by result and rejection reason.",
    );
    o.value(
        "switchyard_statsd_lines_total",
        &[("result", "ok")],
        s.lines_ok as f64,
    );
    for r in LineError::ALL {
        let v = s.lines_error.get(r.index()).copied().unwrap_or(0);
        o.value(
            "switchyard_statsd_lines_total",
            &[("result", "error"), ("reason", r.reason())],
            v as f64,
        );
    }
    o.one(
        "switchyard_statsd_events_total",
        "counter",
        "DogStatsD events parsed.",
        s.events as f64,
    );
    o.one(
        "switchyard_statsd_service_checks_total",
        "counter",
        "DogStatsD service checks parsed.",
        s.service_checks as f64,
    );
    o.one(
        "switchyard_statsd_kernel_drops_total",
        "counter",
        "Datagrams the kernel dropped on Switchyard's UDP sockets (receive buffer full).",
        t.kernel_drops() as f64,
    );
    o.one(
        "switchyard_statsd_receive_buffer_bytes",
        "gauge",
        "Receive buffer the kernel granted per UDP socket.",
        t.granted_rcvbuf() as f64,
    );
    o.one(
        "switchyard_statsd_interval_series",
        "gauge",
        "Distinct series received in the current interval, summed over shards.",
        total.interval_series as f64,
    );
    o.one(
        "switchyard_series_active",
        "gauge",
        "Series held by their owner shards after the last flush.",
        f.series_active as f64,
    );
    o.one(
        "switchyard_flush_total",
        "counter",
        "Flush rounds completed, summed over shards.",
        f.flushes as f64,
    );
    o.one(
        "switchyard_flush_duration_seconds_total",
        "counter",
        "Time spent in flush rounds, summed over shards.",
        f.total_duration_ns as f64 / 1e9,
    );
    o.one(
        "switchyard_flush_last_duration_seconds",
        "gauge",
        "Duration of the slowest shard's last flush round.",
        f.last_duration_ns as f64 / 1e9,
    );
    o.one(
        "switchyard_flush_series_total",
        "counter",
        "Series emitted by flushes.",
        f.series_emitted as f64,
    );
    o.one(
        "switchyard_flush_values_total",
        "counter",
        "Values emitted by flushes (after timer expansion).",
        f.values_emitted as f64,
    );
    o.one(
        "switchyard_series_expired_total",
        "counter",
        "Series expired after being idle.",
        f.series_expired as f64,
    );
    http::render(&mut o, &total.http);

    o.family(
        "switchyard_sink_enqueued_values_total",
        "counter",
        "Values handed to a sink's queue.",
    );
    for (i, p) in sinks.iter().enumerate() {
        let v = total.sinks.get(i).map_or(0, |c| c.values_enqueued);
        o.value(
            "switchyard_sink_enqueued_values_total",
            &[("sink", &p.name)],
            v as f64,
        );
    }
    o.family(
        "switchyard_sink_enqueued_batches_total",
        "counter",
        "Batches handed to a sink's queue.",
    );
    for (i, p) in sinks.iter().enumerate() {
        let v = total.sinks.get(i).map_or(0, |c| c.batches_enqueued);
        o.value(
            "switchyard_sink_enqueued_batches_total",
            &[("sink", &p.name)],
            v as f64,
        );
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
        "switchyard_sink_received_values_total",
        "counter",
        "Values (points) a sink took off its queue.",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_received_values_total",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.values_received) as f64,
        );
    }
    o.family(
        "switchyard_sink_received_series_total",
        "counter",
        "Series (checks, events) a sink took off its queue.",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_received_series_total",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.series_received) as f64,
        );
    }
    o.family(
        "switchyard_sink_delivered_values_total",
        "counter",
        "Values a sink delivered.",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_delivered_values_total",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.values_delivered) as f64,
        );
    }
    o.family(
        "switchyard_sink_dropped_values_total",
        "counter",
        "Values dropped on the way to a sink, by reason.",
    );
    for (i, p) in sinks.iter().enumerate() {
        let full = total.sinks.get(i).map_or(0, |c| c.values_dropped_full);
        o.value(
            "switchyard_sink_dropped_values_total",
            &[("sink", &p.name), ("reason", "queue_full")],
            full as f64,
        );
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
    o.family(
        "switchyard_sink_request_duration_seconds",
        "histogram",
        "HTTP request attempt latency, response included.",
    );
    for p in sinks {
        let cum = p.stats.latency.cumulative();
        let les = LATENCY_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_string()));
        for (le, v) in les.zip(cum) {
            o.value(
                "switchyard_sink_request_duration_seconds_bucket",
                &[("sink", &p.name), ("le", &le)],
                v as f64,
            );
        }
        o.value(
            "switchyard_sink_request_duration_seconds_sum",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.latency.sum_micros) as f64 / 1e6,
        );
        o.value(
            "switchyard_sink_request_duration_seconds_count",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.latency.count) as f64,
        );
    }
    o.family(
        "switchyard_sink_uncompressed_bytes_total",
        "counter",
        "Bytes of delivered bodies before compression (with switchyard_sink_bytes_total: the compression ratio).",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_uncompressed_bytes_total",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.bytes_uncompressed) as f64,
        );
    }
    o.family(
        "switchyard_sink_bytes_total",
        "counter",
        "Bytes a sink delivered after compression (on the wire, or written).",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_bytes_total",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.bytes) as f64,
        );
    }
    o.family(
        "switchyard_sink_retries_total",
        "counter",
        "Delivery retries.",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_retries_total",
            &[("sink", &p.name)],
            SinkStats::get(&p.stats.retries) as f64,
        );
    }
    o.family(
        "switchyard_sink_queue_depth_batches",
        "gauge",
        "Items (batches and payloads) waiting in a sink's queue.",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_queue_depth_batches",
            &[("sink", &p.name)],
            p.queue_depth() as f64,
        );
    }
    o.family(
        "switchyard_sink_queue_capacity_batches",
        "gauge",
        "Capacity of a sink's queue, in items.",
    );
    for p in sinks {
        o.value(
            "switchyard_sink_queue_capacity_batches",
            &[("sink", &p.name)],
            p.queue_capacity() as f64,
        );
    }
    o.0
}
