//! gostatsd's forwarder protocol (`POST /v2/raw`, `POST /v2/event`): the protobuf schema,
//! body decoding with gostatsd's receiver's rules, and the conversion of a decoded
//! [`RawMessageV2`] into the aggregator's input.
//!
//! Schema: `pb/gostatsd.proto` (proto3, package `pb`), declared here with `prost` derive
//! macros as the SignalFx sink does. Maps are decoded into `BTreeMap`s, so a message's
//! series come out in one order whatever order the forwarder wrote them in (Go map order
//! is random).
//!
//! Decoding ([`RawDecoder`]) answers as gostatsd's receiver does (see
//! `shared/reference/captures/gostatsd/README.md`): `Content-Encoding` absent, empty or
//! `identity` is the raw protobuf, `deflate` exactly one zlib stream (raw deflate and an
//! empty body are rejected), `lz4` LZ4 frames; any other encoding, a corrupt stream or
//! bytes that are not the message are 400 with an empty body; an accepted body (an empty
//! message included) is 202 with an empty body. Unlike gostatsd, the decoded size is capped
//! ([`RawError::TooLarge`], 413) and the encoding name is matched case-insensitively.
//!
//! Conversion ([`feed`], or [`RawMessageV2::series`] for the values alone): each entry of a
//! tag map is one series, identified by the metric name, the entry's `Tags` and its
//! `Hostname` (the original client's address, which becomes the series' host), as gostatsd's
//! aggregator does; the map's tags key is not trusted. Values are already consolidated by
//! the forwarder: counters with sample rates applied (truncated to integers per line by
//! gostatsd), gauges last, timers as raw values plus a sampled count, sets as distinct
//! members. They feed [`IntervalAggregator::ingest_consolidated`] and from there the same
//! flush as statsd lines.
//!
//! Events ([`EventV2::to_datadog_json`]) become Datadog `/api/v1/events` bodies, as
//! gostatsd's Datadog backend sends them; the shard's HTTP intake routes them like events
//! posted to `/api/v1/events`.
//!
//! Emits no metrics itself: [`FeedOutcome`] and [`RawError::reason`] are for the caller's
//! counters.

use super::decompress::BodyDecoder;
use super::BodyError;
use crate::aggregate::GaugeDialect;
use crate::aggregate::{Consolidated, HostSource, IntervalAggregator, LineContext};
use std::collections::BTreeMap;

/// Largest decoded body accepted by [`RawDecoder::default`] (gostatsd has no cap).
pub const DEFAULT_DECODED_LIMIT: usize = 32 << 20;

/// The status gostatsd answers an accepted `/v2/raw` or `/v2/event` body with (empty body).
pub const ACCEPTED: u16 = 202;

/// `message RawMessageV2`: the body of `/v2/raw`, four maps keyed by metric name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawMessageV2 {
    /// `map<string, CounterTagV2> Counters = 1`
    #[prost(btree_map = "string, message", tag = "1")]
    pub counters: BTreeMap<String, CounterTagV2>,
    /// `map<string, GaugeTagV2> Gauges = 2`
    #[prost(btree_map = "string, message", tag = "2")]
    pub gauges: BTreeMap<String, GaugeTagV2>,
    /// `map<string, SetTagV2> Sets = 3`
    #[prost(btree_map = "string, message", tag = "3")]
    pub sets: BTreeMap<String, SetTagV2>,
    /// `map<string, TimerTagV2> Timers = 4`
    #[prost(btree_map = "string, message", tag = "4")]
    pub timers: BTreeMap<String, TimerTagV2>,
}

/// `message CounterTagV2`: one metric's counters by tags key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CounterTagV2 {
    /// `map<string, RawCounterV2> TagMap = 1`, keyed by sorted tags `,s:<host>`.
    #[prost(btree_map = "string, message", tag = "1")]
    pub tag_map: BTreeMap<String, RawCounterV2>,
}

/// `message GaugeTagV2`: one metric's gauges by tags key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GaugeTagV2 {
    /// `map<string, RawGaugeV2> TagMap = 1`
    #[prost(btree_map = "string, message", tag = "1")]
    pub tag_map: BTreeMap<String, RawGaugeV2>,
}

/// `message SetTagV2`: one metric's sets by tags key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetTagV2 {
    /// `map<string, RawSetV2> TagMap = 1`
    #[prost(btree_map = "string, message", tag = "1")]
    pub tag_map: BTreeMap<String, RawSetV2>,
}

