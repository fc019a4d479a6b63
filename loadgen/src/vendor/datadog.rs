//! Datadog intake bodies: v1 and v2 series, distribution points, service checks and events.
//!
//! Each parser takes a decoded body and returns what it holds as [`Decoded`]: the series with
//! their points, and counts of checks and events. Field shapes follow
//! `shared/reference/formats.md` §1 and accept every variant real clients send (float
//! timestamps, `null` host and tags, a missing type, a single check object instead of an array).
//! v2 series are JSON or, with `Content-Type: application/x-protobuf`, the Agent's
//! `MetricPayload`.

use serde::Deserialize;

use super::stats::{Decoded, Labels, Series};

/// `POST /api/v1/series` and `/api/v1/distribution_points` top level.
#[derive(Debug, Deserialize)]
struct V1Payload<S> {
    series: Vec<S>,
}

/// One v1 series.
#[derive(Debug, Deserialize)]
struct V1Series {
    metric: String,
    points: Vec<[Option<f64>; 2]>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// One distribution series: points are `[ts, [values...]]`.
#[derive(Debug, Deserialize)]
struct DistributionSeries {
    metric: String,
    points: Vec<(f64, Vec<f64>)>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// One v2 series (JSON).
#[derive(Debug, Deserialize)]
struct V2Series {
    metric: String,
    points: Vec<V2Point>,
    #[serde(rename = "type", default)]
    kind: Option<i32>,
    #[serde(default)]
    resources: Option<Vec<V2Resource>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A v2 point.
#[derive(Debug, Deserialize)]
struct V2Point {
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(default)]
    value: Option<f64>,
}

/// A v2 resource (`{"type":"host","name":"web-1"}`).
#[derive(Debug, Deserialize)]
struct V2Resource {
    #[serde(rename = "type")]
    kind: String,
    name: String,
}

/// The Agent's protobuf v2 payload (`datadog.agentpayload.MetricPayload`, proto3).
mod pb {
    /// `MetricPayload`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricPayload {
        /// Series.
        #[prost(message, repeated, tag = "1")]
        pub series: Vec<MetricSeries>,
    }
    /// `MetricPayload.MetricSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricSeries {
        /// Resources (the host is `{type:"host"}`).
        #[prost(message, repeated, tag = "1")]
        pub resources: Vec<Resource>,
        /// Metric name.
        #[prost(string, tag = "2")]
        pub metric: String,
        /// Tags.
        #[prost(string, repeated, tag = "3")]
        pub tags: Vec<String>,
        /// Points.
        #[prost(message, repeated, tag = "4")]
        pub points: Vec<MetricPoint>,
        /// 0 unspecified, 1 count, 2 rate, 3 gauge.
        #[prost(int32, tag = "5")]
        pub kind: i32,
    }
    /// `MetricPayload.MetricPoint`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricPoint {
        /// Value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Seconds.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
    /// `MetricPayload.Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        /// Resource type, e.g. `host`.
        #[prost(string, tag = "1")]
        pub kind: String,
        /// Resource name.
        #[prost(string, tag = "2")]
        pub name: String,
    }
}

/// Name of a v2 type number, as `/stats` reports it (the v1 spelling).
fn v2_type_name(kind: i32) -> String {
    match kind {
        1 => "count",
        2 => "rate",
        3 => "gauge",
        _ => "unspecified",
    }
    .to_owned()
}

/// Parses a `/api/v1/series` body.
///
/// # Errors
///
/// The JSON error when the body is not a valid v1 payload.
pub fn v1_series(body: &[u8]) -> Result<Decoded, serde_json::Error> {
    let payload: V1Payload<V1Series> = serde_json::from_slice(body)?;
    let series = payload
        .series
        .into_iter()
        .map(|s| Series {
            metric: s.metric,
            kind: s.kind,
            host: s.host,
            labels: Labels::Tags(s.tags.unwrap_or_default()),
            points: s.points.into_iter().map(|[ts, v]| (ts, v)).collect(),
        })
        .collect();
    Ok(Decoded {
        series,
        ..Decoded::default()
    })
}

/// Parses a `/api/v1/distribution_points` body; every sample counts as one point.
///
/// # Errors
///
/// The JSON error when the body is not a valid payload.
pub fn distribution_points(body: &[u8]) -> Result<Decoded, serde_json::Error> {
    let payload: V1Payload<DistributionSeries> = serde_json::from_slice(body)?;
    let series = payload
        .series
        .into_iter()
        .map(|s| Series {
            metric: s.metric,
            kind: Some("distribution".to_owned()),
            host: s.host,
            labels: Labels::Tags(s.tags.unwrap_or_default()),
            points: s
                .points
                .into_iter()
                .flat_map(|(ts, values)| values.into_iter().map(move |v| (Some(ts), Some(v))))
                .collect(),
        })
        .collect();
    Ok(Decoded {
        series,
        ..Decoded::default()
    })
}

/// Parses a `/api/v2/series` JSON body.
///
/// # Errors
///
/// The JSON error when the body is not a valid v2 payload.
pub fn v2_series(body: &[u8]) -> Result<Decoded, serde_json::Error> {
    let payload: V1Payload<V2Series> = serde_json::from_slice(body)?;
    let series = payload
        .series
        .into_iter()
        .map(|s| {
            let host = s
                .resources
                .unwrap_or_default()
                .into_iter()
                .find(|r| r.kind == "host")
                .map(|r| r.name);
            Series {
                metric: s.metric,
                kind: Some(v2_type_name(s.kind.unwrap_or(0))),
                host,
                labels: Labels::Tags(s.tags.unwrap_or_default()),
                points: s
                    .points
                    .into_iter()
                    .map(|p| (p.timestamp, p.value))
                    .collect(),
            }
        })
        .collect();
    Ok(Decoded {
        series,
        ..Decoded::default()
    })
}

