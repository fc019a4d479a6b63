//! Per-sink counters, written by the sink's worker threads and read by the control plane.
//!
//! Plain relaxed atomics (lock-free, shared by a sink's workers): each is incremented once per
//! queue item, chunk or request, never per value. The control plane renders them (see the
//! crate docs for the metric names).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Why values were dropped by a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Retries exhausted on a retryable error (5xx, 408, 429, timeouts, connection and TLS
    /// errors).
    RetriesExhausted,
    /// A fatal error (the data can never be delivered: an I/O setup error, an unparseable
    /// payload).
    Fatal,
    /// Shutdown deadline passed with the data still queued or being retried.
    Shutdown,
    /// The sink's encoding could not carry the value (for SignalFx: non-finite values,
    /// too many dimensions, unknown types).
    Translation,
    /// The vendor refused the request with a 4xx other than 408 and 429; never retried.
    Rejected,
    /// The sink does not carry this kind of payload (SignalFx: distribution points, events).
    Unsupported,
    /// A Datadog sink had no API key for the data: no `api_key_env` configured and no client
    /// key (statsd aggregates never have one).
    NoApiKey,
    /// Not lost: written to the sink's spool (`spill = true`) because the vendor did not take
    /// it (retries exhausted, circuit open, shutdown deadline); the spool's replay counts it
    /// received again when it sends it.
    Spilled,
    /// The vendor did not take it and the spool could not (full, or a write failed).
    SpoolFull,
}

impl DropReason {
    /// Every reason, in counter-slot order.
    pub const ALL: [DropReason; 9] = [
        DropReason::RetriesExhausted,
        DropReason::Fatal,
        DropReason::Shutdown,
        DropReason::Translation,
        DropReason::Rejected,
        DropReason::Unsupported,
        DropReason::NoApiKey,
        DropReason::Spilled,
        DropReason::SpoolFull,
    ];

    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Fatal => "fatal",
            DropReason::Shutdown => "shutdown",
            DropReason::Translation => "translation",
            DropReason::Rejected => "rejected",
            DropReason::Unsupported => "unsupported",
            DropReason::NoApiKey => "no_api_key",
            DropReason::Spilled => "spilled",
            DropReason::SpoolFull => "spool_full",
        }
    }
}

/// How one HTTP request attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// 2xx.
    Success,
    /// 5xx, 408 or 429: retried.
    Retryable,
    /// Any other status: the data is dropped (`rejected`).
    Rejected,
    /// No response: connection, TLS or timeout error (retried).
    Error,
}

impl RequestOutcome {
    /// Every outcome, in counter-slot order.
    pub const ALL: [RequestOutcome; 4] = [
        RequestOutcome::Success,
        RequestOutcome::Retryable,
        RequestOutcome::Rejected,
        RequestOutcome::Error,
    ];

    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Success => "success",
            RequestOutcome::Retryable => "retryable",
            RequestOutcome::Rejected => "rejected",
            RequestOutcome::Error => "error",
        }
    }
}

/// Upper bounds (seconds) of the request latency histogram buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A fixed-bucket latency histogram (non-cumulative slots; the last is `+Inf`).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket: slot `i` counts latencies in `(LATENCY_BUCKETS[i-1],
    /// LATENCY_BUCKETS[i]]`; the last slot counts those above the largest bound.
    pub buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observations, in microseconds.
    pub sum_micros: AtomicU64,
    /// Number of observations.
    pub count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(c) = self.buckets.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (Prometheus `_bucket{le}`), `+Inf` last.
    pub fn cumulative(&self) -> [u64; LATENCY_BUCKETS.len() + 1] {
        let mut out = [0; LATENCY_BUCKETS.len() + 1];
        let mut acc = 0;
        for (o, c) in out.iter_mut().zip(self.buckets.iter()) {
            acc += c.load(Ordering::Relaxed);
            *o = acc;
        }
        out
    }
}

/// Counters of stream sinks (Kinesis; zero for the others).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Write calls answered (`PutRecords`).
    pub calls: AtomicU64,
    /// Records put.
    pub records_put: AtomicU64,
    /// Records refused because the shard was over its throughput.
    pub records_throttled: AtomicU64,
    /// Records refused for another reason.
    pub records_failed: AtomicU64,
    /// User records (envelopes) inside the records put.
    pub user_records_put: AtomicU64,
    /// Bytes of the records put.
    pub bytes_put: AtomicU64,
    /// Shard map reloads.
    pub shard_refreshes: AtomicU64,
    /// Points of records a reshard put on a shard that does not hold their series, packed
    /// again for the right shard.
    pub points_moved: AtomicU64,
}

