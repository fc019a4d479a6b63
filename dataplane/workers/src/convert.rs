//! A decoded stream record as items every sink handles: Datadog `/api/v1/series` JSON
//! bodies ([`Egress::Payload`] for [`Endpoint::SeriesV1`]), split by series count and body
//! size so each fits one vendor request.
//!
//! rkyv batches are read in place; JSON records (SignalFx datapoints, written for
//! third-party consumers) are parsed back: `gauge` becomes a gauge, `counter` a count,
//! `cumulative_counter` a gauge, dimensions become `key:value` tags, a `host` dimension the
//! host, millisecond timestamps seconds.
//!
//! A [`HashScope`] leaves out the series of an rkyv record whose partition hash
//! ([`switchyard_stream::partition_hash`]) lies outside a Kinesis lease's hash range: the
//! producer put them on this shard during a reshard and sends them again to the shard that
//! holds them (see the Kinesis sink), so delivering them here too would break their order.
//! JSON records are not filtered (their series identity is not the producer's).
//!
//! Metrics: none (the scope counts what it left out; the caller reports it).

use std::sync::Arc;
use switchyard_core::egress::{Egress, Endpoint, IntakePayload};
use switchyard_core::encode::datadog_series::write_dd_series;
use switchyard_core::translate::DdSeries;
use switchyard_stream::batch::ArchivedSeriesRef;
use switchyard_stream::{ArchivedStreamBatch, Decoded};

/// Limits of one produced payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Most series per payload.
    pub max_series: usize,
    /// Start a new payload once the body holds this many bytes.
    pub max_bytes: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_series: 5_000,
            max_bytes: 2 << 20,
        }
    }
}

/// The series a worker delivers: every one, or those whose partition hash lies in a hash
/// range (a Kinesis lease's).
#[derive(Debug, Default)]
pub struct HashScope {
    range: Option<(u128, u128)>,
    key: String,
    /// Points left out (outside the range) since the caller last reset it.
    pub misplaced_points: u64,
}

impl HashScope {
    /// Every series.
    pub fn all() -> Self {
        Self::default()
    }

    /// The series whose partition hash lies in `start..=end`.
    pub fn range(start: u128, end: u128) -> Self {
        Self {
            range: Some((start, end)),
            ..Self::default()
        }
    }

    fn holds(&mut self, s: &ArchivedSeriesRef<'_>) -> bool {
        match self.range {
            None => true,
            Some((start, end)) => {
                let h = s.partition_hash(&mut self.key);
                start <= h && h <= end
            }
        }
    }
}

/// Why a record could not be converted.
#[derive(Debug, thiserror::Error)]
#[error("JSON stream record: {0}")]
pub struct ConvertError(String);

/// Builds v1 series payloads, one series at a time.
struct Builder {
    limits: PayloadLimits,
    body: Vec<u8>,
    series: u64,
    points: u64,
    out: Vec<Egress>,
}

impl Builder {
    fn new(limits: PayloadLimits) -> Self {
        Self {
            limits,
            body: Vec::new(),
            series: 0,
            points: 0,
            out: Vec::new(),
        }
    }

