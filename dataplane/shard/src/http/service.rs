//! Request handling for the Datadog-compatible intake: routing, the API key, content type
//! and encoding checks, bounded body reads, validation and counting (in
//! `switchyard_core::intake::accept`), the routes' decision per series (see `plan_sends`:
//! passthrough when a payload's series agree, else split into v1 payloads per sink set),
//! and the hand-off to the routed sinks' queues.
//!
//! Metrics: besides the intake's own, per sink `switchyard_sink_dropped_values_total` with
//! reasons `route_dropped` / `sampled_out`, and per route `switchyard_route_points_total` /
//! `switchyard_route_series_total` (counted once a payload is accepted), and per sink the
//! distinct series sent to it over the last hour (`switchyard_sink_distinct_series`: each
//! series or distribution's routing hash, as computed for its decision, inserted into the
//! shard's counter for every sink the accepted payload went to; checks and events are not
//! series and are not counted).
//!
//! Answers as the vendor does: `202 {"status":"ok"}` (v1) or `202 {"errors":[]}` (v2)
//! once every destination queue took the payload; `400 {"errors":["..."]}` naming what is
//! wrong; 403, 404, 405, 408, 413, 415; `429` (too many bodies held on this shard) and
//! `503` (a destination queue is full, or shutting down) with `Retry-After`.
//!
//! gostatsd's aggregator routes share the port (see `gostatsd()`'s doc for the rules, from
//! gostatsd's `pkg/web/httpservers.go` and `pkg/web/http_receiver_v2.go`): `POST /v2/raw`
//! (each series of the `RawMessageV2` folded into the shard's aggregates with
//! `switchyard_core::intake::gostatsd::feed`, host = the value's `Hostname`, scope = the HTTP
//! listener's), `POST /v2/event` (the `EventV2` converted to a Datadog events body and handed
//! to the same `accept()` path as `/api/v1/events`, without a client API key), both answered
//! 202 / 400 / 405 with an empty body as gostatsd does; `GET /healthcheck` and
//! `GET /deepcheck` answered 200 `{"ok":[],"failed":[]}`. No API key, no `Content-Type`
//! check. Their metrics: `switchyard_http_requests_total`, `_payloads_total`,
//! `_series_total`, `_points_total`, `_wire_bytes_total`, `_decoded_bytes_total` with
//! `endpoint="gostatsd_raw"` / `"gostatsd_event"`; `switchyard_aggregator_errors_total{endpoint,
//! reason}` (every answer but 202: `encoding`, `decompress`, `unmarshal`, `too_large`, `read`,
//! `method_not_allowed`, `unavailable`); `switchyard_aggregator_series_total{result,reason}`
//! (series folded in, or refused by the aggregator with the statsd line reasons);
//! `switchyard_gostatsd_health_checks_total`.
//!
//! Switchyard's own forwarders post to `POST /switchyard/v1/forward` (the same body rules,
//! then `Content-Type: application/x-switchyard-forward` or 415, then the body decoded by
//! `switchyard_core::forward::ForwardDecoder` within the `[http]` caps and its series folded
//! into the shard's aggregates with `forward::feed`, host = the series' own): 202 with an
//! empty body, or 400 / 413 / 415 with `{"errors":["<reason>"]}`. Counted as above with
//! `endpoint="switchyard_forward"` (and the reason `content_type`).
//!
//! The shard state is borrowed only in synchronous sections, never across an `.await`.

use crate::ingest::ShardState;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::aggregate::{FeedOutcome, IntervalAggregator};
use switchyard_core::config::HttpConfig;
use switchyard_core::egress::{ApiKey, Durability, Egress, Endpoint, IntakePayload};
use switchyard_core::encode::datadog_series::write_dd_series;
use switchyard_core::forward::{self as fwd, ForwardDecoder, ForwardError};
use switchyard_core::intake::accept::{
    accept_body_with, for_each_stored_series, BodyLimits, IntakeScratch,
};
use switchyard_core::intake::decompress::Encoding;
use switchyard_core::intake::gostatsd::{self as gsd, EventV2, RawDecoder, RawError, RawMessageV2};
use switchyard_core::intake::BodyError;
use switchyard_core::route::{series_hash, Input, InputKind, SinkSet};
use switchyard_core::telemetry::{
    AggregatorFailure, AggregatorRoute, EndpointCounters, HttpCounters, HttpRefusal,
};

/// Resolved intake settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Connections per shard.
    pub max_connections: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Header and body read deadline.
    pub read_timeout: Duration,
    /// Idle keep-alive timeout.
    pub idle_timeout: Duration,
    /// Compressed body ceiling.
    pub max_body_bytes: usize,
    /// Decompressed body ceiling.
    pub max_decompressed_bytes: usize,
    /// Bodies held at once per shard.
    pub max_inflight_bytes: usize,
    /// `Retry-After` seconds.
    pub retry_after_secs: u32,
    /// How long a payload of a `durable = true` route waits to be durable.
    pub durable_timeout: Duration,
}

