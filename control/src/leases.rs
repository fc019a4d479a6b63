//! `GET /v1/leases` and `POST /v1/leases/{key}/release`: the shard leases of this process's
//! Kinesis workers.
//!
//! `GET` lists every lease of each worker's lease table (a table several workers of this
//! process share is listed once): key, owner, counter, checkpoint, parents, children, hash
//! range, and for leases a worker of this process holds, the time since its last
//! successful renew. `POST .../release` (bearer token, as every change) makes the worker of
//! this process that holds the lease give it up: the lease is left unowned, this worker does
//! not take it back for `failover`, so another worker takes it at its next scan. It answers
//! 200 with the released lease, 409 when the lease exists but no worker of this process
//! holds it, 404 for an unknown key.
//!
//! Metrics: none (lease events are in `/metrics`, see [`crate::workers`]).

use crate::{auth, errors, ControlState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn lease_json(
    from: &str,
    table: &str,
    l: &switchyard_lease::Lease,
    age: Option<std::time::Duration>,
) -> Value {
    json!({
        "stream": from,
        "table": table,
        "key": l.key,
        "owner": l.owner,
        "counter": l.counter,
        "checkpoint": l.checkpoint,
        "pending_checkpoint": l.pending_checkpoint,
        "owner_switches": l.owner_switches,
        "parents": l.parents,
        "children": l.children,
        "hash_range": l.hash_range.map(|r| json!({"start": r.start.to_string(), "end": r.end.to_string()})),
        "last_renew_age_ms": age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
    })
}

/// `GET /v1/leases`.
pub async fn list_handler(State(st): State<ControlState>) -> Response {
    type Row = (switchyard_lease::Lease, Option<std::time::Duration>);
    let mut rows: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    let mut errs = Vec::new();
    let all = st.workers.leases();
    let workers: Vec<Value> = all
        .iter()
        .map(|a| json!({"worker": a.worker, "stream": a.from, "table": a.table}))
        .collect();
    // Workers sharing a table list the same leases; each knows the renew ages of its own.
    for a in &all {
        match a.list().await {
            Ok(list) => {
                for r in list {
                    let k = (a.from.clone(), a.table.clone(), r.lease.key.clone());
                    let e = rows.entry(k).or_insert((r.lease, None));
                    if r.last_renew_age.is_some() {
                        e.1 = r.last_renew_age;
                    }
                }
            }
            Err(e) => errs.push(format!("worker {}: listing leases: {e}", a.worker)),
        }
    }
    let status = if errs.is_empty() || !rows.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let leases: Vec<Value> = rows
        .iter()
        .map(|((from, table, _), (lease, age))| lease_json(from, table, lease, *age))
        .collect();
    (
        status,
        Json(json!({"workers": workers, "leases": leases, "errors": errs})),
    )
        .into_response()
}

/// `POST /v1/leases/{key}/release`.
pub async fn release_handler(
    State(st): State<ControlState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth::authorize(&st, &headers) {
        return r;
    }
    let all = st.workers.leases();
    let mut known = false;
    for a in &all {
        match a.release(&key).await {
            Ok(Some(lease)) => {
                tracing::info!(worker = %a.worker, lease = %key, "lease released on request");
                return (
                    StatusCode::OK,
                    Json(json!({"released": lease_json(&a.from, &a.table, &lease, None), "worker": a.worker})),
                )
                    .into_response();
            }
            Ok(None) => {}
            Err(e) => {
                return errors(
                    StatusCode::CONFLICT,
                    vec![format!("worker {}: releasing `{key}`: {e}", a.worker)],
                )
            }
        }
        if !known {
            known = a
                .list()
                .await
                .map(|rows| rows.iter().any(|r| r.lease.key == key))
                .unwrap_or(false);
        }
    }
    if known {
        errors(
            StatusCode::CONFLICT,
            vec![format!(
                "lease `{key}` is not held by a worker of this process: release it where it is held (GET /v1/leases shows the owner)"
            )],
        )
    } else {
        errors(
            StatusCode::NOT_FOUND,
            vec![format!(
                "no lease `{key}` in the lease tables of this process's workers"
            )],
        )
    }
}
