//! Delivery of one stream record to a worker's `to` sinks, the part every worker shares
//! whatever stream it reads (local log, Kinesis, Kafka).
//!
//! A record (one envelope) is decoded (`switchyard-stream`: rkyv in place, or SignalFx JSON),
//! turned into Datadog `/api/v1/series` payloads ([`crate::convert`]) and handed,
//! synchronously, to the worker's own instances of the `to` sinks ([`AnySink::handle`] with a
//! [`Ctx`] whose per-item tally it reads back). A payload a sink could not deliver (its
//! retries exhausted) is sent again to that sink only, after a backoff ([`REDELIVER_BASE`]
//! doubling to [`REDELIVER_CAP`]), until it is delivered or the caller's stop flag is raised:
//! a record is never skipped. Drops a retry cannot fix (rejected, unsupported...) are final.
//! A payload counts as received by a sink once, however often it is sent (a failed
//! attempt's values stay in flight). Each sink's circuit breaker (in its [`SinkStats`],
//! shared with the sink's live workers when the stats are the sink's, as for a spool's
//! replay) is respected: nothing is sent to a sink whose circuit is open, and the first
//! attempt after its open period is the probe that closes or reopens it. Nothing is sent
//! either while the sink's live queue is backlogged (`SinkStats::backlogged`, set by a
//! spilling sink's spiller): live traffic goes first.
//!
//! Calls block the calling thread (the sinks are synchronous); each worker (or, for Kinesis,
//! each shard) owns its [`Delivery`].
//!
//! Metrics: counted into [`WorkerStats`] (`batches_delivered`, `redeliveries`,
//! `decode_errors`, `misplaced_points`: series outside a Kinesis lease's hash range, left out;
//! see [`Delivery::with_hash_range`]) and into the `to` sinks' [`SinkStats`].

use crate::convert::{self, HashScope, PayloadLimits};
use crate::{WorkerError, WorkerStats};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::{Config, SinkConfig, WorkerConfig};
use switchyard_core::egress::Egress;
use switchyard_sinks::spool::Gate;
use switchyard_sinks::stats::SinkStats;
use switchyard_sinks::{AnySink, Ctx, RetryPolicy};
use switchyard_stream::StreamDecoder;

/// First wait before a failed payload is sent again.
pub const REDELIVER_BASE: Duration = Duration::from_millis(200);
/// Largest wait before a failed payload is sent again.
pub const REDELIVER_CAP: Duration = Duration::from_secs(30);
/// How often a delivery held by a sink's open circuit looks at it again.
pub const CIRCUIT_POLL: Duration = Duration::from_millis(200);

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every sink has it (or dropped it for good), or it could not be decoded (counted).
    Done,
    /// Stopped before every sink had it: the record must be read again.
    Aborted,
}

/// One `to` sink of a worker.
struct Target {
    name: String,
    sink: AnySink,
    stats: Arc<SinkStats>,
    policy: RetryPolicy,
}

/// How the sinks of a worker are built (shared by the workers' threads).
#[derive(Clone)]
pub struct TargetSpec {
    sinks: Vec<(String, SinkConfig, Arc<SinkStats>, RetryPolicy)>,
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sinks.iter().map(|(n, ..)| n))
            .finish()
    }
}

impl TargetSpec {
    /// The `to` sinks of worker `w` (named `name` in errors).
    ///
    /// # Errors
    /// A `to` sink the config does not have.
    pub fn new(
        cfg: &Config,
        w: &WorkerConfig,
        name: &str,
        stats_for: &dyn Fn(&str) -> Option<Arc<SinkStats>>,
        policy: &dyn Fn(&SinkConfig) -> RetryPolicy,
    ) -> Result<Self, WorkerError> {
        let mut sinks = Vec::new();
        for t in &w.to {
            let sc = cfg
                .sinks
                .get(t)
                .ok_or_else(|| WorkerError::Config(name.to_owned(), format!("no sink `{t}`")))?;
            sinks.push((
                t.clone(),
                sc.clone(),
                stats_for(t).unwrap_or_default(),
                policy(sc),
            ));
        }
        Ok(Self { sinks })
    }

    /// Builds one instance of every sink.
    ///
    /// # Errors
    /// A sink that cannot be built.
    pub fn build(&self, worker: &str) -> Result<Vec<TargetHandle>, WorkerError> {
        self.sinks
            .iter()
            .map(|(name, sc, stats, policy)| {
                let sink = AnySink::build(sc).map_err(|error| WorkerError::Sink {
                    worker: worker.to_owned(),
                    sink: name.clone(),
                    error,
                })?;
                Ok(TargetHandle(Target {
                    name: name.clone(),
                    sink,
                    stats: stats.clone(),
                    policy: *policy,
                }))
            })
            .collect()
    }
}

/// A built sink instance (opaque).
pub struct TargetHandle(Target);

/// Delivers records to one set of sink instances.
pub struct Delivery {
    worker: String,
    targets: Vec<Target>,
    stats: Arc<WorkerStats>,
    decoder: StreamDecoder,
    limits: PayloadLimits,
    scope: HashScope,
    /// Time spent in the sinks (sending) since [`Delivery::take_busy`] last read it.
    busy: Duration,
}

impl Delivery {
    /// Delivery for `worker` to `targets`, counting into `stats`.
    pub fn new(worker: &str, targets: Vec<TargetHandle>, stats: Arc<WorkerStats>) -> Self {
        let targets: Vec<Target> = targets.into_iter().map(|t| t.0).collect();
        let limits = PayloadLimits {
            max_series: targets
                .iter()
                .map(|t| t.sink.limits().max_series)
                .min()
                .unwrap_or(usize::MAX)
                .min(PayloadLimits::default().max_series),
            ..PayloadLimits::default()
        };
        Self {
            worker: worker.to_owned(),
            targets,
            stats,
            decoder: StreamDecoder::default(),
            limits,
            scope: HashScope::all(),
            busy: Duration::ZERO,
        }
    }

