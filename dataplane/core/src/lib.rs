//! Pure core of Switchyard: the metric model, the statsd/DogStatsD codec, gostatsd-compatible
//! aggregation, the forwarder-to-aggregator format (`forward`), wire encoders, HTTP body decoding and Datadog payload parsing (`intake`),
//! Datadog -> SignalFx translation (`translate`), the configuration schema, and the
//! bounded-memory statistics the control plane reads (`topk`, `distinct`).
//!
//! Nothing here knows about threads, sockets or async runtimes, so all of it is cheap to test,
//! fuzz and benchmark. The glommio shards (`switchyard-shard`) and the egress sinks
//! (`switchyard-sinks`) are built on top of it.

pub mod aggregate;
pub mod config;
pub mod distinct;
pub mod egress;
pub mod encode;
pub mod forward;
pub mod intake;
pub mod model;
pub mod route;
pub mod statsd;
pub mod telemetry;
pub mod topk;
pub mod translate;
