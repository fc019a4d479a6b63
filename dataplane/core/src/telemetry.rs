//! Plain counter structs for self-telemetry.
//!
//! Each shard owns its counters as plain data (no atomics, no locks on the per-line path) and
//! publishes a copy about once a second and after every flush; the control plane sums the
//! shards' copies when scraped ([`Telemetry`]). The lock of a shard's slot is taken once per
//! publish and once per scrape, never per line. Names follow `switchyard_<component>_<what>_<unit>`.
//!
//! Besides the counters, each shard publishes its top-names sketches ([`TopNames`]) and, per
//! sink, its last-hour distinct series counter ([`Distinct`]) at the same cadence; the control
//! plane merges them across shards ([`Telemetry::top`], [`Telemetry::distinct_series`]).

use crate::distinct::{Distinct, Sketch};
use crate::egress::Endpoint;
use crate::statsd::LineError;
use crate::topk::{TopEntry, TopK};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

/// statsd ingest counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsdCounters {
    /// Datagrams received (`switchyard_statsd_datagrams_total`).
    pub datagrams: u64,
    /// Bytes received (`switchyard_statsd_bytes_total`).
    pub bytes: u64,
    /// Datagrams longer than the buffer, cut by the kernel (`switchyard_statsd_truncated_datagrams_total`).
    pub truncated_datagrams: u64,
    /// recvmmsg calls that returned data (`switchyard_statsd_recv_batches_total`).
    pub recv_batches: u64,
    /// Accepted metric lines (`switchyard_statsd_lines_total{result="ok"}`).
    pub lines_ok: u64,
    /// Rejected lines by reason (`switchyard_statsd_lines_total{result="error",reason}`).
    pub lines_error: [u64; LineError::COUNT],
    /// Events parsed (`switchyard_statsd_events_total`).
    pub events: u64,
    /// Service checks parsed (`switchyard_statsd_service_checks_total`).
    pub service_checks: u64,
}

impl StatsdCounters {
    /// Counts a rejected line.
    pub fn reject(&mut self, e: LineError) {
        if let Some(c) = self.lines_error.get_mut(e.index()) {
            *c += 1;
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &StatsdCounters) {
        self.datagrams += o.datagrams;
        self.bytes += o.bytes;
        self.truncated_datagrams += o.truncated_datagrams;
        self.recv_batches += o.recv_batches;
        self.lines_ok += o.lines_ok;
        for (a, b) in self.lines_error.iter_mut().zip(o.lines_error.iter()) {
            *a += b;
        }
        self.events += o.events;
        self.service_checks += o.service_checks;
    }
}

/// Why the HTTP intake refused a request: a bounded set, one counter each
/// (`switchyard_http_errors_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRefusal {
    /// No API key, or one not on the allow-list (403).
    Forbidden,
    /// Unknown path (404).
    NotFound,
    /// Wrong method for the path (405).
    MethodNotAllowed,
    /// The body did not arrive within the read timeout (408).
    Timeout,
    /// Body over a size cap, compressed or decompressed (413).
    TooLarge,
    /// A content type other than JSON (415).
    UnsupportedMediaType,
    /// An unknown `Content-Encoding` (415).
    UnsupportedEncoding,
    /// The compressed stream is corrupt or truncated (400).
    CorruptBody,
    /// The JSON is malformed or not the endpoint's shape (400).
    InvalidBody,
    /// The shard holds too many request bodies at once (429).
    Overloaded,
    /// A destination queue is full (503).
    QueueFull,
    /// The process is shutting down (503).
    ShuttingDown,
    /// The body could not be read (the client went away mid-body).
    BodyRead,
    /// A `durable = true` payload a sink could not make durable (503; it may still arrive:
    /// at-least-once).
    NotDurable,
    /// A `durable = true` payload not durable within `durable_timeout` (503; it may still
    /// arrive: at-least-once).
    DurableTimeout,
}

