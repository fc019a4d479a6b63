//! What the shards hand to the sinks: flushed statsd aggregates and accepted HTTP intake
//! payloads, on the same bounded per-sink queues, and, in forwarder mode, the consolidated
//! partial aggregates of an interval ([`ForwardItem`], for the `forward` sink only).
//!
//! All are behind an `Arc`, so one payload routed to several sinks is shared, never
//! copied. An [`IntakePayload`] holds the validated request body once, as a [`StoredBody`]:
//! the client's own gzip or zlib bytes when they are exactly one stream (then a Datadog sink
//! that compresses the same way forwards them untouched, with no decode and no
//! recompression), else the decoded JSON. Sinks that need the JSON decode it again into
//! their own scratch ([`IntakePayload::json_into`], libdeflate at about 2 GB/s), which
//! replaces the copy they made before parsing in place anyway; queues hold the compressed
//! bytes, several times smaller than the JSON.

use crate::intake::decompress::BodyDecoder;
use crate::intake::BodyError;
use crate::model::SeriesBatch;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One unit of work on a sink queue.
#[derive(Debug, Clone)]
pub enum Egress {
    /// The series a flush emitted (statsd path).
    Series(Arc<SeriesBatch>),
    /// One accepted HTTP intake payload.
    Payload(Arc<IntakePayload>),
    /// One forwarder flush: the consolidated partial aggregates of an interval, for the
    /// `forward` sink only (forwarder mode).
    Forward(Arc<ForwardItem>),
}

/// What a forwarder flush hands its `forward` sink: the interval's partial aggregates,
/// consolidated across shards, encoded for the aggregators by the sink's thread.
#[derive(Debug, Default)]
pub struct ForwardItem {
    /// The consolidated partial aggregates.
    pub partials: crate::aggregate::Partials,
    /// The forwarder's flush interval.
    pub interval: std::time::Duration,
    /// Heap bytes the partials hold (an estimate: keys, entries, timer values, set
    /// members), reserved against the sink's `queue_max_bytes` while the item is queued.
    pub heap_bytes: u64,
}

impl ForwardItem {
    /// An item for `partials`, with its [`ForwardItem::heap_bytes`].
    pub fn new(partials: crate::aggregate::Partials, interval: std::time::Duration) -> Self {
        let p = &partials;
        let entry = |key: &crate::aggregate::SeriesKey, size: usize| key.heap_bytes() + size;
        let counters: usize = p
            .counters
            .iter()
            .map(|e| entry(&e.key, std::mem::size_of_val(e)))
            .sum();
        let gauges: usize = p
            .gauges
            .iter()
            .map(|e| entry(&e.key, std::mem::size_of_val(e)))
            .sum();
        let timers: usize = p
            .timers
            .iter()
            .map(|e| {
                entry(
                    &e.key,
                    std::mem::size_of_val(e) + e.val.values.capacity() * 8,
                )
            })
            .sum();
        let sets: usize = p
            .sets
            .iter()
            .map(|e| {
                entry(
                    &e.key,
                    std::mem::size_of_val(e) + e.val.members.capacity() * 16,
                )
            })
            .sum();
        Self {
            heap_bytes: (counters + gauges + timers + sets) as u64,
            partials,
            interval,
        }
    }
}

impl Egress {
    /// Values carried: points of a payload, series values of a batch (one point each).
    pub fn points(&self) -> u64 {
        match self {
            Egress::Series(b) => b.len() as u64,
            Egress::Payload(p) => p.points,
            Egress::Forward(f) => f.partials.len() as u64,
        }
    }
}

/// The Datadog intake endpoints Switchyard accepts and forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/v1/series`
    SeriesV1,
    /// `POST /api/v2/series`
    SeriesV2,
    /// `POST /api/v1/distribution_points`
    DistributionPoints,
    /// `POST /api/v1/check_run`
    CheckRun,
    /// `POST /api/v1/events`
    Events,
}

