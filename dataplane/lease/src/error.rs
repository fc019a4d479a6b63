//! Lease errors: the typed outcome of every store operation.
//!
//! `Lost` and `Conflict` are the expected results of a lost compare-and-set race and say
//! nothing about the health of the store; `Store` and `Corrupt` are transport or data
//! failures that a caller may retry (`Store`) or must surface to an operator (`Corrupt`).

/// The boxed source of a transport error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// No lease with this key exists.
    #[error("lease {key}: not found")]
    NotFound {
        /// The lease key.
        key: String,
    },
    /// A holder operation (renew, release, checkpoint, shard end) failed its compare-and-set:
    /// the counter moved or the owner is no longer the caller. The caller no longer holds
    /// the lease and must stop processing the shard at once.
    #[error("lease {key}: lost (counter or owner changed)")]
    Lost {
        /// The lease key.
        key: String,
    },
    /// A take, create or delete lost its compare-and-set race against another worker.
    #[error("lease {key}: conflict (counter changed)")]
    Conflict {
        /// The lease key.
        key: String,
    },
    /// The checkpoint was refused (moves backwards, or touches a finished shard).
    #[error("lease {key}: invalid checkpoint: {reason}")]
    InvalidCheckpoint {
        /// The lease key.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The store could not be reached or failed the request; the outcome may be unknown.
    #[error("lease store {op}: {source}")]
    Store {
        /// The store operation that failed.
        op: &'static str,
        /// The underlying transport or I/O error.
        #[source]
        source: BoxError,
    },
    /// The store holds data that does not decode as a lease.
    #[error("lease store data corrupt: {0}")]
    Corrupt(String),
}

impl LeaseError {
    /// Wraps a transport or I/O error from operation `op`.
    pub fn store(op: &'static str, source: impl Into<BoxError>) -> Self {
        LeaseError::Store {
            op,
            source: source.into(),
        }
    }

    /// True for the outcome of a lost race (`Lost` or `Conflict`), as opposed to a store fault.
    pub fn is_race(&self) -> bool {
        matches!(self, LeaseError::Lost { .. } | LeaseError::Conflict { .. })
    }

    /// True when the store itself failed (transport, I/O, corrupt data).
    pub fn is_transport(&self) -> bool {
        matches!(self, LeaseError::Store { .. } | LeaseError::Corrupt(_))
    }
}
