//! The batch of series a stream record carries, as an rkyv 0.8 archive workers read in place.
//!
//! [`StreamBatch`] is flat, like [`SeriesBatch`]: one string arena for names, tags, hosts and
//! devices, one table of tag spans, one table of series records and one table of points. A
//! builder that is [`StreamBatch::clear`]ed and refilled reuses all four allocations, so
//! filling it from a flushed statsd batch ([`StreamBatch::extend_from_series_batch`]) or
//! from a Datadog HTTP payload ([`StreamBatch::push_dd`], [`StreamBatch::extend_from_intake`])
//! allocates nothing per series or per point once warm. It carries both sources: per series
//! a name, tags, host, device, a [`Kind`], an interval and any number of (timestamp, value)
//! points.
//!
//! [`BatchWriter`] serializes with a reused rkyv arena and aligned buffer; [`access`]
//! validates an archive with bytecheck, then checks every span once, so iteration over
//! [`ArchivedStreamBatch::series`] borrows strings and points straight from the record bytes
//! without parsing or allocating. [`StreamBatch::write_signalfx_json`] (and the archived
//! twin) writes the JSON encoding through `switchyard_core::translate::Translator`, the same
//! Datadog -> SignalFx rules the SignalFx sink applies.
//!
//! Pure code: no I/O, no threads, no metrics.

use rkyv::rancor::Failure;
use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;
use switchyard_core::egress::Endpoint;
use switchyard_core::intake::BodyError;
use switchyard_core::model::{SeriesBatch, SeriesType};
use switchyard_core::translate::{DdSeries, Translator};

/// A series' Datadog type.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
#[repr(u8)]
pub enum Kind {
    /// No type given (`type` missing or null; v2 `0`): a gauge to every consumer.
    #[default]
    Unspecified,
    /// `gauge`
    Gauge,
    /// `count`
    Count,
    /// `rate` (per second over `interval`)
    Rate,
    /// Any other spelling; translators drop it (`unknown_type`).
    Unknown,
}

impl Kind {
    /// The kind for a Datadog `type` string.
    pub fn from_dd(kind: Option<&str>) -> Self {
        match kind {
            None | Some("") => Kind::Unspecified,
            Some("gauge") => Kind::Gauge,
            Some("count") => Kind::Count,
            Some("rate") => Kind::Rate,
            Some(_) => Kind::Unknown,
        }
    }

    /// The Datadog `type` string (`None` for [`Kind::Unspecified`]).
    pub const fn as_dd(self) -> Option<&'static str> {
        match self {
            Kind::Unspecified => None,
            Kind::Gauge => Some("gauge"),
            Kind::Count => Some("count"),
            Kind::Rate => Some("rate"),
            Kind::Unknown => Some("unknown"),
        }
    }
}

impl From<SeriesType> for Kind {
    fn from(t: SeriesType) -> Self {
        match t {
            SeriesType::Gauge => Kind::Gauge,
            SeriesType::Count => Kind::Count,
            SeriesType::Rate => Kind::Rate,
        }
    }
}

impl ArchivedKind {
    /// The native [`Kind`].
    pub const fn to_native(self) -> Kind {
        match self {
            ArchivedKind::Unspecified => Kind::Unspecified,
            ArchivedKind::Gauge => Kind::Gauge,
            ArchivedKind::Count => Kind::Count,
            ArchivedKind::Rate => Kind::Rate,
            ArchivedKind::Unknown => Kind::Unknown,
        }
    }
}

/// A half-open range into one of the batch's tables.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
struct Span {
    start: u32,
    end: u32,
}

impl ArchivedSpan {
    fn range(&self) -> std::ops::Range<usize> {
        self.start.to_native() as usize..self.end.to_native() as usize
    }
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One point: timestamp in POSIX seconds (fractional allowed) and value.
#[derive(Debug, Clone, Copy, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Point {
    /// POSIX seconds.
    pub timestamp: f64,
    /// The value.
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
struct SeriesRecord {
    name: Span,
    host: Span,
    device: Span,
    /// Indices into `tags`.
    tags: Span,
    /// Indices into `points`.
    points: Span,
    kind: Kind,
    interval: Option<f64>,
}

/// A batch of series for one stream record. See the module docs for the layout.
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct StreamBatch {
    strings: String,
    tags: Vec<Span>,
    series: Vec<SeriesRecord>,
    points: Vec<Point>,
}

/// Why a batch could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes are not 16-byte aligned (copy them through
    /// [`PayloadBuffer`](crate::envelope::PayloadBuffer)).
    #[error("archive is not 16-byte aligned")]
    Misaligned,
    /// bytecheck rejected the archive.
    #[error("invalid batch archive")]
    Invalid,
    /// A span points outside its table or splits a UTF-8 character.
    #[error("batch archive has a span out of bounds")]
    BadSpan,
    /// The batch does not fit rkyv's 32-bit offsets.
    #[error("batch too large to archive")]
    TooLarge,
}