/// `message TimerTagV2`: one metric's timers by tags key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimerTagV2 {
    /// `map<string, RawTimerV2> TagMap = 1`
    #[prost(btree_map = "string, message", tag = "1")]
    pub tag_map: BTreeMap<String, RawTimerV2>,
}

/// `message RawCounterV2`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawCounterV2 {
    /// `repeated string Tags = 1` (sorted, de-duplicated by the forwarder)
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    /// `string Hostname = 2`: the original sender
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// `int64 Value = 3`: the count with sample rates applied
    #[prost(int64, tag = "3")]
    pub value: i64,
}

/// `message RawGaugeV2`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawGaugeV2 {
    /// `repeated string Tags = 1`
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    /// `string Hostname = 2`
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// `double Value = 3`: the last value
    #[prost(double, tag = "3")]
    pub value: f64,
}

/// `message RawSetV2`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawSetV2 {
    /// `repeated string Tags = 1`
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    /// `string Hostname = 2`
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// `repeated string Values = 3`: the distinct members, in no particular order
    #[prost(string, repeated, tag = "3")]
    pub values: Vec<String>,
}

/// `message RawTimerV2`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawTimerV2 {
    /// `repeated string Tags = 1`
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    /// `string Hostname = 2`
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// `double SampleCount = 3`: Σ 1/sample rate over the lines (a packed line counts once)
    #[prost(double, tag = "3")]
    pub sample_count: f64,
    /// `repeated double Values = 4` (packed): every raw value
    #[prost(double, repeated, tag = "4")]
    pub values: Vec<f64>,
}

/// `enum EventV2.EventPriority`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventPriority {
    /// `Normal = 0`
    Normal = 0,
    /// `Low = 1`
    Low = 1,
}

/// `enum EventV2.AlertType`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AlertType {
    /// `Info = 0`
    Info = 0,
    /// `Warning = 1`
    Warning = 1,
    /// `Error = 2`
    Error = 2,
    /// `Success = 3`
    Success = 3,
}

/// `message EventV2`: the body of `/v2/event`, one event per request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventV2 {
    /// `string Title = 1`
    #[prost(string, tag = "1")]
    pub title: String,
    /// `string Text = 2`
    #[prost(string, tag = "2")]
    pub text: String,
    /// `int64 DateHappened = 3`: Unix seconds
    #[prost(int64, tag = "3")]
    pub date_happened: i64,
    /// `string Hostname = 4`
    #[prost(string, tag = "4")]
    pub hostname: String,
    /// `string AggregationKey = 5`
    #[prost(string, tag = "5")]
    pub aggregation_key: String,
    /// `string SourceTypeName = 6`
    #[prost(string, tag = "6")]
    pub source_type_name: String,
    /// `repeated string Tags = 7`
    #[prost(string, repeated, tag = "7")]
    pub tags: Vec<String>,
    /// `string SourceIP = 8`
    #[prost(string, tag = "8")]
    pub source_ip: String,
    /// `EventPriority Priority = 9` (unknown values read as `Normal`, as gostatsd does)
    #[prost(enumeration = "EventPriority", tag = "9")]
    pub priority: i32,
    /// `AlertType Type = 10` (unknown values read as `Info`, as gostatsd does)
    #[prost(enumeration = "AlertType", tag = "10")]
    pub r#type: i32,
}

impl EventV2 {
    /// The event as a Datadog `POST /api/v1/events` body, field for field as gostatsd's
    /// aggregator hands it to its Datadog backend (`pkg/web/http_receiver_v2.go`
    /// `EventHandler`, then `pkg/backends/datadog/datadog.go` `SendEvent`): `title` and
    /// `text` always; `date_happened`, `host`, `aggregation_key`, `source_type_name` and
    /// `tags` only when set; `priority` only when `low` and `alert_type` only when not `info`
    /// (the defaults are left out); an unknown priority or type reads as the default.
    /// `SourceIP` is not part of a Datadog event.
    pub fn to_datadog_json(&self) -> Vec<u8> {
        let mut o = serde_json::Map::new();
        o.insert("title".into(), self.title.as_str().into());
        o.insert("text".into(), self.text.as_str().into());
        if self.date_happened != 0 {
            o.insert("date_happened".into(), self.date_happened.into());
        }
        for (k, v) in [
            ("host", &self.hostname),
            ("aggregation_key", &self.aggregation_key),
            ("source_type_name", &self.source_type_name),
        ] {
            if !v.is_empty() {
                o.insert(k.into(), v.as_str().into());
            }
        }
        if !self.tags.is_empty() {
            o.insert("tags".into(), self.tags.clone().into());
        }
        if EventPriority::try_from(self.priority) == Ok(EventPriority::Low) {
            o.insert("priority".into(), "low".into());
        }
        let alert = match AlertType::try_from(self.r#type) {
            Ok(AlertType::Warning) => Some("warning"),
            Ok(AlertType::Error) => Some("error"),
            Ok(AlertType::Success) => Some("success"),
            Ok(AlertType::Info) | Err(_) => None,
        };
        if let Some(a) = alert {
            o.insert("alert_type".into(), a.into());
        }
        serde_json::Value::Object(o).to_string().into_bytes()
    }
}

