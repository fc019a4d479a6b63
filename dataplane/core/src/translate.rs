//! Datadog v1 series -> SignalFx datapoints, exactly per `shared/reference/formats.md` §5.
//!
//! - Type: `gauge`, `""` or missing -> `gauge`; `count` -> `counter`; `rate` -> `counter` with
//!   value x `interval` when `interval > 0` (else `gauge`), or `gauge` with `rate_as = "gauge"`;
//!   anything else is dropped (`unknown_type`).
//! - Points: seconds (int or float) -> milliseconds (`round(ts * 1000)`), sorted ascending per
//!   series (SignalFx drops out-of-order points per MTS); null timestamps, null and non-finite
//!   values are dropped and counted.
//! - Tags -> dimensions: see [`dimensions`]. `host` and `device` win over tags. More than
//!   `max_dimensions` (36) drops the series' points (`too_many_dimensions`).
//!
//! Dimensions are computed once per series into reusable scratch space; names and tag strings
//! are borrowed from the input wherever no rewrite is needed. Serves both the HTTP intake
//! (parsed payloads) and the statsd path (flushed [`SeriesBatch`](crate::model::SeriesBatch)es).
//!
//! Counters: [`TranslateStats`] (points in/out, drops by [`PointDrop`] reason, tag drops,
//! duplicate-key collisions), summed by the caller into
//! `switchyard_translate_points_total{outcome}` and friends.

pub mod dimensions;

use crate::model::{SeriesBatch, SeriesType};
pub use dimensions::{BareTagPolicy, DimensionConfig, Dimensions, DuplicatePolicy};

/// How Datadog `rate` series are sent to SignalFx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateAs {
    /// `counter` with value x interval: recovers the per-flush count (Vector, OTel do this).
    #[default]
    Counter,
    /// `gauge` with the per-second value: dashboard parity with Datadog, loses sum semantics.
    Gauge,
}

/// Translation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranslateConfig {
    /// Rate handling.
    pub rate_as: RateAs,
    /// Tag handling.
    pub dimensions: DimensionConfig,
}

/// SignalFx metric types produced (nothing in Datadog intake is cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SfxType {
    /// `gauge`
    Gauge,
    /// `counter` (a delta per interval)
    Counter,
}

/// Why a point was not translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointDrop {
    /// Empty metric name.
    EmptyMetric,
    /// Metric name longer than 256 characters.
    MetricTooLong,
    /// A Datadog type other than gauge, count, rate or none.
    UnknownType,
    /// The timestamp is null.
    NullTimestamp,
    /// The value is null.
    NullValue,
    /// The value (or the scaled rate) is NaN or infinite.
    NonFinite,
    /// More dimensions than SignalFx accepts.
    TooManyDimensions,
}

impl PointDrop {
    /// Every reason, in counter-slot order.
    pub const ALL: [PointDrop; 7] = [
        PointDrop::EmptyMetric,
        PointDrop::MetricTooLong,
        PointDrop::UnknownType,
        PointDrop::NullTimestamp,
        PointDrop::NullValue,
        PointDrop::NonFinite,
        PointDrop::TooManyDimensions,
    ];

    /// Label value.
    pub const fn reason(self) -> &'static str {
        match self {
            PointDrop::EmptyMetric => "empty_metric",
            PointDrop::MetricTooLong => "metric_too_long",
            PointDrop::UnknownType => "unknown_type",
            PointDrop::NullTimestamp => "null_timestamp",
            PointDrop::NullValue => "null_value",
            PointDrop::NonFinite => "non_finite",
            PointDrop::TooManyDimensions => "too_many_dimensions",
        }
    }
}

/// What a translation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranslateStats {
    /// Points offered.
    pub points_in: u64,
    /// Datapoints written.
    pub points_out: u64,
    /// Points dropped, by [`PointDrop`] slot.
    pub dropped: [u64; 7],
    /// Tags dropped (empty key or value, or bare tags under `bare_tags = "drop"`).
    pub tags_dropped: u64,
    /// Tags whose key collided with an earlier tag's key.
    pub duplicate_keys: u64,
}

impl TranslateStats {
    fn drop_points(&mut self, why: PointDrop, n: u64) {
        if let Some(c) = self.dropped.get_mut(why as usize) {
            *c += n;
        }
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &TranslateStats) {
        self.points_in += o.points_in;
        self.points_out += o.points_out;
        for (a, b) in self.dropped.iter_mut().zip(o.dropped.iter()) {
            *a += b;
        }
        self.tags_dropped += o.tags_dropped;
        self.duplicate_keys += o.duplicate_keys;
    }
}

