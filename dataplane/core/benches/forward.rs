//! The forward format on a realistic forwarder interval: 10 000 series named and tagged like
//! the loadgen's (`lg.m{i}`, `env:prod,svc:s{i % 50},az:z{i % 3}`), 40% counters (5 lines
//! each, some sampled), 20% gauges (3 lines), 30% timers (8 values), 10% sets (5 members),
//! from 20 hosts. Prints the body size per series and per statsd line it stands for, then
//! measures encoding (`ForwardEncoder::encode`) and the aggregator's decode + feed.
//!
//! Run: `cargo bench -p switchyard-core --bench forward -- --warm-up-time 1 --measurement-time 3`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use criterion::{black_box, Criterion, Throughput};
use switchyard_core::aggregate::{
    GaugeDialect, HostSource, IntervalAggregator, LineContext, Partials,
};
use switchyard_core::forward::{feed, ForwardDecoder, ForwardEncoder};
use switchyard_core::statsd::parse_metric;

const SERIES: usize = 10_000;

/// The interval's lines, with the host each came from.
fn lines() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..SERIES {
        let tags = format!("#env:prod,svc:s{},az:z{}", i % 50, i % 3);
        let host = format!("10.1.0.{}", i % 20);
        let mut push = |l: String| out.push((l, host.clone()));
        match i % 10 {
            0..=3 => {
                for k in 0..5 {
                    let rate = if i % 4 == 0 { "|@0.5" } else { "" };
                    push(format!("lg.m{i}:{}|c{rate}|{tags}", 1 + k % 3));
                }
            }
            4 | 5 => {
                for k in 0..3 {
                    push(format!("lg.m{i}:{}.{}|g|{tags}", (i * 7 + k) % 1000, k));
                }
            }
            6..=8 => {
                for k in 0..8 {
                    push(format!(
                        "lg.m{i}:{}.{:03}|ms|{tags}",
                        (i + k * 13) % 500,
                        k * 111
                    ));
                }
            }
            _ => {
                for k in 0..5 {
                    push(format!("lg.m{i}:u{}|s|{tags}", (i + k * 17) % 1000));
                }
            }
        }
    }
    out
}

fn interval(lines: &[(String, String)]) -> Partials {
    let mut agg = IntervalAggregator::new(1, 64, 1 << 20, 1 << 22);
    for (l, host) in lines {
        let cx = LineContext {
            host: HostSource::Sender(host),
            dialect: GaugeDialect::Dogstatsd,
            now_ns: 1,
            scope: 0,
        };
        agg.ingest(&parse_metric(l.as_bytes()).unwrap(), cx)
            .unwrap();
    }
    agg.drain_by_owner(1).pop().unwrap()
}

fn main() {
    let lines = lines();
    let parts = interval(&lines);
    assert_eq!(parts.len(), SERIES);
    let mut enc = ForwardEncoder::new("fwd-bench", 1000, &["region:eu-west-1"]);
    let mut body = Vec::new();
    let e = enc.encode(&parts, |_, _| true, &mut body).unwrap();
    let line_bytes: usize = lines.iter().map(|(l, _)| l.len() + 1).sum();
    println!(
        "forward body: {} series, {} lines ({} bytes of statsd text): archive {} bytes, body {} bytes; \
         {:.1} B/series, {:.2} B/line (archive {:.1} B/series; zlib ratio {:.1}x)",
        e.series,
        e.lines,
        line_bytes,
        e.archive_bytes,
        e.body_bytes,
        e.body_bytes as f64 / e.series as f64,
        e.body_bytes as f64 / e.lines as f64,
        e.archive_bytes as f64 / e.series as f64,
        e.archive_bytes as f64 / e.body_bytes as f64,
    );

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("encode_10k_series", |b| {
        b.iter(|| {
            enc.encode(black_box(&parts), |_, _| true, &mut body)
                .unwrap()
        })
    });
    let mut dec = ForwardDecoder::default();
    let mut agg = IntervalAggregator::new(2, 64, 1 << 20, 1 << 22);
    g.bench_function("decode_feed_10k_series", |b| {
        b.iter(|| {
            let view = dec.decode(black_box(&body)).unwrap();
            let out = feed(&view, &mut agg, 1, 0);
            assert_eq!(out.ok, SERIES as u64);
            // Keep the aggregator's tables warm, as a long-running aggregator's are.
            let _ = agg.drain_by_owner(1);
        })
    });
    g.finish();
    c.final_summary();
}
