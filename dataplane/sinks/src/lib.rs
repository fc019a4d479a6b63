//! The egress side of Switchyard: sinks, their bounded queues, and the one delivery driver
//! they share.
//!
//! Shards hand each flushed [`SeriesBatch`](switchyard_core::model::SeriesBatch) (behind an
//! `Arc`, shared by every sink it is routed to) to a sink's bounded crossbeam queue with
//! `try_send`: a full queue drops the batch and the shard counts it, so a slow sink never
//! blocks a shard. Each sink runs on its own thread, driven by [`driver`]: it delivers each
//! batch in chunks within the sink's limits, retries what can be retried with exponential
//! backoff and jitter, and accounts every value as delivered or dropped by reason.
//!
//! Components are a closed enum ([`AnySink`]) dispatched by `match`.
//!
//! ## Adding a sink
//! 1. Add a module under `sink/` with a config-built struct and `deliver(&mut self, chunk)`
//!    returning [`SinkError`] that says whether a retry can help.
//! 2. Add a variant to [`AnySink`] and to `SinkKind` in `switchyard-core`'s config, with
//!    validation and a documented example in the default config.
//! 3. Declare its limits ([`SinkLimits`]) and test it against a real server (or a wire-level
//!    fake only where no real server can produce the failure).
//! 4. List its metrics in the module's `//!` doc.
//!
//! Metrics (per sink, label `sink`; rendered by the control plane):
//! `switchyard_sink_enqueued_values_total`, `switchyard_sink_enqueued_batches_total` (counted
//! by the shards), `switchyard_sink_delivered_values_total`,
//! `switchyard_sink_dropped_values_total{reason=queue_full|retries_exhausted|fatal|shutdown|translation}`,
//! `switchyard_sink_bytes_total`, `switchyard_sink_retries_total`,
//! `switchyard_sink_queue_depth_batches`, `switchyard_sink_queue_capacity_batches`.

pub mod driver;
pub mod error;
pub mod sink;
pub mod stats;

pub use driver::{spawn_sinks, SinkHandle, SinkProbe, SinkRuntime};
pub use error::SinkError;
pub use sink::{AnySink, SinkLimits};
pub use stats::{DropReason, SinkStats};