/// A `Content-Encoding` gostatsd's receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEncoding {
    /// Absent, empty or `identity`: the raw protobuf.
    Identity,
    /// `deflate`: one zlib stream (gostatsd's default `compression-type = 'zlib'`).
    Zlib,
    /// `lz4`: LZ4 frames.
    Lz4,
}

impl RawEncoding {
    /// Parses the `Content-Encoding` header (`None` when absent).
    ///
    /// # Errors
    /// [`RawError::Encoding`] for anything else (gzip and br included), with at most 64
    /// bytes of the value.
    pub fn from_header(v: Option<&str>) -> Result<Self, RawError> {
        let v = v.unwrap_or("").trim();
        if v.is_empty() || v.eq_ignore_ascii_case("identity") {
            Ok(RawEncoding::Identity)
        } else if v.eq_ignore_ascii_case("deflate") {
            Ok(RawEncoding::Zlib)
        } else if v.eq_ignore_ascii_case("lz4") {
            Ok(RawEncoding::Lz4)
        } else {
            let mut end = v.len().min(64);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            Err(RawError::Encoding(v[..end].to_string()))
        }
    }
}

/// Why a `/v2/raw` or `/v2/event` body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    /// `Content-Encoding` is not one gostatsd accepts (400).
    #[error("invalid encoding `{0}`")]
    Encoding(String),
    /// The compressed stream is corrupt or truncated (400).
    #[error("failed decompressing body ({encoding}): {detail}")]
    Decompress {
        /// `zlib` or `lz4`.
        encoding: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// Larger than the limit once decompressed (413; gostatsd has no limit).
    #[error("payload too large: more than {limit} bytes once decompressed")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not the expected protobuf message (400).
    #[error("failed to unmarshal: {0}")]
    Unmarshal(String),
}

impl RawError {
    /// The HTTP status to answer with (the body stays empty, as gostatsd's).
    pub fn status(&self) -> u16 {
        match self {
            RawError::TooLarge { .. } => 413,
            RawError::Encoding(_) | RawError::Decompress { .. } | RawError::Unmarshal(_) => 400,
        }
    }

    /// A bounded label for counters, gostatsd's `failure:` tag values where they exist
    /// (`encoding`, `decompress`, `unmarshal`) and `too_large`.
    pub fn reason(&self) -> &'static str {
        match self {
            RawError::Encoding(_) => "encoding",
            RawError::Decompress { .. } => "decompress",
            RawError::TooLarge { .. } => "too_large",
            RawError::Unmarshal(_) => "unmarshal",
        }
    }
}

fn from_body(e: BodyError, encoding: &'static str) -> RawError {
    match e {
        BodyError::TooLarge { limit } => RawError::TooLarge { limit },
        BodyError::Corrupt { detail, .. } => RawError::Decompress { encoding, detail },
        other => RawError::Decompress {
            encoding,
            detail: other.to_string(),
        },
    }
}

/// Decodes `/v2/raw` and `/v2/event` bodies, reusing one decompression buffer.
#[derive(Debug)]
pub struct RawDecoder {
    body: BodyDecoder,
}

impl Default for RawDecoder {
    /// A decoder capped at [`DEFAULT_DECODED_LIMIT`].
    fn default() -> Self {
        Self::new(DEFAULT_DECODED_LIMIT)
    }
}

