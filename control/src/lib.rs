//! Switchyard's control plane: a small HTTP API on its own thread with a current-thread
//! tokio runtime, bound to loopback by default.
//!
//! Endpoints (the status code is the contract; every error body is
//! `{"errors": ["what is wrong", ...]}`):
//! - `GET /healthz`: the process is alive (200 `ok`).
//! - `GET /readyz`: 200 when the dataplane reported ready (listeners bound) and every sink is
//!   healthy, else 503; the JSON body says which part is not ready (see [`ready`]).
//! - `GET /metrics`: Prometheus text exposition of every counter, summed across shards when
//!   scraped (see [`metrics`]).
//! - `GET /v1/stats`: the same series as JSON, plus each sink's accounting ledger (see
//!   [`stats`] and [`ledger`]) and the stream workers' counters ([`workers`]);
//!   `GET /v1/stats/top?by=points|series&limit=N`: the heaviest
//!   metric names over a sliding window.
//! - `GET /v1/routes`, `PUT /v1/routes` (`If-Match` required), `POST /v1/routes/validate`
//!   (see [`routes`]).
//! - `GET /v1/config`: the effective configuration, secrets redacted (see [`config_view`]).
//! - `GET /v1/leases`, `POST /v1/leases/{key}/release`: the Kinesis workers' shard leases
//!   (see [`leases`]).
//! - `GET /v1/deadletter`, `GET /v1/deadletter/{sink}?limit=N`, `DELETE
//!   /v1/deadletter/{sink}`: the requests vendors refused for good, kept with their answer
//!   (see [`deadletter`]).
//!
//! Mutating endpoints (every `PUT`, `POST` and `DELETE`) need `Authorization: Bearer <token>` when a
//! token is configured, and answer only on a loopback listener when none is (see [`auth`]).
//! Request bodies are capped at [`MAX_BODY_BYTES`] (413 beyond).
//!
//! The listener is bound before [`spawn`] returns, so a bad address fails the start instead
//! of a background thread. With `[control] tls` the API is served over HTTPS only (see
//! [`tls`]); its certificate is loaded before [`spawn`] returns too, and re-read on SIGHUP
//! through [`ControlHandle::tls`].

pub mod auth;
pub mod config_view;
pub mod deadletter;
pub mod leases;
pub mod ledger;
pub mod metrics;
pub mod ready;
pub mod routes;
pub mod stats;
pub mod tls;
pub mod workers;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use switchyard_core::config::Config;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::{SinkRuntime, SinkSlots};
use tokio::sync::oneshot;

/// Largest request body any endpoint accepts (413 beyond).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the control plane reads and drives.
#[derive(Debug, Clone)]
pub struct ControlState {
    /// Counters published by the shards.
    pub telemetry: Arc<Telemetry>,
    /// The sink slots (their probes feed the ledger and the metrics).
    pub sinks: Arc<SinkSlots>,
    /// Set by the process once the dataplane's listeners are bound (and cleared when it
    /// starts shutting down): the first half of `GET /readyz`.
    pub ready: Arc<AtomicBool>,
    /// The configuration the process runs (for `GET /v1/config` and `[control]` settings),
    /// replaced by a reload; read it with [`ControlState::config`].
    config: Arc<RwLock<Arc<Config>>>,
    /// The bearer token mutating endpoints require, if one is configured.
    pub token: Option<auth::Token>,
    /// Whether the control listener is a loopback address (without a token, mutating
    /// endpoints answer only then).
    pub loopback_listener: bool,
    /// The route tables behind `/v1/routes`.
    pub routes: routes::Routes,
    /// Where accepted route tables are persisted (`routes.json`, written atomically): the
    /// top-level `state_dir`. `None` skips persistence.
    pub state_dir: Option<PathBuf>,
    /// The live backend, for reloads (set by [`ControlState::with_live_routes`]).
    live: Option<Arc<routes::ShardRoutes>>,
    /// Whether the backend's tables reach the dataplane (set by
    /// [`ControlState::with_live_routes`]). When `false`, `PUT /v1/routes` answers 501 after
    /// validating, so nobody believes a change is live when it is not.
    pub live_routes: bool,
    /// The stream workers (`/metrics`, the `workers` section of `/v1/stats`).
    pub workers: workers::Workers,
}