/// One Datadog v1 series, borrowed from wherever it was parsed.
#[derive(Debug, Clone, Copy)]
pub struct DdSeries<'a> {
    /// `metric`
    pub metric: &'a str,
    /// `type` (`None` when missing or null).
    pub kind: Option<&'a str>,
    /// `interval` in seconds.
    pub interval: Option<f64>,
    /// `host` (`None` when missing or null).
    pub host: Option<&'a str>,
    /// `device` (`None` when missing or null).
    pub device: Option<&'a str>,
    /// `tags`
    pub tags: &'a [&'a str],
    /// `points` as `[timestamp seconds, value]`, either possibly null.
    pub points: &'a [[Option<f64>; 2]],
}

/// An owned copy of a [`DdSeries`], for tests, logs and tools that outlive the parse buffer
/// (never on the hot path).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedDdSeries {
    /// `metric`
    pub metric: String,
    /// `type`
    pub kind: Option<String>,
    /// `interval`
    pub interval: Option<f64>,
    /// `host`
    pub host: Option<String>,
    /// `device`
    pub device: Option<String>,
    /// `tags`
    pub tags: Vec<String>,
    /// `points`
    pub points: Vec<[Option<f64>; 2]>,
}

impl From<&DdSeries<'_>> for OwnedDdSeries {
    fn from(s: &DdSeries<'_>) -> Self {
        Self {
            metric: s.metric.into(),
            kind: s.kind.map(Into::into),
            interval: s.interval,
            host: s.host.map(Into::into),
            device: s.device.map(Into::into),
            tags: s.tags.iter().map(|t| (*t).to_string()).collect(),
            points: s.points.to_vec(),
        }
    }
}

/// One datapoint ready to encode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datapoint {
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

/// Translates series and writes SignalFx `/v2/datapoint` JSON, reusing its buffers.
#[derive(Debug, Default)]
pub struct Translator {
    cfg: TranslateConfig,
    dims: Dimensions,
    points: Vec<Datapoint>,
    dims_json: Vec<u8>,
    gauge: Vec<u8>,
    counter: Vec<u8>,
    /// What has been translated since the last [`Translator::take_stats`].
    pub stats: TranslateStats,
}

/// SignalFx's limit on metric names, in characters.
pub const MAX_METRIC_CHARS: usize = 256;

fn sfx_type(kind: Option<&str>, interval: Option<f64>, rate_as: RateAs) -> Option<(SfxType, f64)> {
    match kind.unwrap_or("") {
        "" | "gauge" => Some((SfxType::Gauge, 1.0)),
        "count" => Some((SfxType::Counter, 1.0)),
        "rate" => match (rate_as, interval) {
            (RateAs::Counter, Some(i)) if i > 0.0 && i.is_finite() => Some((SfxType::Counter, i)),
            _ => Some((SfxType::Gauge, 1.0)),
        },
        _ => None,
    }
}

impl Translator {
    /// A translator with `cfg`.
    pub fn new(cfg: TranslateConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// Takes the statistics gathered so far.
    pub fn take_stats(&mut self) -> TranslateStats {
        std::mem::take(&mut self.stats)
    }

    /// Whether nothing has been written since the last [`Translator::finish`].
    pub fn is_empty(&self) -> bool {
        self.gauge.is_empty() && self.counter.is_empty()
    }

    /// Translates one series; its datapoints are appended to the pending request body.
    pub fn push(&mut self, s: &DdSeries<'_>) {
        let Some(ty) = self.prepare(s) else { return };
        self.write_prepared(ty, s.metric);
    }

    /// Translates one series and hands the result to `f` instead of the JSON body (for
    /// other encodings, such as protobuf). Statistics are counted as by [`Translator::push`];
    /// `f` is not called when every point was dropped.
    pub fn visit(&mut self, s: &DdSeries<'_>, f: impl FnOnce(&TranslatedSeries<'_>)) {
        let Some(kind) = self.prepare(s) else { return };
        self.stats.points_out += self.points.len() as u64;
        f(&TranslatedSeries {
            metric: s.metric,
            kind,
            dimensions: &self.dims,
            points: &self.points,
        });
    }

