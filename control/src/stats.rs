//! `GET /v1/stats`: every series `GET /metrics` renders, as JSON, plus each sink's
//! accounting ledger ([`crate::ledger`]). The series come from the same collection as the
//! Prometheus text, so names, labels and values always agree: `metrics` maps each series
//! name to its samples (counters and gauges summed over shards, histograms as their
//! `_bucket`, `_sum` and `_count` series).
//!
//! ```json
//! {"metrics": {
//!    "switchyard_statsd_datagrams_total": [{"labels": {}, "value": 12}],
//!    "switchyard_sink_dropped_values_total": [
//!      {"labels": {"sink": "old", "reason": "queue_full"}, "value": 0}, ...], ...},
//!  "ledger": [{"sink": "old",
//!    "values": {"enqueued": 100, "queued": 0, "received": 100, "delivered": 80,
//!               "in_flight": 0, "dropped": {"queue_full": 0, "route_dropped": 0, "sampled_out": 0,
//!                           "retries_exhausted": 20, ...}},
//!    "bytes": {"queued": 0, "delivered": 5120, "delivered_uncompressed": 20480},
//!    "distinct_series_1h": 1873,
//!    "balanced": true, "clamped": []}]}
//! ```
//!
//! `distinct_series_1h`: the distinct series sent to the sink over the last hour, the figure
//! vendors bill by (a HyperLogLog estimate over the shards, see [`crate::ledger`]).
//!
//! `GET /v1/stats/top?by=points|series&limit=N`: the heaviest metric names over the last one
//! to two windows (`TOP_WINDOW`, 60 s), merged over shards from bounded Space-Saving
//! sketches. `count` is an upper bound of the true weight and `count - error` a lower bound.
//!
//! ```json
//! {"by":"points","window_seconds":60,"total":1234,
//!  "top":[{"name":"checkout.latency","count":800,"error":0}]}
//! ```

use crate::ControlState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use switchyard_core::telemetry::{TOP_CAPACITY, TOP_WINDOW};

/// `GET /v1/stats`.
pub async fn stats_handler(State(st): State<ControlState>) -> Response {
    Json(snapshot(&st)).into_response()
}

/// The `/v1/stats` document.
pub fn snapshot(st: &ControlState) -> serde_json::Value {
    let ledger = crate::ledger::ledgers(&st.telemetry, &st.sinks.probes());
    let mut metrics = serde_json::Map::new();
    for f in crate::metrics::collect(&st.telemetry, &st.sinks.probes()) {
        for s in f.samples {
            let labels: serde_json::Map<String, serde_json::Value> = s
                .labels
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let entry = serde_json::json!({"labels": labels, "value": number(s.value)});
            match metrics.entry(s.name) {
                serde_json::map::Entry::Vacant(v) => {
                    v.insert(serde_json::Value::Array(vec![entry]));
                }
                serde_json::map::Entry::Occupied(mut o) => {
                    if let serde_json::Value::Array(a) = o.get_mut() {
                        a.push(entry);
                    }
                }
            }
        }
    }
    serde_json::json!({"metrics": metrics, "ledger": ledger, "workers": st.workers.json()})
}

/// Integral values as JSON integers (counters stay exact), others as floats; non-finite as
/// null (JSON has no NaN).
fn number(v: f64) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && (0.0..EXACT).contains(&v) {
        serde_json::Value::from(v as u64)
    } else {
        serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// Query parameters.
#[derive(Debug, Deserialize)]
pub struct TopQuery {
    /// `points` (default) or `series`.
    pub by: Option<String>,
    /// Entries to return (default 50, at most the sketch capacity).
    pub limit: Option<usize>,
}

/// The handler.
pub async fn top_handler(
    State(st): State<ControlState>,
    q: Result<Query<TopQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad("query: expected by=points|series and limit=N");
    };
    let by_series = match q.by.as_deref() {
        None | Some("points") => false,
        Some("series") => true,
        Some(other) => return bad(&format!("by: `{other}` is not `points` or `series`")),
    };
    let limit = q.limit.unwrap_or(50).min(TOP_CAPACITY);
    let (top, total) = st.telemetry.top(by_series, limit);
    let top: Vec<serde_json::Value> = top
        .into_iter()
        .map(|e| serde_json::json!({"name": e.name, "count": e.count, "error": e.error}))
        .collect();
    Json(serde_json::json!({
        "by": if by_series { "series" } else { "points" },
        "window_seconds": TOP_WINDOW.as_secs(),
        "total": total,
        "top": top,
    }))
    .into_response()
}

fn bad(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "errors": [msg] })),
    )
        .into_response()
}
