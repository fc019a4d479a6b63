//! criterion benches of the statsd hot paths: line and datagram parsing, per-line aggregation
//! at 10k and 1M series, the owner flush of 100k series and its NDJSON encoding.
//!
//! Fixtures come from `switchyard_benches` (loadgen-shaped lines) and are built outside the
//! timed closures. Run pinned to one CPU:
//! `taskset -c 1 cargo bench -p switchyard-benches --bench statsd -- --warm-up-time 1 --measurement-time 3`.

// Bench code, not dataplane code: a fixture that does not hold its shape should stop the run
// loudly rather than bench something else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{
    black_box, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use serde::Serialize;
use std::time::{Duration, Instant};
use switchyard_benches::{
    aggregator, context, flush_picks, full_datagram, ingest_all, pack, parse_metrics, shuffled,
    timer_values, Shape, APP_PREFIX, DATAGRAM_BYTES, LOADGEN_PREFIX,
};
use switchyard_core::aggregate::{FlushStats, IntervalAggregator, OwnerStore};
use switchyard_core::encode::datadog_series::{json_safe, write_batch};
use switchyard_core::model::SeriesBatch;
use switchyard_core::statsd::{lines, parse_message, parse_metric, MetricLine};

// Measure with the allocator the switchyard binary uses: glibc malloc makes the flush, which
// frees one key per merged series, markedly slower.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Flush time of the fixtures, POSIX seconds.
const FLUSH_TS: u64 = 1_700_000_000;
/// Flush interval, seconds.
const INTERVAL_S: f64 = 10.0;
/// Idle-series expiry of the owner stores (gostatsd's default of 5 minutes).
const EXPIRY_NS: u64 = 300_000_000_000;
/// Monotonic times of the interval before the flushed one and of the flushed one.
const T_PREV: u64 = 1_000_000_000;
const T_NOW: u64 = T_PREV + 10_000_000_000;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");

    g.throughput(Throughput::Elements(1));
    for (name, l) in [
        ("line_plain", &b"lg.m123:1|c"[..]),
        ("line_tagged", b"lg.m123:1|c|#env:prod,svc:s12,az:z1"),
    ] {
        assert!(parse_metric(l).is_ok());
        g.bench_function(name, |b| b.iter(|| parse_metric(black_box(l))));
    }

    for (name, shape) in [
        ("datagram_plain", Shape::Plain),
        ("datagram_tagged", Shape::Tagged),
    ] {
        let d = full_datagram(APP_PREFIX, shape, DATAGRAM_BYTES, 12_000);
        let n = lines(&d).count() as u64;
        assert!(lines(&d).all(|l| parse_message(l).is_ok()));
        let run = |d: &[u8]| {
            for l in lines(black_box(d)) {
                black_box(parse_message(l)).ok();
            }
        };
        // criterion reports one throughput per bench: the same work twice, in bytes and lines.
        g.throughput(Throughput::Bytes(d.len() as u64));
        g.bench_function(name, |b| b.iter(|| run(&d)));
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("{name}_lines"), |b| b.iter(|| run(&d)));
    }
    g.finish();
}

/// An aggregator kept in steady state: every series of the fixture already exists, so a
/// timed pass only looks series up and updates them. Timer values pile up pass after pass;
/// before they would reach `cap`, the aggregator is drained and re-warmed outside the timing,
/// as a flush would do.
struct Steady<'a> {
    agg: IntervalAggregator,
    lines: Vec<MetricLine<'a>>,
    per_pass: usize,
    held: usize,
    cap: usize,
}

impl<'a> Steady<'a> {
    fn new(lines: Vec<MetricLine<'a>>, series: usize, cap: usize) -> Self {
        let per_pass = timer_values(&lines);
        assert!(per_pass <= cap);
        let mut s = Self {
            agg: aggregator(series, cap),
            lines,
            per_pass,
            held: 0,
            cap,
        };
        s.warm();
        assert_eq!(s.agg.series(), series);
        s
    }

    fn warm(&mut self) {
        assert_eq!(ingest_all(&mut self.agg, &self.lines, T_NOW), 0);
        self.held = self.per_pass;
    }

    fn run(&mut self, iters: u64) -> Duration {
        let cx = context(T_NOW);
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            if self.held + self.per_pass > self.cap {
                black_box(self.agg.drain_by_owner(1));
                self.warm();
            }
            let start = Instant::now();
            for l in &self.lines {
                black_box(self.agg.ingest(black_box(l), cx)).ok();
            }
            total += start.elapsed();
            self.held += self.per_pass;
        }
        total
    }
}