    /// [`Translator::visit`] for series `start..end` of a flushed statsd batch.
    pub fn visit_batch_range(
        &mut self,
        b: &SeriesBatch,
        start: usize,
        end: usize,
        mut f: impl FnMut(&TranslatedSeries<'_>),
    ) {
        for_each_batch_series(b, start, end, |s| self.visit(s, &mut f));
    }

    /// Checks and translates `s` into `self.points` (sorted) and `self.dims`, counting drops;
    /// `None` when nothing is left to send.
    fn prepare(&mut self, s: &DdSeries<'_>) -> Option<SfxType> {
        let n = s.points.len() as u64;
        self.stats.points_in += n;
        if s.metric.is_empty() {
            self.stats.drop_points(PointDrop::EmptyMetric, n);
            return None;
        }
        if s.metric.len() > MAX_METRIC_CHARS && s.metric.chars().count() > MAX_METRIC_CHARS {
            self.stats.drop_points(PointDrop::MetricTooLong, n);
            return None;
        }
        let Some((ty, scale)) = sfx_type(s.kind, s.interval, self.cfg.rate_as) else {
            self.stats.drop_points(PointDrop::UnknownType, n);
            return None;
        };
        self.points.clear();
        for [ts, v] in s.points {
            let Some(ts) = ts.filter(|t| t.is_finite()) else {
                self.stats.drop_points(PointDrop::NullTimestamp, 1);
                continue;
            };
            let Some(v) = v else {
                self.stats.drop_points(PointDrop::NullValue, 1);
                continue;
            };
            let value = v * scale;
            if !value.is_finite() {
                self.stats.drop_points(PointDrop::NonFinite, 1);
                continue;
            }
            self.points.push(Datapoint {
                timestamp_ms: (ts * 1000.0).round() as i64,
                value,
            });
        }
        if self.points.is_empty() {
            return None;
        }
        let built = self.dims.build(
            &self.cfg.dimensions,
            s.tags.iter().copied(),
            s.host,
            s.device,
        );
        self.stats.tags_dropped += built.tags_dropped;
        self.stats.duplicate_keys += built.duplicate_keys;
        if self.dims.len() > self.cfg.dimensions.max_dimensions {
            self.stats
                .drop_points(PointDrop::TooManyDimensions, self.points.len() as u64);
            return None;
        }
        self.points.sort_by_key(|p| p.timestamp_ms);
        Some(ty)
    }

    /// Appends the prepared points of `metric` to the pending JSON body.
    fn write_prepared(&mut self, ty: SfxType, metric: &str) {
        self.dims_json.clear();
        self.dims.write_json(&mut self.dims_json);
        let out = match ty {
            SfxType::Gauge => &mut self.gauge,
            SfxType::Counter => &mut self.counter,
        };
        for p in &self.points {
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"metric\":");
            write_json_str(out, metric);
            out.extend_from_slice(b",\"value\":");
            write_number(out, p.value);
            out.extend_from_slice(b",\"timestamp\":");
            out.extend_from_slice(itoa::Buffer::new().format(p.timestamp_ms).as_bytes());
            out.extend_from_slice(b",\"dimensions\":");
            out.extend_from_slice(&self.dims_json);
            out.push(b'}');
        }
        self.stats.points_out += self.points.len() as u64;
    }

    /// Translates every series of a flushed statsd batch (host and canonical tags as is).
    pub fn push_batch(&mut self, b: &SeriesBatch) {
        self.push_batch_range(b, 0, b.len());
    }

    /// Translates series `start..end` of a flushed statsd batch.
    pub fn push_batch_range(&mut self, b: &SeriesBatch, start: usize, end: usize) {
        for_each_batch_series(b, start, end, |s| self.push(s));
    }

    /// Writes the pending request body (`{"gauge":[...],"counter":[...]}`) to `out` and
    /// starts a new one. Empty arrays are omitted.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (name, body) in [("gauge", &self.gauge), ("counter", &self.counter)] {
            if body.is_empty() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":[");
            out.extend_from_slice(body);
            out.push(b']');
        }
        out.push(b'}');
        self.gauge.clear();
        self.counter.clear();
    }
}

/// One translated series, as [`Translator::visit`] hands it out.
#[derive(Debug, Clone, Copy)]
pub struct TranslatedSeries<'a> {
    /// Metric name.
    pub metric: &'a str,
    /// SignalFx metric type.
    pub kind: SfxType,
    /// Dimensions (iterate with [`Dimensions::iter`]).
    pub dimensions: &'a Dimensions,
    /// Datapoints, ascending by timestamp, all finite.
    pub points: &'a [Datapoint],
}

