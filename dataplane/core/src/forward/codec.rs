//! Request bodies: [`ForwardEncoder`] (forwarder side), [`ForwardDecoder`] and [`feed`]
//! (aggregator side).

use super::schema::{access, AccessError, BatchTooLarge, ForwardBatch, ForwardView, SeriesValue};
use crate::aggregate::{
    FeedOutcome, GaugeDialect, HostSource, IntervalAggregator, LineContext, Partials, SeriesKey,
};
use libdeflater::{CompressionLvl, Compressor, DecompressionError, Decompressor};
use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;

/// The `Content-Type` of a forward request body.
pub const CONTENT_TYPE: &str = "application/x-switchyard-forward";
/// The first four bytes of every body.
pub const MAGIC: [u8; 4] = *b"SYFW";
/// Header size: magic, version, three reserved zero bytes, decoded length (`u32` LE).
pub const HEADER_LEN: usize = 12;
/// Largest expansion of a DEFLATE stream (258 bytes from two 1-bit codes), plus slack for
/// the zlib header: a body declaring more than this is refused before anything is allocated.
const MAX_INFLATE_RATIO: usize = 1032;

/// The decoder's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardLimits {
    /// Largest body accepted as received (compressed), header included.
    pub max_body_bytes: usize,
    /// Largest archive accepted once decompressed.
    pub max_decoded_bytes: usize,
    /// Most series accepted in one body.
    pub max_series: usize,
}

impl Default for ForwardLimits {
    /// 16 MiB compressed, 128 MiB decoded, one million series.
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 128 << 20,
            max_series: 1_000_000,
        }
    }
}

/// Why a forward request body was rejected. Small and `Copy`: counted by
/// [`ForwardError::reason`], not logged per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The `Content-Type` is not [`CONTENT_TYPE`] (415).
    #[error("content type is not {CONTENT_TYPE}")]
    ContentType,
    /// The body as received is over [`ForwardLimits::max_body_bytes`] (413).
    #[error("body of {len} bytes is over the {limit}-byte cap")]
    BodyTooLarge {
        /// Body size.
        len: usize,
        /// The cap.
        limit: usize,
    },
    /// The declared decoded size is over [`ForwardLimits::max_decoded_bytes`] (413).
    #[error("decoded body of {len} bytes is over the {limit}-byte cap")]
    DecodedTooLarge {
        /// Declared decoded size.
        len: usize,
        /// The cap.
        limit: usize,
    },
    /// More series than [`ForwardLimits::max_series`] (413).
    #[error("{count} series are over the {limit}-series cap")]
    TooManySeries {
        /// Series in the body.
        count: usize,
        /// The cap.
        limit: usize,
    },
    /// Shorter than the header, or not starting with [`MAGIC`] (400).
    #[error("not a forward body (bad magic or truncated header)")]
    BadMagic,
    /// A header or archive version this build does not read (400).
    #[error("unsupported forward version {0}")]
    UnsupportedVersion(u8),
    /// Reserved header bytes are not zero (400).
    #[error("reserved header bytes set")]
    ReservedBytes,
    /// The zlib stream is corrupt, or does not decode to exactly the declared size (400).
    #[error("corrupt zlib stream")]
    Corrupt,
    /// The archive fails validation (bytecheck or a span out of bounds) (400).
    #[error("invalid forward archive")]
    Invalid,
}

impl ForwardError {
    /// The HTTP status to answer with: 400 for bad input, 413 over a cap, 415 for the
    /// content type.
    pub const fn status(self) -> u16 {
        match self {
            ForwardError::ContentType => 415,
            ForwardError::BodyTooLarge { .. }
            | ForwardError::DecodedTooLarge { .. }
            | ForwardError::TooManySeries { .. } => 413,
            ForwardError::BadMagic
            | ForwardError::UnsupportedVersion(_)
            | ForwardError::ReservedBytes
            | ForwardError::Corrupt
            | ForwardError::Invalid => 400,
        }
    }