    /// Time spent sending (in the sinks' `handle`) since the last call: what a worker's
    /// `share` paces, without the time it waited for a circuit or a backoff.
    pub fn take_busy(&mut self) -> Duration {
        std::mem::take(&mut self.busy)
    }

    /// Delivers only the series whose partition hash lies in `start..=end` (a Kinesis
    /// lease's range); the others are counted in `misplaced_points` and left out.
    pub fn with_hash_range(mut self, start: u128, end: u128) -> Self {
        self.scope = HashScope::range(start, end);
        self
    }

    /// Delivers one record (`at` names it in logs) to every target, sending failed payloads
    /// again (to the sinks that failed them only) until all are delivered or `stop` is
    /// raised. Blocks the calling thread.
    pub fn deliver(
        &mut self,
        at: &dyn std::fmt::Display,
        record: &[u8],
        stop: &AtomicBool,
    ) -> Outcome {
        let payloads: Vec<Egress> = match self
            .decoder
            .decode(record)
            .map_err(|e| e.to_string())
            .and_then(|d| {
                convert::to_payloads(d, self.limits, &mut self.scope).map_err(|e| e.to_string())
            }) {
            Ok(p) => p,
            Err(e) => {
                add(&self.stats.decode_errors, 1);
                tracing::error!(worker = %self.worker, at = %at, error = %e,
                        "a record cannot be decoded: skipping it");
                return Outcome::Done;
            }
        };
        let misplaced = std::mem::take(&mut self.scope.misplaced_points);
        if misplaced > 0 {
            add(&self.stats.misplaced_points, misplaced);
            tracing::debug!(worker = %self.worker, at = %at, points = misplaced,
                "left out series outside the shard's hash range (put there during a reshard)");
        }
        // pending[t][p]: payload p still to deliver to target t; sent[t][p]: tried once
        // (counted received).
        let mut pending: Vec<Vec<bool>> = vec![vec![true; payloads.len()]; self.targets.len()];
        let mut sent: Vec<Vec<bool>> = vec![vec![false; payloads.len()]; self.targets.len()];
        let mut wait = REDELIVER_BASE;
        loop {
            let mut held = false;
            for ((t, todo), tried) in self.targets.iter_mut().zip(&mut pending).zip(&mut sent) {
                let ctx = Ctx::redelivering(&t.name, &t.stats, stop, t.policy);
                for ((p, left), tried) in payloads.iter().zip(todo.iter_mut()).zip(tried) {
                    if !*left {
                        continue;
                    }
                    // The sink's circuit (shared with its live workers): while it is open
                    // nothing is sent; when its period ends this attempt is the probe.
                    // Nor while the sink's live queue is backlogged (its spiller is
                    // moving items to the spool): live traffic goes first.
                    // (Checked first: asking the breaker may make this attempt its probe.)
                    if t.stats.backlogged.load(Ordering::Relaxed) {
                        held = true;
                        continue;
                    }
                    let gate = t.stats.breaker.gate(Instant::now());
                    if gate == Gate::Open {
                        held = true;
                        continue;
                    }
                    // Received once: a failed attempt's values stay in flight until a
                    // later one delivers them.
                    if *tried {
                        add(&self.stats.redeliveries, 1);
                    } else {
                        count_received(&t.stats, p);
                        *tried = true;
                    }
                    ctx.begin_item();
                    let sending = Instant::now();
                    t.sink.handle(p, &ctx);
                    self.busy += sending.elapsed();
                    let tally = ctx.item_tally();
                    *left = tally.dropped_retryable > 0;
                    if *left && tally.delivered == 0 {
                        t.stats
                            .breaker
                            .failure(Instant::now(), gate == Gate::Probe, &t.stats);
                    } else {
                        t.stats.breaker.success(&t.stats);
                    }
                }
                let _ = t.sink.flush();
            }
            if pending.iter().flatten().all(|l| !*l) {
                add(&self.stats.batches_delivered, 1);
                return Outcome::Done;
            }
            if stop.load(Ordering::Relaxed) {
                return Outcome::Aborted;
            }
            if held {
                // Waiting for a circuit: look again soon, without growing the backoff.
                pause(CIRCUIT_POLL, stop);
                continue;
            }
            tracing::warn!(worker = %self.worker, at = %at, wait_ms = wait.as_millis() as u64,
                "a sink could not take a record; sending it again after a pause");
            // The pause ends early once a sink's live traffic got through (its breaker
            // saw a success): the vendor takes data again.
            let seen: Vec<u64> = self
                .targets
                .iter()
                .map(|t| t.stats.breaker.successes())
                .collect();
            let until = Instant::now() + wait;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                let recovered = self
                    .targets
                    .iter()
                    .zip(&seen)
                    .any(|(t, s)| t.stats.breaker.successes() != *s);
                if recovered {
                    break;
                }
                pause(
                    CIRCUIT_POLL.min(until.saturating_duration_since(Instant::now())),
                    stop,
                );
            }
            wait = (wait * 2).min(REDELIVER_CAP);
        }
    }
}

/// Sleeps `d`, returning early once `stop` is raised.
pub fn pause(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// The driver's received counters for an item a worker hands a sink.
fn count_received(stats: &SinkStats, item: &Egress) {
    if let Egress::Payload(p) = item {
        SinkStats::add(&stats.payloads, 1);
        SinkStats::add(&stats.values_received, p.points);
        SinkStats::add(&stats.values_replayed, p.points);
        SinkStats::add(&stats.series_received, p.series);
    }
}

/// `fetch_add` for the worker counters.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
