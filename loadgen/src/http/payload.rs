//! Deterministic pool of Datadog series payloads, built and compressed before a run starts.
//!
//! Series `i` (of `--series`) has name `NAMES[i % NAMES.len()]`, host `web-{r % 1000:04}` and
//! tags `env:prod`, `service:<name's service>`, `pod:p{r / 1000}` and `version:1.4.2`, where
//! `r = i / NAMES.len()`: so `(name, host, tags)` is distinct for every `i`. Its type cycles
//! count, gauge, rate (rate and count carry `interval: 10`). Payload `k` of the pool holds
//! `points_per_payload` series entries of one point each, for series
//! `(k * points_per_payload + j) % series`, so a pool of `ceil(series / points_per_payload)`
//! payloads covers every series. Values are multiples of 0.25 below 1000, drawn from a
//! SplitMix64 stream of the seed, so every sum is exact in `f64` whatever the order of
//! addition. All points carry the same timestamp: the second at which the pool was built.

use serde::Serialize;

/// Metric names (with the service they belong to), in the style of real applications.
const NAMES: [(&str, &str); 24] = [
    ("http.server.requests", "checkout"),
    ("http.server.duration", "checkout"),
    ("http.client.errors", "checkout"),
    ("db.query.count", "orders"),
    ("db.query.latency", "orders"),
    ("db.pool.connections", "orders"),
    ("cache.hits", "catalog"),
    ("cache.misses", "catalog"),
    ("cache.evictions", "catalog"),
    ("queue.depth", "worker"),
    ("queue.jobs.processed", "worker"),
    ("queue.jobs.failed", "worker"),
    ("system.cpu.user", "node"),
    ("system.cpu.system", "node"),
    ("system.mem.used", "node"),
    ("system.load.1", "node"),
    ("system.net.bytes_rcvd", "node"),
    ("system.net.bytes_sent", "node"),
    ("system.disk.used", "node"),
    ("jvm.gc.pause", "search"),
    ("jvm.heap.used", "search"),
    ("kafka.consumer.lag", "ingest"),
    ("kafka.messages.in", "ingest"),
    ("payments.authorized", "payments"),
];
/// Distinct hosts before the `pod` tag changes.
const HOSTS: u64 = 1000;
/// Interval of count and rate series, seconds.
const INTERVAL: u64 = 10;
/// SplitMix64 increment.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Datadog series API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST /api/v1/series`.
    V1,
    /// `POST /api/v2/series`.
    V2,
}

impl Endpoint {
    /// Request path below the target's base path.
    pub fn path(self) -> &'static str {
        match self {
            Self::V1 => "/api/v1/series",
            Self::V2 => "/api/v2/series",
        }
    }
}

/// Body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (libdeflate level 6).
    Gzip,
    /// zlib stream, sent as `Content-Encoding: deflate` (libdeflate level 6).
    Deflate,
    /// Zstandard (ruzstd, fastest level).
    Zstd,
    /// No compression.
    Identity,
}

impl Compression {
    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        self.header().unwrap_or("identity")
    }

    /// The `Content-Encoding` header value, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Gzip => Some("gzip"),
            Self::Deflate => Some("deflate"),
            Self::Zstd => Some("zstd"),
            Self::Identity => None,
        }
    }
}

/// What the pool is built from.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// Distinct series.
    pub series: u64,
    /// Points (series entries) per payload.
    pub points_per_payload: u64,
    /// Payloads in the pool.
    pub payloads: u64,
    /// API version.
    pub endpoint: Endpoint,
    /// Compression.
    pub compression: Compression,
    /// Seed of the values.
    pub seed: u64,
    /// Timestamp of every point, seconds.
    pub timestamp: u64,
}

/// One ready-to-send payload.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The body as sent (compressed).
    pub body: bytes::Bytes,
    /// Size of the JSON before compression.
    pub raw_len: u64,
    /// Points in it.
    pub points: u64,
    /// Sum of its values.
    pub value_sum: f64,
    /// Sum of the values of its `count` series.
    pub count_value_sum: f64,
}