impl BatchError {
    /// A bounded label for counters.
    pub const fn code(self) -> &'static str {
        match self {
            BatchError::Misaligned => "misaligned",
            BatchError::Invalid => "invalid",
            BatchError::BadSpan => "bad_span",
            BatchError::TooLarge => "too_large",
        }
    }
}

fn span_of(len_before: usize, len_after: usize) -> Span {
    Span {
        start: len_before as u32,
        end: len_after as u32,
    }
}

/// One series of an owned [`StreamBatch`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    batch: &'a StreamBatch,
    rec: &'a SeriesRecord,
}

impl<'a> SeriesRef<'a> {
    fn str(&self, s: Span) -> &'a str {
        self.batch.strings.get(s.range()).unwrap_or("")
    }
    /// Metric name.
    pub fn name(&self) -> &'a str {
        self.str(self.rec.name)
    }
    /// Host (`None` when absent or empty).
    pub fn host(&self) -> Option<&'a str> {
        Some(self.str(self.rec.host)).filter(|h| !h.is_empty())
    }
    /// Device (`None` when absent or empty).
    pub fn device(&self) -> Option<&'a str> {
        Some(self.str(self.rec.device)).filter(|h| !h.is_empty())
    }
    /// Tags as sent.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let b = self.batch;
        b.tags
            .get(self.rec.tags.range())
            .unwrap_or(&[])
            .iter()
            .map(move |s| b.strings.get(s.range()).unwrap_or(""))
    }
    /// Type.
    pub fn kind(&self) -> Kind {
        self.rec.kind
    }
    /// Interval in seconds, when known.
    pub fn interval(&self) -> Option<f64> {
        self.rec.interval
    }
    /// Points in the order they were pushed.
    pub fn points(&self) -> &'a [Point] {
        self.batch
            .points
            .get(self.rec.points.range())
            .unwrap_or(&[])
    }
}

impl SeriesRef<'_> {
    /// The series' partition hash ([`partition_hash`]); `key` is scratch space.
    pub fn partition_hash(&self, key: &mut String) -> u128 {
        partition_hash(self.name(), self.host(), self.device(), self.tags(), key)
    }
}

/// The hash key a series is partitioned by on a stream: the MD5 ([`crate::kpl::hash_key`])
/// of its [`partition_key`]. The Kinesis sink maps it to the shard whose hash range holds
/// it, and a Kinesis worker keeps only the series its lease's range holds, so both sides
/// must agree on it. `key` is scratch space (reused: no allocation once large enough).
pub fn partition_hash<'t>(
    name: &str,
    host: Option<&str>,
    device: Option<&str>,
    tags: impl Iterator<Item = &'t str>,
    key: &mut String,
) -> u128 {
    partition_key(name, host, device, tags, key);
    crate::kpl::hash_key(key)
}

/// Writes the identity a series is partitioned by into `out`: name, host, device and tags,
/// NUL-separated (the Kafka sink's message key; hashed by [`partition_hash`]).
pub fn partition_key<'t>(
    name: &str,
    host: Option<&str>,
    device: Option<&str>,
    tags: impl Iterator<Item = &'t str>,
    out: &mut String,
) {
    out.clear();
    out.push_str(name);
    out.push('\0');
    out.push_str(host.unwrap_or(""));
    out.push('\0');
    out.push_str(device.unwrap_or(""));
    for t in tags {
        out.push('\0');
        out.push_str(t);
    }
}

