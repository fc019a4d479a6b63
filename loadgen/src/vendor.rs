//! `loadgen vendor`: a fake Datadog or SignalFx intake for end-to-end tests.
//!
//! A real HTTP/1.1 server (axum on a two-thread tokio runtime, keep-alive) that decodes every
//! request body (`identity`, `gzip`, `deflate`/zlib, `zstd`/`zstd1`; see [`decode`]), parses it
//! as the real vendor would ([`datadog`], [`signalfx`]), counts it ([`stats`]) and answers
//! with the vendor's own success or error body. On start it prints exactly one line,
//! `listening on ADDR`, to stdout, so a test can bind port 0 and read the address.
//!
//! Endpoints (besides the vendor's own):
//! - `GET /stats`: JSON snapshot of everything counted ([`stats::Stats::snapshot`]).
//! - `POST /reset`: clears the counters (not the fault settings).
//! - `GET /control` / `POST /control` with `{"fail_status":503,"fail_count":3,"delay_ms":0,
//!   "retry_after":1}` (every field optional): the next `fail_count` intake requests answer
//!   `fail_status` (with `Retry-After` if set), and every intake response waits `delay_ms`;
//!   `"fail_every": N` makes every Nth intake request from then on fail too (0: off).
//!   Failed requests are counted apart and their bodies are not decoded or added.

pub mod datadog;
pub mod decode;
pub mod signalfx;
pub mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};

use decode::Encoding;
use stats::{Decoded, Outcome, Stats};

/// Largest request body read off the wire.
const MAX_WIRE: usize = decode::MAX_DECODED;

/// Which vendor to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Datadog's metrics intake (`/api/v1/series`, `/api/v2/series`, ...).
    Datadog,
    /// SignalFx ingest (`/v2/datapoint`, `/v2/event`).
    Signalfx,
}

impl Kind {
    /// Name in `/stats`.
    fn name(self) -> &'static str {
        match self {
            Self::Datadog => "datadog",
            Self::Signalfx => "signalfx",
        }
    }
}

/// Arguments of `loadgen vendor`.
#[derive(Debug, Clone, clap::Args)]
pub struct VendorArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Which vendor to imitate.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Status of injected failures (with --fail-count).
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(100..=599))]
    pub fail_status: Option<u16>,
    /// How many intake requests, from the start, answer --fail-status.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "fail_status")]
    pub fail_count: u64,
    /// `Retry-After` seconds sent with injected failures.
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,
    /// Delay every intake response by this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Accept only these API keys / tokens (repeatable); others get 403 (Datadog) or 401
    /// (SignalFx). Without it any key, or none, is accepted.
    #[arg(long = "accept-key", value_name = "KEY")]
    pub accept_keys: Vec<String>,
    /// Keep the first N point values of every metric, in arrival order, and show them in
    /// `/stats` as `values` (tests check order and gaps with it).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_values: usize,
}

/// Fault injection settings, as `/control` reads and writes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Status of injected failures.
    pub fail_status: Option<u16>,
    /// Injected failures still to come.
    #[serde(default)]
    pub fail_count: u64,
    /// `Retry-After` seconds sent with failures.
    pub retry_after: Option<u64>,
    /// Delay of every intake response, milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Besides `fail_count`: every Nth intake request (counted from when it was set)
    /// answers `fail_status` (0: off).
    #[serde(default)]
    pub fail_every: u64,
    /// Intake requests counted for `fail_every`.
    #[serde(default, skip_serializing)]
    pub every_seen: u64,
}

/// A `/control` update: only the fields present change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultUpdate {
    fail_status: Option<u16>,
    fail_count: Option<u64>,
    retry_after: Option<u64>,
    delay_ms: Option<u64>,
    fail_every: Option<u64>,
}

/// Shared server state.
struct App {
    kind: Kind,
    accept_keys: Vec<String>,
    keep_values: usize,
    stats: Mutex<Stats>,
    faults: Mutex<Faults>,
}

