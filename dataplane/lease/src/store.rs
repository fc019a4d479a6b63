//! The lease store contract and its implementations.
//!
//! Every mutation is a compare-and-set on the lease counter and increments it; the counter is
//! the fencing token the data path carries. The trait is async (`Send` futures) because the
//! worker runtime is tokio and the DynamoDB client is async; the memory store completes
//! immediately and the file store runs its blocking `flock`/`fsync` work on tokio's blocking
//! pool. [`AnyStore`] is the closed set of stores, chosen from config and dispatched by
//! `match`.

pub mod file;
pub mod memory;

#[cfg(feature = "dynamodb")]
pub mod dynamodb;

use std::future::Future;

use crate::error::LeaseError;
use crate::lease::{Checkpoint, Lease, Mutation};

/// Where leases live. Implementations must make each `update` and `delete` atomic with
/// respect to every other worker using the same store.
pub trait LeaseStore: Send + Sync {
    /// Creates `lease` unless a lease with its key exists; true if it was created.
    ///
    /// # Errors
    /// Transport errors only; an existing lease is `Ok(false)`.
    fn create_if_absent(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Every lease in the store, ordered by key.
    ///
    /// # Errors
    /// Transport or decode errors.
    fn list(&self) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;

    /// One lease by key.
    ///
    /// # Errors
    /// Transport or decode errors; a missing lease is `Ok(None)`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;

    /// Applies `mutation` for `worker` if the lease's counter is still `expected` (and, for
    /// holder operations, its owner is `worker`); returns the lease as written.
    ///
    /// # Errors
    /// `Lost`/`Conflict` on a lost race (see [`Mutation::apply`]), `NotFound`,
    /// `InvalidCheckpoint`, or a transport error.
    fn update(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        mutation: Mutation,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Deletes the lease if its counter is still `expected`.
    ///
    /// # Errors
    /// `Conflict` if the counter moved, `NotFound`, or a transport error.
    fn delete(
        &self,
        key: &str,
        expected: u64,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Renews `worker`'s lease. # Errors: as [`LeaseStore::update`] (`Lost` = lease lost).
    fn renew(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
        self.update(key, worker, expected, Mutation::Renew)
    }

    /// Takes (or steals) the lease for `worker`. # Errors: as [`LeaseStore::update`].
    fn take(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
        self.update(key, worker, expected, Mutation::Take)
    }

    /// Releases `worker`'s lease (owner cleared). # Errors: as [`LeaseStore::update`].
    fn release(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
        self.update(key, worker, expected, Mutation::Release)
    }

    /// Checkpoints `worker`'s lease, fenced by the counter. # Errors: as [`LeaseStore::update`].
    fn checkpoint(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        checkpoint: Checkpoint,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
        self.update(key, worker, expected, Mutation::Checkpoint(checkpoint))
    }

    /// Marks the shard finished and records its children (child leases are created by the
    /// caller, see [`crate::Coordinator::mark_shard_end`]). # Errors: as [`LeaseStore::update`].
    fn mark_shard_end(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        children: Vec<String>,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
        self.update(key, worker, expected, Mutation::ShardEnd { children })
    }
}

/// The configured lease store (closed set, dispatched by `match`).
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// In-process (tests, single-process runs).
    Memory(memory::MemoryStore),
    /// A JSON file shared by the processes of one host.
    File(file::FileStore),
    /// A DynamoDB table with KCL's layout.
    #[cfg(feature = "dynamodb")]
    DynamoDb(dynamodb::DynamoDbStore),
}

impl LeaseStore for AnyStore {
    async fn create_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        match self {
            AnyStore::Memory(s) => s.create_if_absent(lease).await,
            AnyStore::File(s) => s.create_if_absent(lease).await,
            #[cfg(feature = "dynamodb")]
            AnyStore::DynamoDb(s) => s.create_if_absent(lease).await,
        }
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        match self {
            AnyStore::Memory(s) => s.list().await,
            AnyStore::File(s) => s.list().await,
            #[cfg(feature = "dynamodb")]
            AnyStore::DynamoDb(s) => s.list().await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        match self {
            AnyStore::Memory(s) => s.get(key).await,
            AnyStore::File(s) => s.get(key).await,
            #[cfg(feature = "dynamodb")]
            AnyStore::DynamoDb(s) => s.get(key).await,
        }
    }

    async fn update(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        mutation: Mutation,
    ) -> Result<Lease, LeaseError> {
        match self {
            AnyStore::Memory(s) => s.update(key, worker, expected, mutation).await,
            AnyStore::File(s) => s.update(key, worker, expected, mutation).await,
            #[cfg(feature = "dynamodb")]
            AnyStore::DynamoDb(s) => s.update(key, worker, expected, mutation).await,
        }
    }

    async fn delete(&self, key: &str, expected: u64) -> Result<(), LeaseError> {
        match self {
            AnyStore::Memory(s) => s.delete(key, expected).await,
            AnyStore::File(s) => s.delete(key, expected).await,
            #[cfg(feature = "dynamodb")]
            AnyStore::DynamoDb(s) => s.delete(key, expected).await,
        }
    }
}
