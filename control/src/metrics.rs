//! Prometheus text exposition (format 0.0.4) of Switchyard's counters.
//!
//! Every series is rendered on each scrape, zeros included, so rates and alerts never see a
//! counter appear out of nowhere. Label values come from bounded sets only (reasons, sink
//! names from the config). The series are collected once into [`Family`] values, rendered
//! here as text and by `GET /v1/stats` as JSON ([`crate::stats`]), so both always agree.

mod http;
mod sinks;

use std::fmt::Write;
use switchyard_core::statsd::LineError;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::SinkProbe;

/// One metric family as collected: rendered as Prometheus text by [`render`] and as JSON by
/// `GET /v1/stats`, so both always carry the same series under the same names.
#[derive(Debug, Clone)]
pub(crate) struct Family {
    /// Family name (`switchyard_...`).
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// HELP text.
    pub help: String,
    /// Samples, in render order.
    pub samples: Vec<Sample>,
}

/// One sample of a family (histograms: `_bucket`, `_sum`, `_count` names).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Series name.
    pub name: String,
    /// Label pairs.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

#[derive(Default)]
struct Out(Vec<Family>);

impl Out {
    fn family(&mut self, name: &str, kind: &'static str, help: &str) {
        self.0.push(Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        });
    }
    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let sample = Sample {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            value: v,
        };
        if let Some(f) = self.0.last_mut() {
            f.samples.push(sample);
        }
    }
    fn one(&mut self, name: &str, kind: &'static str, help: &str, v: f64) {
        self.family(name, kind, help);
        self.value(name, &[], v);
    }
}

fn to_text(families: &[Family]) -> String {
    let mut o = String::with_capacity(8192);
    for f in families {
        let _ = writeln!(
            o,
            "# HELP {} {}\n# TYPE {} {}",
            f.name, f.help, f.name, f.kind
        );
        for s in &f.samples {
            o.push_str(&s.name);
            if !s.labels.is_empty() {
                o.push('{');
                for (i, (k, val)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let escaped = val
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    let _ = write!(o, "{k}=\"{escaped}\"");
                }
                o.push('}');
            }
            let _ = writeln!(o, " {}", s.value);
        }
    }
    o
}

/// Renders every metric.
pub fn render(t: &Telemetry, sink_probes: &[SinkProbe]) -> String {
    to_text(&collect(t, sink_probes))
}

/// Reads every metric family.
pub(crate) fn collect(t: &Telemetry, sink_probes: &[SinkProbe]) -> Vec<Family> {
    let total = t.total();
    let s = &total.statsd;
    let f = &total.flush;
    let mut o = Out::default();
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

    let distinct = t.distinct_series(sink_probes.len());
    sinks::render(&mut o, &total, &distinct, sink_probes);
    for (name, help, field) in [
        (
            "switchyard_route_points_total",
            "Points (values) of the series a route matched (in its sample, if it has one).",
            (|r| r.points) as fn(&switchyard_core::telemetry::RouteCounters) -> u64,
        ),
        (
            "switchyard_route_series_total",
            "Series a route matched: per flush for statsd, per payload item for HTTP.",
            |r| r.series,
        ),
    ] {
        o.family(name, "counter", help);
        for (route, r) in &total.routes {
            o.value(name, &[("route", route)], field(r) as f64);
        }
    }
    o.0
}