fn aggregate(c: &mut Criterion) {
    let mut g = c.benchmark_group("aggregate");
    // A pass takes under 2 ms: 50 samples fit the 3 s measurement time.
    g.sample_size(50);
    // One pass = every series once, in a fixed shuffled order, so lookups do not walk the
    // table in the order its series were created.
    const SERIES: u32 = 10_000;
    for (name, shape) in [("plain", Shape::Plain), ("tagged", Shape::Tagged)] {
        let datagrams = pack(shuffled(SERIES, 1), LOADGEN_PREFIX, shape, DATAGRAM_BYTES);
        let parsed = parse_metrics(&datagrams);
        assert_eq!(parsed.len(), SERIES as usize);
        let mut st = Steady::new(parsed, SERIES as usize, 2_000_000);
        g.throughput(Throughput::Elements(u64::from(SERIES)));
        g.bench_function(BenchmarkId::new("line", name), |b| {
            b.iter_custom(|iters| st.run(iters))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("aggregate");
    // A pass of 1M lines takes about 0.5 s: the same iteration count in every sample, as
    // criterion recommends for long iterations, and as few samples as it accepts.
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    const BIG: u32 = 1_000_000;
    let datagrams = pack(
        shuffled(BIG, 2),
        LOADGEN_PREFIX,
        Shape::Tagged,
        DATAGRAM_BYTES,
    );
    let parsed = parse_metrics(&datagrams);
    assert_eq!(parsed.len(), BIG as usize);
    let mut st = Steady::new(parsed, BIG as usize, 4_000_000);
    g.throughput(Throughput::Elements(u64::from(BIG)));
    g.bench_function("line_1m_series", |b| b.iter_custom(|iters| st.run(iters)));
    g.finish();
}

/// 100k series, 25k of each type; timers get 5 values and sets 5 members per interval.
const FLUSH_SERIES: u32 = 100_000;

/// An aggregator holding one interval of the flush fixture and the owner store it flushes
/// into; with `warm_store` the store already holds every series from the previous interval,
/// as it does in steady state.
fn flush_input(lines: &[MetricLine<'_>], warm_store: bool) -> (IntervalAggregator, OwnerStore) {
    let mut agg = aggregator(FLUSH_SERIES as usize, lines.len());
    let mut store = OwnerStore::new(&[90.0], EXPIRY_NS);
    if warm_store {
        assert_eq!(ingest_all(&mut agg, lines, T_PREV), 0);
        for p in agg.drain_by_owner(1) {
            store.merge(p, T_PREV);
        }
        let mut prev = SeriesBatch::new(FLUSH_TS - 10, INTERVAL_S);
        store.flush(&mut prev, T_PREV);
        assert_eq!(store.len(), FLUSH_SERIES as usize);
    }
    assert_eq!(ingest_all(&mut agg, lines, T_NOW), 0);
    (agg, store)
}

/// The timed part of a flush on a single-shard process: drain, merge, emit.
fn flush_once(
    (mut agg, mut store): (IntervalAggregator, OwnerStore),
) -> (IntervalAggregator, OwnerStore, SeriesBatch, FlushStats) {
    let mut batch = SeriesBatch::new(FLUSH_TS, INTERVAL_S);
    for p in agg.drain_by_owner(1) {
        store.merge(p, T_NOW);
    }
    let stats = store.flush(&mut batch, T_NOW);
    // Returned, so criterion drops the 100k-series state outside the timing.
    (agg, store, batch, stats)
}

/// Datadog v1 series as owned structs with derived `Serialize`: the serde_json baseline for
/// `write_batch`, producing the same bytes.
#[derive(Serialize)]
struct OwnedSeries {
    metric: String,
    points: [(u64, f64); 1],
    #[serde(rename = "type")]
    kind: &'static str,
    interval: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    host: String,
    tags: Vec<String>,
}

fn flush(c: &mut Criterion) {
    let datagrams = pack(
        flush_picks(FLUSH_SERIES, 5),
        LOADGEN_PREFIX,
        Shape::Tagged,
        DATAGRAM_BYTES,
    );
    let parsed = parse_metrics(&datagrams);
    assert_eq!(parsed.len(), 25_000 * 2 + 50_000 * 5);

    let mut g = c.benchmark_group("flush");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(u64::from(FLUSH_SERIES)));
    for (name, warm) in [("100k_series", true), ("100k_series_cold", false)] {
        let (_, _, batch, stats) = flush_once(flush_input(&parsed, warm));
        assert_eq!(stats.series_emitted, u64::from(FLUSH_SERIES));
        // counters 2 values, gauges and sets 1, timers 9 + 5 for the 90th percentile.
        assert_eq!(batch.len(), 25_000 * (2 + 1 + 1 + 14));
        g.bench_function(name, |b| {
            b.iter_batched(
                || flush_input(&parsed, warm),
                flush_once,
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();

    let (_, _, batch, _) = flush_once(flush_input(&parsed, true));
    let mut out = Vec::new();
    write_batch(&mut out, &batch);
    let owned: Vec<OwnedSeries> = batch
        .iter()
        .map(|s| OwnedSeries {
            metric: s.name(),
            points: [(batch.timestamp, json_safe(s.value()))],
            kind: s.kind().as_str(),
            interval: batch.interval,
            host: s.host().to_owned(),
            tags: s.tags().map(str::to_owned).collect(),
        })
        .collect();
    let write_owned = |out: &mut Vec<u8>| {
        for s in &owned {
            serde_json::to_writer(&mut *out, s).unwrap();
            out.push(b'\n');
        }
    };
    let mut check = Vec::new();
    write_owned(&mut check);
    assert!(check == out, "the baseline must write the same bytes");

    let mut g = c.benchmark_group("encode");
    g.sample_size(20).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("ndjson_100k", |b| {
        b.iter(|| {
            out.clear();
            write_batch(&mut out, black_box(&batch));
            out.len()
        })
    });
    g.bench_function("ndjson_100k_serde_owned", |b| {
        b.iter(|| {
            out.clear();
            write_owned(&mut out);
            out.len()
        })
    });
    g.finish();
}

// In a private module: `criterion_group!` declares a `pub fn`, which would need a doc comment
// at the crate root.
mod group {
    use super::{aggregate, flush, parse};
    criterion::criterion_group!(benches, parse, aggregate, flush);
}
criterion_main!(group::benches);
