//! `/v1/routes`: the live route table, over a [`RouteBackend`].
//!
//! - `GET /v1/routes` → 200 `{"version": "...", "routes": [...], "shards": [{"shard": 0,
//!   "version": "..."}]}`, with `ETag: "<version>"`. `shards` says which table each shard
//!   runs (they differ only while a new table is being swapped in).
//! - `PUT /v1/routes` with a whole table, `{"routes": [...]}` (a `version` member is ignored:
//!   the backend derives it from the content), and `If-Match: <version>` (quoted or not) of
//!   the table it replaces. Answers: 200 with the new table (as `GET`, plus `"persisted":
//!   bool`); 428 without `If-Match`; 412 when the version is not the current one (someone
//!   changed the table since it was read); 400 `{"errors": [...]}` when the body is not JSON or
//!   not a valid table, naming the rule and field at fault; 413 over [`crate::MAX_BODY_BYTES`];
//!   401/403 (see [`crate::auth`]); 500 when the table could not be persisted or installed.
//!   A refused request changes nothing.
//! - `POST /v1/routes/validate`: the same validation as a dry run (auth and size cap apply):
//!   200 `{"valid": true, "version": "...", "routes": [...]}` or 400 `{"valid": false,
//!   "errors": [...]}`.
//!
//! An accepted table is validated, persisted atomically to `<state_dir>/routes.json` (see
//! [`persist`]; skipped when the state has no `state_dir`), then installed. PUTs are
//! serialised, so the `If-Match` check, the write and the swap happen as one step.

mod memory;
pub mod persist;
mod shards;

pub use memory::MemoryRoutes;
pub use shards::{startup_table, Reloaded, ShardRoutes};

use crate::{auth, errors, ControlState};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A validated table: its version and its normalized routes (a JSON array).
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// Version, derived from the content.
    pub version: String,
    /// Normalized routes.
    pub routes: Value,
}

/// The table in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// Its version.
    pub version: String,
    /// Its routes.
    pub routes: Value,
    /// Version each shard runs, by shard index.
    pub shards: Vec<String>,
}

/// What the route endpoints drive: the dataplane's route tables.
///
/// [`ShardRoutes`] swaps a compiled snapshot into every shard (the binary's backend);
/// [`MemoryRoutes`] holds the table and checks its shape only (tests, and a state without
/// live routes).
pub trait RouteBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Validates a table document (`{"routes": [...]}`) without installing it.
    ///
    /// # Errors
    /// Every problem found, each naming the rule and field at fault (or saying the JSON is
    /// malformed, with the line and column).
    fn validate(&self, doc: &[u8]) -> Result<Validated, Vec<String>>;

    /// The table in force and what each shard runs.
    fn current(&self) -> Current;

    /// Installs a validated table.
    ///
    /// # Errors
    /// Why the table could not be installed (nothing changed then).
    fn install(&self, table: &Validated) -> Result<(), String>;
}

/// The route endpoints' handle: a backend and the lock that serialises `PUT`s.
#[derive(Debug, Clone)]
pub struct Routes {
    backend: Arc<dyn RouteBackend>,
    put_lock: Arc<Mutex<()>>,
}

impl Routes {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn RouteBackend>) -> Self {
        Self {
            backend,
            put_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &dyn RouteBackend {
        self.backend.as_ref()
    }

    /// Takes the lock that serialises changes (`PUT`s and reloads).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.put_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn current_json(c: &Current) -> Value {
    let shards: Vec<Value> = c
        .shards
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"shard": i, "version": v}))
        .collect();
    serde_json::json!({"version": c.version, "routes": c.routes, "shards": shards})
}