impl RawDecoder {
    /// A decoder accepting at most `limit` decoded bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            body: BodyDecoder::new(limit),
        }
    }

    /// The largest decoded body accepted.
    pub fn limit(&self) -> usize {
        self.body.limit
    }

    /// Undoes `enc` on `body` and returns the protobuf bytes (`body` itself for identity).
    ///
    /// # Errors
    /// [`RawError::TooLarge`] or [`RawError::Decompress`].
    pub fn plain<'a>(&'a mut self, enc: RawEncoding, body: &'a [u8]) -> Result<&'a [u8], RawError> {
        let limit = self.body.limit;
        match enc {
            RawEncoding::Identity => {
                if body.len() > limit {
                    return Err(RawError::TooLarge { limit });
                }
                Ok(body)
            }
            RawEncoding::Zlib => self
                .body
                .decode_zlib(body)
                .map(|b| &*b)
                .map_err(|e| from_body(e, "zlib")),
            RawEncoding::Lz4 => self
                .body
                .decode_lz4_frame(body)
                .map(|b| &*b)
                .map_err(|e| from_body(e, "lz4")),
        }
    }

    /// Decodes a `/v2/raw` body sent with `Content-Encoding: content_encoding`.
    ///
    /// # Errors
    /// Any [`RawError`]; [`RawError::status`] is the answer.
    pub fn decode_raw(
        &mut self,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> Result<RawMessageV2, RawError> {
        self.decode_sized(content_encoding, body).map(|(m, _)| m)
    }

    /// Decodes a `/v2/raw` or `/v2/event` body as `M`, with its size once decompressed.
    ///
    /// # Errors
    /// Any [`RawError`]; [`RawError::status`] is the answer.
    pub fn decode_sized<M: prost::Message + Default>(
        &mut self,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> Result<(M, usize), RawError> {
        let enc = RawEncoding::from_header(content_encoding)?;
        let plain = self.plain(enc, body)?;
        let m = M::decode(plain).map_err(|e| RawError::Unmarshal(e.to_string()))?;
        Ok((m, plain.len()))
    }

    /// Decodes a `/v2/event` body sent with `Content-Encoding: content_encoding`.
    ///
    /// # Errors
    /// Any [`RawError`]; [`RawError::status`] is the answer.
    pub fn decode_event(
        &mut self,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> Result<EventV2, RawError> {
        self.decode_sized(content_encoding, body).map(|(m, _)| m)
    }
}

/// One series of a [`RawMessageV2`], as the aggregator consumes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSeries<'a> {
    /// Metric name (the outer map's key).
    pub name: &'a str,
    /// The value's `Tags`.
    pub tags: &'a [String],
    /// The value's `Hostname`: the series' host.
    pub host: &'a str,
    /// The consolidated value.
    pub value: Consolidated<'a>,
}

impl RawMessageV2 {
    /// Number of series (tag-map entries) in the message.
    pub fn series_count(&self) -> usize {
        self.counters
            .values()
            .map(|t| t.tag_map.len())
            .sum::<usize>()
            + self.gauges.values().map(|t| t.tag_map.len()).sum::<usize>()
            + self.sets.values().map(|t| t.tag_map.len()).sum::<usize>()
            + self.timers.values().map(|t| t.tag_map.len()).sum::<usize>()
    }

    /// Every series: counters, gauges, sets, then timers, each by name then tags key.
    pub fn series(&self) -> impl Iterator<Item = RawSeries<'_>> {
        let counters = self.counters.iter().flat_map(|(name, m)| {
            m.tag_map.values().map(move |v| RawSeries {
                name,
                tags: &v.tags,
                host: &v.hostname,
                // Exact up to 2^53, far past any count a forwarder consolidates.
                value: Consolidated::Counter(v.value as f64),
            })
        });
        let gauges = self.gauges.iter().flat_map(|(name, m)| {
            m.tag_map.values().map(move |v| RawSeries {
                name,
                tags: &v.tags,
                host: &v.hostname,
                value: Consolidated::Gauge(v.value),
            })
        });
        let sets = self.sets.iter().flat_map(|(name, m)| {
            m.tag_map.values().map(move |v| RawSeries {
                name,
                tags: &v.tags,
                host: &v.hostname,
                value: Consolidated::Set(&v.values),
            })
        });
        let timers = self.timers.iter().flat_map(|(name, m)| {
            m.tag_map.values().map(move |v| RawSeries {
                name,
                tags: &v.tags,
                host: &v.hostname,
                value: Consolidated::Timer {
                    values: &v.values,
                    sampled_count: v.sample_count,
                },
            })
        });
        counters.chain(gauges).chain(sets).chain(timers)
    }
}

pub use crate::aggregate::FeedOutcome;

