//! The shared delivery driver: per sink, a bounded crossbeam queue of [`Egress`] items and
//! its worker threads.
//!
//! HTTP sinks (`datadog`, `signalfx`) run `max_in_flight` workers sharing the sink's queue
//! (crossbeam is MPMC), each with its own sink instance (client, compressor, buffers), so at
//! most `max_in_flight` requests are in flight per sink. `file`, `stdout` and `blackhole` run
//! one worker. Every sink has its own queue and workers: a slow or failing vendor never
//! delays another sink.
//!
//! [`Ctx::deliver`] sends one request's worth of values with retries: capped exponential
//! backoff with full jitter, or the vendor's `Retry-After` (capped), up to `max_retries`; it
//! accounts every value as delivered or dropped by reason. At shutdown the queue's senders
//! are dropped and the workers drain what is queued; anything left when the deadline passes
//! (queued, or waiting for a retry) is counted as dropped (`shutdown`).

use crate::sink::AnySink;
use crate::stats::{DropReason, SinkStats};
use crate::SinkError;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::config::{Config, SinkConfig, SinkKind};
use switchyard_core::egress::Egress;

/// Retry policy of the driver.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// First backoff.
    pub base: Duration,
    /// Largest backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The policy of a sink: `max_retries` from its config for HTTP sinks.
    pub fn for_sink(sc: &SinkConfig) -> Self {
        match sc.kind() {
            SinkKind::Datadog(s) => Self {
                max_retries: s.http.max_retries,
                ..Self::default()
            },
            SinkKind::Signalfx(s) => Self {
                max_retries: s.http.max_retries,
                ..Self::default()
            },
            _ => Self::default(),
        }
    }
}

/// The producer side of one sink, cloned into every shard.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    /// Sink name from the config.
    pub name: String,
    /// Bounded queue of batches and payloads.
    pub tx: Sender<Egress>,
    /// The sink's counters.
    pub stats: Arc<SinkStats>,
    /// Most payload body bytes queued at once (`queue_max_bytes`).
    pub queue_max_bytes: u64,
}

impl SinkHandle {
    /// Reserves room for a payload of `bytes` bytes: false (nothing reserved) when the queue
    /// is full in items or in bytes. A reservation is released by the worker that handles
    /// the payload, or by [`SinkHandle::release`] if the enqueue then fails.
    pub fn reserve(&self, bytes: u64) -> bool {
        if self.tx.capacity().is_some_and(|c| self.tx.len() >= c) {
            return false;
        }
        let before = self.stats.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.queue_max_bytes && before > 0 {
            self.release(bytes);
            return false;
        }
        true
    }