impl App {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Takes one injected failure if any is due: `(status, retry_after)`.
    fn take_failure(&self) -> (Option<(StatusCode, Option<u64>)>, u64) {
        let mut faults = self.faults();
        let failure = match faults.fail_status {
            Some(code) if faults.fail_count > 0 => {
                faults.fail_count -= 1;
                StatusCode::from_u16(code)
                    .ok()
                    .map(|status| (status, faults.retry_after))
            }
            Some(code) if faults.fail_every > 0 => {
                faults.every_seen += 1;
                let due = faults.every_seen % faults.fail_every == 0;
                StatusCode::from_u16(code)
                    .ok()
                    .filter(|_| due)
                    .map(|status| (status, faults.retry_after))
            }
            _ => None,
        };
        (failure, faults.delay_ms)
    }
}

/// Runs the server until SIGINT or SIGTERM.
///
/// # Errors
///
/// When the runtime cannot start, the address cannot be bound or stdout cannot be written.
pub fn run(args: &VendorArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

/// Binds, announces the address and serves.
async fn serve(args: &VendorArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let app = Arc::new(App {
        kind: args.kind,
        accept_keys: args.accept_keys.clone(),
        keep_values: args.keep_values,
        stats: Mutex::new(Stats::keeping_values(args.keep_values)),
        faults: Mutex::new(Faults {
            fail_status: args.fail_status,
            fail_count: args.fail_count,
            retry_after: args.retry_after,
            delay_ms: args.delay_ms,
            fail_every: 0,
            every_seen: 0,
        }),
    });
    let router = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_WIRE))
        .with_state(app);
    {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(format!("listening on {local}\n").as_bytes())
            .and_then(|()| stdout.flush())
            .context("writing the address to stdout")?;
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// A JSON response.
fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Every request lands here; routing is by match so that every intake request is counted.
async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match (method.as_str(), uri.path()) {
        ("GET", "/stats") => {
            let snapshot = app.stats().snapshot(app.kind.name());
            return json(StatusCode::OK, &snapshot);
        }
        ("POST", "/reset") => {
            *app.stats() = Stats::keeping_values(app.keep_values);
            return json(StatusCode::OK, &serde_json::json!({"reset": true}));
        }
        ("GET", "/control") => {
            let faults = serde_json::to_value(&*app.faults()).unwrap_or_default();
            return json(StatusCode::OK, &faults);
        }
        ("POST", "/control") => return control(&app, &body),
        _ => {}
    }
    let route = route(app.kind, &method, uri.path());
    let key = api_key(app.kind, &headers, &uri);
    let (failure, delay_ms) = match route {
        Route::NotFound | Route::WrongMethod => (None, 0),
        _ => app.take_failure(),
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let label = route.label();
    if let Some((status, retry_after)) = failure {
        app.stats()
            .request(label, status.as_u16(), Outcome::Failed, body.len(), key);
        let mut response = error(app.kind, status, "injected failure");
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return response;
    }
    let (status, reply, accepted) = answer(&app, route, &headers, key, &body);
    let mut stats = app.stats();
    match accepted {
        Ok(Some((encoding, decoded_len, decoded))) => {
            stats.request(label, status.as_u16(), Outcome::Accepted, body.len(), key);
            stats.accept(encoding, decoded_len, decoded);
        }
        Ok(None) => stats.request(label, status.as_u16(), Outcome::Accepted, body.len(), key),
        Err(message) => {
            stats.request(label, status.as_u16(), Outcome::Rejected, body.len(), key);
            stats.error(message);
        }
    }
    reply
}

/// What an accepted request added: encoding name, decoded size and contents (`None` for a
/// request without a body, such as `/api/v1/validate`). `Err` holds why it was refused.
type Accepted = Result<Option<(&'static str, usize, Decoded)>, String>;

/// Decides the answer to a request that is not an injected failure.
fn answer(
    app: &App,
    route: Route,
    headers: &HeaderMap,
    key: Option<&str>,
    body: &[u8],
) -> (StatusCode, Response, Accepted) {
    let refuse = |status: StatusCode, message: String| {
        (status, error(app.kind, status, &message), Err(message))
    };
    match route {
        Route::NotFound => return refuse(StatusCode::NOT_FOUND, "not found".to_owned()),
        Route::WrongMethod => {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed".to_owned(),
            )
        }
        _ => {}
    }
    let key_ok = match key {
        Some(key) => app.accept_keys.is_empty() || app.accept_keys.iter().any(|k| k == key),
        None => app.accept_keys.is_empty(),
    };
    if !key_ok {
        let status = match app.kind {
            Kind::Datadog => StatusCode::FORBIDDEN,
            Kind::Signalfx => StatusCode::UNAUTHORIZED,
        };
        return refuse(status, "missing or unknown API key".to_owned());
    }
    if route == Route::Validate {
        return (
            StatusCode::OK,
            json(StatusCode::OK, &serde_json::json!({"valid": true})),
            Ok(None),
        );
    }
    let header_text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(encoding) = Encoding::parse(header_text(header::CONTENT_ENCODING)) else {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Encoding".to_owned(),
        );
    };
    let protobuf = header_text(header::CONTENT_TYPE)
        .is_some_and(|t| t.trim_start().starts_with("application/x-protobuf"));
    let decoded_body = match decode::decode(encoding, body) {
        Ok(decoded) => decoded,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // The Agent may POST an empty body as a keep-alive: accept it, count nothing in it.
    let parsed = if decoded_body.is_empty() {
        Ok(Decoded::default())
    } else {
        parse(route, protobuf, &decoded_body)
    };
    match parsed {
        Ok(decoded) => {
            let status = match app.kind {
                Kind::Datadog => StatusCode::ACCEPTED,
                Kind::Signalfx => StatusCode::OK,
            };
            let reply = match (app.kind, route) {
                (Kind::Signalfx, _) => json(status, &serde_json::json!("OK")),
                (_, Route::V2Series) => json(status, &serde_json::json!({"errors": []})),
                _ => json(status, &serde_json::json!({"status": "ok"})),
            };
            (
                status,
                reply,
                Ok(Some((encoding.name(), decoded_body.len(), decoded))),
            )
        }
        Err(message) => refuse(StatusCode::BAD_REQUEST, message),
    }
}

/// Parses a decoded body for `route`.
fn parse(route: Route, protobuf: bool, body: &[u8]) -> Result<Decoded, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    match route {
        Route::V1Series => datadog::v1_series(body).map_err(|e| text(&e)),
        Route::V2Series if protobuf => datadog::v2_series_protobuf(body).map_err(|e| text(&e)),
        Route::V2Series => datadog::v2_series(body).map_err(|e| text(&e)),
        Route::DistributionPoints => datadog::distribution_points(body).map_err(|e| text(&e)),
        Route::CheckRun => datadog::check_run(body).map_err(|e| text(&e)),
        Route::Events => datadog::event(body).map_err(|e| text(&e)),
        Route::Datapoint if protobuf => signalfx::datapoints_protobuf(body).map_err(|e| text(&e)),
        Route::Datapoint => signalfx::datapoints_json(body).map_err(|e| text(&e)),
        Route::SfxEvent => signalfx::events(body, protobuf).map_err(|e| text(&e)),
        Route::Validate | Route::NotFound | Route::WrongMethod => Ok(Decoded::default()),
    }
}