/// Folds every series of `msg` into `agg` as seen at `now_ns` in listener scope `scope`,
/// each with its own `Hostname` as host. A series the aggregator refuses (series or timer
/// value caps, too many tags, a non-finite value) is counted in the outcome and skipped;
/// the others are applied.
pub fn feed(
    msg: &RawMessageV2,
    agg: &mut IntervalAggregator,
    now_ns: u64,
    scope: u8,
) -> FeedOutcome {
    let mut out = FeedOutcome::default();
    let mut tags = String::new();
    for s in msg.series() {
        tags.clear();
        for (i, t) in s.tags.iter().enumerate() {
            if i > 0 {
                tags.push(',');
            }
            tags.push_str(t);
        }
        let cx = LineContext {
            host: HostSource::Sender(s.host),
            dialect: GaugeDialect::Dogstatsd,
            now_ns,
            scope,
        };
        out.record(agg.ingest_consolidated(s.name, &tags, s.value, cx));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statsd::LineError;
    use prost::Message;

    fn counter(tags: &[&str], host: &str, value: i64) -> RawCounterV2 {
        RawCounterV2 {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            hostname: host.into(),
            value,
        }
    }

    fn one_counter() -> RawMessageV2 {
        let mut m = RawMessageV2::default();
        m.counters
            .entry("c".into())
            .or_default()
            .tag_map
            .insert("env:prod,s:h".into(), counter(&["env:prod"], "h", 3));
        m
    }

    #[test]
    fn encodings_follow_gostatsd_receiver() {
        for (h, want) in [
            (None, Ok(RawEncoding::Identity)),
            (Some(""), Ok(RawEncoding::Identity)),
            (Some("identity"), Ok(RawEncoding::Identity)),
            (Some("deflate"), Ok(RawEncoding::Zlib)),
            (Some("lz4"), Ok(RawEncoding::Lz4)),
        ] {
            assert_eq!(RawEncoding::from_header(h), want, "{h:?}");
        }
        for bad in ["gzip", "br", "zstd", "x-gzip"] {
            let e = RawEncoding::from_header(Some(bad)).unwrap_err();
            assert_eq!((e.status(), e.reason()), (400, "encoding"), "{bad}");
        }
        let long = "é".repeat(100);
        match RawEncoding::from_header(Some(&long)) {
            Err(RawError::Encoding(v)) => assert!(v.len() <= 64 && long.starts_with(&v)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trips_through_every_encoding() {
        let msg = one_counter();
        let plain = msg.encode_to_vec();
        let mut d = RawDecoder::new(1 << 20);
        assert_eq!(d.decode_raw(None, &plain).unwrap(), msg);
        assert_eq!(d.decode_raw(Some("identity"), &plain).unwrap(), msg);
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::best());
        let mut z = vec![0; c.zlib_compress_bound(plain.len())];
        let n = c.zlib_compress(&plain, &mut z).unwrap();
        z.truncate(n);
        assert_eq!(d.decode_raw(Some("deflate"), &z).unwrap(), msg);
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut lz, &plain).unwrap();
        let lz = lz.finish().unwrap();
        assert_eq!(d.decode_raw(Some("lz4"), &lz).unwrap(), msg);
    }

    #[test]
    fn rejections_match_gostatsd_statuses() {
        let plain = one_counter().encode_to_vec();
        let mut d = RawDecoder::new(1 << 20);
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut raw = vec![0; c.deflate_compress_bound(plain.len())];
        let n = c.deflate_compress(&plain, &mut raw).unwrap();
        raw.truncate(n);
        let cases: [(Option<&str>, &[u8], &str); 7] = [
            // An empty body is not a zlib stream.
            (Some("deflate"), b"", "decompress"),
            // Raw deflate: no zlib header.
            (Some("deflate"), &raw, "decompress"),
            // Plain protobuf labelled deflate.
            (Some("deflate"), &plain, "decompress"),
            (Some("lz4"), &plain, "decompress"),
            (None, b"\xff\xff\xff\xff", "unmarshal"),
            (None, &plain[..plain.len() - 3], "unmarshal"),
            (None, br#"{"a":1}"#, "unmarshal"),
        ];
        for (enc, body, reason) in cases {
            let e = d.decode_raw(enc, body).unwrap_err();
            assert_eq!(
                (e.status(), e.reason()),
                (400, reason),
                "{enc:?} {body:?}: {e}"
            );
        }
        // An empty message is valid; so is an empty body read as LZ4 (no frame at all).
        assert_eq!(d.decode_raw(None, b"").unwrap(), RawMessageV2::default());
        assert_eq!(
            d.decode_raw(Some("lz4"), b"").unwrap(),
            RawMessageV2::default()
        );
    }

    #[test]
    fn decoded_size_is_capped() {
        let mut m = RawMessageV2::default();
        let set = m.sets.entry("s".into()).or_default();
        set.tag_map.insert(
            ",s:h".into(),
            RawSetV2 {
                tags: vec![],
                hostname: "h".into(),
                values: vec!["x".repeat(4096); 64],
            },
        );
        let plain = m.encode_to_vec();
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut z = vec![0; c.zlib_compress_bound(plain.len())];
        let n = c.zlib_compress(&plain, &mut z).unwrap();
        z.truncate(n);
        let mut d = RawDecoder::new(64 << 10);
        for (enc, body) in [(Some("deflate"), &z[..]), (None, &plain[..])] {
            let e = d.decode_raw(enc, body).unwrap_err();
            assert_eq!(e, RawError::TooLarge { limit: 64 << 10 });
            assert_eq!(e.status(), 413);
        }
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut lz, &plain).unwrap();
        let lz = lz.finish().unwrap();
        assert_eq!(
            d.decode_raw(Some("lz4"), &lz).unwrap_err(),
            RawError::TooLarge { limit: 64 << 10 }
        );
    }

    #[test]
    fn events_become_datadog_events_as_gostatsds_backend_sends_them() {
        let full = EventV2 {
            title: "full.attrib".into(),
            text: "body \"text\"".into(),
            date_happened: 1_700_000_000,
            hostname: "127.0.0.1".into(),
            aggregation_key: "aggkey".into(),
            source_type_name: "mysource".into(),
            tags: vec!["env:prod".into(), "role:web".into()],
            source_ip: "127.0.0.1".into(),
            priority: EventPriority::Low as i32,
            r#type: AlertType::Warning as i32,
        };
        let v: serde_json::Value = serde_json::from_slice(&full.to_datadog_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "title": "full.attrib", "text": "body \"text\"", "date_happened": 1_700_000_000,
                "host": "127.0.0.1", "aggregation_key": "aggkey", "source_type_name": "mysource",
                "tags": ["env:prod", "role:web"], "priority": "low", "alert_type": "warning"
            })
        );
        // Defaults (and unknown enum values) are left out, as gostatsd's omitempty does.
        let bare = EventV2 {
            title: "t".into(),
            priority: 7,
            r#type: 9,
            ..EventV2::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&bare.to_datadog_json()).unwrap();
        assert_eq!(v, serde_json::json!({"title": "t", "text": ""}));
        // The result is a body the Datadog events intake accepts.
        let mut body = full.to_datadog_json();
        let mut scratch = crate::intake::accept::IntakeScratch::default();
        let p = crate::intake::accept::accept_body_with(
            &mut scratch,
            crate::egress::Endpoint::Events,
            crate::intake::decompress::Encoding::Identity,
            &mut body,
            crate::intake::accept::BodyLimits::for_endpoint(
                crate::egress::Endpoint::Events,
                1 << 20,
                1 << 20,
            ),
            None,
            |_| {},
        )
        .unwrap();
        assert_eq!(p.series, 1);
    }

    #[test]
    fn feed_uses_each_values_tags_and_host_not_the_tags_key() {
        let mut m = one_counter();
        // Same tags and host under another key (and in another order): one series.
        m.counters
            .entry("c".into())
            .or_default()
            .tag_map
            .insert("bogus".into(), counter(&["env:prod"], "h", 4));
        m.gauges.entry("g".into()).or_default().tag_map.insert(
            "k".into(),
            RawGaugeV2 {
                tags: vec![],
                hostname: "h".into(),
                value: f64::NAN,
            },
        );
        let mut agg = IntervalAggregator::new(1, 64, 100, 100);
        let out = feed(&m, &mut agg, 5, 0);
        assert_eq!(out.ok, 2);
        assert_eq!(out.rejected[LineError::NonFiniteValue.index()], 1);
        assert_eq!(out.rejected_total(), 1);
        let p = agg.drain_by_owner(1).pop().unwrap();
        assert_eq!(p.counters.len(), 1);
        assert_eq!(p.counters[0].val, 7.0);
        assert_eq!(p.counters[0].key.host(), "h");
        assert_eq!(p.counters[0].key.tags_joined(), "env:prod");
        assert!(p.gauges.is_empty());
    }
}
