//! criterion benches of the stream formats (`switchyard-stream`) on a 5000-series batch
//! flushed from statsd (names of 3 segments, 4 tags, 50 hosts, one point each):
//!
//! - `stream/build`: `StreamBatch::extend_from_series_batch` into a reused batch;
//! - `stream/encode_<encoding>_<compression>`: `StreamEncoder::encode` into a reused Vec;
//! - `stream/decode_access`: `StreamDecoder::decode` (envelope, bytecheck, span check) and a
//!   walk over every series, tag and point in place; `stream/decode_access_gzip` with the
//!   gzip inflate first;
//! - `kpl/aggregate`: 5000 envelope-sized user records (~1 KiB) through `kpl::Aggregator`
//!   into 1 MiB records, and `kpl/deaggregate` back.
//!
//! Throughput is per series (or per user record); the encoded bytes per series are printed
//! to stderr once. Run pinned to one CPU:
//! `taskset -c 1 cargo bench -p switchyard-benches --bench stream -- --warm-up-time 1 --measurement-time 3`.

// Bench code, not dataplane code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_main, Criterion, Throughput};
use switchyard_core::model::{SeriesBatch, SeriesType};
use switchyard_stream::codec::{Decoded, StreamDecoder, StreamEncoder};
use switchyard_stream::envelope::{Compression, Encoding};
use switchyard_stream::kpl::{deaggregate, Aggregator};
use switchyard_stream::StreamBatch;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERIES: usize = 5000;

fn flushed() -> SeriesBatch {
    let mut b = SeriesBatch::new(1_790_000_400, 10.0);
    let kinds = [SeriesType::Gauge, SeriesType::Count, SeriesType::Rate];
    for i in 0..SERIES {
        let name = format!("svc{}.http.requests_{}", i % 37, i % 101);
        let tags = [
            format!("env:{}", ["prod", "staging"][i % 2]),
            format!("region:eu-west-{}", i % 3),
            format!("endpoint:/api/v{}/items", i % 7),
            format!("status:{}", 200 + (i % 5) * 100),
        ];
        let id = b.identity(
            &name,
            tags.iter().map(String::as_str),
            &format!("web-{:03}", i % 50),
        );
        b.push(id, "", kinds[i % 3], i as f64 * 0.25);
    }
    b
}

fn walk(d: &Decoded<'_>) -> usize {
    match d {
        Decoded::Rkyv(a) => a
            .series()
            .map(|s| {
                s.name().len()
                    + s.host().map_or(0, str::len)
                    + s.tags().map(str::len).sum::<usize>()
                    + s.points().map(|(t, v)| (t + v) as usize).sum::<usize>()
            })
            .sum(),
        Decoded::Json(j) => j.len(),
    }
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    let sb = flushed();
    let mut batch = StreamBatch::new();
    batch.extend_from_series_batch(&sb);
    let mut enc = StreamEncoder::default();

    let cases = [
        (Encoding::Rkyv, Compression::None, "rkyv_none"),
        (Encoding::Rkyv, Compression::Deflate, "rkyv_deflate"),
        (Encoding::Rkyv, Compression::Gzip, "rkyv_gzip"),
        (Encoding::Json, Compression::None, "json_none"),
        (Encoding::Json, Compression::Gzip, "json_gzip"),
    ];
    for (e, cmp, name) in cases {
        let mut out = Vec::new();
        enc.encode(&batch, e, cmp, &mut out).unwrap();
        eprintln!(
            "stream/{name}: {} bytes for {SERIES} series = {:.1} bytes/series",
            out.len(),
            out.len() as f64 / SERIES as f64
        );
    }

    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("build", |b| {
        let mut batch = StreamBatch::new();
        b.iter(|| {
            batch.clear();
            batch.extend_from_series_batch(black_box(&sb));
            black_box(batch.len())
        })
    });
    for (e, cmp, name) in cases {
        let mut out = Vec::new();
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                enc.encode(black_box(&batch), e, cmp, &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    for (cmp, name) in [
        (Compression::None, "decode_access"),
        (Compression::Gzip, "decode_access_gzip"),
    ] {
        let mut out = Vec::new();
        enc.encode(&batch, Encoding::Rkyv, cmp, &mut out).unwrap();
        // A record as a consumer holds it: in a 16-byte-aligned buffer.
        let mut rec = rkyv::util::AlignedVec::<16>::new();
        rec.extend_from_slice(&out);
        let mut dec = StreamDecoder::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                let d = dec.decode(black_box(&rec)).unwrap();
                black_box(walk(&d))
            })
        });
    }
    g.finish();

    // KPL: one compressed envelope per 5 series-ish, ~1 KiB user records keyed by series.
    let mut env = Vec::new();
    enc.encode(&batch, Encoding::Rkyv, Compression::Gzip, &mut env)
        .unwrap();
    let user: Vec<(String, Vec<u8>)> = (0..SERIES)
        .map(|i| {
            let off = (i * 131) % (env.len() - 1024);
            (format!("series-{i}"), env[off..off + 1024].to_vec())
        })
        .collect();
    let bytes: usize = user.iter().map(|(k, d)| k.len() + d.len()).sum();
    let mut g = c.benchmark_group("kpl");
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut agg = Aggregator::default();
    let mut records = Vec::new();
    g.bench_function("aggregate", |b| {
        b.iter(|| {
            records.clear();
            for (k, d) in &user {
                records.extend(agg.add(k, None, d).unwrap());
            }
            records.extend(agg.finish());
            black_box(records.len())
        })
    });
    eprintln!(
        "kpl/aggregate: {SERIES} user records of 1 KiB -> {} Kinesis records, mean {:.0} bytes, max {}",
        records.len(),
        records.iter().map(|r| r.size()).sum::<usize>() as f64 / records.len() as f64,
        records.iter().map(|r| r.size()).max().unwrap_or(0)
    );
    g.bench_function("deaggregate", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &records {
                n += deaggregate(black_box(&r.data))
                    .map(|u| u.data.len())
                    .sum::<usize>();
            }
            black_box(n)
        })
    });
    g.finish();
    c.final_summary();
}

criterion_main!(benches);
