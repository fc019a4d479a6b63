//! `GET /v1/deadletter`, `GET /v1/deadletter/{sink}?limit=N` and `DELETE
//! /v1/deadletter/{sink}`: the requests HTTP vendor sinks' vendors refused with a 4xx that
//! cannot succeed, kept with the vendor's answer (see `switchyard_sinks::deadletter`; only
//! with a top-level `state_dir` and a non-zero `deadletter_max_bytes`).
//!
//! - `GET /v1/deadletter`: per sink that keeps dead letters, what it holds (`entries`,
//!   `values`, `bytes`), `evicted` (entries removed to stay under the cap since the start;
//!   `evicted_values` their values), `written_entries` and `written_values` since the
//!   start, `cleared` (entries removed by `DELETE`) and `write_errors`.
//! - `GET /v1/deadletter/{sink}?limit=N`: the newest `N` entries (default 100, at most
//!   10 000), newest first, and `more` when older ones were left out (by the limit, or because
//!   the answer reached [`MAX_ANSWER_BYTES`]). Entries hold the vendor's answer and the
//!   request body with every credential redacted; API keys are never stored.
//! - `DELETE /v1/deadletter/{sink}` (bearer token, as every change): removes every entry and
//!   answers how many (`cleared`).
//!
//! 404 for a sink that does not exist or keeps no dead letters; 400 for a bad `limit`.
//! Reading and removing segments runs on tokio's blocking pool.
//!
//! Metrics: none here (the `switchyard_sink_deadletter_*` families are in
//! [`crate::metrics`]).

use crate::{auth, errors, ControlState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use switchyard_sinks::deadletter::DeadLetter;

/// Entries `GET /v1/deadletter/{sink}` returns without `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// Most entries one answer holds.
pub const MAX_LIMIT: usize = 10_000;
/// Stored bytes one answer holds at most (one entry always fits).
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Query parameters of `GET /v1/deadletter/{sink}`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Entries to return (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

/// The store of sink `name`, or why there is none (answered 404).
fn store(st: &ControlState, name: &str) -> Result<Arc<DeadLetter>, String> {
    let probes = st.sinks.probes();
    let Some(p) = probes.iter().find(|p| p.name == name) else {
        return Err(format!("no sink `{name}`"));
    };
    p.stats.deadletter.get().cloned().ok_or_else(|| {
        format!(
            "sink `{name}` keeps no dead letters (datadog and signalfx sinks do, with a \
             top-level state_dir and deadletter_max_bytes > 0)"
        )
    })
}

/// `GET /v1/deadletter`.
pub async fn summary_handler(State(st): State<ControlState>) -> Response {
    let sinks: Vec<serde_json::Value> = st
        .sinks
        .probes()
        .iter()
        .filter_map(|p| {
            let c = p.stats.deadletter.get()?.counts();
            Some(json!({
                "sink": p.name,
                "entries": c.entries,
                "values": c.values,
                "bytes": c.bytes,
                "evicted": c.evicted_entries,
                "evicted_values": c.evicted_values,
                "written_entries": c.written_entries,
                "written_values": c.written_values,
                "cleared": c.cleared_entries,
                "write_errors": c.write_errors,
            }))
        })
        .collect();
    Json(json!({ "sinks": sinks })).into_response()
}

/// `GET /v1/deadletter/{sink}`.
pub async fn list_handler(
    State(st): State<ControlState>,
    Path(name): Path<String>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return errors(
            StatusCode::BAD_REQUEST,
            vec!["query: expected limit=N".into()],
        );
    };
    let store = match store(&st, &name) {
        Ok(s) => s,
        Err(e) => return errors(StatusCode::NOT_FOUND, vec![e]),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let read = tokio::task::spawn_blocking(move || store.read(limit, MAX_ANSWER_BYTES)).await;
    match read {
        Ok(Ok((entries, more))) => {
            Json(json!({ "sink": name, "entries": entries, "more": more })).into_response()
        }
        Ok(Err(e)) => errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![format!("reading the dead letters of `{name}`: {e}")],
        ),
        Err(e) => errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![format!("reading the dead letters of `{name}`: {e}")],
        ),
    }
}

/// `DELETE /v1/deadletter/{sink}`.
pub async fn clear_handler(
    State(st): State<ControlState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth::authorize(&st, &headers) {
        return r;
    }
    let store = match store(&st, &name) {
        Ok(s) => s,
        Err(e) => return errors(StatusCode::NOT_FOUND, vec![e]),
    };
    match tokio::task::spawn_blocking(move || store.clear()).await {
        Ok(Ok(cleared)) => {
            tracing::info!(sink = %name, cleared, "dead letters cleared on request");
            Json(json!({ "sink": name, "cleared": cleared })).into_response()
        }
        Ok(Err(e)) => errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![format!("clearing the dead letters of `{name}`: {e}")],
        ),
        Err(e) => errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![format!("clearing the dead letters of `{name}`: {e}")],
        ),
    }
}
