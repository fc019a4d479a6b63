//! Fixtures for the HTTP intake benches (`benches/http.rs`): Datadog `POST /api/v1/series`
//! bodies, plain and compressed the way clients send them.
//!
//! - [`series_v1_payload`]: a generated body shaped like the ones datadogpy (`api.Metric.send`,
//!   ThreadStats) and the Agent send: `json.dumps` spacing (`", "`, `": "`), integer
//!   timestamps 10 s apart, a mix of `gauge`, `count` and `rate` (with `interval`), a host per
//!   series, `"device": null`, and 5 to 10 tags (one of them bare) of realistic length. It is a
//!   pure function of its arguments (values come from a SplitMix64 stream), so two runs bench
//!   the same bytes. [`PAYLOAD_SERIES`] x [`PAYLOAD_POINTS`] gives about 1 MiB, the size
//!   datadogpy and the Agent cap an uncompressed request at.
//! - [`capture_bodies`]: the real client captures kept in
//!   `dataplane/core/tests/fixtures/captures/` (decompressed v1 series bodies).
//! - [`gzip`], [`zlib`], [`zstd`]: the body as `Content-Encoding: gzip`, `deflate` (a zlib
//!   stream, what Datadog clients mean by it) and `zstd`, through libdeflate and ruzstd.

use crate::mix;
use libdeflater::{CompressionLvl, Compressor};
use std::path::PathBuf;

/// Series in the generated payload.
pub const PAYLOAD_SERIES: u32 = 2000;

/// Points per series in the generated payload.
pub const PAYLOAD_POINTS: u32 = 5;

/// First timestamp of the generated payload (seconds); points are 10 s apart.
pub const PAYLOAD_TS: u64 = 1_700_000_000;

/// Metric name stems, combined with a suffix into 96 distinct names.
const STEMS: [&str; 12] = [
    "checkout.http.request",
    "checkout.db.query",
    "payments.gateway.call",
    "inventory.cache",
    "search.index.update",
    "kafka.consumer.lag",
    "jvm.gc.pause",
    "system.net.bytes",
    "nginx.upstream.response",
    "redis.command",
    "auth.token.verify",
    "queue.worker.job",
];

/// Name suffixes; the Datadog type follows from the suffix.
const SUFFIXES: [(&str, &str); 8] = [
    ("duration", "gauge"),
    ("count", "count"),
    ("errors", "count"),
    ("rate", "rate"),
    ("bytes", "rate"),
    ("max", "gauge"),
    ("avg", "gauge"),
    ("95percentile", "gauge"),
];