    /// A short, bounded reason label for counters and the response body.
    pub const fn reason(self) -> &'static str {
        match self {
            ForwardError::ContentType => "content_type",
            ForwardError::BodyTooLarge { .. } => "body_too_large",
            ForwardError::DecodedTooLarge { .. } => "decoded_too_large",
            ForwardError::TooManySeries { .. } => "too_many_series",
            ForwardError::BadMagic => "bad_magic",
            ForwardError::UnsupportedVersion(_) => "unsupported_version",
            ForwardError::ReservedBytes => "reserved_bytes",
            ForwardError::Corrupt => "corrupt",
            ForwardError::Invalid => "invalid_archive",
        }
    }
}

/// Checks a request's `Content-Type` header (`None`: absent): [`CONTENT_TYPE`], matched
/// case-insensitively, parameters after `;` ignored.
///
/// # Errors
/// [`ForwardError::ContentType`] for anything else, absence included.
pub fn check_content_type(value: Option<&str>) -> Result<(), ForwardError> {
    let v = value.unwrap_or("");
    let mime = v.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case(CONTENT_TYPE) {
        Ok(())
    } else {
        Err(ForwardError::ContentType)
    }
}

/// What [`ForwardEncoder::encode`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoded {
    /// Series in the body.
    pub series: usize,
    /// Statsd lines those series consolidate ([`Entry::samples`](crate::aggregate::Entry)
    /// summed).
    pub lines: u64,
    /// Archive size before compression.
    pub archive_bytes: usize,
    /// Body size (header and zlib stream).
    pub body_bytes: usize,
}

/// Encodes forward request bodies, reusing its batch, rkyv arena, archive buffer and
/// libdeflate compressor: once warm, encoding allocates nothing per series.
pub struct ForwardEncoder {
    batch: ForwardBatch,
    host_tags: Vec<String>,
    arena: Arena,
    archive: AlignedVec<16>,
    deflater: Compressor,
}

impl std::fmt::Debug for ForwardEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardEncoder")
            .field("forwarder", &self.batch.forwarder)
            .field("host_tags", &self.host_tags)
            .finish_non_exhaustive()
    }
}

/// Writes the union of two sorted, de-duplicated tag lists, sorted and de-duplicated
/// (byte order, as [`KeyBuilder`](crate::aggregate::KeyBuilder) sorts), joined by `,`.
fn merge_tags<'t>(
    out: &mut String,
    mut a: impl Iterator<Item = &'t str>,
    mut b: impl Iterator<Item = &'t str>,
) {
    let (mut x, mut y) = (a.next(), b.next());
    let mut first = true;
    let mut put = |out: &mut String, t: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(t);
    };
    loop {
        match (x, y) {
            (Some(p), Some(q)) => match p.cmp(q) {
                std::cmp::Ordering::Less => {
                    put(out, p);
                    x = a.next();
                }
                std::cmp::Ordering::Greater => {
                    put(out, q);
                    y = b.next();
                }
                std::cmp::Ordering::Equal => {
                    put(out, p);
                    x = a.next();
                    y = b.next();
                }
            },
            (Some(p), None) => {
                put(out, p);
                x = a.next();
            }
            (None, Some(q)) => {
                put(out, q);
                y = b.next();
            }
            (None, None) => break,
        }
    }
}

/// Writes `key`'s tags merged with `host_tags` (both canonical).
fn tags_writer<'k>(key: &'k SeriesKey, host_tags: &'k [String]) -> impl FnOnce(&mut String) + 'k {
    move |s| merge_tags(s, key.tags(), host_tags.iter().map(String::as_str))
}

