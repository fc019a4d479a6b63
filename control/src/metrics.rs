//! Prometheus text exposition (format 0.0.4) of Switchyard's counters.
//!
//! Every series is rendered on each scrape, zeros included, so rates and alerts never see a
//! counter appear out of nowhere. Label values come from bounded sets only (reasons, sink
//! names from the config).

mod http;
mod sinks;

use std::fmt::Write;
use switchyard_core::statsd::LineError;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::SinkProbe;

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
pub fn render(t: &Telemetry, sink_probes: &[SinkProbe]) -> String {
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

    sinks::render(&mut o, &total, sink_probes);
    o.0
}
