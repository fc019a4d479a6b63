//! `GET /readyz`: is this process ready to take traffic and pass it on?
//!
//! Ready means both:
//! - the dataplane reported ready: every statsd and HTTP listener is bound and the shards
//!   run ([`ControlState::ready`], cleared again when shutdown begins);
//! - every sink is healthy: fewer than `[control] unhealthy_after_failures` (default 5)
//!   request attempts in a row have failed (no response, or a non-2xx status; see
//!   `SinkStats::consecutive_failures`). One successful request makes a sink healthy
//!   again. Sinks that make no requests (`file`, `stdout`, `blackhole`) are always healthy.
//!
//! 200 when ready, else 503; the body is the same JSON either way and names what is not
//! ready:
//!
//! ```json
//! {"ready": false,
//!  "dataplane": {"ready": true},
//!  "sinks": [{"sink": "old", "healthy": false, "consecutive_failures": 7}],
//!  "errors": ["sink `old`: its last 7 request attempts failed (unhealthy after 5)"]}
//! ```

use crate::ControlState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering;
use switchyard_sinks::SinkStats;

/// The handler.
pub async fn handler(State(st): State<ControlState>) -> Response {
    let (ready, body) = readiness(&st);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Whether the process is ready, and the body that explains it.
pub fn readiness(st: &ControlState) -> (bool, serde_json::Value) {
    let threshold = st.config().control.unhealthy_after_failures;
    let dataplane = st.ready.load(Ordering::Relaxed);
    let mut errors = Vec::new();
    if !dataplane {
        errors.push("dataplane: listeners not bound yet (starting) or shutting down".to_string());
    }
    // Removed sinks (a reload took them out of the config) no longer count.
    let slots = st.sinks.snapshot();
    let sinks: Vec<serde_json::Value> = slots
        .iter()
        .filter(|s| s.handle.is_some())
        .map(|s| &s.probe)
        .map(|p| {
            let failures = SinkStats::get(&p.stats.consecutive_failures);
            let healthy = failures < threshold;
            if !healthy {
                errors.push(format!(
                    "sink `{}`: its last {failures} request attempts failed (unhealthy after {threshold})",
                    p.name
                ));
            }
            serde_json::json!({
                "sink": p.name,
                "healthy": healthy,
                "consecutive_failures": failures,
            })
        })
        .collect();
    let ready = errors.is_empty();
    (
        ready,
        serde_json::json!({
            "ready": ready,
            "dataplane": {"ready": dataplane},
            "sinks": sinks,
            "errors": errors,
        }),
    )
}
