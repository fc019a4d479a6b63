//! Sink errors say where they came from and whether a retry can help.

use std::time::Duration;

/// Outcome of a failed delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A transient failure: the same request may succeed later (5xx, 408, 429 without
    /// `Retry-After`, timeouts, connection and TLS errors, local I/O errors).
    #[error("retryable: {0}")]
    Retryable(String),
    /// A transient failure with the vendor's `Retry-After` (429 or 503): wait that long
    /// (capped) before the next attempt.
    #[error("retryable after {after:?}: {reason}")]
    RetryAfter {
        /// What went wrong.
        reason: String,
        /// The wait the vendor asked for (already capped).
        after: Duration,
    },
    /// The vendor refused the data (a 4xx other than 408 and 429): never retried, counted as
    /// `rejected`.
    #[error("rejected with HTTP {status}: {reason}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The request and the first bytes of the response body.
        reason: String,
        /// The response body as read (up to 4 KiB), credentials redacted: what the sink's
        /// dead letters keep (empty when there is none).
        response: String,
    },
    /// The data can never be delivered (bad configuration, unparseable data).
    #[error("fatal: {0}")]
    Fatal(String),
}