impl StreamBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the batch, keeping its allocations for the next fill.
    pub fn clear(&mut self) {
        self.strings.clear();
        self.tags.clear();
        self.series.clear();
        self.points.clear();
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of points over all series.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// Approximate heap size in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.strings.capacity()
            + self.tags.capacity() * size_of::<Span>()
            + self.series.capacity() * size_of::<SeriesRecord>()
            + self.points.capacity() * size_of::<Point>()
    }

    fn push_str(&mut self, s: &str) -> Span {
        let start = self.strings.len();
        self.strings.push_str(s);
        span_of(start, self.strings.len())
    }

    fn push_tags<'t>(&mut self, tags: impl IntoIterator<Item = &'t str>) -> Span {
        let first = self.tags.len();
        for t in tags {
            let s = self.push_str(t);
            self.tags.push(s);
        }
        span_of(first, self.tags.len())
    }

    /// Adds one series. An empty `host` or `device` is the same as `None`.
    #[allow(clippy::too_many_arguments)]
    pub fn push_series<'t>(
        &mut self,
        name: &str,
        kind: Kind,
        interval: Option<f64>,
        host: Option<&str>,
        device: Option<&str>,
        tags: impl IntoIterator<Item = &'t str>,
        points: impl IntoIterator<Item = Point>,
    ) {
        let name = self.push_str(name);
        let host = self.push_str(host.unwrap_or(""));
        let device = self.push_str(device.unwrap_or(""));
        let tags = self.push_tags(tags);
        let first = self.points.len();
        self.points.extend(points);
        let points = span_of(first, self.points.len());
        self.series.push(SeriesRecord {
            name,
            host,
            device,
            tags,
            points,
            kind,
            interval,
        });
    }

    /// Adds one parsed Datadog series (v1 or v2, as `core::intake` hands them out). Points
    /// with a null timestamp or value are left out (the SignalFx translation drops them too);
    /// returns how many were.
    pub fn push_dd(&mut self, s: &DdSeries<'_>) -> usize {
        let mut dropped = 0;
        let pts = s.points.iter().filter_map(|[ts, v]| match (ts, v) {
            (Some(timestamp), Some(value)) => Some(Point {
                timestamp: *timestamp,
                value: *value,
            }),
            _ => {
                dropped += 1;
                None
            }
        });
        self.push_series(
            s.metric,
            Kind::from_dd(s.kind),
            s.interval,
            s.host,
            s.device,
            s.tags.iter().copied(),
            pts,
        );
        dropped
    }

    /// Parses a Datadog `/api/v1/series` or `/api/v2/series` body in place (simd-json, reused
    /// `buffers`) and adds every series. Returns the number of series added.
    ///
    /// # Errors
    /// The intake parser's [`BodyError`]; series added before the error stay in the batch.
    pub fn extend_from_intake(
        &mut self,
        endpoint: Endpoint,
        body: &mut [u8],
        buffers: &mut simd_json::Buffers,
    ) -> Result<usize, BodyError> {
        switchyard_core::intake::for_each_series(endpoint, body, buffers, |s| {
            self.push_dd(s);
        })
    }

    /// Adds every series of a flushed statsd batch: one point each at the batch's timestamp,
    /// the batch's interval, name = base name + suffix. Sub-metrics of one timer share their
    /// host and tag strings.
    pub fn extend_from_series_batch(&mut self, b: &SeriesBatch) {
        self.series.reserve(b.len());
        self.points.reserve(b.len());
        let mut last = None;
        let empty = {
            let at = self.strings.len();
            span_of(at, at)
        };
        for s in b.iter() {
            let id = s.identity();
            let (host, tags) = match last {
                Some((prev, host, tags)) if prev == id => (host, tags),
                _ => {
                    let host = self.push_str(s.host());
                    let tags = self.push_tags(s.tags());
                    last = Some((id, host, tags));
                    (host, tags)
                }
            };
            let start = self.strings.len();
            self.strings.push_str(s.base_name());
            self.strings.push_str(s.suffix());
            let name = span_of(start, self.strings.len());
            let p = self.points.len();
            self.points.push(Point {
                timestamp: b.timestamp as f64,
                value: s.value(),
            });
            self.series.push(SeriesRecord {
                name,
                host,
                device: empty,
                tags,
                points: span_of(p, p + 1),
                kind: s.kind().into(),
                interval: Some(b.interval),
            });
        }
    }

    /// Iterates the series in insertion order.
    pub fn series(&self) -> impl ExactSizeIterator<Item = SeriesRef<'_>> {
        self.series
            .iter()
            .map(move |rec| SeriesRef { batch: self, rec })
    }

    /// Appends the batch as one SignalFx `/v2/datapoint` body (`{"gauge":[...],"counter":[...]}`)
    /// to `out`, translated by `translator` (whose statistics count what was dropped).
    pub fn write_signalfx_json(&self, translator: &mut Translator, out: &mut Vec<u8>) {
        translate_all(
            self.series().map(|s| SeriesView {
                name: s.name(),
                kind: s.kind(),
                interval: s.interval(),
                host: s.host(),
                device: s.device(),
                tags: s.tags(),
                points: s.points().iter().map(|p| (p.timestamp, p.value)),
            }),
            translator,
            out,
        );
    }
}