impl HttpRefusal {
    /// Number of reasons.
    pub const COUNT: usize = 15;
    /// Every reason, in index order.
    pub const ALL: [HttpRefusal; Self::COUNT] = [
        HttpRefusal::Forbidden,
        HttpRefusal::NotFound,
        HttpRefusal::MethodNotAllowed,
        HttpRefusal::Timeout,
        HttpRefusal::TooLarge,
        HttpRefusal::UnsupportedMediaType,
        HttpRefusal::UnsupportedEncoding,
        HttpRefusal::CorruptBody,
        HttpRefusal::InvalidBody,
        HttpRefusal::Overloaded,
        HttpRefusal::QueueFull,
        HttpRefusal::ShuttingDown,
        HttpRefusal::BodyRead,
        HttpRefusal::NotDurable,
        HttpRefusal::DurableTimeout,
    ];

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            HttpRefusal::Forbidden => "forbidden",
            HttpRefusal::NotFound => "not_found",
            HttpRefusal::MethodNotAllowed => "method_not_allowed",
            HttpRefusal::Timeout => "timeout",
            HttpRefusal::TooLarge => "too_large",
            HttpRefusal::UnsupportedMediaType => "unsupported_media_type",
            HttpRefusal::UnsupportedEncoding => "unsupported_encoding",
            HttpRefusal::CorruptBody => "corrupt_body",
            HttpRefusal::InvalidBody => "invalid_body",
            HttpRefusal::Overloaded => "overloaded",
            HttpRefusal::QueueFull => "queue_full",
            HttpRefusal::ShuttingDown => "shutting_down",
            HttpRefusal::BodyRead => "body_read",
            HttpRefusal::NotDurable => "not_durable",
            HttpRefusal::DurableTimeout => "durable_timeout",
        }
    }

    /// The HTTP status answered.
    pub fn status(self) -> u16 {
        match self {
            HttpRefusal::Forbidden => 403,
            HttpRefusal::NotFound => 404,
            HttpRefusal::MethodNotAllowed => 405,
            HttpRefusal::Timeout => 408,
            HttpRefusal::TooLarge => 413,
            HttpRefusal::UnsupportedMediaType | HttpRefusal::UnsupportedEncoding => 415,
            HttpRefusal::CorruptBody | HttpRefusal::InvalidBody | HttpRefusal::BodyRead => 400,
            HttpRefusal::Overloaded => 429,
            HttpRefusal::QueueFull
            | HttpRefusal::ShuttingDown
            | HttpRefusal::NotDurable
            | HttpRefusal::DurableTimeout => 503,
        }
    }
}

/// Why the intake closed a connection outside a request it answered itself: a bounded set,
/// one counter each (`switchyard_http_connection_errors_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpConnectionError {
    /// A request head had started but was not complete within `read_timeout` (slowloris).
    HeaderTimeout,
    /// Nothing arrived on an idle keep-alive connection within `read_timeout` or
    /// `idle_timeout`: an ordinary close, counted apart from a slow head.
    Idle,
    /// The request head was over `max_header_bytes` (answered 431, then closed).
    HeaderTooLarge,
    /// The request line or a header was malformed (answered 400, then closed).
    Malformed,
    /// The client went away mid-request, or the socket failed.
    Io,
}

impl HttpConnectionError {
    /// Number of reasons.
    pub const COUNT: usize = 5;
    /// Every reason, in index order.
    pub const ALL: [HttpConnectionError; Self::COUNT] = [
        HttpConnectionError::HeaderTimeout,
        HttpConnectionError::Idle,
        HttpConnectionError::HeaderTooLarge,
        HttpConnectionError::Malformed,
        HttpConnectionError::Io,
    ];

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            HttpConnectionError::HeaderTimeout => "header_timeout",
            HttpConnectionError::Idle => "idle",
            HttpConnectionError::HeaderTooLarge => "header_too_large",
            HttpConnectionError::Malformed => "malformed",
            HttpConnectionError::Io => "io",
        }
    }
}

/// Per-endpoint intake counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Requests received (`switchyard_http_requests_total{endpoint}`).
    pub requests: u64,
    /// Payloads accepted with 202 (`switchyard_http_payloads_total{endpoint}`).
    pub payloads: u64,
    /// Series, checks or events accepted (`switchyard_http_series_total{endpoint}`).
    pub series: u64,
    /// Points accepted (`switchyard_http_points_total{endpoint}`).
    pub points: u64,
    /// Accepted bytes on the wire (`switchyard_http_bytes_total{endpoint,stage="wire"}`).
    pub wire_bytes: u64,
    /// Accepted bytes once decompressed (`switchyard_http_bytes_total{endpoint,stage="decoded"}`).
    pub decoded_bytes: u64,
}