impl From<&HttpConfig> for HttpSettings {
    fn from(c: &HttpConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            max_header_bytes: c.max_header_bytes,
            read_timeout: c.read_timeout,
            idle_timeout: c.idle_timeout,
            max_body_bytes: c.max_body_bytes,
            max_decompressed_bytes: c.max_decompressed_bytes,
            max_inflight_bytes: c.max_inflight_bytes,
            retry_after_secs: c.retry_after_secs,
            durable_timeout: c.durable_timeout,
        }
    }
}

/// The accepted API keys. `Any` still requires a non-empty key, as the vendor does.
#[derive(Clone, Default)]
pub enum KeyPolicy {
    /// Any non-empty key.
    #[default]
    Any,
    /// Only these keys.
    AllowList(Vec<Box<str>>),
}

impl std::fmt::Debug for KeyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPolicy::Any => f.write_str("Any"),
            KeyPolicy::AllowList(k) => write!(f, "AllowList({} keys, redacted)", k.len()),
        }
    }
}

impl KeyPolicy {
    /// Parses an allow-list (keys separated by commas or whitespace).
    pub fn allow_list(text: &str) -> Self {
        KeyPolicy::AllowList(
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|k| !k.is_empty())
                .map(Into::into)
                .collect(),
        )
    }

    fn accepts(&self, key: &str) -> bool {
        if key.is_empty() {
            return false;
        }
        match self {
            KeyPolicy::Any => true,
            KeyPolicy::AllowList(keys) => keys.iter().fold(false, |hit, k| {
                hit | constant_time_eq(k.as_bytes(), key.as_bytes())
            }),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What every connection of a shard shares.
#[derive(Debug)]
pub struct HttpContext {
    /// Limits and timeouts.
    pub settings: HttpSettings,
    /// Accepted keys.
    pub keys: KeyPolicy,
    /// Reused decode and parse buffers.
    pub scratch: RefCell<IntakeScratch>,
    /// Body bytes held right now on this shard.
    pub inflight: Cell<usize>,
    /// Set when the shard is stopping.
    pub stop: Rc<Cell<bool>>,
    /// The `[http] listen` value: the listener name routes match with `match.input`.
    pub listener: String,
    /// This listener's index among the route listeners (after the statsd listeners): the
    /// scope `/v2/raw` series aggregate in.
    pub listener_index: usize,
    /// Reused decode buffer of the gostatsd routes (capped at `max_decompressed_bytes`).
    pub gostatsd: RefCell<RawDecoder>,
    /// Reused decoder of the Switchyard forward route (the `[http]` caps).
    pub forward: RefCell<ForwardDecoder>,
}

type Resp = Response<Full<Bytes>>;

/// Largest body buffer a connection keeps between requests.
const KEEP_BUFFER_BYTES: usize = 256 << 10;

fn json(status: u16, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_body(msg: &str) -> String {
    serde_json::json!({ "errors": [msg] }).to_string()
}

fn refusal(ctx: &HttpContext, st: &RefCell<ShardState>, r: HttpRefusal, msg: &str) -> Resp {
    st.borrow_mut().counters.http.refuse(r);
    let mut resp = json(r.status(), error_body(msg));
    if matches!(r.status(), 429 | 503) {
        resp.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(ctx.settings.retry_after_secs),
        );
    }
    resp
}

/// The API key from `DD-API-KEY`, else from the `api_key` query parameter.
fn api_key(req: &Request<Incoming>) -> Option<String> {
    if let Some(v) = req.headers().get("dd-api-key") {
        return v.to_str().ok().map(|s| s.trim().to_string());
    }
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "api_key")
        .map(|(_, v)| v.into_owned())
}

fn json_content_type(req: &Request<Incoming>) -> bool {
    let Some(v) = req.headers().get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(v) = v.to_str() else {
        return false;
    };
    let mime = v.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json") || mime.eq_ignore_ascii_case("text/json")
}

/// Handles one request.
///
/// # Errors
/// Never: every failure is an HTTP answer.
pub async fn handle(
    ctx: Rc<HttpContext>,
    st: Rc<RefCell<ShardState>>,
    conn_buf: Rc<RefCell<Vec<u8>>>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path();
    let endpoint = Endpoint::from_path(path);
    let resp = match (req.method(), endpoint, path) {
        (&Method::GET, _, "/api/v1/validate") => {
            st.borrow_mut().counters.http.validate += 1;
            match api_key(&req) {
                Some(k) if ctx.keys.accepts(&k) => json(200, "{\"valid\":true}"),
                _ => refusal(&ctx, &st, HttpRefusal::Forbidden, "Forbidden"),
            }
        }
        (&Method::POST, Some(ep), _) => {
            let started = Instant::now();
            st.borrow_mut().counters.http.endpoint(ep).requests += 1;
            let r = intake(&ctx, &st, &conn_buf, ep, req).await;
            st.borrow_mut()
                .counters
                .http
                .latency
                .observe_ns(started.elapsed().as_nanos() as u64);
            r
        }
        (_, Some(_), _) | (_, None, "/api/v1/validate") => refusal(
            &ctx,
            &st,
            HttpRefusal::MethodNotAllowed,
            "Method Not Allowed",
        ),
        (method, None, _) => match (AggregatorRoute::from_path(path), path) {
            (Some(route), _) => {
                st.borrow_mut().counters.http.gostatsd.route(route).requests += 1;
                if *method == Method::POST {
                    let started = Instant::now();
                    let r = gostatsd(&ctx, &st, &conn_buf, route, req).await;
                    st.borrow_mut()
                        .counters
                        .http
                        .latency
                        .observe_ns(started.elapsed().as_nanos() as u64);
                    r
                } else {
                    // gorilla/mux's answer to a method its route does not take.
                    gsd_fail(&st, route, AggregatorFailure::MethodNotAllowed, 405)
                }
            }
            (None, "/healthcheck" | "/deepcheck") if *method == Method::GET => {
                st.borrow_mut().counters.http.gostatsd.health_checks += 1;
                let mut r = Response::new(Full::new(Bytes::from_static(HEALTH_BODY)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            (None, "/healthcheck" | "/deepcheck") => empty(405),
            _ => refusal(&ctx, &st, HttpRefusal::NotFound, "Not Found"),
        },
    };
    Ok(resp)
}

/// What gostatsd's aggregator answers `GET /healthcheck` and `GET /deepcheck` with (200,
/// `application/json`): no checks, none failed (captured from gostatsd e5cc67e, see
/// `shared/reference/captures/gostatsd/aggregator-responses.json`).
const HEALTH_BODY: &[u8] = b"{\"ok\":[],\"failed\":[]}\n";

/// A response with an empty body (`Content-Length: 0`), as gostatsd's handlers write them.
fn empty(status: u16) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// Counts a failed gostatsd request and answers `status` with an empty body (with
/// `Retry-After` for push-back).
fn gsd_fail(
    st: &RefCell<ShardState>,
    route: AggregatorRoute,
    why: AggregatorFailure,
    status: u16,
) -> Resp {
    st.borrow_mut().counters.http.gostatsd.fail(route, why);
    empty(status)
}

fn gsd_failure(e: &RawError) -> AggregatorFailure {
    match e {
        RawError::Encoding(_) => AggregatorFailure::Encoding,
        RawError::Decompress { .. } => AggregatorFailure::Decompress,
        RawError::TooLarge { .. } => AggregatorFailure::TooLarge,
        RawError::Unmarshal(_) => AggregatorFailure::Unmarshal,
    }
}

/// `POST /v2/raw` and `POST /v2/event`, answered as gostatsd's aggregator does
/// (`pkg/web/http_receiver_v2.go`, `MetricHandler` / `EventHandler` / `readBody`, routed by
/// `pkg/web/httpservers.go`): the whole body is read, then `Content-Encoding` undone
/// (absent, empty or `identity`; `deflate` = zlib; `lz4`), then the protobuf decoded; any
/// failure there is 400 with an empty body, success 202 with an empty body, a body that
/// cannot be read 500. No API key and no `Content-Type` check (gostatsd has neither).
/// Switchyard's own bounds come first: `max_body_bytes` on the wire and
/// `max_decompressed_bytes` decoded (413), `max_inflight_bytes` (429), the body read
/// deadline (408), shutting down (503).
async fn gostatsd(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    conn_buf: &RefCell<Vec<u8>>,
    route: AggregatorRoute,
    req: Request<Incoming>,
) -> Resp {
    let retry_later = |why, status| {
        let mut r = gsd_fail(st, route, why, status);
        r.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(ctx.settings.retry_after_secs),
        );
        r
    };
    if ctx.stop.get() {
        return retry_later(AggregatorFailure::Unavailable, 503);
    }
    let limit = ctx.settings.max_body_bytes;
    let reservation = match reserve_body(ctx, st, &req, limit) {
        Ok(r) => r,
        Err(BodyRefusal::TooLarge) => return gsd_fail(st, route, AggregatorFailure::TooLarge, 413),
        Err(BodyRefusal::Overloaded) => return retry_later(AggregatorFailure::Unavailable, 429),
    };
    // A value that is not text is no encoding gostatsd knows: 400 once the body is read.
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_string());

    let mut buf = std::mem::take(&mut *conn_buf.borrow_mut());
    buf.clear();
    let read = glommio::timer::timeout(
        ctx.settings.read_timeout,
        read_body(req.into_body(), &mut buf, limit),
    )
    .await;
    let mut durable_wait = None;
    let resp = match read {
        Err(_) => gsd_fail(st, route, AggregatorFailure::Read, 408),
        Ok(BodyRead::Broken) => gsd_fail(st, route, AggregatorFailure::Read, 500),
        Ok(BodyRead::TooLarge) => gsd_fail(st, route, AggregatorFailure::TooLarge, 413),
        Ok(BodyRead::Complete) => match route {
            AggregatorRoute::Raw => gostatsd_raw(ctx, st, encoding.as_deref(), &buf),
            AggregatorRoute::Event => {
                gostatsd_event(ctx, st, encoding.as_deref(), &buf, &mut durable_wait)
            }
            AggregatorRoute::Forward => forward_body(ctx, st, content_type.as_deref(), &buf),
        },
    };
    if buf.capacity() <= KEEP_BUFFER_BYTES {
        *conn_buf.borrow_mut() = buf;
    }
    drop(reservation);
    st.borrow_mut().counters.http.inflight_bytes = ctx.inflight.get() as u64;
    match durable_wait {
        Some(wait) => {
            let r = answer_when_durable(ctx, st, empty(gsd::ACCEPTED), wait).await;
            if r.status() != StatusCode::ACCEPTED {
                st.borrow_mut()
                    .counters
                    .http
                    .gostatsd
                    .fail(route, AggregatorFailure::Unavailable);
            }
            r
        }
        None => resp,
    }
}

/// Folds an accepted `/v2/raw` body into the shard's aggregates: each series with its own
/// `Hostname` as host, in the HTTP listener's scope (see [`ShardState::listener_scope`]),
/// refused series counted by the statsd line reasons.
fn gostatsd_raw(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    encoding: Option<&str>,
    body: &[u8],
) -> Resp {
    let route = AggregatorRoute::Raw;
    let decoded = ctx
        .gostatsd
        .borrow_mut()
        .decode_sized::<RawMessageV2>(encoding, body);
    let (msg, decoded_bytes) = match decoded {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "gostatsd /v2/raw body refused");
            return gsd_fail(st, route, gsd_failure(&e), e.status());
        }
    };
    let decoded = decoded_bytes as u64;
    fold_into_aggregates(ctx, st, route, body.len(), decoded, |agg, now, scope| {
        gsd::feed(&msg, agg, now, scope)
    })
}