fn with_etag(mut r: Response, version: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// `GET /v1/routes`.
pub async fn get_handler(State(st): State<ControlState>) -> Response {
    let c = st.routes.backend().current();
    with_etag(Json(current_json(&c)).into_response(), &c.version)
}

/// Reads a capped body, mapping a rejection to a JSON error (413 over the cap).
async fn body(req: Request, st: &ControlState) -> Result<Bytes, Response> {
    Bytes::from_request(req, st).await.map_err(|rej| {
        let status = rej.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body larger than {} bytes", crate::MAX_BODY_BYTES)
        } else {
            format!("reading the request body: {}", rej.body_text())
        };
        errors(status, vec![msg])
    })
}

/// The versions an `If-Match` header lists (quotes removed); `None` when absent.
fn if_match(headers: &HeaderMap) -> Option<Result<Vec<String>, ()>> {
    let v = headers.get(header::IF_MATCH)?;
    Some(
        v.to_str()
            .map(|s| {
                s.split(',')
                    .map(|t| t.trim().trim_matches('"').to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .map_err(|_| ()),
    )
}

/// `PUT /v1/routes`.
pub async fn put_handler(State(st): State<ControlState>, req: Request) -> Response {
    if let Err(r) = auth::authorize(&st, req.headers()) {
        return r;
    }
    let wanted = match if_match(req.headers()) {
        None => {
            return errors(
                StatusCode::PRECONDITION_REQUIRED,
                vec!["If-Match is required: send the version from GET /v1/routes".into()],
            )
        }
        Some(Err(())) => {
            return errors(
                StatusCode::BAD_REQUEST,
                vec!["If-Match: not a visible ASCII version".into()],
            )
        }
        Some(Ok(v)) => v,
    };
    let doc = match body(req, &st).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let backend = st.routes.backend();
    // One PUT at a time: the version check, the write and the swap are one step.
    let _guard = st.routes.lock();
    let before = backend.current();
    if !wanted.contains(&before.version) {
        return errors(
            StatusCode::PRECONDITION_FAILED,
            vec![format!(
                "If-Match {:?} is not the current version `{}`: GET /v1/routes and apply your change again",
                wanted.join(", "),
                before.version
            )],
        );
    }
    let table = match backend.validate(&doc) {
        Ok(t) => t,
        Err(e) => return errors(StatusCode::BAD_REQUEST, e),
    };
    if !st.live_routes {
        return errors(
            StatusCode::NOT_IMPLEMENTED,
            vec!["the table is valid, but this version's dataplane does not apply live route changes yet: edit [[routes]] in the config file and restart".into()],
        );
    }
    let file_version = st.config().route_table().version;
    let persisted = match &st.state_dir {
        Some(dir) => {
            if let Err(e) = persist::store(dir, &table, &file_version) {
                tracing::error!(error = %e, dir = %dir.display(), "persisting the route table");
                return errors(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    vec![format!("persisting the route table: {e}; nothing changed")],
                );
            }
            true
        }
        None => false,
    };
    if let Err(e) = backend.install(&table) {
        // Put the previous table back on disk so a restart runs what is running now.
        if let Some(dir) = &st.state_dir {
            let prev = Validated {
                version: before.version.clone(),
                routes: before.routes.clone(),
            };
            if let Err(pe) = persist::store(dir, &prev, &file_version) {
                tracing::error!(error = %pe, "restoring the persisted route table");
            }
        }
        return errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![format!("installing the route table: {e}; nothing changed")],
        );
    }
    tracing::info!(from = %before.version, to = %table.version, persisted, "route table replaced");
    let now = backend.current();
    let mut body = current_json(&now);
    if let Value::Object(m) = &mut body {
        m.insert("persisted".into(), Value::Bool(persisted));
    }
    with_etag(Json(body).into_response(), &now.version)
}

/// `POST /v1/routes/validate`.
pub async fn validate_handler(State(st): State<ControlState>, req: Request) -> Response {
    if let Err(r) = auth::authorize(&st, req.headers()) {
        return r;
    }
    let doc = match body(req, &st).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match st.routes.backend().validate(&doc) {
        Ok(t) => Json(serde_json::json!({"valid": true, "version": t.version, "routes": t.routes}))
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"valid": false, "errors": e})),
        )
            .into_response(),
    }
}
