//! criterion benches of the pure half of the HTTP intake, all reported as throughput of the
//! uncompressed JSON (MB/s):
//!
//! - `parse`: `intake::series_v1::for_each_series` (simd-json in place, reused buffers) against
//!   serde_json into derived structs borrowing `&str` from the body, on the real client
//!   captures and on the generated ~1 MiB payload;
//! - `parse_other`: the tape-based parsers (`series_v2`, `check_run`, `events`,
//!   `distribution_points`) on their captures, and `series_v2` on the generated payload in
//!   the v2 shape;
//! - `inflate`: gzip and zlib decompression, libdeflate against flate2 (miniz_oxide), and
//!   `BodyDecoder` as the intake calls it for gzip, deflate and zstd (ruzstd);
//! - `compress`: gzip at levels 1 and 6, libdeflate against flate2;
//! - `translate`: parse + `Translator` to a SignalFx `/v2/datapoint` body;
//! - `pipeline`: `intake_accept_gzip` is `accept_body` alone (gunzip, framing check, keep
//!   the gzip bytes, parse in place); `gzip_l{1,6}` is one gzip request as a shard and its
//!   sinks handle it: `accept_body`, the Datadog sink (gzip) forwarding the client's bytes
//!   untouched, the SignalFx sink decoding the stored gzip again, parse + translate, gzip of
//!   the SignalFx body at level 1 or 6; `gzip_l6_dd_deflate` is the same with a Datadog sink
//!   that sends `deflate`, so it decodes and compresses again at level 6.
//!
//! Fixtures come from `switchyard_benches::http` and are built outside the timed closures.
//! Parsing is in place, so each simd-json iteration gets a fresh copy of the body, made
//! outside the measured time (the intake parses the decoder's own buffer, with no copy).
//! Run pinned to one CPU:
//! `taskset -c 1 cargo bench -p switchyard-benches --bench http -- --warm-up-time 1 --measurement-time 3`.

// Bench code, not dataplane code: a fixture that does not hold its shape should stop the run
// loudly rather than bench something else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use libdeflater::{CompressionLvl, Compressor, Decompressor};
use serde::Deserialize;
use std::io::{Read, Write};
use switchyard_benches::http::{
    capture_bodies, gzip, series_v1_payload, zlib, zstd, PAYLOAD_POINTS, PAYLOAD_SERIES,
};
use switchyard_core::intake::decompress::{BodyDecoder, Encoding};
use switchyard_core::intake::series_v1::for_each_series;
use switchyard_core::translate::{TranslateConfig, Translator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The level clients compress with (Python's `zlib.compress` default) and the SignalFx sink's
/// default `compression_level`.
const CLIENT_LEVEL: i32 = 6;

/// The intake's decompressed-size cap in these benches: far above the payload.
const BODY_LIMIT: usize = 64 << 20;

/// The generated payload's bench name.
const GENERATED: &str = "generated_2000x5";

/// The serde_json baseline: derived structs borrowing strings from the body (none of the
/// fixtures has an escaped string), every field the intake reads.
#[derive(Deserialize)]
struct SerdePayload<'a> {
    #[serde(borrow)]
    series: Vec<SerdeSeries<'a>>,
}

#[derive(Deserialize)]
struct SerdeSeries<'a> {
    metric: &'a str,
    points: Vec<[Option<f64>; 2]>,
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    interval: Option<f64>,
    #[serde(borrow)]
    host: Option<&'a str>,
    #[serde(borrow)]
    device: Option<&'a str>,
    #[serde(borrow, default)]
    tags: Option<Vec<&'a str>>,
}

/// The payloads every parse bench runs on: the captures, then the generated one.
fn payloads() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = capture_bodies()
        .expect("captures in dataplane/core/tests/fixtures/captures")
        .into_iter()
        .map(|c| (c.name, c.body))
        .collect();
    out.push((
        GENERATED.to_string(),
        series_v1_payload(PAYLOAD_SERIES, PAYLOAD_POINTS),
    ));
    out
}

/// Points seen by `for_each_series` (also checks the fixture parses).
fn simd_points(body: &[u8], buffers: &mut simd_json::Buffers) -> usize {
    let mut body = body.to_vec();
    let mut points = 0;
    for_each_series(&mut body, buffers, |s| points += s.points.len()).unwrap();
    points
}

fn serde_points(body: &[u8]) -> usize {
    let p: SerdePayload<'_> = serde_json::from_slice(body).unwrap();
    let mut points = 0;
    for s in &p.series {
        black_box((s.metric, s.kind, s.interval, s.host, s.device, &s.tags));
        points += s.points.len();
    }
    points
}