/// Folds a decoded aggregator-route body into the shard's aggregates with `feed(agg, now,
/// scope)` (in the HTTP listener's scope, see [`ShardState::listener_scope`]) and counts
/// it: 202, or 503 with `Retry-After` once the shard is stopping (its final flush runs once
/// `stop` is set: series fed after it would be lost).
fn fold_into_aggregates(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    route: AggregatorRoute,
    wire_bytes: usize,
    decoded_bytes: u64,
    feed: impl FnOnce(&mut IntervalAggregator, u64, u8) -> FeedOutcome,
) -> Resp {
    let mut s = st.borrow_mut();
    if ctx.stop.get() || s.sinks_closed() {
        drop(s);
        let mut r = gsd_fail(st, route, AggregatorFailure::Unavailable, 503);
        r.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(ctx.settings.retry_after_secs),
        );
        return r;
    }
    s.refresh_routes();
    let now = s.now_ns();
    let scope = s.listener_scope(ctx.listener_index);
    let out = feed(&mut s.agg, now, scope);
    let g = &mut s.counters.http.gostatsd;
    g.series_ok += out.ok;
    for (a, b) in g.series_error.iter_mut().zip(out.rejected.iter()) {
        *a += b;
    }
    let e = g.route(route);
    e.payloads += 1;
    e.series += out.ok;
    e.points += out.ok;
    e.wire_bytes += wire_bytes as u64;
    e.decoded_bytes += decoded_bytes;
    empty(gsd::ACCEPTED)
}