impl ControlState {
    /// The state for a process running `cfg` with `shards` shards: reads the token
    /// (`[control] token_file` / `token_env`), starts not ready, and serves the config's
    /// routes from an in-memory table ([`routes::MemoryRoutes`]); the binary then calls
    /// [`ControlState::with_live_routes`] to serve the shards' live table.
    ///
    /// # Errors
    /// [`ControlError::Token`] when the configured token file or variable is missing or empty.
    pub fn new(
        cfg: &Config,
        telemetry: Arc<Telemetry>,
        sinks: Arc<SinkSlots>,
    ) -> Result<Self, ControlError> {
        let token = auth::Token::load(&cfg.control).map_err(ControlError::Token)?;
        let shards = telemetry.shards();
        Ok(Self {
            telemetry,
            sinks,
            ready: Arc::new(AtomicBool::new(false)),
            config: Arc::new(RwLock::new(Arc::new(cfg.clone()))),
            token,
            loopback_listener: cfg.control_addr().ip().is_loopback(),
            routes: routes::Routes::new(Arc::new(routes::MemoryRoutes::from_config(cfg, shards))),
            state_dir: cfg.state_dir.clone(),
            live: None,
            live_routes: false,
            workers: workers::Workers::default(),
        })
    }

    /// Replaces the configuration shown by `GET /v1/config` and read for `[control]`
    /// settings (the token and listener stay as they were built).
    pub fn set_config(&self, cfg: Config) {
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(cfg);
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ControlState {
    /// Serves `/v1/routes` from the shards' live table: `PUT /v1/routes` installs into
    /// `cell`, which every shard picks up, and `GET /v1/routes` reports the version each
    /// shard runs. Sets `live_routes`.
    pub fn with_live_routes(mut self, cell: Arc<switchyard_core::route::RoutesCell>) -> Self {
        let live = Arc::new(routes::ShardRoutes::new(
            &self.config(),
            cell,
            self.sinks.clone(),
        ));
        self.routes = routes::Routes::new(live.clone());
        self.live = Some(live);
        self.live_routes = true;
        self
    }

    /// Applies a re-read config file (SIGHUP): its sinks and, if they changed, its routes
    /// (see [`routes::ShardRoutes::reload`]), serialised with `PUT /v1/routes`. Other
    /// sections need a restart: the returned report names those that differ.
    ///
    /// # Errors
    /// Why nothing changed.
    pub fn reload(&self, cfg: &Config, sinks: &SinkRuntime) -> Result<Reload, String> {
        let Some(live) = &self.live else {
            return Err("routes are not live in this process".into());
        };
        let _guard = self.routes.lock();
        let old = self.config();
        let applied = live.reload(cfg, sinks, &old.route_table().version)?;
        let restart_needed = restart_sections(&old, cfg);
        // What is in force now: the new sinks and routes, the old everything else.
        let mut now = (*old).clone();
        now.sinks = cfg.sinks.clone();
        now.routes = cfg.routes.clone();
        self.set_config(now);
        Ok(Reload {
            applied,
            restart_needed,
        })
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// Sinks and routes applied.
    pub applied: routes::Reloaded,
    /// Sections of the file that differ from those running and need a restart.
    pub restart_needed: Vec<&'static str>,
}

/// The top-level sections, other than `sinks` and `routes`, in which `a` and `b` differ.
fn restart_sections(a: &Config, b: &Config) -> Vec<&'static str> {
    let differs = |x: serde_json::Result<serde_json::Value>, y| match (x, y) {
        (Ok(x), Ok(y)) => x != y,
        _ => true,
    };
    let mut out = Vec::new();
    let pairs: [(
        &'static str,
        serde_json::Result<serde_json::Value>,
        serde_json::Result<serde_json::Value>,
    ); 6] = [
        (
            "shards",
            serde_json::to_value(&a.shards),
            serde_json::to_value(&b.shards),
        ),
        (
            "statsd",
            serde_json::to_value(&a.statsd),
            serde_json::to_value(&b.statsd),
        ),
        (
            "http",
            serde_json::to_value(&a.http),
            serde_json::to_value(&b.http),
        ),
        (
            "control",
            serde_json::to_value(&a.control),
            serde_json::to_value(&b.control),
        ),
        (
            "state_dir",
            serde_json::to_value(&a.state_dir),
            serde_json::to_value(&b.state_dir),
        ),
        (
            "forwarder",
            serde_json::to_value(&a.forwarder),
            serde_json::to_value(&b.forwarder),
        ),
    ];
    for (name, x, y) in pairs {
        if differs(x, y) {
            out.push(name);
        }
    }
    out
}

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Binding the listener failed.
    #[error("binding control listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The thread or runtime could not start.
    #[error("starting the control thread: {0}")]
    Runtime(std::io::Error),
    /// The configured control token could not be read.
    #[error("control token: {0}")]
    Token(String),
    /// The configured TLS certificate or key could not be loaded.
    #[error("control.tls: {0}")]
    Tls(switchyard_tls::TlsError),
}

/// The running control plane.
#[derive(Debug)]
pub struct ControlHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The bound address.
    pub addr: SocketAddr,
    tls: Option<switchyard_tls::ServerTls>,
}