fn large_input_group(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(20);
    g.sampling_mode(SamplingMode::Flat);
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_parse");
    let mut buffers = simd_json::Buffers::default();
    for (name, body) in payloads() {
        assert_eq!(
            simd_points(&body, &mut buffers),
            serde_points(&body),
            "{name}"
        );
        let batch = if body.len() > 64 * 1024 {
            large_input_group(&mut g);
            BatchSize::LargeInput
        } else {
            BatchSize::SmallInput
        };
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("simd_json/{name}"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |body| {
                    let mut points = 0;
                    for_each_series(body, &mut buffers, |s| {
                        black_box(s);
                        points += s.points.len();
                    })
                    .unwrap();
                    points
                },
                batch,
            )
        });
        g.bench_function(format!("serde_json/{name}"), |b| {
            b.iter(|| serde_points(black_box(&body)))
        });
    }
    g.finish();
}

/// Reads all of `r` into `out` (reused; the fixtures' size is known, so no cap is needed).
fn read_all(mut r: impl Read, out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut chunk = [0u8; 32 * 1024];
    loop {
        let n = r.read(&mut chunk).unwrap();
        if n == 0 {
            return out.len();
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn inflate(c: &mut Criterion) {
    let plain = series_v1_payload(PAYLOAD_SERIES, PAYLOAD_POINTS);
    let gz = gzip(&plain, CLIENT_LEVEL).unwrap();
    let zl = zlib(&plain, CLIENT_LEVEL).unwrap();
    let zst = zstd(&plain);
    eprintln!(
        "payload {} B; gzip-6 {} B, zlib-6 {} B, zstd (ruzstd Fastest) {} B",
        plain.len(),
        gz.len(),
        zl.len(),
        zst.len()
    );

    let mut g = c.benchmark_group("http_inflate");
    large_input_group(&mut g);
    g.throughput(Throughput::Bytes(plain.len() as u64));

    let mut d = Decompressor::new();
    let mut out = vec![0u8; plain.len()];
    type Run =
        fn(&mut Decompressor, &[u8], &mut [u8]) -> Result<usize, libdeflater::DecompressionError>;
    for (name, body, run) in [
        ("gzip/libdeflate", &gz, Decompressor::gzip_decompress as Run),
        ("zlib/libdeflate", &zl, Decompressor::zlib_decompress),
    ] {
        assert_eq!(run(&mut d, body, &mut out).unwrap(), plain.len());
        g.bench_function(name, |b| {
            b.iter(|| run(&mut d, black_box(body), &mut out).unwrap())
        });
    }

    let mut buf = Vec::with_capacity(plain.len());
    read_all(flate2::bufread::GzDecoder::new(&gz[..]), &mut buf);
    assert_eq!(buf, plain);
    g.bench_function("gzip/flate2", |b| {
        b.iter(|| {
            read_all(
                flate2::bufread::GzDecoder::new(black_box(&gz[..])),
                &mut buf,
            )
        })
    });
    read_all(flate2::bufread::ZlibDecoder::new(&zl[..]), &mut buf);
    assert_eq!(buf, plain);
    g.bench_function("zlib/flate2", |b| {
        b.iter(|| {
            read_all(
                flate2::bufread::ZlibDecoder::new(black_box(&zl[..])),
                &mut buf,
            )
        })
    });

    let mut dec = BodyDecoder::new(BODY_LIMIT);
    for (name, enc, body) in [
        ("intake/gzip", Encoding::Gzip, &gz),
        ("intake/deflate", Encoding::Deflate, &zl),
        ("intake/zstd", Encoding::Zstd, &zst),
    ] {
        // Decoding never writes to a compressed body; one copy serves every iteration.
        let mut body = body.clone();
        assert_eq!(dec.decode(enc, &mut body).unwrap(), &plain[..], "{name}");
        g.bench_function(name, |b| {
            b.iter(|| dec.decode(enc, black_box(&mut body)).unwrap().len())
        });
    }
    g.finish();
}

fn compress(c: &mut Criterion) {
    let plain = series_v1_payload(PAYLOAD_SERIES, PAYLOAD_POINTS);
    let mut g = c.benchmark_group("http_compress");
    large_input_group(&mut g);
    g.throughput(Throughput::Bytes(plain.len() as u64));
    for level in [1, CLIENT_LEVEL] {
        let mut comp = Compressor::new(CompressionLvl::new(level).unwrap());
        let mut out = vec![0u8; comp.gzip_compress_bound(plain.len())];
        let n = comp.gzip_compress(&plain, &mut out).unwrap();
        let mut fl = Vec::with_capacity(plain.len());
        let mut enc = flate2::write::GzEncoder::new(
            std::mem::take(&mut fl),
            flate2::Compression::new(level as u32),
        );
        enc.write_all(&plain).unwrap();
        fl = enc.finish().unwrap();
        eprintln!(
            "gzip level {level}: libdeflate {n} B, flate2 {} B (of {} B)",
            fl.len(),
            plain.len()
        );
        g.bench_function(format!("gzip_l{level}/libdeflate"), |b| {
            b.iter(|| comp.gzip_compress(black_box(&plain), &mut out).unwrap())
        });
        g.bench_function(format!("gzip_l{level}/flate2"), |b| {
            b.iter(|| {
                fl.clear();
                let mut enc = flate2::write::GzEncoder::new(
                    std::mem::take(&mut fl),
                    flate2::Compression::new(level as u32),
                );
                enc.write_all(black_box(&plain)).unwrap();
                fl = enc.finish().unwrap();
                fl.len()
            })
        });
    }
    g.finish();
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_translate");
    let mut buffers = simd_json::Buffers::default();
    let mut t = Translator::new(TranslateConfig::default());
    let mut out = Vec::new();
    for (name, body) in payloads() {
        let batch = if body.len() > 64 * 1024 {
            large_input_group(&mut g);
            BatchSize::LargeInput
        } else {
            BatchSize::SmallInput
        };
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("parse_translate/{name}"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |body| {
                    for_each_series(body, &mut buffers, |s| t.push(s)).unwrap();
                    out.clear();
                    t.finish(&mut out);
                    out.len()
                },
                batch,
            )
        });
        let stats = t.take_stats();
        // A bench left out by the command line's filter ran nothing.
        assert!(
            stats.points_in == 0 || stats.points_out == stats.points_in,
            "{name}: {stats:?}"
        );
    }
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    use switchyard_core::egress::{BodyFormat, Endpoint};
    use switchyard_core::intake::accept::{accept_body, BodyLimits, IntakeScratch};
    let plain = series_v1_payload(PAYLOAD_SERIES, PAYLOAD_POINTS);
    let mut gz = gzip(&plain, CLIENT_LEVEL).unwrap();
    let mut g = c.benchmark_group("http_pipeline");
    large_input_group(&mut g);
    g.throughput(Throughput::Bytes(plain.len() as u64));
    let limits = BodyLimits::for_endpoint(Endpoint::SeriesV1, BODY_LIMIT, BODY_LIMIT);
    let mut intake = IntakeScratch::default();
    // The sink side: a decoder and parse scratch (the SignalFx sink's), the translator.
    let mut sink_dec = BodyDecoder::default();
    let mut scratch = Vec::with_capacity(plain.len());
    let mut buffers = simd_json::Buffers::default();
    let mut t = Translator::new(TranslateConfig::default());
    let mut sfx_json = Vec::with_capacity(4 << 20);

    // The intake alone: decode, check the framing, keep the gzip bytes, parse in place.
    let p = accept_body(
        &mut intake,
        Endpoint::SeriesV1,
        Encoding::Gzip,
        &mut gz,
        limits,
        None,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(
        (p.body.format, p.decoded_bytes),
        (BodyFormat::Gzip, plain.len() as u64)
    );
    g.bench_function("intake_accept_gzip", |b| {
        b.iter(|| {
            accept_body(
                &mut intake,
                Endpoint::SeriesV1,
                Encoding::Gzip,
                black_box(&mut gz),
                limits,
                None,
                |n, _| {
                    black_box(n);
                },
            )
            .unwrap()
            .points
        })
    });

    // Whole request: the intake, then the Datadog sink (gzip: the client's bytes pass
    // through untouched; deflate: decode and compress again at `level`), then the SignalFx
    // sink (decode the stored gzip into its scratch, parse + translate, gzip at `level`).
    for (dd, level) in [
        ("passthrough", 1),
        ("passthrough", CLIENT_LEVEL),
        ("dd_deflate", CLIENT_LEVEL),
    ] {
        let mut comp = Compressor::new(CompressionLvl::new(level).unwrap());
        let mut dd_out = Vec::new();
        let mut dd_json = Vec::with_capacity(plain.len());
        let mut sfx_gz = Vec::new();
        let mut run = |gz: &mut [u8]| {
            let p = accept_body(
                &mut intake,
                Endpoint::SeriesV1,
                Encoding::Gzip,
                gz,
                limits,
                None,
                |n, _| {
                    black_box(n);
                },
            )
            .unwrap();
            let dd_len = if dd == "passthrough" {
                black_box(&p.body.bytes).len()
            } else {
                p.json_into(&mut sink_dec, &mut dd_json).unwrap();
                let bound = comp.zlib_compress_bound(dd_json.len());
                if dd_out.len() < bound {
                    dd_out.resize(bound, 0);
                }
                comp.zlib_compress(&dd_json, &mut dd_out).unwrap()
            };
            p.json_into(&mut sink_dec, &mut scratch).unwrap();
            for_each_series(&mut scratch, &mut buffers, |s| t.push(s)).unwrap();
            sfx_json.clear();
            t.finish(&mut sfx_json);
            let bound = comp.gzip_compress_bound(sfx_json.len());
            if sfx_gz.len() < bound {
                sfx_gz.resize(bound, 0);
            }
            let sfx = comp.gzip_compress(&sfx_json, &mut sfx_gz).unwrap();
            (dd_len, sfx, sfx_json.len())
        };
        let (dd_len, sfx, sfx_plain) = run(&mut gz);
        eprintln!(
                "pipeline {dd} level {level}: {} B gzip in, {} B JSON; Datadog {dd_len} B; SignalFx JSON {sfx_plain} B, gzip {sfx} B",
                gz.len(),
                plain.len()
            );
        let name = if dd == "passthrough" {
            format!("gzip_l{level}")
        } else {
            format!("gzip_l{level}_{dd}")
        };
        g.bench_function(name, |b| b.iter(|| run(black_box(&mut gz))));
    }
    g.finish();
}

/// The generated v1 payload in the v2 shape datadog-api-client sends: integer `type`, points
/// as `{"timestamp","value"}`, the host as a `resources` entry (compact JSON).
fn v2_from_v1(v1: &[u8]) -> Vec<u8> {
    use serde_json::{json, Value};
    let v: Value = serde_json::from_slice(v1).unwrap();
    let series: Vec<Value> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ty = match s["type"].as_str() {
                Some("count") => 1,
                Some("rate") => 2,
                _ => 3,
            };
            let points: Vec<Value> = s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| json!({"timestamp": p[0], "value": p[1]}))
                .collect();
            let mut o = json!({
                "metric": s["metric"],
                "type": ty,
                "points": points,
                "resources": [{"name": s["host"], "type": "host"}],
                "tags": s["tags"],
            });
            if let Some(i) = s.get("interval") {
                o["interval"] = i.clone();
            }
            o
        })
        .collect();
    serde_json::to_vec(&json!({ "series": series })).unwrap()
}

