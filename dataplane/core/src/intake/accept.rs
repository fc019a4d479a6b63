//! One intake request body, from wire bytes to an accepted [`IntakePayload`]: decompress
//! within the caps, parse in place (validating the whole payload before anything is
//! accepted), count series and points, and report each metric name to the caller (for the
//! top-names sketch).
//!
//! The decoder, the simd-json buffers and the per-series scratch are reused across
//! requests ([`IntakeScratch`]); the one allocation per payload is the body the sinks
//! receive (it outlives the request). That body is the client's gzip or zlib bytes when
//! they are exactly one stream (a copy of the compressed bytes, several times smaller than
//! the JSON: the decoded JSON is parsed in place in the decoder's buffer and not copied),
//! else the JSON (identity, zstd, raw deflate, or a stream with bytes after it).

use super::decompress::{BodyDecoder, Encoding};
use super::{check_run, distribution_points, events, BodyError};
use crate::egress::{ApiKey, BodyFormat, Endpoint, IntakePayload, StoredBody};
use crate::translate::DdSeries;

/// Reused per-shard state for accepting bodies.
pub struct IntakeScratch {
    decoder: BodyDecoder,
    buffers: simd_json::Buffers,
}

impl std::fmt::Debug for IntakeScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeScratch").finish_non_exhaustive()
    }
}

impl Default for IntakeScratch {
    fn default() -> Self {
        Self {
            decoder: BodyDecoder::new(0),
            buffers: simd_json::Buffers::new(64 * 1024),
        }
    }
}

/// The body limits that apply to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bytes on the wire.
    pub compressed: usize,
    /// Bytes once decompressed.
    pub decompressed: usize,
}

impl BodyLimits {
    /// The configured ceilings, lowered to the endpoint's vendor limits.
    pub fn for_endpoint(
        endpoint: Endpoint,
        max_compressed: usize,
        max_decompressed: usize,
    ) -> Self {
        let (c, d) = endpoint.vendor_limits();
        Self {
            compressed: c.min(max_compressed),
            decompressed: d.min(max_decompressed),
        }
    }
}

/// Decodes, validates and counts one body.
///
/// `on_metric(name, points)` is called once per series (or check, or event) as it is
/// parsed. It feeds approximate statistics only: a payload rejected at series N has
/// reported the N series before it.
///
/// # Errors
/// [`BodyError`] with the status the vendor would answer (400/413/415).
pub fn accept_body(
    scratch: &mut IntakeScratch,
    endpoint: Endpoint,
    encoding: Encoding,
    wire: &mut [u8],
    limits: BodyLimits,
    api_key: Option<ApiKey>,
    mut on_metric: impl FnMut(&str, u64),
) -> Result<IntakePayload, BodyError> {
    accept_body_with(scratch, endpoint, encoding, wire, limits, api_key, |i| {
        on_metric(i.name, i.points);
    })
}

/// One item of a payload as the routes see it: a series (v1, v2, distribution) by its
/// metric name, or a service check by its check name.
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    /// Metric (or check) name.
    pub name: &'a str,
    /// Tags as sent (any order).
    pub tags: &'a [&'a str],
    /// Host (`""` when missing).
    pub host: &'a str,
    /// Points (distribution values count one each; a check counts one).
    pub points: u64,
}

