//! What the vendor received, and the `/stats` JSON snapshot of it.
//!
//! Requests are counted by path label and status; only accepted requests (2xx) add their
//! series, points and per-metric entries. Per-metric state is bounded: past [`MAX_METRICS`]
//! names, points of new names only add to `metrics_overflow_points`. Keys and tokens are
//! bounded the same way by [`MAX_KEYS`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Most metric names tracked one by one.
pub const MAX_METRICS: usize = 100_000;
/// Most distinct API keys / tokens tracked.
pub const MAX_KEYS: usize = 1_000;

/// Tags (Datadog) or dimensions (SignalFx) of a series.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Datadog tags, as sent.
    Tags(Vec<String>),
    /// SignalFx dimensions.
    Dimensions(BTreeMap<String, String>),
}

/// One decoded series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Metric name.
    pub metric: String,
    /// Type as the vendor spells it (`count`, `gauge`, `counter`, ...), if given.
    pub kind: Option<String>,
    /// Host (Datadog `host` or v2 host resource; SignalFx protobuf `source`).
    pub host: Option<String>,
    /// Tags or dimensions.
    pub labels: Labels,
    /// `(timestamp, value)`; either may be missing (`null`, a string value).
    pub points: Vec<(Option<f64>, Option<f64>)>,
}

/// What one request body held.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// Series with their points.
    pub series: Vec<Series>,
    /// Service checks.
    pub check_runs: u64,
    /// Events.
    pub events: u64,
}

/// Per-metric state in `/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricStats {
    /// Points accepted for this name.
    pub points: u64,
    /// Sum of their numeric values.
    pub value_sum: f64,
    /// Type of the last series seen.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Host of the last series seen.
    pub host: Option<String>,
    /// Tags of the last series seen (Datadog), else `null`.
    pub tags: Option<Vec<String>>,
    /// Dimensions of the last series seen (SignalFx), else `null`.
    pub dimensions: Option<BTreeMap<String, String>>,
    /// Value of the last point seen.
    pub last_value: Option<f64>,
    /// Timestamp of the last point seen, as sent (seconds for Datadog, ms for SignalFx).
    pub last_timestamp: Option<f64>,
    /// The first `--keep-values` point values, in the order they arrived (omitted when not
    /// kept): lets a test check order, gaps and duplicates per series.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
}

/// Everything counted since start or the last `/reset`.
#[derive(Debug, Default)]
pub struct Stats {
    requests_by_path: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    requests: u64,
    accepted_requests: u64,
    failed_requests: u64,
    rejected_requests: u64,
    bytes_wire: u64,
    failed_bytes_wire: u64,
    bytes_decoded: u64,
    encodings: BTreeMap<&'static str, u64>,
    series: u64,
    points: u64,
    value_sum: f64,
    check_runs: u64,
    events: u64,
    metrics: HashMap<String, MetricStats>,
    metrics_overflow_points: u64,
    api_keys: BTreeMap<String, u64>,
    api_keys_overflow: u64,
    requests_without_key: u64,
    last_error: Option<String>,
    keep_values: usize,
}

/// How a request ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (2xx); its contents were added.
    Accepted,
    /// Answered with an injected failure; its body was not decoded.
    Failed,
    /// Refused by the vendor itself (bad body, auth, unknown path).
    Rejected,
}

impl Stats {
    /// Empty counters that keep the first `keep_values` point values of each metric.
    pub fn keeping_values(keep_values: usize) -> Self {
        Stats {
            keep_values,
            ..Stats::default()
        }
    }

    /// Counts one intake request, whatever its outcome.
    pub fn request(
        &mut self,
        path: &'static str,
        status: u16,
        outcome: Outcome,
        wire_bytes: usize,
        key: Option<&str>,
    ) {
        self.requests += 1;
        *self
            .requests_by_path
            .entry(path)
            .or_default()
            .entry(status)
            .or_default() += 1;
        self.bytes_wire += wire_bytes as u64;
        match outcome {
            Outcome::Accepted => self.accepted_requests += 1,
            Outcome::Failed => {
                self.failed_requests += 1;
                self.failed_bytes_wire += wire_bytes as u64;
            }
            Outcome::Rejected => self.rejected_requests += 1,
        }
        match key {
            Some(key) => {
                if let Some(n) = self.api_keys.get_mut(key) {
                    *n += 1;
                } else if self.api_keys.len() < MAX_KEYS {
                    self.api_keys.insert(key.to_owned(), 1);
                } else {
                    self.api_keys_overflow += 1;
                }
            }
            None => self.requests_without_key += 1,
        }
    }

    /// Remembers why the last request was refused.
    pub fn error(&mut self, message: String) {
        self.last_error = Some(message);
    }

    /// Adds the contents of an accepted request.
    pub fn accept(&mut self, encoding: &'static str, decoded_bytes: usize, decoded: Decoded) {
        self.bytes_decoded += decoded_bytes as u64;
        *self.encodings.entry(encoding).or_default() += 1;
        self.check_runs += decoded.check_runs;
        self.events += decoded.events;
        for series in decoded.series {
            self.add_series(series);
        }
    }