/// The parsers added beside `series_v1` (tape-based, no DOM), on their captures and on the
/// generated payload in the v2 shape.
fn parse_other(c: &mut Criterion) {
    use switchyard_benches::http::http_capture_body;
    use switchyard_core::intake::{check_run, distribution_points, events, series_v2};
    type Parse = fn(&mut [u8], &mut simd_json::Buffers) -> usize;
    let v2: Parse = |b, bufs| {
        series_v2::for_each_series(b, bufs, |s| {
            black_box(s);
        })
        .unwrap()
    };
    let checks: Parse = |b, bufs| {
        check_run::for_each_check(b, bufs, |s| {
            black_box(s);
        })
        .unwrap()
    };
    let event: Parse = |b, bufs| {
        events::with_event(b, bufs, |e| {
            black_box(e);
        })
        .unwrap();
        1
    };
    let dist: Parse = |b, bufs| {
        distribution_points::for_each_series(b, bufs, |s| {
            black_box(s);
        })
        .unwrap()
        .series
    };
    let generated = v2_from_v1(&series_v1_payload(PAYLOAD_SERIES, PAYLOAD_POINTS));
    let mut cases: Vec<(String, Vec<u8>, Parse)> = [
        ("series_v2", "apiclient_v2-series_plain", v2),
        ("check_run", "ddpy-api_v1-check_run", checks),
        ("check_run", "apiclient_v1-check_run", checks),
        ("events", "ddpy-api_v1-events", event),
        (
            "distribution_points",
            "ddpy-api_v1-distribution_points",
            dist,
        ),
    ]
    .into_iter()
    .map(|(parser, capture, f)| {
        let body = http_capture_body(capture).expect("capture in the core fixtures");
        (format!("{parser}/{capture}"), body, f)
    })
    .collect();
    cases.push((format!("series_v2/{GENERATED}_v2"), generated, v2));

    let mut g = c.benchmark_group("http_parse_other");
    let mut buffers = simd_json::Buffers::default();
    for (name, body, parse) in cases {
        assert!(parse(&mut body.clone(), &mut buffers) > 0, "{name}");
        let batch = if body.len() > 64 * 1024 {
            eprintln!("{name}: {} B", body.len());
            large_input_group(&mut g);
            BatchSize::LargeInput
        } else {
            BatchSize::SmallInput
        };
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched_ref(|| body.clone(), |body| parse(body, &mut buffers), batch)
        });
    }
    g.finish();
}

// In a private module: `criterion_group!` declares a `pub fn`, which would need a doc comment
// at the crate root.
mod group {
    use super::{compress, inflate, parse, parse_other, pipeline, translate};
    criterion::criterion_group!(
        benches,
        parse,
        parse_other,
        inflate,
        compress,
        translate,
        pipeline
    );
}
criterion_main!(group::benches);
