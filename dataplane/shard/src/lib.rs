//! Switchyard's thread-per-core dataplane: the only crate that knows glommio.
//!
//! One glommio `LocalExecutor` per shard, pinned to its CPU. Each shard owns a `SO_REUSEPORT`
//! UDP socket per listener (the kernel spreads datagrams across them), reads it in batches
//! with `recvmmsg` and parks on readiness when it is empty ([`recv`]), parses and aggregates
//! every line into its own [`IntervalAggregator`](switchyard_core::aggregate::IntervalAggregator)
//! ([`ingest`]). Every flush interval the shards exchange partial aggregates over a glommio
//! channel mesh so that one owner shard per series merges and emits it exactly once
//! ([`flush`]); the owner hands each routed sink's queue the series the routes send it
//! (decided per series, cached per shard), without blocking.
//! Each shard also serves the Datadog-compatible HTTP intake on its own `SO_REUSEPORT` TCP
//! socket ([`http`], hyper through one shim module): accepted payloads go to the sink
//! queues their series are routed to.
//!
//! Threading: per-shard state is plain data behind `Rc<RefCell<_>>`, never held across an
//! `.await`; the receive loop and the flush run in separate task queues, so the receive loop
//! never waits on a flush. Counters are published to the shared
//! [`Telemetry`](switchyard_core::telemetry::Telemetry) board about once a second.

pub mod flush;
pub mod http;
pub mod ingest;
pub mod plan;
pub mod recv;
pub mod runtime;
pub mod socket;

pub use plan::{Plan, PlanError};
pub use runtime::{start, Dataplane, StartError};
pub use switchyard_core::telemetry::Telemetry;