impl EndpointCounters {
    fn add(&mut self, o: &EndpointCounters) {
        self.requests += o.requests;
        self.payloads += o.payloads;
        self.series += o.series;
        self.points += o.points;
        self.wire_bytes += o.wire_bytes;
        self.decoded_bytes += o.decoded_bytes;
    }
}

/// An aggregator route of the HTTP intake: gostatsd's (`POST /v2/raw`, `POST /v2/event`)
/// and Switchyard's own (`POST /switchyard/v1/forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatorRoute {
    /// `POST /v2/raw`: a gostatsd forwarder's consolidated metrics.
    Raw,
    /// `POST /v2/event`: one event.
    Event,
    /// `POST /switchyard/v1/forward`: a Switchyard forwarder's consolidated metrics.
    Forward,
}

impl AggregatorRoute {
    /// Every route, in label order.
    pub const ALL: [AggregatorRoute; 3] = [
        AggregatorRoute::Raw,
        AggregatorRoute::Event,
        AggregatorRoute::Forward,
    ];

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            AggregatorRoute::Raw => "/v2/raw",
            AggregatorRoute::Event => "/v2/event",
            AggregatorRoute::Forward => "/switchyard/v1/forward",
        }
    }

    /// The route for a request path (without the query string).
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.path() == path)
    }

    /// The `endpoint` label (beside the Datadog endpoints' labels).
    pub fn label(self) -> &'static str {
        match self {
            AggregatorRoute::Raw => "gostatsd_raw",
            AggregatorRoute::Event => "gostatsd_event",
            AggregatorRoute::Forward => "switchyard_forward",
        }
    }

    /// Index in [`AggregatorRoute::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why an aggregator route did not answer 202: a bounded set
/// (`switchyard_aggregator_errors_total{endpoint,reason}`). The first four are gostatsd's own
/// `failure:` reasons plus the decoded-size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatorFailure {
    /// An unknown `Content-Encoding` (400).
    Encoding,
    /// A corrupt compressed body (400).
    Decompress,
    /// Not the protobuf message (400).
    Unmarshal,
    /// Over `max_body_bytes` on the wire or `max_decompressed_bytes` decoded (413).
    TooLarge,
    /// The body could not be read (500, as gostatsd) or did not arrive in time (408).
    Read,
    /// A method other than the route's (405).
    MethodNotAllowed,
    /// Push-back: too many bodies held (429), a destination full or shutting down (503).
    Unavailable,
    /// Not the forward format's `Content-Type` (415; Switchyard's forward route only).
    ContentType,
}

impl AggregatorFailure {
    /// Number of reasons.
    pub const COUNT: usize = 8;
    /// Every reason, in label order.
    pub const ALL: [AggregatorFailure; Self::COUNT] = [
        AggregatorFailure::Encoding,
        AggregatorFailure::Decompress,
        AggregatorFailure::Unmarshal,
        AggregatorFailure::TooLarge,
        AggregatorFailure::Read,
        AggregatorFailure::MethodNotAllowed,
        AggregatorFailure::Unavailable,
        AggregatorFailure::ContentType,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            AggregatorFailure::Encoding => "encoding",
            AggregatorFailure::Decompress => "decompress",
            AggregatorFailure::Unmarshal => "unmarshal",
            AggregatorFailure::TooLarge => "too_large",
            AggregatorFailure::Read => "read",
            AggregatorFailure::MethodNotAllowed => "method_not_allowed",
            AggregatorFailure::Unavailable => "unavailable",
            AggregatorFailure::ContentType => "content_type",
        }
    }

    /// Index in [`AggregatorFailure::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The aggregator routes' counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregatorCounters {
    /// Per route, indexed by [`AggregatorRoute::index`]: requests, accepted payloads, series
    /// (events), bytes, rendered in the `switchyard_http_*_total{endpoint}` families.
    pub routes: [EndpointCounters; AggregatorRoute::ALL.len()],
    /// Per route and reason, requests not answered 202
    /// (`switchyard_aggregator_errors_total{endpoint,reason}`).
    pub failures: [[u64; AggregatorFailure::COUNT]; AggregatorRoute::ALL.len()],
    /// Series of accepted `/v2/raw` and forward bodies folded into the aggregates
    /// (`switchyard_aggregator_series_total{result="ok"}`).
    pub series_ok: u64,
    /// Series the aggregator refused, by the statsd line reason
    /// (`switchyard_aggregator_series_total{result="error",reason}`).
    pub series_error: [u64; LineError::COUNT],
    /// `GET /healthcheck` and `GET /deepcheck` answered (`switchyard_gostatsd_health_checks_total`).
    pub health_checks: u64,
}