fn forward_failure(e: ForwardError) -> AggregatorFailure {
    match e {
        ForwardError::ContentType => AggregatorFailure::ContentType,
        ForwardError::BodyTooLarge { .. }
        | ForwardError::DecodedTooLarge { .. }
        | ForwardError::TooManySeries { .. } => AggregatorFailure::TooLarge,
        ForwardError::Corrupt => AggregatorFailure::Decompress,
        ForwardError::BadMagic
        | ForwardError::UnsupportedVersion(_)
        | ForwardError::ReservedBytes
        | ForwardError::Invalid => AggregatorFailure::Unmarshal,
    }
}

/// Folds an accepted Switchyard forward body into the shard's aggregates (each series with
/// its own host, in the HTTP listener's scope); a body refused is answered with its reason.
fn forward_body(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    content_type: Option<&str>,
    body: &[u8],
) -> Resp {
    let route = AggregatorRoute::Forward;
    let refuse = |e: ForwardError| {
        tracing::debug!(error = %e, "forward body refused");
        st.borrow_mut()
            .counters
            .http
            .gostatsd
            .fail(route, forward_failure(e));
        json(e.status(), error_body(&e.to_string()))
    };
    if let Err(e) = fwd::check_content_type(content_type) {
        return refuse(e);
    }
    let mut decoder = ctx.forward.borrow_mut();
    let view = match decoder.decode(body) {
        Ok(v) => v,
        Err(e) => return refuse(e),
    };
    // The archive's size, as the header declared it (and the decoder checked).
    let decoded = body
        .get(8..fwd::HEADER_LEN)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u64::from(u32::from_le_bytes(b)));
    fold_into_aggregates(ctx, st, route, body.len(), decoded, |agg, now, scope| {
        fwd::feed(&view, agg, now, scope)
    })
}

