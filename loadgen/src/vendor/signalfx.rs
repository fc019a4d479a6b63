//! SignalFx ingest bodies: `/v2/datapoint` as JSON or protobuf, and `/v2/event`.
//!
//! The protobuf messages are the proto2 `com.signalfx.metrics.protobuf` ones
//! (`shared/reference/formats.md` §3.3), declared with `prost` derives. Every datapoint is one
//! series with one point; a string value is counted as a point but adds nothing to the sums. A
//! datapoint without a metric name, or a JSON key other than the three metric types, makes
//! the request a `400` as at the real ingest.

use std::collections::BTreeMap;

use prost::Message as _;
use serde::Deserialize;

use super::stats::{Decoded, Labels, Series};

/// The protobuf messages.
pub mod pb {
    /// `MetricType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// Gauge.
        Gauge = 0,
        /// Counter (delta since the last report).
        Counter = 1,
        /// Enum.
        Enum = 2,
        /// Cumulative counter (running total).
        CumulativeCounter = 3,
    }

    /// `Datum`: one of three value kinds.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Datum {
        /// String value.
        #[prost(string, optional, tag = "1")]
        pub str_value: Option<String>,
        /// Double value.
        #[prost(double, optional, tag = "2")]
        pub double_value: Option<f64>,
        /// Integer value.
        #[prost(int64, optional, tag = "3")]
        pub int_value: Option<i64>,
    }

    /// `Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// Key.
        #[prost(string, optional, tag = "1")]
        pub key: Option<String>,
        /// Value.
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    /// `DataPoint`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DataPoint {
        /// Source.
        #[prost(string, optional, tag = "1")]
        pub source: Option<String>,
        /// Metric name.
        #[prost(string, optional, tag = "2")]
        pub metric: Option<String>,
        /// Milliseconds since the epoch.
        #[prost(int64, optional, tag = "3")]
        pub timestamp: Option<i64>,
        /// Value.
        #[prost(message, optional, tag = "4")]
        pub value: Option<Datum>,
        /// Metric type.
        #[prost(enumeration = "MetricType", optional, tag = "5")]
        pub metric_type: Option<i32>,
        /// Dimensions.
        #[prost(message, repeated, tag = "6")]
        pub dimensions: Vec<Dimension>,
    }

    /// `DataPointUploadMessage`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DataPointUploadMessage {
        /// Datapoints.
        #[prost(message, repeated, tag = "1")]
        pub datapoints: Vec<DataPoint>,
    }

    /// `Event`, reduced to its type (other fields are skipped as unknown).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Event type.
        #[prost(string, optional, tag = "1")]
        pub event_type: Option<String>,
    }

    /// `EventUploadMessage`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EventUploadMessage {
        /// Events.
        #[prost(message, repeated, tag = "1")]
        pub events: Vec<Event>,
    }
}

/// Why a SignalFx body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Malformed JSON, or a key other than the metric types.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Malformed protobuf.
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A datapoint has no metric name.
    #[error("datapoint without a metric name")]
    NoMetric,
}

/// JSON body: up to three arrays keyed by metric type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    #[serde(default)]
    gauge: Vec<JsonPoint>,
    #[serde(default)]
    counter: Vec<JsonPoint>,
    #[serde(default)]
    cumulative_counter: Vec<JsonPoint>,
}

/// One JSON datapoint.
#[derive(Debug, Deserialize)]
struct JsonPoint {
    #[serde(default)]
    metric: Option<String>,
    value: serde_json::Value,
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(default)]
    dimensions: Option<BTreeMap<String, String>>,
}

/// Name of a protobuf metric type as `/stats` reports it (the JSON spelling).
fn type_name(kind: Option<i32>) -> String {
    // proto2 default: a datapoint without a type is a gauge.
    match kind.and_then(|k| pb::MetricType::try_from(k).ok()) {
        None | Some(pb::MetricType::Gauge) => "gauge",
        Some(pb::MetricType::Counter) => "counter",
        Some(pb::MetricType::Enum) => "enum",
        Some(pb::MetricType::CumulativeCounter) => "cumulative_counter",
    }
    .to_owned()
}

/// Parses a `/v2/datapoint` JSON body.
///
/// # Errors
///
/// [`BodyError`] for malformed JSON, unknown keys or a datapoint without a metric.
pub fn datapoints_json(body: &[u8]) -> Result<Decoded, BodyError> {
    let parsed: JsonBody = serde_json::from_slice(body)?;
    let mut series = Vec::new();
    for (kind, points) in [
        ("gauge", parsed.gauge),
        ("counter", parsed.counter),
        ("cumulative_counter", parsed.cumulative_counter),
    ] {
        for p in points {
            series.push(Series {
                metric: p.metric.ok_or(BodyError::NoMetric)?,
                kind: Some(kind.to_owned()),
                host: None,
                labels: Labels::Dimensions(p.dimensions.unwrap_or_default()),
                points: vec![(p.timestamp, p.value.as_f64())],
            });
        }
    }
    Ok(Decoded {
        series,
        ..Decoded::default()
    })
}