/// Parses a `/api/v2/series` protobuf body (the Agent's `MetricPayload`).
///
/// # Errors
///
/// The protobuf error when the body does not decode.
pub fn v2_series_protobuf(body: &[u8]) -> Result<Decoded, prost::DecodeError> {
    let payload = <pb::MetricPayload as prost::Message>::decode(body)?;
    let series = payload
        .series
        .into_iter()
        .map(|s| Series {
            host: s
                .resources
                .into_iter()
                .find(|r| r.kind == "host")
                .map(|r| r.name),
            metric: s.metric,
            kind: Some(v2_type_name(s.kind)),
            labels: Labels::Tags(s.tags),
            points: s
                .points
                .into_iter()
                .map(|p| (Some(p.timestamp as f64), Some(p.value)))
                .collect(),
        })
        .collect();
    Ok(Decoded {
        series,
        ..Decoded::default()
    })
}

/// Parses a `/api/v1/check_run` body: an array of checks or a single check object.
///
/// # Errors
///
/// The JSON error when the body is neither.
pub fn check_run(body: &[u8]) -> Result<Decoded, serde_json::Error> {
    type Check = serde_json::Map<String, serde_json::Value>;
    let checks = if body.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice::<Vec<Check>>(body)?.len() as u64
    } else {
        serde_json::from_slice::<Check>(body)?;
        1
    };
    Ok(Decoded {
        check_runs: checks,
        ..Decoded::default()
    })
}

/// Parses a `/api/v1/events` body (one event object).
///
/// # Errors
///
/// The JSON error when the body is not a JSON object.
pub fn event(body: &[u8]) -> Result<Decoded, serde_json::Error> {
    let _event: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)?;
    Ok(Decoded {
        events: 1,
        ..Decoded::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn v1_accepts_client_variants() {
        let body = br#"{"series":[
            {"metric":"a","points":[[1700000000,0.5],[1700000010.5,2]],"type":"count",
             "interval":10,"host":"web-1","tags":["env:prod","canary"]},
            {"metric":"b","points":[[1795720296.0379677,5.0]],"host":null,"device":null},
            {"metric":"c","points":[[1700000000,null]],"tags":null}]}"#;
        let d = v1_series(body).unwrap();
        assert_eq!(d.series.len(), 3);
        assert_eq!(d.series[0].kind.as_deref(), Some("count"));
        assert_eq!(d.series[0].host.as_deref(), Some("web-1"));
        assert_eq!(
            d.series[0].points,
            [(Some(1.7e9), Some(0.5)), (Some(1_700_000_010.5), Some(2.0))]
        );
        assert_eq!(d.series[1].kind, None);
        assert_eq!(d.series[1].host, None);
        assert_eq!(d.series[2].points, [(Some(1.7e9), None)]);
        assert!(v1_series(br#"{"series":[{"points":[]}]}"#).is_err());
        assert!(v1_series(b"{").is_err());
    }

    #[test]
    fn distribution_samples_are_points() {
        let body = br#"{"series":[{"metric":"lat","points":[[1700000000,[0.1,0.2,0.35]]],
            "tags":["env:prod"],"type":"distribution"}]}"#;
        let d = distribution_points(body).unwrap();
        assert_eq!(d.series[0].points.len(), 3);
        assert_eq!(d.series[0].kind.as_deref(), Some("distribution"));
    }

    #[test]
    fn v2_json_and_protobuf_agree() {
        let json =
            br#"{"series":[{"metric":"m","type":3,"points":[{"timestamp":1700000000,"value":0.7}],
            "resources":[{"type":"host","name":"web-1"}],"tags":["env:prod"]}]}"#;
        let from_json = v2_series(json).unwrap();
        let proto = pb::MetricPayload {
            series: vec![pb::MetricSeries {
                resources: vec![pb::Resource {
                    kind: "host".into(),
                    name: "web-1".into(),
                }],
                metric: "m".into(),
                tags: vec!["env:prod".into()],
                points: vec![pb::MetricPoint {
                    value: 0.7,
                    timestamp: 1_700_000_000,
                }],
                kind: 3,
            }],
        }
        .encode_to_vec();
        let from_proto = v2_series_protobuf(&proto).unwrap();
        assert_eq!(from_json.series, from_proto.series);
        assert_eq!(from_json.series[0].kind.as_deref(), Some("gauge"));
        assert_eq!(from_json.series[0].host.as_deref(), Some("web-1"));
    }

    #[test]
    fn checks_come_as_array_or_object() {
        assert_eq!(
            check_run(br#"[{"check":"a"},{"check":"b"}]"#)
                .unwrap()
                .check_runs,
            2
        );
        assert_eq!(
            check_run(br#"{"check":"a","status":1}"#)
                .unwrap()
                .check_runs,
            1
        );
        assert!(check_run(b"3").is_err());
        assert_eq!(event(br#"{"title":"t","text":"x"}"#).unwrap().events, 1);
    }
}