    /// Releases a reservation.
    pub fn release(&self, bytes: u64) {
        self.stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The read-only view of a sink for the control plane (holds no sender, so it never keeps
/// a queue open at shutdown).
#[derive(Debug, Clone)]
pub struct SinkProbe {
    /// Sink name.
    pub name: String,
    /// The sink's counters.
    pub stats: Arc<SinkStats>,
    /// `queue_max_bytes`.
    pub queue_max_bytes: u64,
    rx: Receiver<Egress>,
}

impl SinkProbe {
    /// Items (batches and payloads) waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.rx.len()
    }
    /// Queue capacity in items.
    pub fn queue_capacity(&self) -> usize {
        self.rx.capacity().unwrap_or(0)
    }
}

/// The running sinks.
#[derive(Debug)]
pub struct SinkRuntime {
    handles: Vec<SinkHandle>,
    probes: Vec<SinkProbe>,
    threads: Vec<JoinHandle<()>>,
    abort: Arc<AtomicBool>,
}

/// Builds every sink the routes use and starts its workers.
///
/// # Errors
/// The first sink that could not be built, with its name.
pub fn spawn_sinks(cfg: &Config) -> Result<SinkRuntime, (String, SinkError)> {
    spawn_sinks_with(cfg, RetryPolicy::for_sink)
}

/// [`spawn_sinks`] with a chosen retry policy per sink (tests use short backoffs).
///
/// # Errors
/// The first sink that could not be built, with its name.
pub fn spawn_sinks_with(
    cfg: &Config,
    policy: impl Fn(&SinkConfig) -> RetryPolicy,
) -> Result<SinkRuntime, (String, SinkError)> {
    let abort = Arc::new(AtomicBool::new(false));
    let mut rt = SinkRuntime {
        handles: Vec::new(),
        probes: Vec::new(),
        threads: Vec::new(),
        abort: abort.clone(),
    };
    for name in cfg.routed_sinks() {
        let Some(sc) = cfg.sinks.get(name) else {
            continue;
        };
        let workers = match sc.kind() {
            SinkKind::Datadog(s) => s.http.max_in_flight,
            SinkKind::Signalfx(s) => s.http.max_in_flight,
            _ => 1,
        }
        .max(1);
        let (tx, rx) = bounded(sc.queue_batches);
        let stats = Arc::new(SinkStats::default());
        let pol = policy(sc);
        for w in 0..workers {
            let sink = AnySink::build(sc).map_err(|e| (name.to_string(), e))?;
            let worker = Worker {
                name: name.to_string(),
                rx: rx.clone(),
                stats: stats.clone(),
                abort: abort.clone(),
                policy: pol,
            };
            let t = std::thread::Builder::new()
                .name(format!("sink-{name}-{w}"))
                .spawn(move || worker.run(sink))
                .map_err(|e| {
                    (
                        name.to_string(),
                        SinkError::Fatal(format!("spawning thread: {e}")),
                    )
                })?;
            rt.threads.push(t);
        }
        rt.probes.push(SinkProbe {
            name: name.to_string(),
            stats: stats.clone(),
            queue_max_bytes: sc.queue_max_bytes,
            rx,
        });
        rt.handles.push(SinkHandle {
            name: name.to_string(),
            tx,
            stats,
            queue_max_bytes: sc.queue_max_bytes,
        });
    }
    Ok(rt)
}

impl SinkRuntime {
    /// Producer handles, in the order shards index them.
    pub fn handles(&self) -> &[SinkHandle] {
        &self.handles
    }

    /// Read-only views for the control plane.
    pub fn probes(&self) -> &[SinkProbe] {
        &self.probes
    }

    /// Closes the queues (callers must have dropped their handle clones), lets the workers
    /// drain within `deadline`, then aborts what is left. Returns whether all drained in time.
    pub fn shutdown(self, deadline: Duration) -> bool {
        let SinkRuntime {
            handles,
            probes,
            threads,
            abort,
        } = self;
        drop(probes);
        drop(handles);
        let until = Instant::now() + deadline;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let clean = threads.iter().all(JoinHandle::is_finished);
        abort.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        clean
    }
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.base.saturating_mul(1u32 << attempt.min(16));
    let max = exp.min(policy.cap);
    // Full jitter: uniform in [0, max].
    let ms = rand::thread_rng().gen_range(0..=max.as_millis() as u64);
    Duration::from_millis(ms)
}

fn sleep_unless_aborted(d: Duration, abort: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !abort.load(Ordering::Relaxed) {
        std::thread::sleep(
            Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())),
        );
    }
}

struct Worker {
    name: String,
    rx: Receiver<Egress>,
    stats: Arc<SinkStats>,
    abort: Arc<AtomicBool>,
    policy: RetryPolicy,
}