/// Appends `v` the way Python's `json.dumps` writes a float (`12.0`, `0.30000000000000004`).
fn push_float(out: &mut Vec<u8>, v: f64) {
    // `Debug` is the shortest round-trip form and keeps the `.0` on whole numbers, as Python.
    out.extend_from_slice(format!("{v:?}").as_bytes());
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A v1 series body of `series` series with `points` points each (see the module docs).
pub fn series_v1_payload(series: u32, points: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(series as usize * 560 + 16);
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"series\": [");
    for i in 0..series {
        let r = mix(u64::from(i));
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let stem = STEMS[(r % STEMS.len() as u64) as usize];
        let (suffix, kind) = SUFFIXES[((r >> 8) % SUFFIXES.len() as u64) as usize];
        out.extend_from_slice(b"{\"metric\": \"");
        out.extend_from_slice(stem.as_bytes());
        out.push(b'.');
        out.extend_from_slice(suffix.as_bytes());
        out.extend_from_slice(b"\", \"points\": [");
        for p in 0..points {
            if p > 0 {
                out.extend_from_slice(b", ");
            }
            let draw = mix(r ^ u64::from(p).wrapping_mul(0x1_0000_0001));
            out.push(b'[');
            out.extend_from_slice(n.format(PAYLOAD_TS + 10 * u64::from(p)).as_bytes());
            out.extend_from_slice(b", ");
            let value = match kind {
                "count" => (draw % 500) as f64,
                // ThreadStats sends rates as count / interval: long binary fractions.
                "rate" => (draw % 5000) as f64 / 10.0 + 0.1 * ((draw >> 20) % 3) as f64,
                _ => ((draw % 1_000_000) as f64) / 1000.0,
            };
            push_float(&mut out, value);
            out.push(b']');
        }
        out.extend_from_slice(b"], \"type\": ");
        push_str(&mut out, kind);
        if kind == "rate" {
            out.extend_from_slice(b", \"interval\": 10");
        }
        out.extend_from_slice(b", \"host\": \"ip-10-12-");
        out.extend_from_slice(n.format((r >> 16) % 64).as_bytes());
        out.push(b'-');
        out.extend_from_slice(n.format((r >> 24) % 250).as_bytes());
        out.extend_from_slice(b".us-east-1.compute.internal\", \"device\": null, \"tags\": [");
        let svc = (r >> 32) % 40;
        let tags = 5 + (r >> 40) % 6;
        let all = [
            "\"env:prod\"".to_string(),
            format!("\"service:checkout-svc-{svc}\""),
            format!(
                "\"availability-zone:us-east-1{}\"",
                ["a", "b", "c"][(svc % 3) as usize]
            ),
            format!("\"version:2.{}.{}\"", svc % 7, (r >> 48) % 20),
            format!("\"kube_deployment:checkout-svc-{svc}\""),
            format!(
                "\"pod_name:checkout-svc-{svc}-7d9f8b6c5-{:05x}\"",
                (r >> 44) & 0xF_FFFF
            ),
            "\"kube_cluster_name:prod-us-east-1-main\"".to_string(),
            "\"canary\"".to_string(),
            format!(
                "\"resource_name:post_/api/v1/orders/{}/items\"",
                (r >> 52) % 12
            ),
            format!(
                "\"status_code:{}\"",
                [200, 201, 404, 500][((r >> 56) % 4) as usize]
            ),
        ];
        for (k, t) in all.iter().take(tags as usize).enumerate() {
            if k > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// One real client capture.
#[derive(Debug, Clone)]
pub struct Capture {
    /// File name without the extension (the client and call, as in the captures README).
    pub name: String,
    /// The decompressed request body.
    pub body: Vec<u8>,
}

/// Where the v1 series captures live in the repository.
pub fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dataplane/core/tests/fixtures/captures")
}

/// The decompressed v1 series bodies captured from real clients, sorted by name.
///
/// # Errors
/// The directory or a file cannot be read.
pub fn capture_bodies() -> std::io::Result<Vec<Capture>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(captures_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Capture {
                name,
                body: std::fs::read(&path)?,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The body of the capture `{name}.http` in [`captures_dir`] (the bytes after the headers'
/// empty line; `.http` captures hold the decompressed body).
///
/// # Errors
/// The file cannot be read.
pub fn http_capture_body(name: &str) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(captures_dir().join(format!("{name}.http")))?;
    let start = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(raw.len(), |i| i + 2);
    Ok(raw.get(start..).unwrap_or_default().to_vec())
}

type Compress =
    fn(&mut Compressor, &[u8], &mut [u8]) -> Result<usize, libdeflater::CompressionError>;

fn deflate_with(
    data: &[u8],
    level: i32,
    bound: fn(&mut Compressor, usize) -> usize,
    run: Compress,
) -> Option<Vec<u8>> {
    let mut c = Compressor::new(CompressionLvl::new(level).ok()?);
    let mut out = vec![0; bound(&mut c, data.len())];
    let n = run(&mut c, data, &mut out).ok()?;
    out.truncate(n);
    Some(out)
}

/// `data` gzipped by libdeflate at `level` (1-12); `None` for a level out of range.
pub fn gzip(data: &[u8], level: i32) -> Option<Vec<u8>> {
    deflate_with(
        data,
        level,
        Compressor::gzip_compress_bound,
        Compressor::gzip_compress,
    )
}

/// `data` as a zlib stream by libdeflate at `level` (1-12); `None` for a level out of range.
pub fn zlib(data: &[u8], level: i32) -> Option<Vec<u8>> {
    deflate_with(
        data,
        level,
        Compressor::zlib_compress_bound,
        Compressor::zlib_compress,
    )
}

/// `data` as one zstd frame, ruzstd's `Fastest` level (about zstd level 1, which
/// datadog-api-client's `zstd1` uses).
pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::intake::decompress::{BodyDecoder, Encoding};
    use switchyard_core::intake::series_v1::for_each_series;

    #[test]
    fn generated_payload_is_about_a_mebibyte_and_parses() {
        let mut body = series_v1_payload(PAYLOAD_SERIES, PAYLOAD_POINTS);
        assert_eq!(body, series_v1_payload(PAYLOAD_SERIES, PAYLOAD_POINTS));
        assert!((900_000..1_200_000).contains(&body.len()), "{}", body.len());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["series"].as_array().unwrap().len(),
            PAYLOAD_SERIES as usize
        );
        let (mut points, mut tags) = (0, Vec::new());
        let mut buffers = simd_json::Buffers::default();
        let n = for_each_series(&mut body, &mut buffers, |s| {
            points += s.points.len();
            tags.push(s.tags.len());
            assert!(s.points.iter().all(|[t, v]| t.is_some() && v.is_some()));
        })
        .unwrap();
        assert_eq!(n, PAYLOAD_SERIES as usize);
        assert_eq!(points, (PAYLOAD_SERIES * PAYLOAD_POINTS) as usize);
        assert!(tags.iter().all(|t| (5..=10).contains(t)));
        assert!(tags.contains(&5) && tags.contains(&10));
    }

    #[test]
    fn compressed_fixtures_decode_to_the_payload() {
        let plain = series_v1_payload(100, PAYLOAD_POINTS);
        let mut d = BodyDecoder::new(1 << 20);
        for (enc, mut body) in [
            (Encoding::Gzip, gzip(&plain, 6).unwrap()),
            (Encoding::Deflate, zlib(&plain, 1).unwrap()),
            (Encoding::Zstd, zstd(&plain)),
        ] {
            assert!(body.len() < plain.len() / 3, "{enc:?}");
            assert_eq!(d.decode(enc, &mut body).unwrap(), &plain[..], "{enc:?}");
        }
        assert!(gzip(&plain, 13).is_none());
    }

    #[test]
    fn http_capture_bodies_are_json() {
        for name in ["apiclient_v2-series_plain", "ddpy-api_v1-events"] {
            let body = http_capture_body(name).unwrap();
            assert!(body.starts_with(b"{"), "{name}");
            serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        }
    }

    #[test]
    fn captures_are_the_v1_series_bodies() {
        let caps = capture_bodies().unwrap();
        assert_eq!(caps.len(), 4);
        for c in caps {
            let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
            assert!(v["series"].is_array(), "{}", c.name);
        }
    }
}