    /// Adds one series.
    fn add_series(&mut self, series: Series) {
        self.series += 1;
        let points = series.points.len() as u64;
        let sum: f64 = series.points.iter().filter_map(|p| p.1).sum();
        self.points += points;
        self.value_sum += sum;
        if self.metrics.len() >= MAX_METRICS && !self.metrics.contains_key(&series.metric) {
            self.metrics_overflow_points += points;
            return;
        }
        let entry = self.metrics.entry(series.metric).or_default();
        entry.points += points;
        entry.value_sum += sum;
        entry.kind = series.kind;
        entry.host = series.host;
        match series.labels {
            Labels::Tags(tags) => {
                entry.tags = Some(tags);
                entry.dimensions = None;
            }
            Labels::Dimensions(dims) => {
                entry.dimensions = Some(dims);
                entry.tags = None;
            }
        }
        let room = self.keep_values.saturating_sub(entry.values.len());
        entry
            .values
            .extend(series.points.iter().filter_map(|p| p.1).take(room));
        if let Some(&(ts, value)) = series.points.last() {
            entry.last_timestamp = ts;
            entry.last_value = value;
        }
    }

    /// The `/stats` JSON document.
    pub fn snapshot(&self, kind: &'static str) -> serde_json::Value {
        let metrics: BTreeMap<&str, &MetricStats> =
            self.metrics.iter().map(|(k, v)| (k.as_str(), v)).collect();
        serde_json::json!({
            "kind": kind,
            "requests": self.requests,
            "accepted_requests": self.accepted_requests,
            "failed_requests": self.failed_requests,
            "rejected_requests": self.rejected_requests,
            "requests_by_path": self.requests_by_path,
            "bytes_wire": self.bytes_wire,
            "failed_bytes_wire": self.failed_bytes_wire,
            "bytes_decoded": self.bytes_decoded,
            "encodings": self.encodings,
            "series": self.series,
            "points": self.points,
            "value_sum": self.value_sum,
            "check_runs": self.check_runs,
            "events": self.events,
            "metric_count": self.metrics.len(),
            "metrics_overflow_points": self.metrics_overflow_points,
            "api_keys": self.api_keys,
            "api_keys_overflow": self.api_keys_overflow,
            "requests_without_key": self.requests_without_key,
            "last_error": self.last_error,
            "metrics": metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(metric: &str, values: &[f64]) -> Series {
        Series {
            metric: metric.to_owned(),
            kind: Some("count".to_owned()),
            host: Some("h".to_owned()),
            labels: Labels::Tags(vec!["a:b".to_owned()]),
            points: values.iter().map(|&v| (Some(1.0), Some(v))).collect(),
        }
    }

    #[test]
    fn accepted_points_add_up_per_metric() {
        let mut stats = Stats::default();
        stats.request("/api/v1/series", 202, Outcome::Accepted, 10, Some("k1"));
        stats.accept(
            "gzip",
            40,
            Decoded {
                series: vec![series("m", &[1.0, 2.0]), series("n", &[5.0])],
                ..Decoded::default()
            },
        );
        stats.request("/api/v1/series", 503, Outcome::Failed, 7, Some("k1"));
        stats.request("/api/v1/series", 400, Outcome::Rejected, 3, None);
        let snap = stats.snapshot("datadog");
        assert_eq!(snap["requests"], 3);
        assert_eq!(snap["requests_by_path"]["/api/v1/series"]["202"], 1);
        assert_eq!(snap["requests_by_path"]["/api/v1/series"]["503"], 1);
        assert_eq!(snap["failed_bytes_wire"], 7);
        assert_eq!(snap["bytes_wire"], 20);
        assert_eq!(snap["points"], 3);
        assert_eq!(snap["series"], 2);
        assert_eq!(snap["metrics"]["m"]["points"], 2);
        assert_eq!(snap["metrics"]["m"]["value_sum"], 3.0);
        assert_eq!(snap["metrics"]["m"]["tags"][0], "a:b");
        assert_eq!(snap["metrics"]["m"]["dimensions"], serde_json::Value::Null);
        assert_eq!(snap["api_keys"]["k1"], 2);
        assert_eq!(snap["requests_without_key"], 1);
        assert_eq!(snap["encodings"]["gzip"], 1);
    }

    #[test]
    fn kept_values_are_in_arrival_order_and_capped() {
        let mut stats = Stats::keeping_values(4);
        stats.add_series(series("m", &[1.0, 2.0, 3.0]));
        stats.add_series(series("m", &[2.0, 9.0]));
        let snap = stats.snapshot("datadog");
        assert_eq!(
            snap["metrics"]["m"]["values"],
            serde_json::json!([1.0, 2.0, 3.0, 2.0])
        );
        let mut plain = Stats::default();
        plain.add_series(series("m", &[1.0]));
        assert!(plain.snapshot("datadog")["metrics"]["m"]
            .get("values")
            .is_none());
    }

    #[test]
    fn metric_names_are_capped() {
        let mut stats = Stats::default();
        for i in 0..MAX_METRICS + 5 {
            stats.add_series(series(&format!("m{i}"), &[1.0]));
        }
        stats.add_series(series("m0", &[1.0]));
        assert_eq!(stats.metrics.len(), MAX_METRICS);
        assert_eq!(stats.metrics_overflow_points, 5);
        assert_eq!(stats.points, MAX_METRICS as u64 + 6);
        assert_eq!(stats.metrics["m0"].points, 2);
    }
}