/// Counters of one sink (shared by its workers).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Statsd batches taken off the queue.
    pub batches: AtomicU64,
    /// HTTP intake payloads taken off the queue.
    pub payloads: AtomicU64,
    /// Values (points) received from the queue: one per batch series, a payload's points.
    pub values_received: AtomicU64,
    /// Of `values_received`, values handed to the sink by stream workers (its spool's
    /// replay, or workers sharing its ledger) rather than taken off its queue.
    pub values_replayed: AtomicU64,
    /// Series received from the queue (a payload's series, checks or events).
    pub series_received: AtomicU64,
    /// Values delivered.
    pub values_delivered: AtomicU64,
    /// Values dropped, by [`DropReason`] slot.
    pub values_dropped: [AtomicU64; DropReason::ALL.len()],
    /// Bytes written or sent, after compression (the wire).
    pub bytes: AtomicU64,
    /// Bytes of the delivered bodies before compression.
    pub bytes_uncompressed: AtomicU64,
    /// Delivery retries.
    pub retries: AtomicU64,
    /// HTTP request attempts, by [`RequestOutcome`] slot.
    pub requests: [AtomicU64; RequestOutcome::ALL.len()],
    /// HTTP request latency (every attempt, including failed ones).
    pub latency: LatencyHistogram,
    /// Bytes of payload bodies in the queue or being handled (a gauge: the shards add when
    /// they enqueue, the workers subtract when done).
    pub queued_bytes: AtomicU64,
    /// Payload body bytes (as accepted, before any re-encoding) taken off the queue.
    pub payload_bytes_received: AtomicU64,
    /// Payload body bytes whose values were delivered: a payload's body bytes are split
    /// between delivered and the drop reasons in proportion to its values.
    pub payload_bytes_delivered: AtomicU64,
    /// Payload body bytes dropped, by [`DropReason`] slot (the same split).
    pub payload_bytes_dropped: [AtomicU64; DropReason::ALL.len()],
    /// Failed HTTP request attempts since the last successful one (reset to 0 by a
    /// success): the control plane's sink health (`GET /readyz`).
    pub consecutive_failures: AtomicU64,
    /// Stream sink counters.
    pub stream: StreamStats,
    /// 1 while the sink's circuit is open (`spill = true`: items go to the spool).
    pub circuit_open: AtomicU64,
    /// Times the circuit opened.
    pub circuit_opens: AtomicU64,
    /// Bytes of the sink's spool files, as last seen by a spilling worker.
    pub spool_bytes: AtomicU64,
    /// True while a spilling sink's queue is backlogged (its spiller is moving queued items
    /// to the spool): the spool's replay waits, so live traffic goes first.
    pub backlogged: AtomicBool,
    /// The sink's circuit breaker: its spilling workers and its spool's replay share it.
    pub breaker: crate::spool::Breaker,
    /// The sink's dead letters (set once by the driver when the sink starts with a
    /// `state_dir`): every context delivering for the sink with these stats (its workers,
    /// stream workers, its spool's replay) keeps refused requests there.
    pub deadletter: std::sync::OnceLock<std::sync::Arc<crate::deadletter::DeadLetter>>,
    /// One-time log guards (by [`DropReason`] slot).
    pub(crate) logged: [AtomicBool; DropReason::ALL.len()],
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

    /// Values dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.values_dropped
            .get(reason as usize)
            .map_or(0, Self::get)
    }

    /// Counts one request attempt and its latency.
    pub fn request(&self, outcome: RequestOutcome, took: Duration) {
        if let Some(c) = self.requests.get(outcome as usize) {
            Self::add(c, 1);
        }
        if outcome == RequestOutcome::Success {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            Self::add(&self.consecutive_failures, 1);
        }
        self.latency.observe(took);
    }

    /// Request attempts that ended with `outcome`.
    pub fn requests(&self, outcome: RequestOutcome) -> u64 {
        self.requests.get(outcome as usize).map_or(0, Self::get)
    }

    /// True the first time it is called for `reason` (for one-time logs).
    pub(crate) fn first_time(&self, reason: DropReason) -> bool {
        self.logged
            .get(reason as usize)
            .is_some_and(|f| !f.swap(true, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_right_bucket_and_accumulates() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(200));
        h.observe(Duration::from_secs(60));
        let c = h.cumulative();
        assert_eq!(c[0], 2, "0.5 ms and 1 ms are <= 1 ms");
        assert_eq!(c[6], 2, "nothing up to 100 ms besides those");
        assert_eq!(c[7], 3, "200 ms <= 250 ms");
        assert_eq!(c[13], 3, "<= 30 s");
        assert_eq!(c[14], 4, "+Inf holds all");
        assert_eq!(SinkStats::get(&h.count), 4);
        assert_eq!(
            SinkStats::get(&h.sum_micros),
            500 + 1000 + 200_000 + 60_000_000
        );
    }

    #[test]
    fn consecutive_failures_count_up_and_a_success_resets_them() {
        let s = SinkStats::default();
        let d = Duration::from_millis(1);
        s.request(RequestOutcome::Retryable, d);
        s.request(RequestOutcome::Error, d);
        s.request(RequestOutcome::Rejected, d);
        assert_eq!(SinkStats::get(&s.consecutive_failures), 3);
        s.request(RequestOutcome::Success, d);
        assert_eq!(SinkStats::get(&s.consecutive_failures), 0);
        s.request(RequestOutcome::Retryable, d);
        assert_eq!(SinkStats::get(&s.consecutive_failures), 1);
    }

    #[test]
    fn one_time_guards_fire_once_per_reason() {
        let s = SinkStats::default();
        assert!(s.first_time(DropReason::Unsupported));
        assert!(!s.first_time(DropReason::Unsupported));
        assert!(s.first_time(DropReason::NoApiKey));
    }
}