/// Turns an accepted `/v2/event` body into a Datadog `/api/v1/events` payload and routes it
/// as one posted there ([`accept`]), without a client API key (a Datadog sink uses its own
/// `api_key_env`, else counts it `no_api_key`).
fn gostatsd_event(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    encoding: Option<&str>,
    body: &[u8],
    durable_wait: &mut Option<futures_channel::oneshot::Receiver<bool>>,
) -> Resp {
    let route = AggregatorRoute::Event;
    let decoded = ctx
        .gostatsd
        .borrow_mut()
        .decode_sized::<EventV2>(encoding, body);
    let (event, _) = match decoded {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "gostatsd /v2/event body refused");
            return gsd_fail(st, route, gsd_failure(&e), e.status());
        }
    };
    let mut json = event.to_datadog_json();
    let wire = body.len() as u64;
    let r = accept(
        ctx,
        st,
        Endpoint::Events,
        Encoding::Identity,
        &mut json,
        None,
        Tally::Gostatsd(route, wire),
        durable_wait,
    );
    match r.status().as_u16() {
        202 => empty(gsd::ACCEPTED),
        status => {
            let why = match status {
                413 => AggregatorFailure::TooLarge,
                429 | 503 => AggregatorFailure::Unavailable,
                // The converted event is always a valid events body.
                _ => AggregatorFailure::Unmarshal,
            };
            st.borrow_mut().counters.http.gostatsd.fail(route, why);
            r
        }
    }
}

/// Where [`accept`] counts an accepted payload.
#[derive(Clone, Copy)]
enum Tally {
    /// Under its Datadog endpoint (the body as received).
    Endpoint,
    /// Under a gostatsd route, with the bytes received (the payload is converted).
    Gostatsd(AggregatorRoute, u64),
}

impl Tally {
    fn counters(self, ep: Endpoint, h: &mut HttpCounters) -> &mut EndpointCounters {
        match self {
            Tally::Endpoint => h.endpoint(ep),
            Tally::Gostatsd(r, _) => h.gostatsd.route(r),
        }
    }
}

/// Releases reserved in-flight bytes when dropped (also on a cancelled request).
struct Reservation<'a> {
    ctx: &'a HttpContext,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.ctx
            .inflight
            .set(self.ctx.inflight.get().saturating_sub(self.bytes));
    }
}

/// Why [`reserve_body`] refused a request before reading its body.
enum BodyRefusal {
    /// `Content-Length` is over the limit (413).
    TooLarge,
    /// The shard holds `max_inflight_bytes` of bodies already (429).
    Overloaded,
}

/// Reserves what a request's body may take (its `Content-Length`, else `limit`) against
/// the shard's `max_inflight_bytes` before it is read; released when the reservation drops.
fn reserve_body<'a>(
    ctx: &'a HttpContext,
    st: &RefCell<ShardState>,
    req: &Request<Incoming>,
    limit: usize,
) -> Result<Reservation<'a>, BodyRefusal> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyRefusal::TooLarge);
    }
    let reserve = declared.map_or(limit, |n| n as usize);
    if ctx.inflight.get() + reserve > ctx.settings.max_inflight_bytes {
        return Err(BodyRefusal::Overloaded);
    }
    ctx.inflight.set(ctx.inflight.get() + reserve);
    st.borrow_mut().counters.http.inflight_bytes = ctx.inflight.get() as u64;
    Ok(Reservation {
        ctx,
        bytes: reserve,
    })
}