impl Endpoint {
    /// Every endpoint, in a stable order (label order in metrics).
    pub const ALL: [Endpoint; 5] = [
        Endpoint::SeriesV1,
        Endpoint::SeriesV2,
        Endpoint::DistributionPoints,
        Endpoint::CheckRun,
        Endpoint::Events,
    ];

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::SeriesV1 => "/api/v1/series",
            Endpoint::SeriesV2 => "/api/v2/series",
            Endpoint::DistributionPoints => "/api/v1/distribution_points",
            Endpoint::CheckRun => "/api/v1/check_run",
            Endpoint::Events => "/api/v1/events",
        }
    }

    /// The endpoint for a request path (without the query string).
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.path() == path)
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::SeriesV1 => "series_v1",
            Endpoint::SeriesV2 => "series_v2",
            Endpoint::DistributionPoints => "distribution_points",
            Endpoint::CheckRun => "check_run",
            Endpoint::Events => "events",
        }
    }

    /// Index in [`Endpoint::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The vendor's own body limits for this endpoint: (compressed, decompressed) bytes
    /// (`formats.md` §1.2).
    pub fn vendor_limits(self) -> (usize, usize) {
        match self {
            Endpoint::SeriesV1 => (3_200_000, 62_914_560),
            Endpoint::SeriesV2 => (512_000, 5_242_880),
            Endpoint::DistributionPoints | Endpoint::CheckRun | Endpoint::Events => {
                (2_621_440, 4_194_304)
            }
        }
    }

    /// The vendor's success body (status 202).
    pub fn success_body(self) -> &'static str {
        match self {
            Endpoint::SeriesV2 => "{\"errors\":[]}",
            _ => "{\"status\":\"ok\"}",
        }
    }
}

/// A client's API key. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Box<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: &str) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that needs it: the request header to the vendor.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How a [`StoredBody`] holds the payload's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The JSON itself (the request was not compressed, or was zstd, raw deflate, or had
    /// bytes after its compressed stream).
    Json,
    /// One gzip member, exactly the bytes the client sent (`Content-Encoding: gzip`).
    Gzip,
    /// One zlib stream, exactly the bytes the client sent (`Content-Encoding: deflate`, as
    /// Datadog means it).
    Zlib,
}

impl BodyFormat {
    /// The `Content-Encoding` these bytes are sent with (`None` for plain JSON).
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            BodyFormat::Json => None,
            BodyFormat::Gzip => Some("gzip"),
            BodyFormat::Zlib => Some("deflate"),
        }
    }
}

/// A payload's body as the queues carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    /// What `bytes` are.
    pub format: BodyFormat,
    /// The JSON, or the client's compressed bytes that decode to it.
    pub bytes: Vec<u8>,
}

/// One accepted HTTP intake payload.
#[derive(Debug)]
pub struct IntakePayload {
    /// Where it came in (and where a Datadog sink sends it).
    pub endpoint: Endpoint,
    /// The body; once decoded, valid JSON of the endpoint's shape, exactly as received.
    pub body: StoredBody,
    /// Bytes of the JSON once decoded (the decoded-bytes counter, and the size
    /// [`IntakePayload::json_into`] expects).
    pub decoded_bytes: u64,
    /// Bytes on the wire (compressed), for accounting.
    pub wire_bytes: u64,
    /// The key the client sent.
    pub api_key: Option<ApiKey>,
    /// Series (or checks, or events) in the payload.
    pub series: u64,
    /// Points in the payload (distribution values count one each; a check or an event
    /// counts one).
    pub points: u64,
    /// For a payload a `durable = true` route matched: where each sink it is queued for
    /// reports that its part is durable (the intake answers once all did).
    pub durable: Option<Arc<Durability>>,
}

/// The answer a `durable = true` route waits for. The intake holds it while it queues the
/// payload ([`Durability::expect_one`] per sink queue), then releases its hold with
/// [`Durability::settle`]; every sink reports whether its part is durable (delivered,
/// spooled, or written to a stream) the same way. Once all did, the waiting intake gets
/// `true` if every part is. If the last holder goes away before every report (an item
/// dropped unhandled), it gets `false`.
#[derive(Debug)]
pub struct Durability {
    pending: AtomicUsize,
    failed: AtomicBool,
    tx: Mutex<Option<futures_channel::oneshot::Sender<bool>>>,
}

impl Durability {
    /// A durability held by its creator (one report pending: the creator's own), and the
    /// receiver of its answer.
    pub fn new() -> (Arc<Self>, futures_channel::oneshot::Receiver<bool>) {
        let (tx, rx) = futures_channel::oneshot::channel();
        let d = Arc::new(Self {
            pending: AtomicUsize::new(1),
            failed: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
        });
        (d, rx)
    }