impl AggregatorCounters {
    /// The counters of one route.
    pub fn route(&mut self, r: AggregatorRoute) -> &mut EndpointCounters {
        let i = r.index().min(self.routes.len() - 1);
        &mut self.routes[i]
    }

    /// Counts a request of `r` that failed for `f`.
    pub fn fail(&mut self, r: AggregatorRoute, f: AggregatorFailure) {
        if let Some(c) = self
            .failures
            .get_mut(r.index())
            .and_then(|x| x.get_mut(f.index()))
        {
            *c += 1;
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &AggregatorCounters) {
        for (a, b) in self.routes.iter_mut().zip(o.routes.iter()) {
            a.add(b);
        }
        for (a, b) in self.failures.iter_mut().zip(o.failures.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
        self.series_ok += o.series_ok;
        for (a, b) in self.series_error.iter_mut().zip(o.series_error.iter()) {
            *a += b;
        }
        self.health_checks += o.health_checks;
    }
}

/// Upper bounds (seconds) of the request latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket latency histogram (Prometheus shape: cumulative on render).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observations, ns.
    pub sum_ns: u64,
    /// Observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe_ns(&mut self, ns: u64) {
        let secs = ns as f64 / 1e9;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum_ns += ns;
        self.count += 1;
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.sum_ns += o.sum_ns;
        self.count += o.count;
    }
}

/// HTTP intake counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCounters {
    /// Per endpoint, indexed by [`Endpoint::index`].
    pub endpoints: [EndpointCounters; Endpoint::ALL.len()],
    /// Refused requests by reason.
    pub refused: [u64; HttpRefusal::COUNT],
    /// Empty bodies (the Agent's keep-alive), answered 202 and not forwarded
    /// (`switchyard_http_empty_bodies_total`).
    pub empty_bodies: u64,
    /// Payloads of `durable = true` routes answered 202 once durable
    /// (`switchyard_http_durable_payloads_total`).
    pub durable_payloads: u64,
    /// `GET /api/v1/validate` requests (`switchyard_http_validate_total`).
    pub validate: u64,
    /// Connections accepted (`switchyard_http_connections_total{result="accepted"}`).
    pub connections_accepted: u64,
    /// Connections closed at once over the per-shard cap
    /// (`switchyard_http_connections_total{result="rejected"}`).
    pub connections_rejected: u64,
    /// TLS connections whose handshake failed or did not finish within the read timeout
    /// (`switchyard_http_connections_total{result="tls_failed"}`).
    pub connections_tls_failed: u64,
    /// Connections open now (`switchyard_http_connections_open`).
    pub connections_open: u64,
    /// Connections closed outside an answered request, by reason
    /// (`switchyard_http_connection_errors_total{reason}`).
    pub connection_errors: [u64; HttpConnectionError::COUNT],
    /// Request body bytes held now (`switchyard_http_inflight_bytes`).
    pub inflight_bytes: u64,
    /// Time from request head to response, for requests with a body
    /// (`switchyard_http_request_duration_seconds`).
    pub latency: LatencyHistogram,
    /// The gostatsd aggregator routes (`/v2/raw`, `/v2/event`, `/healthcheck`, `/deepcheck`).
    pub gostatsd: AggregatorCounters,
}

impl HttpCounters {
    /// Counts a refusal.
    pub fn refuse(&mut self, r: HttpRefusal) {
        if let Some(c) = self.refused.get_mut(r.index()) {
            *c += 1;
        }
    }

    /// Counts a connection closed outside an answered request.
    pub fn connection_error(&mut self, e: HttpConnectionError) {
        if let Some(c) = self.connection_errors.get_mut(e.index()) {
            *c += 1;
        }
    }

