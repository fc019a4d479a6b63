//! Switchyard's control plane: a small HTTP API on its own thread with a current-thread
//! tokio runtime, bound to loopback by default.
//!
//! Endpoints so far: `GET /healthz` (the process is alive: 200 `ok`), `GET /metrics`
//! (Prometheus text exposition of every counter, summed across shards when scraped; see
//! [`metrics`]) and `GET /v1/stats/top?by=points|series&limit=N` (the heaviest metric names
//! over a sliding window; see [`stats`]). The listener is bound before [`spawn`] returns, so a bad address fails the
//! start instead of a background thread.

pub mod metrics;
pub mod stats;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::SinkProbe;
use tokio::sync::oneshot;

/// What the control plane reads.
#[derive(Debug, Clone)]
pub struct ControlState {
    /// Counters published by the shards.
    pub telemetry: Arc<Telemetry>,
    /// Sink views.
    pub sinks: Vec<SinkProbe>,
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
}

/// The running control plane.
#[derive(Debug)]
pub struct ControlHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The bound address.
    pub addr: SocketAddr,
}

impl ControlHandle {
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
        .route("/metrics", get(metrics_handler))
        .route("/v1/stats/top", get(stats::top_handler))
        .with_state(state)
}

async fn metrics_handler(State(st): State<ControlState>) -> impl IntoResponse {
    let body = metrics::render(&st.telemetry, &st.sinks);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// Binds `addr` and serves the API on a new thread.
///
/// # Errors
/// [`ControlError`] when the address cannot be bound or the thread cannot start.
pub fn spawn(addr: SocketAddr, state: ControlState) -> Result<ControlHandle, ControlError> {
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
                let server =
                    axum::serve(listener, router(state)).with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    });
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "control server failed");
                }
            });
        })
        .map_err(ControlError::Runtime)?;
    Ok(ControlHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
        addr: bound,
    })
}