impl ControlHandle {
    /// The TLS setup when `[control] tls` is configured (reload it on SIGHUP).
    pub fn tls(&self) -> Option<&switchyard_tls::ServerTls> {
        self.tls.as_ref()
    }

    /// Stops the server and joins its thread.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The router (public for tests that drive it in-process).
pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::handler))
        .route("/metrics", get(metrics_handler))
        .route("/v1/stats", get(stats::stats_handler))
        .route("/v1/stats/top", get(stats::top_handler))
        .route(
            "/v1/routes",
            get(routes::get_handler).put(routes::put_handler),
        )
        .route("/v1/routes/validate", post(routes::validate_handler))
        .route("/v1/config", get(config_view::handler))
        .route("/v1/leases", get(leases::list_handler))
        .route("/v1/leases/{key}/release", post(leases::release_handler))
        .route("/v1/deadletter", get(deadletter::summary_handler))
        .route(
            "/v1/deadletter/{sink}",
            get(deadletter::list_handler).delete(deadletter::clear_handler),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn metrics_handler(State(st): State<ControlState>) -> impl IntoResponse {
    let mut body = metrics::render(&st.telemetry, &st.sinks.probes());
    body.push_str(&st.workers.render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// An error response: `{"errors": [...]}` with `status`.
pub(crate) fn errors(status: StatusCode, errors: Vec<String>) -> Response {
    (status, Json(serde_json::json!({ "errors": errors }))).into_response()
}

/// Binds `addr` and serves the API on a new thread (over TLS when the state's config has
/// `[control] tls`).
///
/// # Errors
/// [`ControlError`] when the address cannot be bound, the certificate cannot be loaded or
/// the thread cannot start.
pub fn spawn(addr: SocketAddr, state: ControlState) -> Result<ControlHandle, ControlError> {
    let tls = match &state.config().control.tls {
        Some(t) => Some(
            switchyard_tls::ServerTls::load(&t.cert, &t.key, &[b"http/1.1"])
                .map_err(ControlError::Tls)?,
        ),
        None => None,
    };
    let tls_config = tls.as_ref().map(switchyard_tls::ServerTls::config);
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|source| ControlError::Bind { addr, source })?;
    std_listener
        .set_nonblocking(true)
        .map_err(ControlError::Runtime)?;
    let bound = std_listener.local_addr().map_err(ControlError::Runtime)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ControlError::Runtime)?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "control listener");
                        return;
                    }
                };
                let stopped = async move {
                    let _ = stop_rx.await;
                };
                let served = match tls_config {
                    None => {
                        axum::serve(listener, router(state))
                            .with_graceful_shutdown(stopped)
                            .await
                    }
                    Some(config) => match tls::TlsListener::new(listener, config) {
                        Ok(l) => {
                            axum::serve(l, router(state))
                                .with_graceful_shutdown(stopped)
                                .await
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "control server failed");
                }
            });
        })
        .map_err(ControlError::Runtime)?;
    Ok(ControlHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
        addr: bound,
        tls,
    })
}