/// One series of either form, as the translator needs it.
struct SeriesView<'a, T, P> {
    name: &'a str,
    kind: Kind,
    interval: Option<f64>,
    host: Option<&'a str>,
    device: Option<&'a str>,
    tags: T,
    points: P,
}

fn translate_all<'a, T, P>(
    series: impl Iterator<Item = SeriesView<'a, T, P>>,
    translator: &mut Translator,
    out: &mut Vec<u8>,
) where
    T: Iterator<Item = &'a str>,
    P: Iterator<Item = (f64, f64)>,
{
    let mut tags: Vec<&str> = Vec::new();
    let mut points: Vec<[Option<f64>; 2]> = Vec::new();
    for s in series {
        tags.clear();
        tags.extend(s.tags);
        points.clear();
        points.extend(s.points.map(|(t, v)| [Some(t), Some(v)]));
        translator.push(&DdSeries {
            metric: s.name,
            kind: s.kind.as_dd(),
            interval: s.interval,
            host: s.host,
            device: s.device,
            tags: &tags,
            points: &points,
        });
    }
    translator.finish(out);
}

/// Serializes batches with a reused rkyv arena and output buffer.
#[derive(Default)]
pub struct BatchWriter {
    arena: Arena,
    buf: AlignedVec<16>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("capacity", &self.buf.capacity())
            .finish_non_exhaustive()
    }
}

impl BatchWriter {
    /// Archives `batch` into the writer's aligned buffer and returns it (valid until the next
    /// call).
    ///
    /// # Errors
    /// [`BatchError::TooLarge`] when the archive does not fit rkyv's 32-bit offsets.
    pub fn write(&mut self, batch: &StreamBatch) -> Result<&[u8], BatchError> {
        self.buf.clear();
        rkyv::api::high::to_bytes_in_with_alloc::<_, _, Failure>(
            batch,
            &mut self.buf,
            self.arena.acquire(),
        )
        .map_err(|_| BatchError::TooLarge)?;
        Ok(&self.buf[..])
    }

    /// Appends the archive of `batch` to `out` directly (no intermediate copy). Positions are
    /// relative, so the archive reads wherever it lands as long as it starts at a multiple of
    /// 16 bytes from the start of `out` and `out` is read from a 16-byte-aligned address.
    ///
    /// # Errors
    /// [`BatchError::TooLarge`] as [`BatchWriter::write`]; `out` is restored on error.
    pub fn append_to(&mut self, batch: &StreamBatch, out: &mut Vec<u8>) -> Result<(), BatchError> {
        let start = out.len();
        let r = rkyv::api::high::to_bytes_in_with_alloc::<_, _, Failure>(
            batch,
            RelativeWriter { out, start },
            self.arena.acquire(),
        );
        if r.is_err() {
            out.truncate(start);
            return Err(BatchError::TooLarge);
        }
        Ok(())
    }
}

/// A writer over the tail of a `Vec`, reporting positions relative to where the archive
/// starts (rkyv aligns by position, so the archive must start at an aligned offset).
struct RelativeWriter<'v> {
    out: &'v mut Vec<u8>,
    start: usize,
}

impl rkyv::ser::Positional for RelativeWriter<'_> {
    fn pos(&self) -> usize {
        self.out.len() - self.start
    }
}

impl<E> rkyv::ser::Writer<E> for RelativeWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Validates an archived batch in place and returns a view of it: bytecheck over the
/// structure, then one pass over every span (strings on UTF-8 boundaries, tag and point
/// ranges inside their tables). Nothing is copied or allocated.
///
/// # Errors
/// [`BatchError::Misaligned`] unless `bytes` starts at a 16-byte-aligned address,
/// [`BatchError::Invalid`] when bytecheck rejects it, [`BatchError::BadSpan`] for a span out
/// of bounds.
pub fn access(bytes: &[u8]) -> Result<&ArchivedStreamBatch, BatchError> {
    if (bytes.as_ptr() as usize) % 16 != 0 {
        return Err(BatchError::Misaligned);
    }
    let b = rkyv::access::<ArchivedStreamBatch, Failure>(bytes).map_err(|_| BatchError::Invalid)?;
    b.check_spans()?;
    Ok(b)
}