/// Calls `f` with series `start..end` of a flushed statsd batch seen as Datadog v1 series
/// (host and canonical tags as is).
fn for_each_batch_series(
    b: &SeriesBatch,
    start: usize,
    end: usize,
    mut f: impl FnMut(&DdSeries<'_>),
) {
    let mut tags: Vec<&str> = Vec::new();
    let mut name = String::new();
    for s in b.iter().skip(start).take(end.saturating_sub(start)) {
        tags.clear();
        tags.extend(s.tags());
        name.clear();
        name.push_str(s.base_name());
        name.push_str(s.suffix());
        let kind = match s.kind() {
            SeriesType::Gauge => "gauge",
            SeriesType::Rate => "rate",
            SeriesType::Count => "count",
        };
        let points = [[Some(b.timestamp as f64), Some(s.value())]];
        let host = Some(s.host()).filter(|h| !h.is_empty());
        f(&DdSeries {
            metric: &name,
            kind: Some(kind),
            interval: Some(b.interval),
            host,
            device: None,
            tags: &tags,
            points: &points,
        });
    }
}

/// Writes `s` as a JSON string.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaper into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes a finite number: integers without a fraction, others shortest round-trip.
fn write_number(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &DdSeries<'_>, cfg: TranslateConfig) -> (serde_json::Value, TranslateStats) {
        let mut t = Translator::new(cfg);
        t.push(s);
        let mut out = Vec::new();
        t.finish(&mut out);
        (serde_json::from_slice(&out).unwrap(), t.take_stats())
    }

    fn series<'a>(
        kind: Option<&'a str>,
        interval: Option<f64>,
        tags: &'a [&'a str],
        points: &'a [[Option<f64>; 2]],
    ) -> DdSeries<'a> {
        DdSeries {
            metric: "m",
            kind,
            interval,
            host: Some("web-1"),
            device: None,
            tags,
            points,
        }
    }

    #[test]
    fn flushed_statsd_batches_translate_with_host_and_tags() {
        let mut b = SeriesBatch::new(1_700_000_000, 10.0);
        let id = b.identity("page.views", ["env:prod"], "10.0.0.1");
        b.push(id, "", SeriesType::Rate, 0.5);
        b.push(id, ".count", SeriesType::Gauge, 5.0);
        let mut t = Translator::new(TranslateConfig::default());
        t.push_batch(&b);
        let mut out = Vec::new();
        t.finish(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let want = serde_json::json!({
            "gauge": [{"metric": "page.views.count", "value": 5, "timestamp": 1_700_000_000_000i64,
                       "dimensions": {"env": "prod", "host": "10.0.0.1"}}],
            "counter": [{"metric": "page.views", "value": 5, "timestamp": 1_700_000_000_000i64,
                         "dimensions": {"env": "prod", "host": "10.0.0.1"}}]
        });
        assert_eq!(v, want);
    }

    #[test]
    fn visit_sees_what_push_writes() {
        let pts = [
            [Some(1_700_000_010.0), Some(3.0)],
            [Some(1_700_000_000.0), Some(1.0)],
            [None, Some(2.0)],
        ];
        let s = DdSeries {
            metric: "app.requests",
            kind: Some("count"),
            interval: Some(10.0),
            host: Some("web-1"),
            device: None,
            tags: &["env:prod", "canary"],
            points: &pts,
        };
        let mut t = Translator::new(TranslateConfig::default());
        let mut seen = Vec::new();
        t.visit(&s, |v| {
            let dims: Vec<(String, String)> = v
                .dimensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            seen.push((v.metric.to_string(), v.kind, dims, v.points.to_vec()));
        });
        let st = t.take_stats();
        assert_eq!((st.points_in, st.points_out), (3, 2));
        assert!(t.is_empty(), "visit writes no JSON");
        let (metric, kind, dims, points) = &seen[0];
        assert_eq!((metric.as_str(), *kind), ("app.requests", SfxType::Counter));
        assert_eq!(
            points
                .iter()
                .map(|p| (p.timestamp_ms, p.value))
                .collect::<Vec<_>>(),
            vec![(1_700_000_000_000, 1.0), (1_700_000_010_000, 3.0)]
        );
        let (v, _) = one(&s, TranslateConfig::default());
        let want: std::collections::BTreeMap<String, String> =
            serde_json::from_value(v["counter"][0]["dimensions"].clone()).unwrap();
        assert_eq!(
            dims.iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>(),
            want
        );
    }

    #[test]
    fn the_formats_md_example_translates_exactly() {
        let pts = [
            [Some(1_700_000_000.0), Some(1.0)],
            [Some(1_700_000_010.0), Some(3.0)],
        ];
        let s = DdSeries {
            metric: "app.requests",
            kind: Some("count"),
            interval: Some(10.0),
            host: Some("web-1"),
            device: None,
            tags: &["env:prod", "role:web", "canary"],
            points: &pts,
        };
        let (v, st) = one(&s, TranslateConfig::default());
        let want: serde_json::Value = serde_json::from_str(r#"{"counter":[
            {"metric":"app.requests","value":1,"timestamp":1700000000000,"dimensions":{"env":"prod","host":"web-1","role":"web","unnamed_canary":"canary"}},
            {"metric":"app.requests","value":3,"timestamp":1700000010000,"dimensions":{"env":"prod","host":"web-1","role":"web","unnamed_canary":"canary"}}]}"#).unwrap();
        assert_eq!(v, want);
        assert_eq!((st.points_in, st.points_out), (2, 2));
    }

    #[test]
    fn rate_becomes_a_counter_times_interval_or_a_gauge() {
        let pts = [[Some(1.0), Some(0.3)]];
        let (v, _) = one(
            &series(Some("rate"), Some(10.0), &[], &pts),
            TranslateConfig::default(),
        );
        assert_eq!(v["counter"][0]["value"], 3.0);
        let (v, _) = one(
            &series(Some("rate"), None, &[], &pts),
            TranslateConfig::default(),
        );
        assert_eq!(v["gauge"][0]["value"], 0.3);
        let (v, _) = one(
            &series(Some("rate"), Some(0.0), &[], &pts),
            TranslateConfig::default(),
        );
        assert_eq!(v["gauge"][0]["value"], 0.3);
        let cfg = TranslateConfig {
            rate_as: RateAs::Gauge,
            ..Default::default()
        };
        let (v, _) = one(&series(Some("rate"), Some(10.0), &[], &pts), cfg);
        assert_eq!(v["gauge"][0]["value"], 0.3);
    }

    #[test]
    fn untyped_and_gauge_are_gauges_unknown_types_are_dropped() {
        let pts = [[Some(1.0), Some(2.0)]];
        for k in [None, Some(""), Some("gauge")] {
            let (v, _) = one(&series(k, None, &[], &pts), TranslateConfig::default());
            assert_eq!(v["gauge"][0]["value"], 2.0);
        }
        let (v, st) = one(
            &series(Some("histogram"), None, &[], &pts),
            TranslateConfig::default(),
        );
        assert_eq!(v, serde_json::json!({}));
        assert_eq!(st.dropped[PointDrop::UnknownType as usize], 1);
    }

    #[test]
    fn float_timestamps_round_to_ms_and_points_are_sorted() {
        let pts = [
            [Some(1_795_720_296.0379677), Some(1.0)],
            [Some(1_700_000_000.0), Some(2.0)],
        ];
        let (v, _) = one(
            &series(Some("gauge"), None, &[], &pts),
            TranslateConfig::default(),
        );
        assert_eq!(v["gauge"][0]["timestamp"], 1_700_000_000_000i64);
        assert_eq!(v["gauge"][1]["timestamp"], 1_795_720_296_038i64);
    }

    #[test]
    fn null_and_non_finite_points_are_dropped_and_counted() {
        let pts = [
            [None, Some(1.0)],
            [Some(1.0), None],
            [Some(2.0), Some(f64::NAN)],
            [Some(3.0), Some(4.0)],
        ];
        let (v, st) = one(
            &series(Some("gauge"), None, &[], &pts),
            TranslateConfig::default(),
        );
        assert_eq!(v["gauge"].as_array().unwrap().len(), 1);
        assert_eq!(st.dropped[PointDrop::NullTimestamp as usize], 1);
        assert_eq!(st.dropped[PointDrop::NullValue as usize], 1);
        assert_eq!(st.dropped[PointDrop::NonFinite as usize], 1);
        assert_eq!(st.points_in, st.points_out + st.dropped.iter().sum::<u64>());
    }

    #[test]
    fn too_many_dimensions_drops_the_points() {
        let tags: Vec<String> = (0..40).map(|i| format!("k{i}:v")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let pts = [[Some(1.0), Some(1.0)]];
        let (v, st) = one(
            &series(Some("gauge"), None, &tags, &pts),
            TranslateConfig::default(),
        );
        assert_eq!(v, serde_json::json!({}));
        assert_eq!(st.dropped[PointDrop::TooManyDimensions as usize], 1);
    }

    #[test]
    fn empty_and_overlong_metric_names_are_dropped() {
        let pts = [[Some(1.0), Some(1.0)]];
        let mut s = series(Some("gauge"), None, &[], &pts);
        s.metric = "";
        assert_eq!(
            one(&s, TranslateConfig::default()).1.dropped[PointDrop::EmptyMetric as usize],
            1
        );
        let long = "x".repeat(257);
        s.metric = &long;
        assert_eq!(
            one(&s, TranslateConfig::default()).1.dropped[PointDrop::MetricTooLong as usize],
            1
        );
    }
}