impl ForwardEncoder {
    /// An encoder for `forwarder` (its hostname) consolidating over `interval_ms`, adding
    /// `host_tags` (e.g. `region:eu-west-1`) to every series, as gostatsd's forwarder does;
    /// empty and repeated host tags are dropped. Compresses at libdeflate's default level (6).
    pub fn new<S: AsRef<str>>(forwarder: &str, interval_ms: u64, host_tags: &[S]) -> Self {
        let mut tags: Vec<String> = host_tags
            .iter()
            .map(|t| t.as_ref().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        tags.sort_unstable();
        tags.dedup();
        Self {
            batch: ForwardBatch::new(forwarder, interval_ms),
            host_tags: tags,
            arena: Arena::new(),
            archive: AlignedVec::new(),
            deflater: Compressor::new(CompressionLvl::default()),
        }
    }

    /// Encodes the series of `parts` for which `keep(index, &key)` holds (e.g. those an
    /// [`AggregatorRing`](super::AggregatorRing) sends to one aggregator) into `out`, which is
    /// cleared first: one complete request body. Tags are the key's canonical tags merged
    /// with the host tags; the host is the key's; the listener scope is not sent. An empty
    /// selection still makes a valid body (with no series). `index` numbers the entries of
    /// `parts` in the order they are visited: counters, gauges, timers, then sets.
    ///
    /// # Errors
    /// [`BatchTooLarge`] when the archive does not fit rkyv's 32-bit offsets; `out` is then
    /// empty.
    pub fn encode(
        &mut self,
        parts: &Partials,
        mut keep: impl FnMut(usize, &SeriesKey) -> bool,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, BatchTooLarge> {
        out.clear();
        self.batch.clear();
        // `index` counts every entry in the order visited: counters, gauges, timers, sets.
        let mut index = 0usize;
        let mut keep = move |k: &SeriesKey| {
            index += 1;
            keep(index - 1, k)
        };
        let mut lines = 0u64;
        let host_tags = &self.host_tags;
        let batch = &mut self.batch;
        let tags_of = |key| tags_writer(key, host_tags);
        for e in parts.counters.iter().filter(|e| keep(&e.key)) {
            lines += u64::from(e.samples);
            let k = &e.key;
            batch.push_with_tags(k.name(), tags_of(k), k.host(), SeriesValue::Counter(e.val))?;
        }
        for e in parts.gauges.iter().filter(|e| keep(&e.key)) {
            lines += u64::from(e.samples);
            let (k, g) = (&e.key, e.val);
            let value = SeriesValue::Gauge {
                abs: g.abs,
                delta: g.delta + g.other_delta,
            };
            batch.push_with_tags(k.name(), tags_of(k), k.host(), value)?;
        }
        for e in parts.timers.iter().filter(|e| keep(&e.key)) {
            lines += u64::from(e.samples);
            let k = &e.key;
            let value = SeriesValue::Timer {
                values: &e.val.values,
                sampled_count: e.val.sampled_count,
            };
            batch.push_with_tags(k.name(), tags_of(k), k.host(), value)?;
        }
        for e in parts.sets.iter().filter(|e| keep(&e.key)) {
            lines += u64::from(e.samples);
            let k = &e.key;
            let members = e.val.members.iter().copied();
            batch.push_members(k.name(), tags_of(k), k.host(), members)?;
        }
        let (archive_bytes, body_bytes) = self.write_body(out)?;
        Ok(Encoded {
            series: self.batch.len(),
            lines,
            archive_bytes,
            body_bytes,
        })
    }

    /// Encodes a batch built by hand (tools, tests, fuzzing) into `out` (cleared first),
    /// with the encoder's forwarder name and interval; the host tags are not added. Returns
    /// the body size.
    ///
    /// # Errors
    /// [`BatchTooLarge`] as [`ForwardEncoder::encode`].
    pub fn encode_batch(
        &mut self,
        batch: &ForwardBatch,
        out: &mut Vec<u8>,
    ) -> Result<usize, BatchTooLarge> {
        let own = std::mem::replace(&mut self.batch, batch.clone());
        self.batch.forwarder.clone_from(&own.forwarder);
        self.batch.interval_ms = own.interval_ms;
        let r = self.write_body(out);
        self.batch = own;
        r.map(|(_, body)| body)
    }

    fn write_body(&mut self, out: &mut Vec<u8>) -> Result<(usize, usize), BatchTooLarge> {
        out.clear();
        self.archive.clear();
        rkyv::api::high::to_bytes_in_with_alloc::<_, _, rkyv::rancor::Failure>(
            &self.batch,
            &mut self.archive,
            self.arena.acquire(),
        )
        .map_err(|_| BatchTooLarge)?;
        let plain = &self.archive[..];
        let len = u32::try_from(plain.len()).map_err(|_| BatchTooLarge)?;
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[super::schema::VERSION, 0, 0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
        let bound = self.deflater.zlib_compress_bound(plain.len());
        out.resize(HEADER_LEN + bound, 0);
        match self.deflater.zlib_compress(plain, &mut out[HEADER_LEN..]) {
            Ok(n) => out.truncate(HEADER_LEN + n),
            Err(_) => {
                out.clear();
                return Err(BatchTooLarge);
            }
        }
        Ok((plain.len(), out.len()))
    }
}

/// Decodes forward request bodies within [`ForwardLimits`], reusing one aligned buffer and
/// one libdeflate decompressor. Never panics, whatever the bytes.
pub struct ForwardDecoder {
    limits: ForwardLimits,
    inflater: Decompressor,
    buf: AlignedVec<16>,
}

impl std::fmt::Debug for ForwardDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardDecoder")
            .field("limits", &self.limits)
            .field("capacity", &self.buf.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for ForwardDecoder {
    fn default() -> Self {
        Self::new(ForwardLimits::default())
    }
}

impl ForwardDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: ForwardLimits) -> Self {
        Self {
            limits,
            inflater: Decompressor::new(),
            buf: AlignedVec::new(),
        }
    }

    /// The caps in force.
    pub fn limits(&self) -> ForwardLimits {
        self.limits
    }

    /// Checks the header, inflates the body into the decoder's buffer (allocated only after
    /// the declared size passed the caps) and validates the archive; the returned view reads
    /// it in place until the next call.
    ///
    /// # Errors
    /// [`ForwardError`]; [`ForwardError::status`] is the answer.
    pub fn decode(&mut self, body: &[u8]) -> Result<ForwardView<'_>, ForwardError> {
        let l = self.limits;
        if body.len() > l.max_body_bytes {
            return Err(ForwardError::BodyTooLarge {
                len: body.len(),
                limit: l.max_body_bytes,
            });
        }
        let Some(header) = body.get(..HEADER_LEN) else {
            return Err(ForwardError::BadMagic);
        };
        if header[..4] != MAGIC {
            return Err(ForwardError::BadMagic);
        }
        if header[4] != super::schema::VERSION {
            return Err(ForwardError::UnsupportedVersion(header[4]));
        }
        if header[5..8] != [0, 0, 0] {
            return Err(ForwardError::ReservedBytes);
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&header[8..12]);
        let len = u32::from_le_bytes(n) as usize;
        if len > l.max_decoded_bytes {
            return Err(ForwardError::DecodedTooLarge {
                len,
                limit: l.max_decoded_bytes,
            });
        }
        let stream = &body[HEADER_LEN..];
        if len
            > stream
                .len()
                .saturating_mul(MAX_INFLATE_RATIO)
                .saturating_add(64)
        {
            return Err(ForwardError::Corrupt);
        }
        self.buf.clear();
        self.buf.resize(len, 0);
        match self.inflater.zlib_decompress(stream, &mut self.buf[..]) {
            Ok(got) if got == len => {}
            Ok(_) | Err(DecompressionError::BadData | DecompressionError::InsufficientSpace) => {
                return Err(ForwardError::Corrupt)
            }
        }
        let view = access(&self.buf[..]).map_err(|e| match e {
            AccessError::Version(v) => ForwardError::UnsupportedVersion(v),
            AccessError::Invalid | AccessError::BadSpan => ForwardError::Invalid,
        })?;
        if view.len() > l.max_series {
            return Err(ForwardError::TooManySeries {
                count: view.len(),
                limit: l.max_series,
            });
        }
        Ok(view)
    }
}

/// Folds every series of a decoded batch into `agg` as seen at `now_ns` in listener scope
/// `scope`, each with its own host. A series the aggregator refuses (series or timer value
/// caps, too many tags, a non-finite value) is counted in the outcome and skipped; the
/// others are applied.
pub fn feed(
    batch: &ForwardView<'_>,
    agg: &mut IntervalAggregator,
    now_ns: u64,
    scope: u8,
) -> FeedOutcome {
    let mut out = FeedOutcome::default();
    let (mut values, mut members) = (Vec::new(), Vec::new());
    for s in batch.series() {
        let cx = LineContext {
            host: HostSource::Sender(s.host),
            dialect: GaugeDialect::Dogstatsd,
            now_ns,
            scope,
        };
        let v = s.value_into(&mut values, &mut members).consolidated();
        out.record(agg.ingest_consolidated(s.name, s.tags, v, cx));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{member_hash, LineContext};
    use crate::statsd::{parse_metric, LineError};
    use proptest::prelude::*;

    fn lines(seed: u64, dialect: GaugeDialect, ls: &[(&str, &str)]) -> IntervalAggregator {
        let mut a = IntervalAggregator::new(seed, 64, 1000, 1000);
        for (i, (l, host)) in ls.iter().enumerate() {
            let cx = LineContext {
                host: HostSource::Sender(host),
                dialect,
                now_ns: i as u64,
                scope: 0,
            };
            a.ingest(&parse_metric(l.as_bytes()).unwrap(), cx).unwrap();
        }
        a
    }

    const LINES: &[(&str, &str)] = &[
        ("c:2|c|@0.5|#b:2,a:1", "h1"),
        ("c:1|c|#a:1,b:2", "h1"),
        ("c:1|c", "h2"),
        ("g:5|g", "h1"),
        ("g:+3|g", "h1"),
        ("g2:-4|g", "h1"),
        ("t:1:2|ms", "h1"),
        ("t:3|ms|@0.25", "h1"),
        ("s:u1|s|#z:9", "h1"),
        ("s:u2|s|#z:9", "h1"),
    ];

    fn body(enc: &mut ForwardEncoder, parts: &Partials) -> (Vec<u8>, Encoded) {
        let mut out = Vec::new();
        let e = enc.encode(parts, |_, _| true, &mut out).unwrap();
        (out, e)
    }

    #[test]
    fn round_trip_feeds_what_the_forwarder_consolidated() {
        let mut fwd = lines(1, GaugeDialect::Etsy, LINES);
        let parts = fwd.drain_by_owner(1).pop().unwrap();
        let mut enc = ForwardEncoder::new("fwd-1", 1000, &[] as &[&str]);
        let (b, e) = body(&mut enc, &parts);
        assert_eq!((e.series, e.lines, e.body_bytes), (6, 10, b.len()));
        assert_eq!(&b[..4], b"SYFW");
        let mut dec = ForwardDecoder::default();
        let view = dec.decode(&b).unwrap();
        assert_eq!(
            (view.forwarder(), view.interval_ms(), view.len()),
            ("fwd-1", 1000, 6)
        );
        let mut agg = IntervalAggregator::new(2, 64, 1000, 1000);
        let out = feed(&view, &mut agg, 100, 0);
        assert_eq!((out.ok, out.rejected_total()), (6, 0));
        let got = agg.drain_by_owner(1).pop().unwrap();
        let by_name = |p: &Partials, n: &str, h: &str| {
            p.counters
                .iter()
                .find(|e| e.key.name() == n && e.key.host() == h)
                .map(|e| (e.val, e.key.tags_joined().to_string()))
        };
        assert_eq!(by_name(&got, "c", "h1"), Some((5.0, "a:1,b:2".into())));
        assert_eq!(by_name(&got, "c", "h2"), Some((1.0, String::new())));
        let g = |p: &Partials, n: &str| p.gauges.iter().find(|e| e.key.name() == n).unwrap().val;
        assert_eq!((g(&got, "g").abs, g(&got, "g").delta), (Some(5.0), 3.0));
        assert_eq!((g(&got, "g2").abs, g(&got, "g2").delta), (None, -4.0));
        let t = &got.timers[0].val;
        assert_eq!(
            (t.values.as_slice(), t.sampled_count),
            (&[1.0, 2.0, 3.0][..], 6.0)
        );
        let s = &got.sets[0];
        assert_eq!(s.key.tags_joined(), "z:9");
        let mut m: Vec<u64> = s.val.members.iter().copied().collect();
        m.sort_unstable();
        let mut want = vec![member_hash("u1"), member_hash("u2")];
        want.sort_unstable();
        assert_eq!(m, want);
    }

    #[test]
    fn host_tags_are_merged_canonically_and_the_filter_selects_series() {
        let mut fwd = lines(1, GaugeDialect::Dogstatsd, LINES);
        let parts = fwd.drain_by_owner(1).pop().unwrap();
        let mut enc = ForwardEncoder::new("f", 10, &["b:2", "", "region:x", "0:first", "region:x"]);
        let mut out = Vec::new();
        let e = enc
            .encode(&parts, |_, k| k.name() == "c" || k.name() == "s", &mut out)
            .unwrap();
        assert_eq!((e.series, e.lines), (3, 5));
        let mut dec = ForwardDecoder::default();
        let view = dec.decode(&out).unwrap();
        let mut tags: Vec<(&str, &str, &str)> =
            view.series().map(|s| (s.name, s.host, s.tags)).collect();
        tags.sort_unstable();
        assert_eq!(
            tags,
            vec![
                ("c", "h1", "0:first,a:1,b:2,region:x"),
                ("c", "h2", "0:first,b:2,region:x"),
                ("s", "h1", "0:first,b:2,region:x,z:9"),
            ]
        );
        // The encoder is reused: a second body does not carry the first one's series.
        let e = enc
            .encode(&parts, |_, k| k.name() == "t", &mut out)
            .unwrap();
        assert_eq!(e.series, 1);
        assert_eq!(dec.decode(&out).unwrap().len(), 1);
        let e = enc.encode(&parts, |_, _| false, &mut out).unwrap();
        assert_eq!(e.series, 0);
        assert!(dec.decode(&out).unwrap().is_empty());
    }

    #[test]
    fn hand_built_batches_round_trip() {
        let mut b = ForwardBatch::new("x", 5);
        b.push("c", "a", "h", SeriesValue::Counter(1.5)).unwrap();
        b.push(
            "g",
            "",
            "",
            SeriesValue::Gauge {
                abs: None,
                delta: -2.0,
            },
        )
        .unwrap();
        b.push(
            "t",
            "",
            "h",
            SeriesValue::Timer {
                values: &[1.0, f64::NAN],
                sampled_count: 2.0,
            },
        )
        .unwrap();
        b.push("s", "", "h", SeriesValue::Set(&[1, 2, 3])).unwrap();
        b.push("", "", "h", SeriesValue::Counter(1.0)).unwrap();
        let mut enc = ForwardEncoder::new("ignored", 1, &["t:1"]);
        let mut out = Vec::new();
        enc.encode_batch(&b, &mut out).unwrap();
        let mut dec = ForwardDecoder::default();
        let view = dec.decode(&out).unwrap();
        let mut owned = view.to_owned_batch();
        assert_eq!(
            (owned.forwarder.as_str(), owned.interval_ms),
            ("ignored", 1)
        );
        owned.forwarder = "x".into();
        owned.interval_ms = 5;
        // NaN != NaN: compare the rest, then the timer's bits.
        let (mut v, mut m) = (Vec::new(), Vec::new());
        let t = view.series().nth(2).unwrap();
        match t.value_into(&mut v, &mut m) {
            SeriesValue::Timer {
                values,
                sampled_count,
            } => {
                assert_eq!(
                    (values[0], values[1].is_nan(), sampled_count),
                    (1.0, true, 2.0)
                );
            }
            other => panic!("{other:?}"),
        }
        let mut agg = IntervalAggregator::new(3, 64, 100, 100);
        let out = feed(&view, &mut agg, 1, 0);
        assert_eq!(out.ok, 3);
        assert_eq!(out.rejected[LineError::NonFiniteValue.index()], 1);
        assert_eq!(out.rejected[LineError::EmptyName.index()], 1);
    }

    #[test]
    fn content_type_is_checked() {
        for ok in [
            CONTENT_TYPE,
            "Application/X-Switchyard-Forward; v=1",
            " application/x-switchyard-forward ",
        ] {
            assert_eq!(check_content_type(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("application/x-protobuf"),
            Some("application/json"),
        ] {
            let e = check_content_type(bad).unwrap_err();
            assert_eq!((e.status(), e.reason()), (415, "content_type"));
        }
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut c = Compressor::new(CompressionLvl::default());
        let mut out = vec![0; c.zlib_compress_bound(data.len())];
        let n = c.zlib_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn framed(version: u8, reserved: [u8; 3], len: u32, stream: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(version);
        b.extend_from_slice(&reserved);
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(stream);
        b
    }

    #[test]
    fn bad_bodies_get_their_status() {
        let mut fwd = lines(1, GaugeDialect::Dogstatsd, LINES);
        let parts = fwd.drain_by_owner(1).pop().unwrap();
        let mut enc = ForwardEncoder::new("f", 10, &[] as &[&str]);
        let (good, _) = body(&mut enc, &parts);
        let stream = &good[HEADER_LEN..];
        let len = u32::from_le_bytes(good[8..12].try_into().unwrap());
        let mut flipped = good.clone();
        let mid = HEADER_LEN + stream.len() / 2;
        flipped[mid] ^= 0x55;
        let garbage = vec![0xA5u8; 256];
        let cases: Vec<(Vec<u8>, &str, u16)> = vec![
            (Vec::new(), "bad_magic", 400),
            (b"SYFW\x01\0\0".to_vec(), "bad_magic", 400),
            (b"{\"series\":[]}".to_vec(), "bad_magic", 400),
            (framed(2, [0; 3], len, stream), "unsupported_version", 400),
            (framed(1, [0, 1, 0], len, stream), "reserved_bytes", 400),
            (framed(1, [0; 3], len + 1, stream), "corrupt", 400),
            (framed(1, [0; 3], len - 1, stream), "corrupt", 400),
            (flipped, "corrupt", 400),
            (framed(1, [0; 3], 1 << 20, b"x"), "corrupt", 400),
            (
                framed(1, [0; 3], 256, &zlib(&garbage)),
                "invalid_archive",
                400,
            ),
            (framed(1, [0; 3], 0, &zlib(b"")), "invalid_archive", 400),
            (
                framed(1, [0; 3], u32::MAX, stream),
                "decoded_too_large",
                413,
            ),
        ];
        let mut dec = ForwardDecoder::default();
        for (i, (b, reason, status)) in cases.into_iter().enumerate() {
            let e = dec.decode(&b).map(|v| v.len()).unwrap_err();
            assert_eq!((e.reason(), e.status()), (reason, status), "case {i}: {e}");
        }
        let mut small = ForwardDecoder::new(ForwardLimits {
            max_body_bytes: good.len() - 1,
            ..ForwardLimits::default()
        });
        assert_eq!(
            small.decode(&good).map(|v| v.len()),
            Err(ForwardError::BodyTooLarge {
                len: good.len(),
                limit: good.len() - 1
            })
        );
        let mut few = ForwardDecoder::new(ForwardLimits {
            max_series: 3,
            ..ForwardLimits::default()
        });
        assert_eq!(
            few.decode(&good).map(|v| v.len()),
            Err(ForwardError::TooManySeries { count: 6, limit: 3 })
        );
        let mut tight = ForwardDecoder::new(ForwardLimits {
            max_decoded_bytes: len as usize - 1,
            ..ForwardLimits::default()
        });
        assert_eq!(tight.decode(&good).unwrap_err().status(), 413);
        // The decoder still works after every error.
        assert_eq!(dec.decode(&good).unwrap().len(), 6);
    }

    proptest! {
        #[test]
        fn arbitrary_and_mutated_bodies_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            archive_flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut dec = ForwardDecoder::new(ForwardLimits {
                max_body_bytes: 1 << 16,
                max_decoded_bytes: 1 << 16,
                max_series: 100,
            });
            let mut agg = IntervalAggregator::new(1, 8, 16, 16);
            let mut try_body = |b: &[u8]| {
                match dec.decode(b) {
                    Ok(v) => {
                        let n = v.len() as u64;
                        let out = feed(&v, &mut agg, 1, 0);
                        prop_assert_eq!(out.ok + out.rejected_total(), n);
                    }
                    Err(e) => prop_assert!(matches!(e.status(), 400 | 413)),
                }
                Ok(())
            };
            try_body(&bytes)?;
            try_body(&framed(1, [0; 3], bytes.len() as u32, &zlib(&bytes)))?;
            // A valid body with bytes flipped, in the stream and in the archive itself.
            let mut fwd = lines(1, GaugeDialect::Etsy, LINES);
            let parts = fwd.drain_by_owner(1).pop().unwrap();
            let mut enc = ForwardEncoder::new("f", 10, &["k:v"]);
            let (mut good, _) = body(&mut enc, &parts);
            let mut archive = {
                let mut d = Decompressor::new();
                let n = u32::from_le_bytes(good[8..12].try_into().unwrap()) as usize;
                let mut a = vec![0; n];
                d.zlib_decompress(&good[HEADER_LEN..], &mut a).unwrap();
                a
            };
            for (at, x) in archive_flips {
                let i = at % archive.len();
                archive[i] ^= x;
            }
            try_body(&framed(1, [0; 3], archive.len() as u32, &zlib(&archive)))?;
            for (at, x) in flips {
                let i = at % good.len();
                good[i] ^= x;
            }
            try_body(&good)?;
        }
    }
}
