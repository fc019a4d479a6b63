//! The egress side of Switchyard: sinks, their bounded queues, and the delivery driver they
//! share.
//!
//! Shards hand each sink [`Egress`](switchyard_core::egress::Egress) items: flushed statsd
//! [`SeriesBatch`](switchyard_core::model::SeriesBatch)es and accepted HTTP intake payloads
//! (and, in forwarder mode, consolidated partial aggregates for the `forward` sink), all
//! behind an `Arc` shared by every sink they are routed to. Each sink has its own
//! bounded crossbeam queue, fed with `try_send`: a full queue drops the item and the shard
//! counts it, so a slow sink never blocks a shard. Each sink runs its own workers
//! ([`driver`]): `max_in_flight` for HTTP sinks (bounded requests in flight; a slow or failing
//! vendor never delays another sink), one for the others. Workers deliver each item in
//! requests within the sink's limits, retry what can be retried (capped exponential backoff
//! with full jitter, or the vendor's `Retry-After`), and account every value as delivered or
//! dropped by reason.
//!
//! A vendor sink with `spill = true` writes what its vendor does not take to a durable spool
//! and opens a circuit after failures in a row ([`spool`]); the binary's stream workers
//! replay the spool. A request a vendor refuses for good (a 4xx but 408 and 429) is kept,
//! with the vendor's answer, in the sink's dead letters under `state_dir` ([`deadletter`]).
//!
//! Every configured sink runs, in a [`SinkSlots`] slot the shards and route tables index
//! (see [`slots`]); [`SinkRuntime::reconcile`] applies a reloaded config's sinks.
//!
//! Sinks: `file` and `stdout` (NDJSON v1 series), `blackhole`, `datadog` (series as
//! `/api/v1/series`, payloads passed through), `signalfx` (translated to `/v2/datapoint`,
//! JSON or protobuf), `kinesis` and `local_log` (stream records), `forward` (a forwarder's
//! consolidated aggregates to its aggregators, added by `[forwarder]`, see
//! [`sink::forward`]), and, with the cargo feature `kafka`, `kafka` (stream records on a
//! Kafka topic, see the `sink::kafka` module). HTTP sinks speak HTTPS with rustls: Mozilla's roots
//! plus `ca_file`. Components are a closed enum ([`AnySink`]) dispatched by `match`.
//!
//! ## Adding a sink
//! 1. Add a module under `sink/` with a config-built struct and a
//!    `handle(&mut self, &Egress, &Ctx)` that splits the item into requests within its limits
//!    and hands each to [`Ctx::deliver`] with an attempt closure returning [`SinkError`]
//!    (`Retryable`/`RetryAfter`, `Rejected`, `Fatal`). HTTP sinks use [`http::HttpClient`]
//!    and [`http::BodyCompressor`]. What the sink cannot carry is dropped with a reason, never
//!    silently.
//! 2. Add a variant to [`AnySink`] (build, limits, handle, flush) and to `SinkKind` in
//!    `switchyard-core`'s config, with validation and a documented example in the default
//!    config; give HTTP sinks their worker count in [`driver::spawn_sinks_with`].
//! 3. Declare its limits ([`SinkLimits`]) and test it against a real server (or a wire-level
//!    fake only where no real server can produce the failure), asserting the decoded body,
//!    headers and the ledger.
//! 4. List its metrics in the module's `//!` doc; a new [`DropReason`] goes in
//!    [`DropReason::ALL`] and is rendered by the control plane automatically.
//!
//! Metrics (per sink, label `sink`; rendered by the control plane):
//! - `switchyard_sink_enqueued_values_total`, `switchyard_sink_enqueued_batches_total`
//!   (counted by the shards);
//! - `switchyard_sink_received_total{kind="batch"|"payload"}`: items taken off the queue;
//!   `switchyard_sink_received_values_total` (points), `switchyard_sink_received_series_total`;
//! - `switchyard_sink_delivered_values_total`;
//! - `switchyard_sink_dropped_values_total{reason=retries_exhausted|fatal|shutdown|translation|rejected|unsupported|no_api_key}`
//!   (counted here) and `reason=queue_full|route_dropped|sampled_out` (counted by the shards);
//! - `switchyard_sink_requests_total{outcome=success|retryable|rejected|error}` (HTTP
//!   attempts: 2xx; 5xx/408/429; other statuses; no response);
//! - `switchyard_sink_request_duration_seconds` histogram (`_bucket{le}`, `_sum`, `_count`;
//!   buckets 1 ms to 30 s, every attempt);
//! - `switchyard_sink_uncompressed_bytes_total` and `switchyard_sink_bytes_total` (delivered
//!   bodies before and after compression: their ratio is the compression ratio);
//! - `switchyard_sink_payload_bytes_total{stage=received|delivered|dropped,reason}`: HTTP
//!   payload body bytes as accepted, split between delivered and the drop reasons in
//!   proportion to each payload's values (the ledger's byte identity;
//!   `switchyard_sink_enqueued_payload_bytes_total` is counted by the shards);
//! - `switchyard_sink_retries_total`;
//! - `switchyard_sink_queue_depth_batches`, `switchyard_sink_queue_capacity_batches` (queue
//!   items: batches and payloads);
//! - `switchyard_sink_replayed_values_total`: values stream workers handed the sink directly
//!   (its spool's replay), counted in received too;
//! - dead letters (HTTP vendor sinks with a `state_dir`, see [`deadletter`]):
//!   `switchyard_sink_deadletter_entries_total`, `switchyard_sink_deadletter_values_total`,
//!   `switchyard_sink_deadletter_bytes`, `switchyard_sink_deadletter_evicted_entries_total`.

pub mod deadletter;
pub mod driver;
pub mod error;
pub mod http;
pub mod sink;
pub mod slots;
pub mod spool;
pub mod stats;

pub use driver::{
    spawn_sinks, spawn_sinks_with, Ctx, DeadLetterRequest, ItemTally, RetryPolicy, SinkChanges,
    SinkHandle, SinkProbe, SinkRuntime,
};
pub use error::SinkError;
pub use sink::{AnySink, SinkLimits};
pub use slots::{SinkSlots, Slot};
pub use stats::{DropReason, LatencyHistogram, RequestOutcome, SinkStats, LATENCY_BUCKETS};