/// An intake endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    V1Series,
    V2Series,
    DistributionPoints,
    CheckRun,
    Events,
    Validate,
    Datapoint,
    SfxEvent,
    WrongMethod,
    NotFound,
}

impl Route {
    /// Path label in `/stats` (a bounded set).
    fn label(self) -> &'static str {
        match self {
            Self::V1Series => "/api/v1/series",
            Self::V2Series => "/api/v2/series",
            Self::DistributionPoints => "/api/v1/distribution_points",
            Self::CheckRun => "/api/v1/check_run",
            Self::Events => "/api/v1/events",
            Self::Validate => "/api/v1/validate",
            Self::Datapoint => "/v2/datapoint",
            Self::SfxEvent => "/v2/event",
            Self::WrongMethod => "wrong_method",
            Self::NotFound => "not_found",
        }
    }
}

/// Routes a request for `kind`.
fn route(kind: Kind, method: &Method, path: &str) -> Route {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let (route, wants) = match (kind, path) {
        (Kind::Datadog, "/api/v1/series") => (Route::V1Series, Method::POST),
        (Kind::Datadog, "/api/v2/series") => (Route::V2Series, Method::POST),
        (Kind::Datadog, "/api/v1/distribution_points") => (Route::DistributionPoints, Method::POST),
        (Kind::Datadog, "/api/v1/check_run") => (Route::CheckRun, Method::POST),
        (Kind::Datadog, "/api/v1/events") => (Route::Events, Method::POST),
        (Kind::Datadog, "/api/v1/validate") => (Route::Validate, Method::GET),
        (Kind::Signalfx, "/v2/datapoint") => (Route::Datapoint, Method::POST),
        (Kind::Signalfx, "/v2/event") => (Route::SfxEvent, Method::POST),
        _ => return Route::NotFound,
    };
    if *method == wants {
        route
    } else {
        Route::WrongMethod
    }
}

