//! criterion benches of the per-sink distinct series counter (`core::distinct`): one
//! insert of a precomputed series hash into a counter already past the exact range (the
//! steady state: a fixed-size HyperLogLog slice), and the control plane's estimate over a
//! full hour (six slices merged).
//!
//! Run pinned to one CPU:
//! `taskset -c 1 cargo bench -p switchyard-benches --bench distinct -- --warm-up-time 1 --measurement-time 3`.

// Bench code, not dataplane code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_main, Criterion, Throughput};
use std::time::Duration;
use switchyard_core::distinct::{Distinct, SLICE, SLICES};
use switchyard_core::route::series_hash;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hashes inserted per benchmark pass (a power of two).
const SERIES: usize = 4096;

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    let hashes: Vec<u64> = (0..SERIES)
        .map(|i| {
            series_hash(
                &format!("svc{}.http.requests", i % 97),
                ["env:prod"],
                &format!("h{i}"),
            )
        })
        .collect();
    let now = Duration::from_secs(1_790_000_400);
    let mut g = c.benchmark_group("distinct");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("insert", |b| {
        let mut d = Distinct::new();
        for &h in &hashes {
            d.insert(h, now);
        }
        b.iter(|| {
            for &h in &hashes {
                d.insert(black_box(h), now);
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("estimate_6_slices", |b| {
        let mut d = Distinct::new();
        for (i, &h) in hashes.iter().enumerate() {
            d.insert(h, now + SLICE * (i % SLICES) as u32);
        }
        let at = now + SLICE * (SLICES as u32 - 1);
        b.iter(|| black_box(d.estimate(at)))
    });
    g.finish();
    c.final_summary();
}

criterion_main!(benches);
