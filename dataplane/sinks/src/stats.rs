//! Per-sink counters, written by the sink's own thread and read by the control plane.
//!
//! These live on the egress threads, not on the shards, so plain relaxed atomics are used:
//! each is incremented once per chunk, never per value.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why values were dropped by a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Retries exhausted on a retryable error.
    RetriesExhausted,
    /// A fatal error (the data can never be delivered).
    Fatal,
    /// Shutdown deadline passed with the batch still queued.
    Shutdown,
    /// The sink's encoding could not carry the value (for SignalFx: non-finite values,
    /// too many dimensions).
    Translation,
}

impl DropReason {
    /// Every reason, in counter-slot order.
    pub const ALL: [DropReason; 4] = [
        DropReason::RetriesExhausted,
        DropReason::Fatal,
        DropReason::Shutdown,
        DropReason::Translation,
    ];

    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Fatal => "fatal",
            DropReason::Shutdown => "shutdown",
            DropReason::Translation => "translation",
        }
    }
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Batches taken off the queue.
    pub batches: AtomicU64,
    /// Values received from the queue.
    pub values_received: AtomicU64,
    /// Values delivered.
    pub values_delivered: AtomicU64,
    /// Values dropped, by [`DropReason`] slot.
    pub values_dropped: [AtomicU64; 4],
    /// Encoded bytes written.
    pub bytes: AtomicU64,
    /// Delivery retries.
    pub retries: AtomicU64,
}

impl SinkStats {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Counts dropped values.
    pub fn drop_values(&self, reason: DropReason, n: u64) {
        if let Some(c) = self.values_dropped.get(reason as usize) {
            Self::add(c, n);
        }
    }
}