/// [`accept_body`], reporting each item with its tags and host (events report nothing).
///
/// # Errors
/// As [`accept_body`].
pub fn accept_body_with(
    scratch: &mut IntakeScratch,
    endpoint: Endpoint,
    encoding: Encoding,
    wire: &mut [u8],
    limits: BodyLimits,
    api_key: Option<ApiKey>,
    mut on_item: impl FnMut(&ItemView<'_>),
) -> Result<IntakePayload, BodyError> {
    let wire_bytes = wire.len() as u64;
    if wire.len() > limits.compressed {
        return Err(BodyError::TooLarge {
            limit: limits.compressed,
        });
    }
    scratch.decoder.limit = limits.decompressed;
    let IntakeScratch { decoder, buffers } = scratch;
    // Decoding borrows `wire` (identity hands it back), so compressed bytes the sinks may
    // reuse are copied first.
    let compressed = matches!(encoding, Encoding::Gzip | Encoding::Deflate).then(|| wire.to_vec());
    let (decoded, framing) = decoder.decode_framed(encoding, wire)?;
    let decoded_bytes = decoded.len() as u64;
    // The sinks get the body as received; parsing happens in place (it rewrites escaped
    // strings), so the JSON is copied first when it is what they get.
    let body = match (framing, compressed) {
        (Some(format @ (BodyFormat::Gzip | BodyFormat::Zlib)), Some(bytes)) => {
            StoredBody { format, bytes }
        }
        _ => StoredBody {
            format: BodyFormat::Json,
            bytes: decoded.to_vec(),
        },
    };
    let (series, points) = match endpoint {
        Endpoint::SeriesV1 | Endpoint::SeriesV2 => {
            let mut points = 0u64;
            let n = super::for_each_series(endpoint, decoded, buffers, |s| {
                let p = s.points.len() as u64;
                points += p;
                on_item(&series_item(s, p));
            })?;
            (n as u64, points)
        }
        Endpoint::DistributionPoints => {
            let counts = distribution_points::for_each_series(decoded, buffers, |s| {
                on_item(&ItemView {
                    name: s.metric,
                    tags: s.tags,
                    host: s.host.unwrap_or(""),
                    points: s.points.all_values().len() as u64,
                });
            })?;
            (counts.series as u64, counts.values as u64)
        }
        Endpoint::CheckRun => {
            let n = check_run::for_each_check(decoded, buffers, |c| {
                on_item(&ItemView {
                    name: c.check,
                    tags: c.tags,
                    host: c.host_name.unwrap_or(""),
                    points: 1,
                });
            })?;
            (n as u64, n as u64)
        }
        Endpoint::Events => {
            events::with_event(decoded, buffers, |_| ())?;
            (1, 1)
        }
    };
    Ok(IntakePayload {
        endpoint,
        body,
        decoded_bytes,
        wire_bytes,
        api_key,
        series,
        points,
        durable: None,
    })
}

fn series_item<'a>(s: &DdSeries<'a>, points: u64) -> ItemView<'a> {
    ItemView {
        name: s.metric,
        tags: s.tags,
        host: s.host.unwrap_or(""),
        points,
    }
}

