//! SignalFx `DataPointUploadMessage` (`com.signalfx.metrics.protobuf`, proto2; `formats.md`
//! §3.3) with `prost` derive macros, and a writer that appends datapoints to a reused buffer.
//!
//! `DataPointUploadMessage` is `repeated DataPoint datapoints = 1`, so the message is the
//! concatenation of one length-delimited field 1 per datapoint: the writer encodes each
//! datapoint as it comes, reusing one scratch [`DataPoint`] (its strings and dimension
//! entries keep their capacity), so steady-state encoding allocates nothing.

use switchyard_core::translate::{SfxType, TranslatedSeries};

/// `enum MetricType`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    /// `GAUGE = 0`
    Gauge = 0,
    /// `COUNTER = 1` (a delta per interval)
    Counter = 1,
    /// `ENUM = 2`
    Enum = 2,
    /// `CUMULATIVE_COUNTER = 3`
    CumulativeCounter = 3,
}

/// `message Datum`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Datum {
    /// `optional string strValue = 1`
    #[prost(string, optional, tag = "1")]
    pub str_value: Option<String>,
    /// `optional double doubleValue = 2`
    #[prost(double, optional, tag = "2")]
    pub double_value: Option<f64>,
    /// `optional int64 intValue = 3`
    #[prost(int64, optional, tag = "3")]
    pub int_value: Option<i64>,
}

/// `message Dimension`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// `optional string key = 1`
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// `optional string value = 2`
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `message DataPoint`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataPoint {
    /// `optional string source = 1`
    #[prost(string, optional, tag = "1")]
    pub source: Option<String>,
    /// `optional string metric = 2`
    #[prost(string, optional, tag = "2")]
    pub metric: Option<String>,
    /// `optional int64 timestamp = 3` (milliseconds)
    #[prost(int64, optional, tag = "3")]
    pub timestamp: Option<i64>,
    /// `optional Datum value = 4`
    #[prost(message, optional, tag = "4")]
    pub value: Option<Datum>,
    /// `optional MetricType metricType = 5`
    #[prost(enumeration = "MetricType", optional, tag = "5")]
    pub metric_type: Option<i32>,
    /// `repeated Dimension dimensions = 6`
    #[prost(message, repeated, tag = "6")]
    pub dimensions: Vec<Dimension>,
}

/// `message DataPointUploadMessage`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataPointUploadMessage {
    /// `repeated DataPoint datapoints = 1`
    #[prost(message, repeated, tag = "1")]
    pub datapoints: Vec<DataPoint>,
}

/// Appends translated series to an upload message body, reusing its scratch.
#[derive(Debug, Default)]
pub struct ProtoWriter {
    scratch: DataPoint,
    spare: Vec<Dimension>,
    /// The encoded `DataPointUploadMessage` so far.
    pub body: Vec<u8>,
}

fn set(slot: &mut Option<String>, v: &str) {
    let s = slot.get_or_insert_with(String::new);
    s.clear();
    s.push_str(v);
}

impl ProtoWriter {
    /// Appends one datapoint per point of `t`.
    pub fn push(&mut self, t: &TranslatedSeries<'_>) {
        let dp = &mut self.scratch;
        set(&mut dp.metric, t.metric);
        dp.metric_type = Some(match t.kind {
            SfxType::Gauge => MetricType::Gauge,
            SfxType::Counter => MetricType::Counter,
        } as i32);
        // Reuse dimension entries (and their strings); park extras for later series.
        let mut used = 0;
        for (k, v) in t.dimensions.iter() {
            if used == dp.dimensions.len() {
                dp.dimensions.push(self.spare.pop().unwrap_or_default());
            }
            if let Some(d) = dp.dimensions.get_mut(used) {
                set(&mut d.key, k);
                set(&mut d.value, v);
            }
            used += 1;
        }
        if dp.dimensions.len() > used {
            self.spare.extend(dp.dimensions.drain(used..));
        }
        for p in t.points {
            dp.timestamp = Some(p.timestamp_ms);
            let datum = dp.value.get_or_insert_with(Datum::default);
            datum.double_value = Some(p.value);
            prost::encoding::message::encode(1, &*dp, &mut self.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use switchyard_core::translate::{DdSeries, TranslateConfig, Translator};

    #[test]
    fn series_encode_to_an_upload_message_that_decodes_back() {
        let mut t = Translator::new(TranslateConfig::default());
        let mut w = ProtoWriter::default();
        let p1 = [[Some(20.0), Some(2.5)], [Some(10.0), Some(1.0)]];
        let p2 = [[Some(30.0), Some(7.0)]];
        let many = ["a:1", "b:2", "c:3"];
        t.visit(
            &DdSeries {
                metric: "m.one",
                kind: Some("gauge"),
                interval: None,
                host: Some("h"),
                device: None,
                tags: &many,
                points: &p1,
            },
            |s| w.push(s),
        );
        t.visit(
            &DdSeries {
                metric: "m.two",
                kind: Some("count"),
                interval: None,
                host: None,
                device: None,
                tags: &["z:9"],
                points: &p2,
            },
            |s| w.push(s),
        );
        let msg = DataPointUploadMessage::decode(&w.body[..]).unwrap();
        type Seen = (String, i64, f64, i32, Vec<(String, String)>);
        let got: Vec<Seen> = msg
            .datapoints
            .iter()
            .map(|d| {
                (
                    d.metric.clone().unwrap(),
                    d.timestamp.unwrap(),
                    d.value.as_ref().unwrap().double_value.unwrap(),
                    d.metric_type.unwrap(),
                    d.dimensions
                        .iter()
                        .map(|x| (x.key.clone().unwrap(), x.value.clone().unwrap()))
                        .collect(),
                )
            })
            .collect();
        let d1: Vec<(String, String)> = [("a", "1"), ("b", "2"), ("c", "3"), ("host", "h")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("m.one".into(), 10_000, 1.0, 0, d1.clone()),
                ("m.one".into(), 20_000, 2.5, 0, d1),
                (
                    "m.two".into(),
                    30_000,
                    7.0,
                    1,
                    vec![("z".into(), "9".into())]
                ),
            ]
        );
    }
}