    /// The counters of one endpoint.
    pub fn endpoint(&mut self, e: Endpoint) -> &mut EndpointCounters {
        // Endpoint::index is always in range: the array is sized by Endpoint::ALL.
        let i = e.index().min(self.endpoints.len() - 1);
        &mut self.endpoints[i]
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &HttpCounters) {
        for (a, b) in self.endpoints.iter_mut().zip(o.endpoints.iter()) {
            a.add(b);
        }
        for (a, b) in self.refused.iter_mut().zip(o.refused.iter()) {
            *a += b;
        }
        self.empty_bodies += o.empty_bodies;
        self.durable_payloads += o.durable_payloads;
        self.validate += o.validate;
        self.connections_accepted += o.connections_accepted;
        self.connections_rejected += o.connections_rejected;
        self.connections_tls_failed += o.connections_tls_failed;
        self.connections_open += o.connections_open;
        for (a, b) in self
            .connection_errors
            .iter_mut()
            .zip(o.connection_errors.iter())
        {
            *a += b;
        }
        self.inflight_bytes += o.inflight_bytes;
        self.latency.add(&o.latency);
        self.gostatsd.add(&o.gostatsd);
    }
}

/// Flush counters of one shard (as an owner).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushCounters {
    /// Flushes completed (`switchyard_flush_total`).
    pub flushes: u64,
    /// Duration of the last flush, ns (`switchyard_flush_duration_seconds{stat="last"}`).
    pub last_duration_ns: u64,
    /// Total flush time, ns (`switchyard_flush_duration_seconds_total`).
    pub total_duration_ns: u64,
    /// Series emitted (`switchyard_flush_series_total`).
    pub series_emitted: u64,
    /// Values emitted after sub-metric expansion (`switchyard_flush_values_total`).
    pub values_emitted: u64,
    /// Series expired as idle (`switchyard_series_expired_total`).
    pub series_expired: u64,
    /// Series held by this owner after the last flush (`switchyard_series_active`).
    pub series_active: u64,
}

impl FlushCounters {
    /// Adds `other` into `self` (durations: the max of the last, the sum of totals).
    pub fn add(&mut self, o: &FlushCounters) {
        self.flushes += o.flushes;
        self.last_duration_ns = self.last_duration_ns.max(o.last_duration_ns);
        self.total_duration_ns += o.total_duration_ns;
        self.series_emitted += o.series_emitted;
        self.values_emitted += o.values_emitted;
        self.series_expired += o.series_expired;
        self.series_active += o.series_active;
    }
}

/// Per-sink enqueue counters kept by one shard (the shard is the producer side of the queue).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkEnqueueCounters {
    /// Batches handed to the sink's queue.
    pub batches_enqueued: u64,
    /// Values (series points) in those batches.
    pub values_enqueued: u64,
    /// Batches dropped because the queue was full.
    pub batches_dropped_full: u64,
    /// Values in the dropped batches.
    pub values_dropped_full: u64,
    /// Values a `drop` route discarded that earlier routes would have sent to this sink.
    pub values_route_dropped: u64,
    /// Values a route would have sent to this sink but for its `sample` (no other route
    /// sent them here).
    pub values_sampled_out: u64,
    /// Body bytes of the HTTP payloads handed to the sink's queue (as accepted).
    pub payload_bytes_enqueued: u64,
    /// Body bytes of the HTTP payloads refused because the queue was full.
    pub payload_bytes_dropped_full: u64,
}

impl SinkEnqueueCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &SinkEnqueueCounters) {
        self.batches_enqueued += o.batches_enqueued;
        self.values_enqueued += o.values_enqueued;
        self.batches_dropped_full += o.batches_dropped_full;
        self.values_dropped_full += o.values_dropped_full;
        self.values_route_dropped += o.values_route_dropped;
        self.values_sampled_out += o.values_sampled_out;
        self.payload_bytes_enqueued += o.payload_bytes_enqueued;
        self.payload_bytes_dropped_full += o.payload_bytes_dropped_full;
    }
}