/// Parses a `/v2/datapoint` protobuf body.
///
/// # Errors
///
/// [`BodyError`] for malformed protobuf or a datapoint without a metric.
pub fn datapoints_protobuf(body: &[u8]) -> Result<Decoded, BodyError> {
    let message = pb::DataPointUploadMessage::decode(body)?;
    let series = message
        .datapoints
        .into_iter()
        .map(|p| {
            let value = p
                .value
                .and_then(|d| d.double_value.or(d.int_value.map(|i| i as f64)));
            Ok(Series {
                metric: p.metric.ok_or(BodyError::NoMetric)?,
                kind: Some(type_name(p.metric_type)),
                host: p.source,
                labels: Labels::Dimensions(
                    p.dimensions
                        .into_iter()
                        .map(|d| (d.key.unwrap_or_default(), d.value.unwrap_or_default()))
                        .collect(),
                ),
                points: vec![(p.timestamp.map(|t| t as f64), value)],
            })
        })
        .collect::<Result<_, BodyError>>()?;
    Ok(Decoded {
        series,
        ..Decoded::default()
    })
}

/// Parses a `/v2/event` body (a JSON array, or protobuf `EventUploadMessage`).
///
/// # Errors
///
/// [`BodyError`] when the body does not parse.
pub fn events(body: &[u8], protobuf: bool) -> Result<Decoded, BodyError> {
    let events = if protobuf {
        pb::EventUploadMessage::decode(body)?.events.len()
    } else {
        serde_json::from_slice::<Vec<serde_json::Value>>(body)?.len()
    };
    Ok(Decoded {
        events: events as u64,
        ..Decoded::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_of_the_python_client() {
        let body = br#"{"cumulative_counter": [{"metric": "requests.total", "value": 1234567, "timestamp": 1700000000000}], "gauge": [{"metric": "app.queue.depth", "value": 42.5, "timestamp": 1700000000000, "dimensions": {"host": "web-1", "env": "prod"}}], "counter": [{"metric": "page.views", "value": 3, "dimensions": {"route": "home"}}]}"#;
        let d = datapoints_json(body).unwrap();
        let got: Vec<_> = d
            .series
            .iter()
            .map(|s| (s.metric.as_str(), s.kind.as_deref(), s.points[0].1))
            .collect();
        assert_eq!(
            got,
            [
                ("app.queue.depth", Some("gauge"), Some(42.5)),
                ("page.views", Some("counter"), Some(3.0)),
                (
                    "requests.total",
                    Some("cumulative_counter"),
                    Some(1_234_567.0)
                ),
            ]
        );
        assert!(matches!(
            datapoints_json(br#"{"gauge":[{"value":1}]}"#),
            Err(BodyError::NoMetric)
        ));
        assert!(datapoints_json(br#"{"histogram":[]}"#).is_err());
    }

    #[test]
    fn protobuf_round_trip() {
        let msg = pb::DataPointUploadMessage {
            datapoints: vec![pb::DataPoint {
                source: None,
                metric: Some("m".into()),
                timestamp: Some(1_700_000_000_000),
                value: Some(pb::Datum {
                    str_value: None,
                    double_value: Some(2.5),
                    int_value: None,
                }),
                metric_type: Some(pb::MetricType::Counter as i32),
                dimensions: vec![pb::Dimension {
                    key: Some("k".into()),
                    value: Some("v".into()),
                }],
            }],
        };
        let d = datapoints_protobuf(&msg.encode_to_vec()).unwrap();
        assert_eq!(d.series[0].kind.as_deref(), Some("counter"));
        assert_eq!(d.series[0].points, [(Some(1.7e12), Some(2.5))]);
        assert_eq!(
            d.series[0].labels,
            Labels::Dimensions([("k".to_owned(), "v".to_owned())].into())
        );
        assert!(datapoints_protobuf(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn events_are_counted() {
        assert_eq!(
            events(br#"[{"eventType":"deploy"}]"#, false)
                .unwrap()
                .events,
            1
        );
        let msg = pb::EventUploadMessage {
            events: vec![
                pb::Event {
                    event_type: Some("a".into()),
                },
                pb::Event {
                    event_type: Some("b".into()),
                },
            ],
        };
        assert_eq!(events(&msg.encode_to_vec(), true).unwrap().events, 2);
    }
}