/// Why the pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// JSON encoding failed.
    #[error("encoding a payload: {0}")]
    Json(#[from] serde_json::Error),
    /// Compression failed.
    #[error("compressing a payload: {0}")]
    Compress(String),
}

/// A v1 series entry.
#[derive(Serialize)]
struct V1Series<'a> {
    metric: &'a str,
    points: [[f64; 2]; 1],
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
    host: &'a str,
    tags: &'a [String; 4],
}

/// A v2 point.
#[derive(Serialize)]
struct V2Point {
    timestamp: u64,
    value: f64,
}

/// A v2 resource.
#[derive(Serialize)]
struct V2Resource<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
}

/// A v2 series entry.
#[derive(Serialize)]
struct V2Series<'a> {
    metric: &'a str,
    #[serde(rename = "type")]
    kind: u8,
    points: [V2Point; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
    resources: [V2Resource<'a>; 1],
    tags: &'a [String; 4],
}

/// A payload's top level.
#[derive(Serialize)]
struct Body<S> {
    series: Vec<S>,
}

/// Series type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Count,
    Gauge,
    Rate,
}

/// Identity of series `i`.
struct SeriesId {
    name: &'static str,
    host: String,
    tags: [String; 4],
    kind: Type,
}

fn series_id(i: u64) -> SeriesId {
    let names = NAMES.len() as u64;
    let (name, service) = NAMES[(i % names) as usize];
    let r = i / names;
    SeriesId {
        name,
        host: format!("web-{:04}", r % HOSTS),
        tags: [
            "env:prod".to_owned(),
            format!("service:{service}"),
            format!("pod:p{}", r / HOSTS),
            "version:1.4.2".to_owned(),
        ],
        kind: match i % 3 {
            0 => Type::Count,
            1 => Type::Gauge,
            _ => Type::Rate,
        },
    }
}