impl Worker {
    fn run(self, mut sink: AnySink) {
        let ctx = Ctx {
            name: &self.name,
            stats: &self.stats,
            abort: &self.abort,
            policy: self.policy,
        };
        loop {
            let item = match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(i) => i,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = sink.flush();
                    // Past the shutdown deadline a producer may still be alive (a stuck
                    // client connection): stop waiting for it.
                    if self.abort.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match &item {
                Egress::Series(b) => {
                    SinkStats::add(&self.stats.batches, 1);
                    SinkStats::add(&self.stats.values_received, b.len() as u64);
                    SinkStats::add(&self.stats.series_received, b.len() as u64);
                }
                Egress::Payload(p) => {
                    SinkStats::add(&self.stats.payloads, 1);
                    SinkStats::add(&self.stats.values_received, p.points);
                    SinkStats::add(&self.stats.series_received, p.series);
                }
            }
            sink.handle(&item, &ctx);
            if let Egress::Payload(p) = &item {
                self.stats
                    .queued_bytes
                    .fetch_sub(p.body.bytes.len() as u64, Ordering::Relaxed);
            }
            if self.rx.is_empty() {
                let _ = sink.flush();
            }
        }
        let _ = sink.flush();
    }
}

/// What a sink needs from the driver while it handles one queue item.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Sink name (for logs).
    pub name: &'a str,
    /// The sink's counters.
    pub stats: &'a SinkStats,
    abort: &'a AtomicBool,
    policy: RetryPolicy,
}

