//! Sink errors say where they came from and whether a retry can help.

/// Outcome of a failed delivery.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A transient failure: the same chunk may succeed later.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The first `delivered` values went out; the rest may be retried.
    #[error("partial: {delivered} delivered, then: {reason}")]
    Partial {
        /// Values delivered before the failure.
        delivered: usize,
        /// What went wrong.
        reason: String,
    },
    /// The chunk can never succeed (bad configuration, rejected data).
    #[error("fatal: {0}")]
    Fatal(String),
}
