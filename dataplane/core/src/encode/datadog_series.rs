//! Datadog v1 series objects, one per line (NDJSON), as gostatsd's Datadog backend builds them:
//! `{"metric","points":[[ts,value]],"type","interval","host","tags"}`.
//!
//! `host` is omitted when unknown (as gostatsd's `omitempty`); `tags` is always present.
//! Non-finite values cannot be written in JSON: NaN is sent as -1 and ±Inf as ±f64::MAX, the
//! same substitution gostatsd makes.

use crate::model::{SeriesBatch, SeriesRef};
use crate::translate::DdSeries;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

struct Name<'a>(&'a str, &'a str);

impl Serialize for Name<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}{}", self.0, self.1))
    }
}

struct Tags<'a>(SeriesRef<'a>);

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tags = self.0.tags();
        let mut seq = s.serialize_seq(Some(tags.len()))?;
        for t in tags {
            seq.serialize_element(t)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Object<'a> {
    metric: Name<'a>,
    points: [(u64, f64); 1],
    #[serde(rename = "type")]
    kind: &'static str,
    interval: f64,
    #[serde(skip_serializing_if = "str::is_empty")]
    host: &'a str,
    tags: Tags<'a>,
}

/// Replaces values JSON cannot carry, as gostatsd does.
pub fn json_safe(v: f64) -> f64 {
    if v.is_nan() {
        -1.0
    } else if v == f64::INFINITY {
        f64::MAX
    } else if v == f64::NEG_INFINITY {
        f64::MIN
    } else {
        v
    }
}

/// Appends one series object and a newline to `out`.
pub fn write_series(out: &mut Vec<u8>, s: SeriesRef<'_>, timestamp: u64, interval: f64) {
    if write_series_object(out, s, timestamp, interval) {
        out.push(b'\n');
    }
}

/// Appends one series object (no separator) to `out`; returns whether it was written.
/// Allocates nothing beyond growing `out`.
pub fn write_series_object(
    out: &mut Vec<u8>,
    s: SeriesRef<'_>,
    timestamp: u64,
    interval: f64,
) -> bool {
    let obj = Object {
        metric: Name(s.base_name(), s.suffix()),
        points: [(timestamp, json_safe(s.value()))],
        kind: s.kind().as_str(),
        interval,
        host: s.host(),
        tags: Tags(s),
    };
    // Writing to a Vec cannot fail, and every field serialises infallibly.
    serde_json::to_writer(&mut *out, &obj).is_ok()
}

/// Appends a `POST /api/v1/series` body, `{"series":[...]}`, holding series `start..end` of
/// `batch`.
pub fn write_series_payload(out: &mut Vec<u8>, batch: &SeriesBatch, start: usize, end: usize) {
    out.extend_from_slice(b"{\"series\":[");
    let mut first = true;
    for s in batch.iter().skip(start).take(end.saturating_sub(start)) {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        if write_series_object(out, s, batch.timestamp, batch.interval) {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.extend_from_slice(b"]}");
}

struct DdPoints<'a>(&'a [[Option<f64>; 2]]);

impl Serialize for DdPoints<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for [ts, v] in self.0 {
            seq.serialize_element(&(ts, v.map(json_safe)))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct DdObject<'a> {
    metric: &'a str,
    points: DdPoints<'a>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
    tags: &'a [&'a str],
}

/// Appends one parsed intake series (as a v1 series object) and a newline to `out`: the
/// NDJSON line format of the file and stdout sinks. Missing fields stay missing; null
/// timestamps and values stay null.
pub fn write_dd_series(out: &mut Vec<u8>, s: &DdSeries<'_>) {
    let obj = DdObject {
        metric: s.metric,
        points: DdPoints(s.points),
        kind: s.kind,
        interval: s.interval,
        host: s.host,
        device: s.device,
        tags: s.tags,
    };
    if serde_json::to_writer(&mut *out, &obj).is_ok() {
        out.push(b'\n');
    }
}

/// Appends every series of `batch` to `out`, one object per line.
pub fn write_batch(out: &mut Vec<u8>, batch: &SeriesBatch) {
    for s in batch.iter() {
        write_series(out, s, batch.timestamp, batch.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeriesType;

    #[test]
    fn writes_one_v1_series_object_per_line() {
        let mut b = SeriesBatch::new(1_700_000_000, 10.0);
        let id = b.identity("page.views", ["env:prod", "route:\"home\""], "web-1");
        b.push(id, "", SeriesType::Rate, 0.5);
        b.push(id, ".count", SeriesType::Gauge, 5.0);
        let id = b.identity("q", [], "");
        b.push(id, "", SeriesType::Gauge, f64::NAN);
        let mut out = Vec::new();
        write_batch(&mut out, &b);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"metric":"page.views","points":[[1700000000,0.5]],"type":"rate","interval":10.0,"host":"web-1","tags":["env:prod","route:\"home\""]}"#
        );
        assert_eq!(
            lines[1],
            r#"{"metric":"page.views.count","points":[[1700000000,5.0]],"type":"gauge","interval":10.0,"host":"web-1","tags":["env:prod","route:\"home\""]}"#
        );
        assert_eq!(
            lines[2],
            r#"{"metric":"q","points":[[1700000000,-1.0]],"type":"gauge","interval":10.0,"tags":[]}"#
        );
        for l in lines {
            let _: serde_json::Value = serde_json::from_str(l).unwrap();
        }
    }

    #[test]
    fn writes_a_v1_series_payload_for_a_range() {
        let mut b = SeriesBatch::new(1_700_000_000, 10.0);
        for i in 0..3 {
            let id = b.identity(&format!("m{i}"), ["k:v"], "");
            b.push(id, "", SeriesType::Count, f64::from(i));
        }
        let mut out = Vec::new();
        write_series_payload(&mut out, &b, 1, 3);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let names: Vec<&str> = v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metric"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["m1", "m2"]);
        assert_eq!(
            v["series"][1]["points"],
            serde_json::json!([[1_700_000_000u64, 2.0]])
        );
        out.clear();
        write_series_payload(&mut out, &b, 3, 3);
        assert_eq!(out, br#"{"series":[]}"#);
    }

    #[test]
    fn writes_parsed_intake_series_keeping_nulls_and_missing_fields() {
        let pts = [[Some(1.5), None], [Some(2.0), Some(3.0)]];
        let s = DdSeries {
            metric: "a",
            kind: None,
            interval: Some(10.0),
            host: None,
            device: Some("sda"),
            tags: &["x:y", "bare"],
            points: &pts,
        };
        let mut out = Vec::new();
        write_dd_series(&mut out, &s);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"metric\":\"a\",\"points\":[[1.5,null],[2.0,3.0]],\"interval\":10.0,\"device\":\"sda\",\"tags\":[\"x:y\",\"bare\"]}\n"
        );
    }
}