async fn intake(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    conn_buf: &RefCell<Vec<u8>>,
    ep: Endpoint,
    req: Request<Incoming>,
) -> Resp {
    if ctx.stop.get() {
        return refusal(ctx, st, HttpRefusal::ShuttingDown, "Shutting down");
    }
    let key = match api_key(&req) {
        Some(k) if ctx.keys.accepts(&k) => k,
        _ => return refusal(ctx, st, HttpRefusal::Forbidden, "Forbidden"),
    };
    if !json_content_type(&req) {
        let ct = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        let msg = format!("unsupported Content-Type `{ct}`: send application/json");
        return refusal(ctx, st, HttpRefusal::UnsupportedMediaType, &msg);
    }
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .map_or(Ok(Encoding::Identity), |v| {
            Encoding::from_header(v.to_str().unwrap_or("?"))
        });
    let encoding = match encoding {
        Ok(e) => e,
        Err(e) => return refusal(ctx, st, HttpRefusal::UnsupportedEncoding, &e.to_string()),
    };
    let limits = BodyLimits::for_endpoint(
        ep,
        ctx.settings.max_body_bytes,
        ctx.settings.max_decompressed_bytes,
    );
    let reservation = match reserve_body(ctx, st, &req, limits.compressed) {
        Ok(r) => r,
        Err(BodyRefusal::TooLarge) => {
            let msg = format!(
                "payload too large: more than {} bytes on the wire",
                limits.compressed
            );
            return refusal(ctx, st, HttpRefusal::TooLarge, &msg);
        }
        Err(BodyRefusal::Overloaded) => {
            return refusal(
                ctx,
                st,
                HttpRefusal::Overloaded,
                "Too many requests in progress: retry later",
            )
        }
    };

    let mut buf = std::mem::take(&mut *conn_buf.borrow_mut());
    buf.clear();
    let read = glommio::timer::timeout(
        ctx.settings.read_timeout,
        read_body(req.into_body(), &mut buf, limits.compressed),
    )
    .await;
    let mut durable_wait = None;
    let resp = match read {
        Err(_) => refusal(
            ctx,
            st,
            HttpRefusal::Timeout,
            "Request timeout: the body did not arrive in time",
        ),
        Ok(BodyRead::Broken) => refusal(
            ctx,
            st,
            HttpRefusal::BodyRead,
            "The request body could not be read (connection closed or a malformed chunk)",
        ),
        Ok(BodyRead::TooLarge) => {
            let msg = format!(
                "payload too large: more than {} bytes on the wire",
                limits.compressed
            );
            refusal(ctx, st, HttpRefusal::TooLarge, &msg)
        }
        Ok(BodyRead::Complete) if buf.is_empty() => {
            // The Agent's keep-alive: accepted, nothing to forward.
            st.borrow_mut().counters.http.empty_bodies += 1;
            json(202, ep.success_body())
        }
        Ok(BodyRead::Complete) => accept(
            ctx,
            st,
            ep,
            encoding,
            &mut buf,
            Some(&key),
            Tally::Endpoint,
            &mut durable_wait,
        ),
    };
    // Keep the buffer for the connection's next request unless it grew large: idle
    // keep-alive connections (up to max_connections) must not pin big buffers.
    if buf.capacity() <= KEEP_BUFFER_BYTES {
        *conn_buf.borrow_mut() = buf;
    }
    drop(reservation);
    st.borrow_mut().counters.http.inflight_bytes = ctx.inflight.get() as u64;
    match durable_wait {
        Some(wait) => answer_when_durable(ctx, st, resp, wait).await,
        None => resp,
    }
}

/// Answers `resp` once the payload is durable at every sink it was queued for (a
/// `durable = true` route), or 503 with `Retry-After` when a sink could not make it durable
/// or `durable_timeout` passed (the payload may still arrive: the client's retry can
/// duplicate it, at-least-once).
async fn answer_when_durable(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    resp: Resp,
    wait: futures_channel::oneshot::Receiver<bool>,
) -> Resp {
    let outcome = glommio::timer::timeout(ctx.settings.durable_timeout, async {
        Ok(wait.await.unwrap_or(false))
    })
    .await;
    match outcome {
        Ok(true) => {
            st.borrow_mut().counters.http.durable_payloads += 1;
            resp
        }
        Ok(false) => refusal(
            ctx,
            st,
            HttpRefusal::NotDurable,
            "A destination could not keep the payload: retry later",
        ),
        Err(_) => refusal(
            ctx,
            st,
            HttpRefusal::DurableTimeout,
            "The payload was not durable in time: retry later",
        ),
    }
}

/// How a body read ended.
enum BodyRead {
    /// All of it, within the limit.
    Complete,
    /// More than the limit (reading stopped there).
    TooLarge,
    /// The client went away or sent a broken chunk.
    Broken,
}

/// Reads the body into `buf`, stopping once it passes `limit`.
async fn read_body(
    mut body: Incoming,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<BodyRead, glommio::GlommioError<()>> {
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Ok(BodyRead::Broken);
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                return Ok(BodyRead::TooLarge);
            }
        }
    }
    Ok(BodyRead::Complete)
}