/// SplitMix64 output for counter `n`.
fn splitmix(n: u64) -> u64 {
    let mut z = n.wrapping_mul(GOLDEN).wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value of point `j` of payload `k`: a multiple of 0.25 in `0..1000`.
fn value(seed: u64, k: u64, j: u64) -> f64 {
    let draw = splitmix(seed ^ splitmix(k.wrapping_mul(1 << 20).wrapping_add(j)));
    (draw % 4000) as f64 / 4.0
}

/// Builds the pool.
///
/// # Errors
///
/// [`PoolError`] when encoding or compressing fails.
pub fn build(spec: &PoolSpec) -> Result<Vec<Payload>, PoolError> {
    let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let ts = spec.timestamp;
    let mut pool = Vec::with_capacity(spec.payloads as usize);
    for k in 0..spec.payloads {
        let ids: Vec<(SeriesId, f64)> = (0..spec.points_per_payload)
            .map(|j| {
                let i = (k * spec.points_per_payload + j) % spec.series;
                (series_id(i), value(spec.seed, k, j))
            })
            .collect();
        let value_sum = ids.iter().map(|(_, v)| v).sum();
        let count_value_sum = ids
            .iter()
            .filter(|(id, _)| id.kind == Type::Count)
            .map(|(_, v)| v)
            .sum();
        let raw = match spec.endpoint {
            Endpoint::V1 => serde_json::to_vec(&Body {
                series: ids
                    .iter()
                    .map(|(id, v)| V1Series {
                        metric: id.name,
                        points: [[ts as f64, *v]],
                        kind: match id.kind {
                            Type::Count => "count",
                            Type::Gauge => "gauge",
                            Type::Rate => "rate",
                        },
                        interval: (id.kind != Type::Gauge).then_some(INTERVAL),
                        host: &id.host,
                        tags: &id.tags,
                    })
                    .collect(),
            })?,
            Endpoint::V2 => serde_json::to_vec(&Body {
                series: ids
                    .iter()
                    .map(|(id, v)| V2Series {
                        metric: id.name,
                        kind: match id.kind {
                            Type::Count => 1,
                            Type::Rate => 2,
                            Type::Gauge => 3,
                        },
                        points: [V2Point {
                            timestamp: ts,
                            value: *v,
                        }],
                        interval: (id.kind != Type::Gauge).then_some(INTERVAL),
                        resources: [V2Resource {
                            kind: "host",
                            name: &id.host,
                        }],
                        tags: &id.tags,
                    })
                    .collect(),
            })?,
        };
        let body = compress(&mut compressor, spec.compression, &raw)?;
        pool.push(Payload {
            body: bytes::Bytes::from(body),
            raw_len: raw.len() as u64,
            points: spec.points_per_payload,
            value_sum,
            count_value_sum,
        });
    }
    Ok(pool)
}

/// Compresses `raw` as `compression` says.
fn compress(
    compressor: &mut libdeflater::Compressor,
    compression: Compression,
    raw: &[u8],
) -> Result<Vec<u8>, PoolError> {
    let err = |e: libdeflater::CompressionError| PoolError::Compress(e.to_string());
    Ok(match compression {
        Compression::Identity => raw.to_vec(),
        Compression::Gzip => {
            let mut out = vec![0; compressor.gzip_compress_bound(raw.len())];
            let n = compressor.gzip_compress(raw, &mut out).map_err(err)?;
            out.truncate(n);
            out
        }
        Compression::Deflate => {
            let mut out = vec![0; compressor.zlib_compress_bound(raw.len())];
            let n = compressor.zlib_compress(raw, &mut out).map_err(err)?;
            out.truncate(n);
            out
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(raw, ruzstd::encoding::CompressionLevel::Fastest)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::datadog;
    use crate::vendor::decode::{decode, Encoding};
    use std::collections::HashSet;

    fn spec(endpoint: Endpoint, compression: Compression) -> PoolSpec {
        PoolSpec {
            series: 100,
            points_per_payload: 7,
            payloads: 15,
            endpoint,
            compression,
            seed: 3,
            timestamp: 1_700_000_000,
        }
    }

    #[test]
    fn pool_is_deterministic_and_covers_every_series() {
        let a = build(&spec(Endpoint::V1, Compression::Gzip)).unwrap();
        let b = build(&spec(Endpoint::V1, Compression::Gzip)).unwrap();
        assert_eq!(a.len(), 15);
        assert!(a.iter().zip(&b).all(|(x, y)| x.body == y.body));
        let mut seen = HashSet::new();
        for payload in &a {
            let raw = decode(Encoding::Gzip, &payload.body).unwrap();
            assert_eq!(raw.len() as u64, payload.raw_len);
            let decoded = datadog::v1_series(&raw).unwrap();
            assert_eq!(decoded.series.len() as u64, payload.points);
            let sum: f64 = decoded.series.iter().map(|s| s.points[0].1.unwrap()).sum();
            assert_eq!(sum, payload.value_sum);
            let counts: f64 = decoded
                .series
                .iter()
                .filter(|s| s.kind.as_deref() == Some("count"))
                .map(|s| s.points[0].1.unwrap())
                .sum();
            assert_eq!(counts, payload.count_value_sum);
            for s in decoded.series {
                let Labels::Tags(tags) = s.labels else {
                    panic!("v1 has tags")
                };
                seen.insert((s.metric, s.host, tags));
            }
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn every_encoding_decodes_to_the_same_v2_json() {
        let plain = build(&spec(Endpoint::V2, Compression::Identity)).unwrap();
        for (compression, encoding) in [
            (Compression::Deflate, Encoding::Deflate),
            (Compression::Zstd, Encoding::Zstd),
        ] {
            let pool = build(&spec(Endpoint::V2, compression)).unwrap();
            for (p, q) in pool.iter().zip(&plain) {
                assert_eq!(decode(encoding, &p.body).unwrap(), q.body.as_ref());
            }
        }
        let decoded = datadog::v2_series(&plain[0].body).unwrap();
        assert_eq!(decoded.series[0].kind.as_deref(), Some("count"));
        assert_eq!(decoded.series[0].host.as_deref(), Some("web-0000"));
    }

    use crate::vendor::stats::Labels;
}