    fn push(&mut self, s: &DdSeries<'_>) {
        if self.series == 0 {
            self.body.clear();
            self.body.extend_from_slice(b"{\"series\":[");
        }
        let mark = self.body.len();
        write_dd_series(&mut self.body, s);
        // write_dd_series ends its object with a newline: make it the separator.
        if self.body.len() > mark && self.body.last() == Some(&b'\n') {
            self.body.pop();
            self.body.push(b',');
            self.series += 1;
            self.points += s.points.len() as u64;
        }
        if self.series as usize >= self.limits.max_series.max(1)
            || self.body.len() >= self.limits.max_bytes
        {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if self.series == 0 {
            return;
        }
        // Replace the last separator with the closing brackets.
        self.body.pop();
        self.body.extend_from_slice(b"]}");
        let body = std::mem::take(&mut self.body);
        self.out.push(Egress::Payload(Arc::new(IntakePayload::json(
            Endpoint::SeriesV1,
            body,
            None,
            self.series,
            self.points,
        ))));
        self.series = 0;
        self.points = 0;
    }
}

/// The payloads holding every point of a decoded record.
///
/// # Errors
/// A JSON record that is not SignalFx datapoints JSON.
pub fn to_payloads(
    d: Decoded<'_>,
    limits: PayloadLimits,
    scope: &mut HashScope,
) -> Result<Vec<Egress>, ConvertError> {
    let mut b = Builder::new(limits);
    match d {
        Decoded::Rkyv(a) => archived(a, &mut b, scope),
        Decoded::Json(j) => signalfx_json(j, &mut b)?,
    }
    b.finish();
    Ok(b.out)
}

fn archived(a: &ArchivedStreamBatch, b: &mut Builder, scope: &mut HashScope) {
    let mut tags: Vec<&str> = Vec::new();
    let mut points: Vec<[Option<f64>; 2]> = Vec::new();
    for s in a.series() {
        if !scope.holds(&s) {
            scope.misplaced_points += s.points().len() as u64;
            continue;
        }
        tags.clear();
        tags.extend(s.tags());
        points.clear();
        points.extend(s.points().map(|(t, v)| [Some(t), Some(v)]));
        b.push(&DdSeries {
            metric: s.name(),
            kind: s.kind().as_dd(),
            interval: s.interval(),
            host: s.host(),
            device: s.device(),
            tags: &tags,
            points: &points,
        });
    }
}

fn signalfx_json(j: &[u8], b: &mut Builder) -> Result<(), ConvertError> {
    let v: serde_json::Value =
        serde_json::from_slice(j).map_err(|e| ConvertError(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ConvertError("not an object".into()))?;
    for (family, kind) in [
        ("gauge", "gauge"),
        ("counter", "count"),
        ("cumulative_counter", "gauge"),
    ] {
        let Some(list) = obj.get(family) else {
            continue;
        };
        let list = list
            .as_array()
            .ok_or_else(|| ConvertError(format!("`{family}` is not an array")))?;
        for dp in list {
            let metric = dp
                .get("metric")
                .and_then(|m| m.as_str())
                .ok_or_else(|| ConvertError("a datapoint without `metric`".into()))?;
            let value = dp.get("value").and_then(serde_json::Value::as_f64);
            let ts = dp
                .get("timestamp")
                .and_then(serde_json::Value::as_f64)
                .map(|ms| ms / 1000.0);
            let mut host = None;
            let tags: Vec<String> = dp
                .get("dimensions")
                .and_then(|d| d.as_object())
                .map(|d| {
                    d.iter()
                        .filter_map(|(k, v)| {
                            let v = v.as_str()?;
                            if k == "host" {
                                host = Some(v);
                                return None;
                            }
                            Some(format!("{k}:{v}"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            b.push(&DdSeries {
                metric,
                kind: Some(kind),
                interval: None,
                host,
                device: None,
                tags: &tag_refs,
                points: &[[ts, value]],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_stream::{
        Compression, Encoding, Kind, Point, StreamBatch, StreamDecoder, StreamEncoder,
    };

    fn batch(n: usize) -> StreamBatch {
        let mut b = StreamBatch::new();
        for i in 0..n {
            b.push_series(
                &format!("m{i}"),
                Kind::Count,
                Some(10.0),
                Some("h"),
                None,
                ["a:b", "c:d"],
                [
                    Point {
                        timestamp: 1_700_000_000.0,
                        value: i as f64,
                    },
                    Point {
                        timestamp: 1_700_000_010.0,
                        value: 0.5,
                    },
                ],
            );
        }
        b
    }

    fn bodies(items: &[Egress]) -> Vec<serde_json::Value> {
        items
            .iter()
            .map(|e| match e {
                Egress::Payload(p) => {
                    assert_eq!(p.endpoint, Endpoint::SeriesV1);
                    serde_json::from_slice(&p.body.bytes).unwrap()
                }
                Egress::Series(_) | Egress::Forward(_) => panic!("expected a payload"),
            })
            .collect()
    }

    #[test]
    fn a_hash_scope_keeps_the_series_of_its_range_and_counts_the_others() {
        let b = batch(200);
        let mut enc = StreamEncoder::default();
        let mut rec = Vec::new();
        enc.encode(&b, Encoding::Rkyv, Compression::None, &mut rec)
            .unwrap();
        let half = u128::MAX / 2;
        let mut key = String::new();
        let low: Vec<String> = b
            .series()
            .filter(|s| s.partition_hash(&mut key) <= half)
            .map(|s| s.name().to_owned())
            .collect();
        assert!(low.len() > 50 && low.len() < 150, "both halves hold series");
        let mut dec = StreamDecoder::default();
        let mut scope = HashScope::range(0, half);
        let out = to_payloads(
            dec.decode(&rec).unwrap(),
            PayloadLimits::default(),
            &mut scope,
        )
        .unwrap();
        let names: Vec<String> = bodies(&out)
            .iter()
            .flat_map(|v| v["series"].as_array().unwrap().clone())
            .map(|s| s["metric"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, low);
        assert_eq!(scope.misplaced_points, 2 * (200 - low.len() as u64));
        // JSON records carry another identity: never filtered.
        rec.clear();
        enc.encode(&b, Encoding::Json, Compression::None, &mut rec)
            .unwrap();
        let mut scope = HashScope::range(0, 0);
        let out = to_payloads(
            dec.decode(&rec).unwrap(),
            PayloadLimits::default(),
            &mut scope,
        )
        .unwrap();
        assert_eq!(out.iter().map(Egress::points).sum::<u64>(), 400);
        assert_eq!(scope.misplaced_points, 0);
    }

    #[test]
    fn rkyv_records_become_v1_payloads_split_by_series() {
        let mut enc = StreamEncoder::default();
        let mut rec = Vec::new();
        enc.encode(&batch(5), Encoding::Rkyv, Compression::Deflate, &mut rec)
            .unwrap();
        let mut dec = StreamDecoder::default();
        let limits = PayloadLimits {
            max_series: 2,
            max_bytes: 1 << 20,
        };
        let out = to_payloads(dec.decode(&rec).unwrap(), limits, &mut HashScope::all()).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out.iter().map(Egress::points).sum::<u64>(), 10);
        let b = bodies(&out);
        assert_eq!(b[2]["series"].as_array().unwrap().len(), 1);
        let s = &b[1]["series"][1];
        assert_eq!(s["metric"], "m3");
        assert_eq!(s["type"], "count");
        assert_eq!(s["interval"], 10.0);
        assert_eq!(s["host"], "h");
        assert_eq!(s["tags"], serde_json::json!(["a:b", "c:d"]));
        assert_eq!(
            s["points"],
            serde_json::json!([[1.7e9, 3.0], [1700000010.0, 0.5]])
        );
    }

    #[test]
    fn json_records_are_read_back() {
        let mut enc = StreamEncoder::default();
        let mut rec = Vec::new();
        enc.encode(&batch(3), Encoding::Json, Compression::None, &mut rec)
            .unwrap();
        let mut dec = StreamDecoder::default();
        let out = to_payloads(
            dec.decode(&rec).unwrap(),
            PayloadLimits::default(),
            &mut HashScope::all(),
        )
        .unwrap();
        let b = bodies(&out);
        let series = b[0]["series"].as_array().unwrap();
        // Each point of the batch is one datapoint.
        assert_eq!(series.len(), 6);
        let m2: Vec<_> = series.iter().filter(|s| s["metric"] == "m2").collect();
        assert_eq!(m2.len(), 2);
        assert!(m2.iter().any(|s| s["points"][0][1] == 2.0));
        assert!(m2.iter().all(|s| s["host"] == "h"));
    }

    #[test]
    fn byte_limit_splits_payloads() {
        let mut enc = StreamEncoder::default();
        let mut rec = Vec::new();
        enc.encode(&batch(50), Encoding::Rkyv, Compression::None, &mut rec)
            .unwrap();
        let mut dec = StreamDecoder::default();
        let limits = PayloadLimits {
            max_series: 1000,
            max_bytes: 500,
        };
        let out = to_payloads(dec.decode(&rec).unwrap(), limits, &mut HashScope::all()).unwrap();
        assert!(out.len() > 1);
        let total: usize = bodies(&out)
            .iter()
            .map(|b| b["series"].as_array().unwrap().len())
            .sum();
        assert_eq!(total, 50);
    }
}