#[allow(clippy::too_many_arguments)]
fn accept(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    ep: Endpoint,
    encoding: Encoding,
    buf: &mut [u8],
    key: Option<&str>,
    tally: Tally,
    durable_wait: &mut Option<futures_channel::oneshot::Receiver<bool>>,
) -> Resp {
    let limits = BodyLimits::for_endpoint(
        ep,
        ctx.settings.max_body_bytes,
        ctx.settings.max_decompressed_bytes,
    );
    let input = Input {
        kind: InputKind::Http,
        listener: &ctx.listener,
    };
    // Per item: its decision, its points and its series hash.
    let mut items: Vec<(u32, u64, u64)> = Vec::new();
    let payload = {
        let mut scratch = ctx.scratch.borrow_mut();
        let mut s = st.borrow_mut();
        s.refresh_routes();
        let ShardState { top, router, .. } = &mut *s;
        router.begin();
        let now = switchyard_core::telemetry::top_clock();
        accept_body_with(
            &mut scratch,
            ep,
            encoding,
            buf,
            limits,
            key.map(ApiKey::new),
            |i| {
                top.observe(now, i.name, i.points);
                let h = series_hash(i.name, i.tags.iter().copied(), i.host);
                items.push((router.decide(input, i.name, i.tags, h), i.points, h));
            },
        )
    };
    let payload = match payload {
        Ok(p) => p,
        Err(e) => {
            let r = match &e {
                BodyError::TooLarge { .. } => HttpRefusal::TooLarge,
                BodyError::UnsupportedEncoding(_) => HttpRefusal::UnsupportedEncoding,
                BodyError::Corrupt { .. } => HttpRefusal::CorruptBody,
                BodyError::Invalid(_) => HttpRefusal::InvalidBody,
            };
            return refusal(ctx, st, r, &e.to_string());
        }
    };
    if st.borrow().sinks_closed() {
        return refusal(ctx, st, HttpRefusal::ShuttingDown, "Shutting down");
    }
    let (series, points, wire, decoded) = (
        payload.series,
        payload.points,
        payload.wire_bytes,
        payload.decoded_bytes,
    );
    // Items that are series a vendor bills (before plan_sends may add a placeholder).
    let distinct_items = match ep {
        Endpoint::SeriesV1 | Endpoint::SeriesV2 | Endpoint::DistributionPoints => items.len(),
        Endpoint::CheckRun | Endpoint::Events => 0,
    };
    // A payload holding a series a `durable = true` route sends somewhere is answered once
    // every sink it is queued for reported it durable.
    let durable = {
        let s = st.borrow();
        items
            .iter()
            .any(|(d, ..)| s.router.decision(*d).is_some_and(|d| d.durable))
    };
    let durability = durable.then(Durability::new);
    let sends = match plan_sends(
        ctx,
        st,
        ep,
        input,
        payload,
        &mut items,
        durability.as_ref().map(|d| &d.0),
    ) {
        Ok(s) => s,
        Err(e) => return refusal(ctx, st, HttpRefusal::CorruptBody, &e.to_string()),
    };
    // Every destination must have room (in items and in bytes), or none is asked to take
    // it: the client retries the whole payload. The sink handles are the shard's, taken
    // with the route table the decisions came from.
    let mut all_taken = true;
    {
        let mut s = st.borrow_mut();
        let ShardState {
            sinks, counters, ..
        } = &mut *s;
        let sink = |i: usize| sinks.get(i).and_then(Option::as_ref);
        let mut reserved: Vec<(usize, u64)> = Vec::new();
        let mut room = true;
        'reserve: for (set, _, bytes, _) in &sends {
            for i in set.iter() {
                let Some(sink) = sink(i) else { continue };
                if !sink.reserve(*bytes) {
                    room = false;
                    break 'reserve;
                }
                reserved.push((i, *bytes));
            }
        }
        if !room {
            for (i, bytes) in reserved {
                if let Some(sink) = sink(i) {
                    sink.release(bytes);
                }
            }
            drop(s);
            return refusal(
                ctx,
                st,
                HttpRefusal::QueueFull,
                "A destination is not keeping up: retry later",
            );
        }
        for (set, unit, bytes, points) in &sends {
            for i in set.iter() {
                let Some(sink) = sink(i) else { continue };
                let Some(sc) = counters.sinks.get_mut(i) else {
                    sink.release(*bytes);
                    continue;
                };
                if let Some((d, _)) = &durability {
                    d.expect_one();
                }
                match sink.tx.try_send(unit.clone()) {
                    Ok(()) => {
                        sc.batches_enqueued += 1;
                        sc.values_enqueued += points;
                        sc.payload_bytes_enqueued += bytes;
                    }
                    Err(_) => {
                        // Another shard filled the queue since the reservation. Counted in
                        // the ledger; the client is told 503 and retries (the sinks that
                        // took it may then see it twice: at-least-once).
                        sink.release(*bytes);
                        sc.batches_dropped_full += 1;
                        sc.values_dropped_full += points;
                        sc.payload_bytes_dropped_full += bytes;
                        all_taken = false;
                        tracing::warn!(sink = %sink.name, points, "sink queue full: payload refused");
                    }
                }
            }
        }
    }
    if !all_taken {
        return refusal(
            ctx,
            st,
            HttpRefusal::QueueFull,
            "A destination is not keeping up: retry later",
        );
    }
    let mut s = st.borrow_mut();
    // Routing is counted once the payload is accepted (a refused one is retried).
    let ShardState {
        counters,
        router,
        distinct,
        ..
    } = &mut *s;
    let now = switchyard_core::telemetry::top_clock();
    for (k, &(d, p, h)) in items.iter().enumerate() {
        router.account(d, p, true, &mut counters.sinks);
        if k < distinct_items {
            let sinks = router.decision(d).map_or(SinkSet::EMPTY, |d| d.sinks);
            for i in sinks.iter() {
                if let Some(c) = distinct.get_mut(i) {
                    c.insert(h, now);
                }
            }
        }
    }
    let e = tally.counters(ep, &mut s.counters.http);
    e.payloads += 1;
    e.series += series;
    e.points += points;
    // A gostatsd event counts the protobuf as received on the wire, the JSON routed decoded.
    e.wire_bytes += match tally {
        Tally::Endpoint => wire,
        Tally::Gostatsd(_, received) => received,
    };
    e.decoded_bytes += decoded;
    drop(s);
    if let Some((d, rx)) = durability {
        // Everything is queued: release the intake's own hold.
        d.settle(true);
        *durable_wait = Some(rx);
    }
    json(202, ep.success_body())
}