/// Everything one shard publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// statsd ingest.
    pub statsd: StatsdCounters,
    /// HTTP intake.
    pub http: HttpCounters,
    /// Flushes.
    pub flush: FlushCounters,
    /// Distinct series in the current interval's partials (`switchyard_statsd_interval_series`).
    pub interval_series: u64,
    /// Per sink, indexed like the runtime's sink list.
    pub sinks: Vec<SinkEnqueueCounters>,
    /// Per route, by rule name: what the routes matched (statsd at flush, HTTP per payload).
    pub routes: BTreeMap<String, RouteCounters>,
}

/// What one route matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounters {
    /// Points (values) of matching series (`switchyard_route_points_total`).
    pub points: u64,
    /// Matching series: per flush for statsd, per payload item for HTTP
    /// (`switchyard_route_series_total`).
    pub series: u64,
}

impl ShardCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &ShardCounters) {
        self.statsd.add(&o.statsd);
        self.http.add(&o.http);
        self.flush.add(&o.flush);
        self.interval_series += o.interval_series;
        if self.sinks.len() < o.sinks.len() {
            self.sinks
                .resize(o.sinks.len(), SinkEnqueueCounters::default());
        }
        for (a, b) in self.sinks.iter_mut().zip(o.sinks.iter()) {
            a.add(b);
        }
        for (name, r) in &o.routes {
            let e = self.routes.entry(name.clone()).or_default();
            e.points += r.points;
            e.series += r.series;
        }
    }
}

/// Window of the top-names statistics: names are ranked over the last one to two windows.
pub const TOP_WINDOW: Duration = Duration::from_secs(60);
/// Names tracked per shard and statistic (Space-Saving counters).
pub const TOP_CAPACITY: usize = 1024;

/// The heaviest metric names of one shard, by points and by distinct series, over a sliding
/// window, in bounded memory (Space-Saving; see [`crate::topk`]).
#[derive(Debug, Clone)]
pub struct TopNames {
    /// Weighted by points (statsd: lines).
    pub by_points: TopK,
    /// Weighted by series: each series counts once per interval (statsd) or per payload
    /// (HTTP).
    pub by_series: TopK,
}

impl Default for TopNames {
    fn default() -> Self {
        Self {
            by_points: TopK::new(TOP_CAPACITY, TOP_WINDOW),
            by_series: TopK::new(TOP_CAPACITY, TOP_WINDOW),
        }
    }
}

impl TopNames {
    /// Records one series of `name` carrying `points` points, at `now` (time since the Unix
    /// epoch, so every shard rotates windows together).
    pub fn observe(&mut self, now: Duration, name: &str, points: u64) {
        self.by_points.observe(now, name, points);
        self.by_series.observe(now, name, 1);
    }
}

/// The current time as the top-names statistics count it.
pub fn top_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Counters published by the shards.
#[derive(Debug)]
pub struct Telemetry {
    shards: Vec<Mutex<ShardCounters>>,
    tops: Vec<Mutex<TopNames>>,
    distinct: Vec<Mutex<Vec<Distinct>>>,
    inodes: Mutex<Vec<u64>>,
    granted_rcvbuf: AtomicU64,
    started: Instant,
}

impl Telemetry {
    /// A board for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(ShardCounters::default()))
                .collect(),
            tops: (0..shards)
                .map(|_| Mutex::new(TopNames::default()))
                .collect(),
            distinct: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
            inodes: Mutex::new(Vec::new()),
            granted_rcvbuf: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Replaces shard `i`'s published counters.
    pub fn publish(&self, i: usize, c: &ShardCounters) {
        if let Some(m) = self.shards.get(i) {
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            g.clone_from(c);
        }
    }

    /// Replaces shard `i`'s published top names.
    pub fn publish_top(&self, i: usize, t: &TopNames) {
        if let Some(m) = self.tops.get(i) {
            m.lock().unwrap_or_else(|p| p.into_inner()).clone_from(t);
        }
    }

    /// Replaces shard `i`'s published distinct series counters (one per sink, indexed like
    /// [`ShardCounters::sinks`]). Copies the sketches: at most
    /// [`crate::distinct::SLICES`] x ~3 KB per sink.
    pub fn publish_distinct(&self, i: usize, d: &[Distinct]) {
        if let Some(m) = self.distinct.get(i) {
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            g.truncate(d.len());
            let n = g.len();
            for (a, b) in g.iter_mut().zip(d) {
                a.clone_from(b);
            }
            g.extend(d.iter().skip(n).cloned());
        }
    }