impl Ctx<'_> {
    /// Counts `n` values as dropped for `reason`; logs `why` the first time this sink drops
    /// for that reason (at `info` for `unsupported`, `error` otherwise).
    pub fn drop_once_logged(&self, reason: DropReason, n: u64, why: &str) {
        self.stats.drop_values(reason, n);
        if self.stats.first_time(reason) {
            if reason == DropReason::Unsupported {
                tracing::info!(
                    sink = self.name,
                    reason = reason.as_str(),
                    "{why} (logged once)"
                );
            } else {
                tracing::error!(
                    sink = self.name,
                    reason = reason.as_str(),
                    "{why} (logged once)"
                );
            }
        }
    }

    /// Delivers one request's worth of `values` (`raw` bytes before compression): calls
    /// `attempt` (which returns the bytes sent) until it succeeds, fails for good, runs out
    /// of retries or the runtime aborts, and accounts the values. Returns whether they were
    /// delivered.
    pub fn deliver(
        &self,
        values: u64,
        raw: u64,
        mut attempt: impl FnMut() -> Result<u64, SinkError>,
    ) -> bool {
        let stats = self.stats;
        let name = self.name;
        let mut n = 0;
        loop {
            if self.abort.load(Ordering::Relaxed) {
                stats.drop_values(DropReason::Shutdown, values);
                return false;
            }
            match attempt() {
                Ok(sent) => {
                    SinkStats::add(&stats.values_delivered, values);
                    SinkStats::add(&stats.bytes, sent);
                    SinkStats::add(&stats.bytes_uncompressed, raw);
                    return true;
                }
                Err(SinkError::Fatal(msg)) => {
                    tracing::error!(sink = name, error = %msg, values, "dropping data");
                    stats.drop_values(DropReason::Fatal, values);
                    return false;
                }
                Err(SinkError::Rejected { status, reason }) => {
                    tracing::error!(sink = name, status, response = %reason, values,
                        "vendor rejected the data; dropping it (not retried)");
                    stats.drop_values(DropReason::Rejected, values);
                    return false;
                }
                Err(e) => {
                    if n >= self.policy.max_retries {
                        tracing::error!(sink = name, error = %e, values, "retries exhausted");
                        stats.drop_values(DropReason::RetriesExhausted, values);
                        return false;
                    }
                    let wait = match &e {
                        SinkError::RetryAfter { after, .. } => *after,
                        _ => backoff(&self.policy, n),
                    };
                    tracing::warn!(sink = name, error = %e, attempt = n, wait_ms = wait.as_millis() as u64,
                        "delivery failed, retrying");
                    SinkStats::add(&stats.retries, 1);
                    sleep_unless_aborted(wait, self.abort);
                    n += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::model::{SeriesBatch, SeriesType};

    fn batch(n: usize) -> Arc<SeriesBatch> {
        let mut b = SeriesBatch::new(1_700_000_000, 10.0);
        for i in 0..n {
            let id = b.identity(&format!("m{i}"), ["a:b"], "h");
            b.push(id, "", SeriesType::Gauge, i as f64);
        }
        Arc::new(b)
    }

    #[test]
    fn file_sink_receives_every_value_and_accounts_for_it() {
        let dir = std::env::temp_dir().join(format!("sy-sink-{}", std::process::id()));
        let path = dir.join("nested/out.ndjson");
        let src = format!(
            "[sinks.f]\ntype = \"file\"\npath = \"{}\"\nqueue_batches = 4\n[[routes]]\nname = \"r\"\nto = [\"f\"]\n",
            path.display()
        );
        let cfg = Config::from_toml(&src).unwrap();
        let rt = spawn_sinks(&cfg).unwrap();
        let h = rt.handles()[0].clone();
        h.tx.send(Egress::Series(batch(3))).unwrap();
        h.tx.send(Egress::Series(batch(2))).unwrap();
        let stats = h.stats.clone();
        drop(h);
        assert!(rt.shutdown(Duration::from_secs(5)));
        assert_eq!(SinkStats::get(&stats.values_received), 5);
        assert_eq!(SinkStats::get(&stats.values_delivered), 5);
        assert_eq!(SinkStats::get(&stats.batches), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[2]["metric"], "m2");
        assert_eq!(lines[2]["points"][0][1], 2.0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn shutdown_returns_even_while_a_producer_is_still_alive() {
        let src = "[sinks.b]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"b\"]\n";
        let rt = spawn_sinks(&Config::from_toml(src).unwrap()).unwrap();
        // A producer that never goes away (a stuck connection on a shard).
        let leaked = rt.handles()[0].clone();
        assert!(!rt.shutdown(Duration::from_millis(300)));
        drop(leaked);
    }

    #[test]
    fn backoff_is_capped() {
        let p = RetryPolicy::default();
        for a in 0..40 {
            assert!(backoff(&p, a) <= p.cap);
        }
    }

    fn ctx<'a>(stats: &'a SinkStats, abort: &'a AtomicBool, max_retries: u32) -> Ctx<'a> {
        Ctx {
            name: "t",
            stats,
            abort,
            policy: RetryPolicy {
                max_retries,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
        }
    }

    #[test]
    fn deliver_retries_then_accounts_each_outcome() {
        let stats = SinkStats::default();
        let abort = AtomicBool::new(false);
        let c = ctx(&stats, &abort, 2);
        let mut calls = 0;
        assert!(c.deliver(7, 100, || {
            calls += 1;
            if calls < 3 {
                Err(SinkError::Retryable("503".into()))
            } else {
                Ok(40)
            }
        }));
        assert_eq!(calls, 3);
        assert_eq!(SinkStats::get(&stats.retries), 2);
        assert_eq!(SinkStats::get(&stats.values_delivered), 7);
        assert_eq!(
            (
                SinkStats::get(&stats.bytes),
                SinkStats::get(&stats.bytes_uncompressed)
            ),
            (40, 100)
        );

        let mut calls = 0;
        assert!(!c.deliver(5, 1, || {
            calls += 1;
            Err(SinkError::Retryable("503".into()))
        }));
        assert_eq!(calls, 3, "first attempt plus max_retries");
        assert_eq!(stats.dropped(DropReason::RetriesExhausted), 5);

        let mut calls = 0;
        assert!(!c.deliver(4, 1, || {
            calls += 1;
            Err(SinkError::Rejected {
                status: 400,
                reason: "bad".into(),
            })
        }));
        assert_eq!(calls, 1, "a rejection is never retried");
        assert_eq!(stats.dropped(DropReason::Rejected), 4);

        abort.store(true, Ordering::Relaxed);
        assert!(!c.deliver(3, 1, || Ok(1)));
        assert_eq!(stats.dropped(DropReason::Shutdown), 3);
    }
}