/// One hand-off: the sinks, the queue item, its body bytes and its points.
type Send = (SinkSet, Egress, u64, u64);

/// Decides what goes where (and leaves in `items` the decision each item is counted under).
///
/// v1 and v2 series payloads are routed per series: when every series has the same sinks
/// and no rewrite, the payload goes unchanged (its stored body, compressed as received)
/// to those sinks; otherwise it is split, one v1 `{"series":[...]}` JSON payload per
/// distinct sink set, with renames and tag rules applied. Other endpoints
/// (`distribution_points`, `check_run`, `events`) are routed whole by their first item's
/// decision (events by input only), and all their points are counted under it. A payload
/// routed nowhere yields no hand-off (the client still gets 202, and its points are counted
/// as `route_dropped` for the sinks a `drop` rule took them from).
fn plan_sends(
    ctx: &HttpContext,
    st: &RefCell<ShardState>,
    ep: Endpoint,
    input: Input<'_>,
    mut payload: IntakePayload,
    items: &mut Vec<(u32, u64, u64)>,
    durable: Option<&Arc<Durability>>,
) -> Result<Vec<Send>, BodyError> {
    let mut guard = st.borrow_mut();
    let router = &mut guard.router;
    let series_ep = matches!(ep, Endpoint::SeriesV1 | Endpoint::SeriesV2);
    if items.is_empty() {
        // Events, or an empty series list: by input only.
        items.push((router.decide(input, "", &[], 0), payload.points, 0));
    }
    if !series_ep {
        let first = items.first().map_or(0, |x| x.0);
        for it in items.iter_mut() {
            it.0 = first;
        }
    }
    let first = items
        .first()
        .and_then(|x| router.decision(x.0))
        .map_or(SinkSet::EMPTY, |d| d.sinks);
    let whole = !series_ep
        || items.iter().all(|x| {
            router
                .decision(x.0)
                .is_some_and(|d| d.sinks == first && !d.rewrites)
        });
    if whole {
        if first.is_empty() {
            return Ok(Vec::new());
        }
        let (bytes, points) = (payload.body.bytes.len() as u64, payload.points);
        payload.durable = durable.cloned();
        return Ok(vec![(
            first,
            Egress::Payload(Arc::new(payload)),
            bytes,
            points,
        )]);
    }
    // Split: re-read the stored body and write each series into its group's v1 payload.
    struct Group {
        set: SinkSet,
        body: Vec<u8>,
        series: u64,
        points: u64,
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut k = 0usize;
    let mut json = Vec::new();
    let mut scratch = ctx.scratch.borrow_mut();
    for_each_stored_series(&mut scratch, &payload, &mut json, |s| {
        let Some(&(d, points, _)) = items.get(k) else {
            return;
        };
        k += 1;
        let Some(set) = router.decision(d).map(|d| d.sinks) else {
            return;
        };
        if set.is_empty() {
            return;
        }
        let g = match groups.iter().position(|g| g.set == set) {
            Some(g) => g,
            None => {
                let mut body = Vec::with_capacity(256);
                body.extend_from_slice(b"{\"series\":[");
                groups.push(Group {
                    set,
                    body,
                    series: 0,
                    points: 0,
                });
                groups.len() - 1
            }
        };
        let Some(g) = groups.get_mut(g) else { return };
        if g.series > 0 {
            g.body.push(b',');
        }
        g.series += 1;
        g.points += points;
        match router.rewrite(d, s.metric, s.tags) {
            Some(rw) => {
                let tags: Vec<&str> = rw.tags().collect();
                let renamed = switchyard_core::translate::DdSeries {
                    metric: rw.name(),
                    tags: &tags,
                    ..*s
                };
                write_dd_series(&mut g.body, &renamed);
            }
            None => write_dd_series(&mut g.body, s),
        }
    })?;
    let key = payload.api_key.clone();
    Ok(groups
        .into_iter()
        .map(|mut g| {
            g.body.extend_from_slice(b"]}");
            let bytes = g.body.len() as u64;
            let mut p =
                IntakePayload::json(Endpoint::SeriesV1, g.body, key.clone(), g.series, g.points);
            p.durable = durable.cloned();
            (g.set, Egress::Payload(Arc::new(p)), bytes, g.points)
        })
        .collect())
}