/// The API key or token of a request.
fn api_key<'a>(kind: Kind, headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    match kind {
        Kind::Datadog => headers
            .get("dd-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                uri.query()?
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("api_key="))
            }),
        Kind::Signalfx => headers.get("x-sf-token").and_then(|v| v.to_str().ok()),
    }
}

/// The vendor's error body.
fn error(kind: Kind, status: StatusCode, message: &str) -> Response {
    match kind {
        Kind::Datadog => json(status, &serde_json::json!({ "errors": [message] })),
        Kind::Signalfx => json(status, &serde_json::json!(message)),
    }
}

/// Handles `POST /control`.
fn control(app: &App, body: &[u8]) -> Response {
    match serde_json::from_slice::<FaultUpdate>(body) {
        Ok(update) => {
            let mut faults = app.faults();
            if update.fail_status.is_some() {
                faults.fail_status = update.fail_status;
            }
            if let Some(n) = update.fail_count {
                faults.fail_count = n;
            }
            if update.retry_after.is_some() {
                faults.retry_after = update.retry_after;
            }
            if let Some(ms) = update.delay_ms {
                faults.delay_ms = ms;
            }
            if let Some(n) = update.fail_every {
                faults.fail_every = n;
                faults.every_seen = 0;
            }
            json(
                StatusCode::OK,
                &serde_json::to_value(&*faults).unwrap_or_default(),
            )
        }
        Err(e) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "errors": [e.to_string()] }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_kind_and_method() {
        assert_eq!(
            route(Kind::Datadog, &Method::POST, "/api/v1/series"),
            Route::V1Series
        );
        assert_eq!(
            route(Kind::Datadog, &Method::GET, "/api/v1/series"),
            Route::WrongMethod
        );
        assert_eq!(
            route(Kind::Datadog, &Method::POST, "/v2/datapoint"),
            Route::NotFound
        );
        assert_eq!(
            route(Kind::Signalfx, &Method::POST, "/v2/datapoint/"),
            Route::Datapoint
        );
    }

    #[test]
    fn api_key_from_header_or_query() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/api/v1/series?x=1&api_key=abc".parse().unwrap();
        assert_eq!(api_key(Kind::Datadog, &headers, &uri), Some("abc"));
        headers.insert("DD-API-KEY", HeaderValue::from_static("hdr"));
        assert_eq!(api_key(Kind::Datadog, &headers, &uri), Some("hdr"));
        assert_eq!(api_key(Kind::Signalfx, &headers, &uri), None);
    }
}