    /// Per sink (`sinks` of them), the estimated distinct series the shards sent it over
    /// the last hour ([`crate::distinct`]): the shards' counters merged, so a series sent by
    /// two shards counts once.
    pub fn distinct_series(&self, sinks: usize) -> Vec<u64> {
        let now = top_clock();
        let mut all: Vec<Sketch> = (0..sinks).map(|_| Sketch::new()).collect();
        for m in &self.distinct {
            let g = m.lock().unwrap_or_else(|p| p.into_inner());
            for (a, d) in all.iter_mut().zip(g.iter()) {
                d.merge_into(a, now);
            }
        }
        all.iter().map(|s| s.estimate() as u64).collect()
    }

    /// The `limit` heaviest names over all shards, by points (`by_series == false`) or by
    /// series, with the window's total weight.
    pub fn top(&self, by_series: bool, limit: usize) -> (Vec<TopEntry>, u64) {
        let now = top_clock();
        let mut all = TopK::new(TOP_CAPACITY, TOP_WINDOW);
        all.advance(now);
        for m in &self.tops {
            let t = m.lock().unwrap_or_else(|p| p.into_inner());
            let k = if by_series {
                &t.by_series
            } else {
                &t.by_points
            };
            let mut k = k.clone();
            k.advance(now);
            // Same window constant everywhere: a mismatch cannot happen.
            let _ = all.merge(&k);
        }
        (all.top(limit), all.total())
    }

    /// Shard `i`'s last published counters.
    pub fn shard(&self, i: usize) -> ShardCounters {
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The sum over all shards.
    pub fn total(&self) -> ShardCounters {
        let mut t = ShardCounters::default();
        for i in 0..self.shards.len() {
            t.add(&self.shard(i));
        }
        t
    }

    /// Records a UDP socket so its kernel drop counter is exported.
    pub fn register_socket(&self, inode: u64, granted_rcvbuf: usize) {
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(inode);
        self.granted_rcvbuf
            .store(granted_rcvbuf as u64, Ordering::Relaxed);
    }

    /// Datagrams the kernel dropped on our UDP sockets (full receive buffers).
    pub fn kernel_drops(&self) -> u64 {
        let inodes = self
            .inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        kernel_udp_drops(&inodes)
    }

    /// The receive buffer the kernel granted to the last bound UDP socket.
    pub fn granted_rcvbuf(&self) -> u64 {
        self.granted_rcvbuf.load(Ordering::Relaxed)
    }

    /// Seconds since the dataplane started.
    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Sums the kernel's drop counters of the UDP sockets with the given inodes, read from
/// `/proc/net/udp` and `/proc/net/udp6` (the last column is `drops`).
pub fn kernel_udp_drops(inodes: &[u64]) -> u64 {
    let mut total = 0;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        total += drops_in(&text, inodes);
    }
    total
}

fn drops_in(text: &str, inodes: &[u64]) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let inode: u64 = f.get(9)?.parse().ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_series_merge_over_shards_per_sink() {
        let t = Telemetry::new(2);
        let now = top_clock();
        let h = |i: u64| crate::route::series_hash(&format!("m{i}"), [], "h");
        let (mut a, mut b) = (vec![Distinct::new(); 2], vec![Distinct::new(); 2]);
        for i in 0..100 {
            a[0].insert(h(i), now);
        }
        for i in 50..120 {
            b[0].insert(h(i), now);
        }
        b[1].insert(h(7), now);
        t.publish_distinct(0, &a);
        t.publish_distinct(1, &b);
        assert_eq!(t.distinct_series(3), vec![120, 1, 0]);
        // A later publish replaces the shard's counters.
        t.publish_distinct(1, &[Distinct::new()]);
        assert_eq!(t.distinct_series(2), vec![100, 0]);
    }

    #[test]
    fn parses_proc_net_udp_drops() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
 1234: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5551 2 0000000000000000 17\n\
 1235: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5552 2 0000000000000000 4\n";
        assert_eq!(drops_in(text, &[5551]), 17);
        assert_eq!(drops_in(text, &[5551, 5552]), 21);
        assert_eq!(drops_in(text, &[1]), 0);
    }
}