    /// One more report to wait for (call before handing the payload to a sink).
    pub fn expect_one(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// One report: a sink's part of the payload is durable, or not (or the creator
    /// releases its hold).
    pub fn settle(&self, durable: bool) {
        if !durable {
            self.failed.store(true, Ordering::Relaxed);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.answer(!self.failed.load(Ordering::Relaxed));
        }
    }

    fn answer(&self, durable: bool) {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(tx) = tx {
            // The intake may have stopped waiting (its deadline passed).
            let _ = tx.send(durable);
        }
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        // Sinks that never reported: not durable.
        self.answer(false);
    }
}

impl IntakePayload {
    /// A payload holding plain JSON (`body` as received, uncompressed).
    pub fn json(
        endpoint: Endpoint,
        body: Vec<u8>,
        api_key: Option<ApiKey>,
        series: u64,
        points: u64,
    ) -> Self {
        Self {
            endpoint,
            decoded_bytes: body.len() as u64,
            wire_bytes: body.len() as u64,
            body: StoredBody {
                format: BodyFormat::Json,
                bytes: body,
            },
            api_key,
            series,
            points,
            durable: None,
        }
    }

    /// Writes the payload's JSON into `out` (replacing its contents), decoding the stored
    /// bytes with `decoder` when they are compressed. `out` is the caller's to parse in
    /// place.
    ///
    /// # Errors
    /// [`BodyError::Corrupt`] if the stored bytes do not decode to
    /// [`IntakePayload::decoded_bytes`] bytes (not expected: the intake decoded them).
    pub fn json_into(&self, decoder: &mut BodyDecoder, out: &mut Vec<u8>) -> Result<(), BodyError> {
        let size = usize::try_from(self.decoded_bytes).unwrap_or(usize::MAX);
        decoder.inflate_stored(self.body.format, &self.body.bytes, size, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_answers_once_every_report_is_in() {
        let (d, mut rx) = Durability::new();
        d.expect_one();
        d.expect_one();
        d.settle(true);
        d.settle(true);
        assert_eq!(rx.try_recv().unwrap(), None, "the creator still holds it");
        d.settle(true);
        assert_eq!(rx.try_recv().unwrap(), Some(true));

        let (d, mut rx) = Durability::new();
        d.expect_one();
        d.settle(false);
        d.settle(true);
        assert_eq!(rx.try_recv().unwrap(), Some(false), "one part not durable");

        // A sink that never reports (its item dropped unhandled): not durable.
        let (d, mut rx) = Durability::new();
        d.expect_one();
        d.settle(true);
        drop(d);
        assert_eq!(rx.try_recv().unwrap(), Some(false));
    }

    #[test]
    fn endpoints_round_trip_their_paths() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert_eq!(Endpoint::ALL[e.index()], e);
        }
        assert_eq!(Endpoint::from_path("/api/v1/validate"), None);
    }

    #[test]
    fn stored_bodies_decode_to_their_json() {
        let json = br#"{"series":[{"metric":"m","points":[[1,2]]}]}"#.repeat(50);
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut gz = vec![0; c.gzip_compress_bound(json.len())];
        let n = c.gzip_compress(&json, &mut gz).unwrap();
        gz.truncate(n);
        let mut p = IntakePayload::json(Endpoint::SeriesV1, json.clone(), None, 50, 50);
        let (mut dec, mut out) = (BodyDecoder::default(), vec![7u8; 10 << 10]);
        p.json_into(&mut dec, &mut out).unwrap();
        assert_eq!(out, json);
        p.body = StoredBody {
            format: BodyFormat::Gzip,
            bytes: gz,
        };
        out.clear();
        p.json_into(&mut dec, &mut out).unwrap();
        assert_eq!(out, json);
        // A size that does not match is corrupt, not a short or padded body.
        p.decoded_bytes -= 1;
        assert_eq!(p.json_into(&mut dec, &mut out).unwrap_err().status(), 400);
        p.decoded_bytes += 2;
        assert_eq!(p.json_into(&mut dec, &mut out).unwrap_err().status(), 400);
        assert_eq!(BodyFormat::Zlib.content_encoding(), Some("deflate"));
    }

    #[test]
    fn api_key_is_redacted_when_formatted() {
        let k = ApiKey::new("0123456789abcdef");
        assert_eq!(format!("{k:?} {k}"), "ApiKey(<redacted>) <redacted>");
        assert_eq!(k.expose(), "0123456789abcdef");
    }
}