impl ArchivedStreamBatch {
    fn check_spans(&self) -> Result<(), BatchError> {
        let strings = self.strings.as_str();
        let str_ok = |s: &ArchivedSpan| strings.get(s.range()).is_some();
        let table_ok = |s: &ArchivedSpan, len: usize| {
            let r = s.range();
            r.start <= r.end && r.end <= len
        };
        if !self.tags.iter().all(str_ok) {
            return Err(BatchError::BadSpan);
        }
        for r in self.series.iter() {
            if !(str_ok(&r.name)
                && str_ok(&r.host)
                && str_ok(&r.device)
                && table_ok(&r.tags, self.tags.len())
                && table_ok(&r.points, self.points.len()))
            {
                return Err(BatchError::BadSpan);
            }
        }
        Ok(())
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of points over all series.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// Iterates the series in place.
    pub fn series(&self) -> impl ExactSizeIterator<Item = ArchivedSeriesRef<'_>> {
        self.series
            .iter()
            .map(move |rec| ArchivedSeriesRef { batch: self, rec })
    }

    /// An owned copy (tools and tests; workers read in place).
    pub fn to_owned_batch(&self) -> StreamBatch {
        // Deserializing a validated archive into owned types cannot fail.
        rkyv::deserialize::<StreamBatch, Failure>(self).unwrap_or_default()
    }

    /// [`StreamBatch::write_signalfx_json`] over the archive, for workers delivering to
    /// SignalFx straight from the record bytes.
    pub fn write_signalfx_json(&self, translator: &mut Translator, out: &mut Vec<u8>) {
        translate_all(
            self.series().map(|s| SeriesView {
                name: s.name(),
                kind: s.kind(),
                interval: s.interval(),
                host: s.host(),
                device: s.device(),
                tags: s.tags(),
                points: s.points(),
            }),
            translator,
            out,
        );
    }
}

/// One series of an [`ArchivedStreamBatch`], borrowed from the record bytes.
#[derive(Debug, Clone, Copy)]
pub struct ArchivedSeriesRef<'a> {
    batch: &'a ArchivedStreamBatch,
    rec: &'a ArchivedSeriesRecord,
}

impl<'a> ArchivedSeriesRef<'a> {
    fn str(&self, s: &ArchivedSpan) -> &'a str {
        self.batch.strings.as_str().get(s.range()).unwrap_or("")
    }
    /// Metric name.
    pub fn name(&self) -> &'a str {
        self.str(&self.rec.name)
    }
    /// Host (`None` when absent).
    pub fn host(&self) -> Option<&'a str> {
        Some(self.str(&self.rec.host)).filter(|h| !h.is_empty())
    }
    /// Device (`None` when absent).
    pub fn device(&self) -> Option<&'a str> {
        Some(self.str(&self.rec.device)).filter(|h| !h.is_empty())
    }
    /// Tags as sent.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let b = self.batch;
        b.tags
            .get(self.rec.tags.range())
            .unwrap_or(&[])
            .iter()
            .map(move |s| b.strings.as_str().get(s.range()).unwrap_or(""))
    }
    /// Type.
    pub fn kind(&self) -> Kind {
        self.rec.kind.to_native()
    }
    /// Interval in seconds, when known.
    pub fn interval(&self) -> Option<f64> {
        self.rec.interval.as_ref().map(|i| i.to_native())
    }
    /// Points as (timestamp seconds, value), in the order they were pushed.
    pub fn points(&self) -> impl ExactSizeIterator<Item = (f64, f64)> + 'a {
        self.batch
            .points
            .get(self.rec.points.range())
            .unwrap_or(&[])
            .iter()
            .map(|p| (p.timestamp.to_native(), p.value.to_native()))
    }
}