/// Decodes an accepted v1 or v2 series payload's stored body again and calls `f` with each
/// series, in order (for re-encoding part of a payload: the intake's first parse was in
/// place and is gone). Other endpoints yield nothing.
///
/// # Errors
/// [`BodyError`] if the stored body no longer decodes or parses (not expected: the intake
/// accepted it).
pub fn for_each_stored_series(
    scratch: &mut IntakeScratch,
    payload: &IntakePayload,
    json: &mut Vec<u8>,
    f: impl FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError> {
    let IntakeScratch { decoder, buffers } = scratch;
    payload.json_into(decoder, json)?;
    super::for_each_series(payload.endpoint, json, buffers, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/captures");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// The body of a captured `.http` file (after the blank line).
    fn http_body(name: &str) -> Vec<u8> {
        let raw = fixture(name);
        let at = raw.windows(2).position(|w| w == b"\n\n").unwrap();
        raw[at + 2..].to_vec()
    }

    fn run(
        ep: Endpoint,
        enc: Encoding,
        mut wire: Vec<u8>,
    ) -> Result<(IntakePayload, Vec<(String, u64)>), BodyError> {
        let mut scratch = IntakeScratch::default();
        let mut names = Vec::new();
        let limits = BodyLimits::for_endpoint(ep, usize::MAX, usize::MAX);
        let p = accept_body(&mut scratch, ep, enc, &mut wire, limits, None, |n, p| {
            names.push((n.to_string(), p));
        })?;
        Ok((p, names))
    }

    #[test]
    fn real_client_payloads_of_every_endpoint_are_accepted_and_counted() {
        let (p, names) = run(
            Endpoint::SeriesV1,
            Encoding::Gzip,
            fixture("apiclient_v1-series_gzip.raw-body.gz"),
        )
        .unwrap();
        assert_eq!((p.series, p.points), (1, 1));
        assert_eq!(names, vec![("checkout.orders".to_string(), 1)]);
        // The body is the client's gzip member, which decodes to the JSON as received.
        let wire = fixture("apiclient_v1-series_gzip.raw-body.gz");
        assert_eq!(p.body.format, BodyFormat::Gzip);
        assert_eq!(p.body.bytes, wire);
        assert_eq!(p.wire_bytes, wire.len() as u64);
        let json = fixture("apiclient_v1-series_gzip.json");
        assert_eq!(p.decoded_bytes, json.trim_ascii_end().len() as u64);
        let mut out = Vec::new();
        p.json_into(&mut BodyDecoder::default(), &mut out).unwrap();
        assert_eq!(out, json.trim_ascii_end());

        // datadogpy's deflate is a zlib stream: kept as sent too.
        let (p, _) = run(
            Endpoint::SeriesV1,
            Encoding::Deflate,
            fixture("ddpy-api_v1-series_deflate.raw-body.zlib"),
        )
        .unwrap();
        assert_eq!(
            (p.body.format, p.series),
            (BodyFormat::Zlib, 3),
            "{:?}",
            p.body.format
        );

        let (p, names) = run(
            Endpoint::SeriesV2,
            Encoding::Zstd,
            fixture("apiclient_v2-series_zstd1.raw-body.zst"),
        )
        .unwrap();
        assert_eq!((p.series, p.points), (3, 3));
        assert_eq!(names[0].0, "system.load.1");
        // zstd is not forwarded as is: the queues get the JSON.
        assert_eq!(p.body.format, BodyFormat::Json);
        assert_eq!(p.body.bytes.len() as u64, p.decoded_bytes);
        assert!(p.body.bytes.starts_with(b"{"));

        let (p, _) = run(
            Endpoint::DistributionPoints,
            Encoding::Identity,
            http_body("ddpy-api_v1-distribution_points.http"),
        )
        .unwrap();
        assert_eq!((p.series, p.points), (1, 3));

        for (file, n) in [
            ("ddpy-api_v1-check_run.http", 1),
            ("apiclient_v1-check_run.http", 1),
        ] {
            let (p, names) = run(Endpoint::CheckRun, Encoding::Identity, http_body(file)).unwrap();
            assert_eq!((p.series, p.points), (n, n), "{file}");
            assert_eq!(names[0].0, "app.ok", "{file}");
        }

        let (p, names) = run(
            Endpoint::Events,
            Encoding::Identity,
            http_body("ddpy-api_v1-events.http"),
        )
        .unwrap();
        assert_eq!((p.series, p.points), (1, 1));
        assert!(names.is_empty());
    }

    #[test]
    fn items_carry_tags_and_host_and_stored_series_read_back() {
        let mut scratch = IntakeScratch::default();
        let mut items = Vec::new();
        let limits = BodyLimits::for_endpoint(Endpoint::SeriesV2, usize::MAX, usize::MAX);
        let mut wire = fixture("apiclient_v2-series_zstd1.raw-body.zst");
        let p = accept_body_with(
            &mut scratch,
            Endpoint::SeriesV2,
            Encoding::Zstd,
            &mut wire,
            limits,
            None,
            |i| {
                items.push((
                    i.name.to_string(),
                    i.tags.len(),
                    i.host.to_string(),
                    i.points,
                ))
            },
        )
        .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].0, "system.load.1");
        assert!(items.iter().any(|i| !i.2.is_empty()), "{items:?}");
        // The first parse was in place; the stored body parses again to the same series.
        let mut json = Vec::new();
        let mut again = Vec::new();
        let n = for_each_stored_series(&mut scratch, &p, &mut json, |s| {
            again.push((
                s.metric.to_string(),
                s.tags.len(),
                s.host.unwrap_or("").to_string(),
                s.points.len() as u64,
            ));
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(again, items);
        // Other endpoints yield nothing.
        let ev = IntakePayload::json(Endpoint::Events, b"{}".to_vec(), None, 1, 1);
        assert_eq!(
            for_each_stored_series(&mut scratch, &ev, &mut json, |_| panic!("no series")),
            Ok(0)
        );
    }

    fn deflate(data: &[u8], zlib: bool) -> Vec<u8> {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut out = vec![0; c.zlib_compress_bound(data.len())];
        let n = if zlib {
            c.zlib_compress(data, &mut out)
        } else {
            c.deflate_compress(data, &mut out)
        };
        out.truncate(n.unwrap());
        out
    }

    #[test]
    fn only_exact_streams_are_kept_compressed() {
        let json = fixture("ddpy-api_v1-series_deflate.json");
        let json = json.trim_ascii_end();
        let z = deflate(json, true);
        let (p, _) = run(Endpoint::SeriesV1, Encoding::Deflate, z.clone()).unwrap();
        assert_eq!((p.body.format, &p.body.bytes), (BodyFormat::Zlib, &z));
        // Bytes after the stream (which the decoder ignores) must not reach a vendor that
        // would read them: the JSON is kept instead.
        let mut tail = z.clone();
        tail.extend_from_slice(b"{\"series\":[]}");
        let (p, _) = run(Endpoint::SeriesV1, Encoding::Deflate, tail).unwrap();
        assert_eq!(
            (p.body.format, p.body.bytes.as_slice()),
            (BodyFormat::Json, json)
        );
        assert_eq!(p.decoded_bytes, json.len() as u64);
        // Raw deflate under `deflate` is accepted, but is not what Datadog means by it.
        let (p, _) = run(Endpoint::SeriesV1, Encoding::Deflate, deflate(json, false)).unwrap();
        assert_eq!(
            (p.body.format, p.body.bytes.as_slice()),
            (BodyFormat::Json, json)
        );
        // Plain JSON is kept as received (the intake's parse rewrites its own buffer).
        let escaped = br#"{"series":[{"metric":"a\u0062","points":[[1,2]]}]}"#.to_vec();
        let (p, names) = run(Endpoint::SeriesV1, Encoding::Identity, escaped.clone()).unwrap();
        assert_eq!((p.body.format, &p.body.bytes), (BodyFormat::Json, &escaped));
        assert_eq!(names[0].0, "ab");
    }

    #[test]
    fn limits_and_shapes_map_to_the_vendors_statuses() {
        // v2's own limit (512 000 bytes on the wire) applies below a larger ceiling.
        let l = BodyLimits::for_endpoint(Endpoint::SeriesV2, 3_200_000, 62_914_560);
        assert_eq!(
            l,
            BodyLimits {
                compressed: 512_000,
                decompressed: 5_242_880
            }
        );
        let mut scratch = IntakeScratch::default();
        let mut refuse = |ep: Endpoint, mut body: Vec<u8>, limits: BodyLimits| {
            accept_body(
                &mut scratch,
                ep,
                Encoding::Identity,
                &mut body,
                limits,
                None,
                |_, _| {},
            )
            .unwrap_err()
        };
        let small = BodyLimits {
            compressed: 500,
            decompressed: 1000,
        };
        assert_eq!(
            refuse(Endpoint::SeriesV1, vec![b' '; 600], small).status(),
            413
        );
        // A v1 body on the v2 endpoint is a 400 naming the field.
        let v1 = fixture("apiclient_v1-series_gzip.json");
        let e = refuse(Endpoint::SeriesV2, v1, l);
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("series[0]"), "{e}");
        // A nesting bomb is refused, not parsed.
        assert_eq!(
            refuse(Endpoint::CheckRun, vec![b'['; 100_000], l).status(),
            400
        );
    }
}
