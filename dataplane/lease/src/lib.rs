//! KCL-style leases for Switchyard's stream workers.
//!
//! A lease is one worker's right to process one shard (Kinesis shard, Kafka partition or
//! local-log partition). Every change is a compare-and-set on the lease's counter, which is
//! also the fencing token for checkpoints; expiry is observed with each worker's own
//! monotonic clock; workers balance to `ceil(leases / workers)`; child shards wait for their
//! parents to reach `ShardEnd`. See `docs/LEASES.md`.
//!
//! - [`lease`]: the record and its state transitions.
//! - [`store`]: the [`LeaseStore`] trait (async, tokio) and the memory, local-file and
//!   (feature `dynamodb`) DynamoDB stores.
//! - [`coordinator`]: the per-worker algorithm, with an injectable [`Clock`].
//!
//! This crate knows nothing of Kinesis, Kafka or the local log; their readers use it.

pub mod clock;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod lease;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::LeaseConfig;
pub use coordinator::{
    parents_finished, run_shared, ChildShard, Coordinator, HeldLease, LeaseCounters,
    ShardEndOutcome, TickReport,
};
pub use error::LeaseError;
pub use lease::{Checkpoint, HashRange, Lease, Mutation, SequenceNumber};
pub use store::file::FileStore;
pub use store::memory::MemoryStore;
pub use store::{AnyStore, LeaseStore};

#[cfg(feature = "dynamodb")]
pub use store::dynamodb::DynamoDbStore;