impl ArchivedSeriesRef<'_> {
    /// The series' partition hash ([`partition_hash`]), the same as the owned series'.
    pub fn partition_hash(&self, key: &mut String) -> u128 {
        partition_hash(self.name(), self.host(), self.device(), self.tags(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::translate::TranslateConfig;

    fn sample() -> StreamBatch {
        let mut b = StreamBatch::new();
        b.push_series(
            "api.latency",
            Kind::Gauge,
            Some(10.0),
            Some("web-1"),
            None,
            ["env:prod", "team:core"],
            [
                Point {
                    timestamp: 1_700_000_000.0,
                    value: 1.5,
                },
                Point {
                    timestamp: 1_700_000_010.0,
                    value: 2.5,
                },
            ],
        );
        b.push_series(
            "jobs",
            Kind::Rate,
            None,
            None,
            Some("sda"),
            [],
            [Point {
                timestamp: 1_700_000_000.5,
                value: -3.0,
            }],
        );
        b
    }

    #[test]
    fn archive_is_read_in_place() {
        let b = sample();
        let mut w = BatchWriter::default();
        let bytes = w.write(&b).unwrap();
        let a = access(bytes).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.point_count(), 3);
        let s: Vec<_> = a.series().collect();
        assert_eq!(s[0].name(), "api.latency");
        assert_eq!(s[0].host(), Some("web-1"));
        assert_eq!(s[0].device(), None);
        assert_eq!(s[0].tags().collect::<Vec<_>>(), ["env:prod", "team:core"]);
        assert_eq!(s[0].kind(), Kind::Gauge);
        assert_eq!(s[0].interval(), Some(10.0));
        assert_eq!(
            s[0].points().collect::<Vec<_>>(),
            [(1_700_000_000.0, 1.5), (1_700_000_010.0, 2.5)]
        );
        assert_eq!(s[1].device(), Some("sda"));
        assert_eq!(s[1].interval(), None);
        assert_eq!(s[1].tags().count(), 0);
        assert_eq!(a.to_owned_batch(), b);
        // The name is borrowed from the record bytes, not copied.
        let r = bytes.as_ptr_range();
        assert!(r.contains(&s[0].name().as_ptr()));
    }

    #[test]
    fn partition_hash_is_the_same_owned_and_archived_and_depends_on_identity_only() {
        let b = sample();
        let mut w = BatchWriter::default();
        let a = access(w.write(&b).unwrap()).unwrap();
        let mut key = String::new();
        let owned: Vec<u128> = b.series().map(|s| s.partition_hash(&mut key)).collect();
        let archived: Vec<u128> = a.series().map(|s| s.partition_hash(&mut key)).collect();
        assert_eq!(owned, archived);
        assert_ne!(owned[0], owned[1]);
        // MD5 of the NUL-separated identity, as Kinesis hashes a partition key.
        assert_eq!(
            owned[0],
            crate::kpl::hash_key("api.latency\0web-1\0\0env:prod\0team:core")
        );
        // Points, kind and interval are not part of the identity; tags and host are.
        let mut other = StreamBatch::new();
        let same = |b: &mut StreamBatch, host, tags: &[&str]| {
            b.push_series(
                "api.latency",
                Kind::Count,
                None,
                host,
                None,
                tags.iter().copied(),
                [],
            );
        };
        same(&mut other, Some("web-1"), &["env:prod", "team:core"]);
        same(&mut other, Some("web-2"), &["env:prod", "team:core"]);
        same(&mut other, Some("web-1"), &["env:prod"]);
        let h: Vec<u128> = other.series().map(|s| s.partition_hash(&mut key)).collect();
        assert_eq!(h[0], owned[0]);
        assert_ne!(h[1], owned[0]);
        assert_ne!(h[2], owned[0]);
    }

    #[test]
    fn from_series_batch_shares_timer_identity() {
        let mut sb = SeriesBatch::new(1_700_000_000, 10.0);
        let id = sb.identity("req", ["a:1", "b:2"], "h1");
        sb.push(id, ".count", SeriesType::Count, 4.0);
        sb.push(id, ".upper", SeriesType::Gauge, 9.0);
        let id2 = sb.identity("g", [], "");
        sb.push(id2, "", SeriesType::Gauge, 1.0);
        let mut b = StreamBatch::new();
        b.extend_from_series_batch(&sb);
        let got: Vec<_> = b
            .series()
            .map(|s| {
                (
                    s.name(),
                    s.kind(),
                    s.host(),
                    s.tags().collect::<Vec<_>>(),
                    s.points().to_vec(),
                    s.interval(),
                )
            })
            .collect();
        let p = |v| {
            vec![Point {
                timestamp: 1_700_000_000.0,
                value: v,
            }]
        };
        assert_eq!(
            got,
            vec![
                (
                    "req.count",
                    Kind::Count,
                    Some("h1"),
                    vec!["a:1", "b:2"],
                    p(4.0),
                    Some(10.0)
                ),
                (
                    "req.upper",
                    Kind::Gauge,
                    Some("h1"),
                    vec!["a:1", "b:2"],
                    p(9.0),
                    Some(10.0)
                ),
                ("g", Kind::Gauge, None, vec![], p(1.0), Some(10.0)),
            ]
        );
        // Host and tags stored once for the two timer sub-metrics.
        assert_eq!(b.tags.len(), 2);
        assert_eq!(b.strings, "h1a:1b:2req.countreq.upperg");
    }

    #[test]
    fn reuse_keeps_capacity() {
        let mut b = sample();
        let cap = b.heap_bytes();
        b.clear();
        assert!(b.is_empty());
        b.push_series("x", Kind::Count, None, None, None, [], []);
        assert_eq!(b.heap_bytes(), cap);
    }

    #[test]
    fn from_intake_v1_and_null_points() {
        let mut body = br#"{"series":[{"metric":"m1","type":"count","interval":10,"host":"h","tags":["t:1"],"points":[[1700000000,2],[1700000010,null]]},{"metric":"m2","points":[[1700000000.5,7]]}]}"#.to_vec();
        let mut b = StreamBatch::new();
        let n = b
            .extend_from_intake(
                Endpoint::SeriesV1,
                &mut body,
                &mut simd_json::Buffers::default(),
            )
            .unwrap();
        assert_eq!(n, 2);
        let s: Vec<_> = b.series().collect();
        assert_eq!(s[0].name(), "m1");
        assert_eq!(s[0].kind(), Kind::Count);
        assert_eq!(s[0].points().len(), 1, "null value dropped");
        assert_eq!(s[1].kind(), Kind::Unspecified);
        assert_eq!(s[1].points()[0].timestamp, 1_700_000_000.5);
    }

    #[test]
    fn signalfx_json_matches_the_translator_on_both_forms() {
        let b = sample();
        let mut t = Translator::new(TranslateConfig::default());
        let mut owned = Vec::new();
        b.write_signalfx_json(&mut t, &mut owned);
        let mut w = BatchWriter::default();
        let mut archived = Vec::new();
        access(w.write(&b).unwrap())
            .unwrap()
            .write_signalfx_json(&mut t, &mut archived);
        assert_eq!(owned, archived);
        let v: serde_json::Value = serde_json::from_slice(&owned).unwrap();
        // Gauge with host dimension, ms timestamps; the rate without interval is a gauge.
        let g = &v["gauge"];
        assert_eq!(g[0]["metric"], "api.latency");
        assert_eq!(g[0]["timestamp"], 1_700_000_000_000i64);
        assert_eq!(g[0]["dimensions"]["host"], "web-1");
        assert_eq!(g[0]["dimensions"]["env"], "prod");
        assert_eq!(g[2]["metric"], "jobs");
        assert_eq!(g[2]["timestamp"], 1_700_000_000_500i64);
        assert_eq!(g[2]["dimensions"]["device"], "sda");
        assert!(v.get("counter").is_none());
    }

    #[test]
    fn append_to_reads_back_after_a_header() {
        let b = sample();
        let mut w = BatchWriter::default();
        let mut out = vec![7u8; 16];
        w.append_to(&b, &mut out).unwrap();
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&out[16..]);
        assert_eq!(access(&aligned).unwrap().to_owned_batch(), b);
        assert_eq!(&aligned[..], w.write(&b).unwrap());
    }

    #[test]
    fn corrupt_archives_are_errors() {
        let b = sample();
        let mut w = BatchWriter::default();
        let good = w.write(&b).unwrap().to_vec();
        let mut buf = AlignedVec::<16>::new();
        let mut saw_error = false;
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                buf.clear();
                buf.extend_from_slice(&bad);
                if let Ok(a) = access(&buf) {
                    // Whatever validated must iterate without panicking.
                    for s in a.series() {
                        let _ = (s.name(), s.tags().count(), s.points().count());
                    }
                } else {
                    saw_error = true;
                }
            }
        }
        assert!(saw_error);
        buf.clear();
        buf.extend_from_slice(&good[..good.len() - 1]);
        assert!(access(&buf).is_err());
        // Misaligned input.
        buf.clear();
        buf.extend_from_slice(&[0]);
        buf.extend_from_slice(&good);
        assert_eq!(access(&buf[1..]).err(), Some(BatchError::Misaligned));
    }
}
