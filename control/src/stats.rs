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
