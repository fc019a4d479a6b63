//! Kinesis sink packing for a realistic statsd flush: records and bytes per `PutRecords`
//! call and per shard-second against the shard limits (1 MiB/s, 1000 records/s), with KPL
//! aggregation versus one record per series. Pure packing (no network): run with
//! `cargo bench -p switchyard-sinks --bench kinesis_pack`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::VecDeque;
use std::time::Instant;
use switchyard_sinks::sink::kinesis::pack::{plan_call, Entry, Packer};
use switchyard_sinks::sink::kinesis::shards::{ShardMap, ShardRange};
use switchyard_stream::{Compression, Encoding, StreamBatch, StreamEncoder};

#[path = "support/flush.rs"]
mod support;
use support::flush;

const SHARD_BYTES_PER_S: f64 = 1_048_576.0;
const SHARD_RECORDS_PER_S: f64 = 1000.0;

fn shards(n: u128) -> ShardMap {
    let step = u128::MAX / n;
    ShardMap::new(
        (0..n)
            .map(|i| ShardRange {
                id: format!("shardId-{i:012}"),
                start: i * step,
                end: if i + 1 == n {
                    u128::MAX
                } else {
                    (i + 1) * step - 1
                },
            })
            .collect(),
    )
}

fn report(label: &str, entries: &[Entry], nshards: usize, points: u64) {
    let mut take = Vec::new();
    let mut queues: Vec<VecDeque<Entry>> = vec![VecDeque::new(); nshards];
    for e in entries {
        queues[e.shard].push_back(e.clone());
    }
    let mut calls = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        let n = plan_call(&queues, |_, _| true, &mut take);
        let mut bytes = 0;
        for (q, &k) in queues.iter_mut().zip(&take) {
            bytes += q.drain(..k).map(|e| e.record.size()).sum::<usize>();
        }
        calls.push((n, bytes));
    }
    let recs = entries.len() as f64;
    let bytes: f64 = entries.iter().map(|e| e.record.size() as f64).sum();
    let per_shard_recs = recs / nshards as f64;
    let per_shard_bytes = bytes / nshards as f64;
    // Seconds a shard needs at its limits; whichever limit binds.
    let secs = (per_shard_bytes / SHARD_BYTES_PER_S).max(per_shard_recs / SHARD_RECORDS_PER_S);
    let byte_util = per_shard_bytes / secs / SHARD_BYTES_PER_S;
    let rec_util = per_shard_recs / secs / SHARD_RECORDS_PER_S;
    let max_call = calls.iter().map(|c| c.1).max().unwrap_or(0);
    println!(
        "{label}: {recs} records, {:.1} KiB/record avg, {} calls (avg {:.0} records, {:.2} MiB; max {:.2} MiB), \
         per shard-second at the limits: {:.0} records ({:.1}% of 1000), {:.3} MiB ({:.1}% of 1 MiB), {:.0} points/s/shard",
        bytes / recs / 1024.0,
        calls.len(),
        recs / calls.len() as f64,
        bytes / calls.len() as f64 / 1_048_576.0,
        max_call as f64 / 1_048_576.0,
        per_shard_recs / secs,
        rec_util * 100.0,
        per_shard_bytes / secs / 1_048_576.0,
        byte_util * 100.0,
        points as f64 / nshards as f64 / secs,
    );
}

fn main() {
    let n = 100_000;
    let nshards = 4;
    let flush = flush(n, 0);
    let mut sb = StreamBatch::new();
    sb.extend_from_series_batch(&flush);
    let map = shards(nshards as u128);
    for (comp, label) in [
        (Compression::Deflate, "deflate"),
        (Compression::None, "none"),
    ] {
        let mut p = Packer::new(StreamEncoder::default(), Encoding::Rkyv, comp, 1 << 20);
        let mut entries = Vec::new();
        let t = Instant::now();
        let reps = 5;
        for _ in 0..reps {
            entries.clear();
            p.pack(&sb, &map, &mut entries);
        }
        let el = t.elapsed() / reps;
        let pts: u64 = entries.iter().map(|e| e.points).sum();
        assert_eq!(pts, n as u64);
        println!(
            "pack {n} series, rkyv+{label}, {nshards} shards: {el:?} per flush ({:.2} M series/s)",
            n as f64 / el.as_secs_f64() / 1e6
        );
        report(
            &format!("  aggregated rkyv+{label}"),
            &entries,
            nshards,
            n as u64,
        );
    }
    // Without aggregation: one record per series (its own envelope, keyed by series).
    let mut enc = StreamEncoder::default();
    let mut one = StreamBatch::new();
    let mut out = Vec::new();
    let mut per_series = Vec::with_capacity(n);
    for s in sb.series() {
        one.clear();
        one.push_series(
            s.name(),
            s.kind(),
            s.interval(),
            s.host(),
            s.device(),
            s.tags(),
            s.points().iter().copied(),
        );
        out.clear();
        enc.encode(&one, Encoding::Rkyv, Compression::None, &mut out)
            .unwrap();
        per_series.push(Entry {
            shard: 0,
            record: switchyard_stream::kpl::KinesisRecord {
                partition_key: format!("{}{}", s.name(), s.host().unwrap_or("")),
                explicit_hash_key: None,
                data: out.clone(),
                user_records: 1,
            },
            points: 1,
            attempts: 0,
        });
    }
    report(
        "  unaggregated (1 record per series)",
        &per_series,
        nshards,
        n as u64,
    );
}
