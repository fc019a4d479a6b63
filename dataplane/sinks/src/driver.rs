//! The shared delivery driver: one thread per sink, fed by a bounded crossbeam queue.
//!
//! For each batch it delivers chunks within the sink's [`SinkLimits`](crate::SinkLimits),
//! retries retryable failures with capped exponential backoff and full jitter, resends only
//! the undelivered tail after a partial failure, and accounts every value as delivered or
//! dropped by reason. At shutdown the queue's senders are dropped, the driver drains what is
//! queued, and anything left when the deadline passes is counted as dropped (`shutdown`).

use crate::sink::{AnySink, Chunk};
use crate::stats::{DropReason, SinkStats};
use crate::SinkError;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::config::Config;
use switchyard_core::model::SeriesBatch;

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
            cap: Duration::from_secs(5),
        }
    }
}

/// The producer side of one sink, cloned into every shard.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    /// Sink name from the config.
    pub name: String,
    /// Bounded queue of batches.
    pub tx: Sender<Arc<SeriesBatch>>,
    /// The sink's counters.
    pub stats: Arc<SinkStats>,
}

/// The read-only view of a sink for the control plane (holds no sender, so it never keeps
/// a queue open at shutdown).
#[derive(Debug, Clone)]
pub struct SinkProbe {
    /// Sink name.
    pub name: String,
    /// The sink's counters.
    pub stats: Arc<SinkStats>,
    rx: Receiver<Arc<SeriesBatch>>,
}

impl SinkProbe {
    /// Batches waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.rx.len()
    }
    /// Queue capacity in batches.
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

/// Builds every sink the routes use and starts its driver thread.
///
/// # Errors
/// The first sink that could not be built, with its name.
pub fn spawn_sinks(cfg: &Config) -> Result<SinkRuntime, (String, SinkError)> {
    let abort = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let mut threads = Vec::new();
    let mut probes = Vec::new();
    for name in cfg.routed_sinks() {
        let Some(sc) = cfg.sinks.get(name) else {
            continue;
        };
        let sink = AnySink::build(sc).map_err(|e| (name.to_string(), e))?;
        let (tx, rx) = bounded(sc.queue_batches);
        let stats = Arc::new(SinkStats::default());
        probes.push(SinkProbe {
            name: name.to_string(),
            stats: stats.clone(),
            rx: rx.clone(),
        });
        let (st, ab, n) = (stats.clone(), abort.clone(), name.to_string());
        let t = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || run(n, sink, rx, st, ab, RetryPolicy::default()))
            .map_err(|e| {
                (
                    name.to_string(),
                    SinkError::Fatal(format!("spawning thread: {e}")),
                )
            })?;
        handles.push(SinkHandle {
            name: name.to_string(),
            tx,
            stats,
        });
        threads.push(t);
    }
    Ok(SinkRuntime {
        handles,
        probes,
        threads,
        abort,
    })
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

    /// Closes the queues (callers must have dropped their handle clones), lets the drivers
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

fn run(
    name: String,
    mut sink: AnySink,
    rx: Receiver<Arc<SeriesBatch>>,
    stats: Arc<SinkStats>,
    abort: Arc<AtomicBool>,
    policy: RetryPolicy,
) {
    let limit = sink.limits().max_series.max(1);
    loop {
        let batch = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => {
                let _ = sink.flush();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        SinkStats::add(&stats.batches, 1);
        SinkStats::add(&stats.values_received, batch.len() as u64);
        let mut start = 0;
        while start < batch.len() {
            let end = batch.len().min(start.saturating_add(limit));
            start = deliver_chunk(
                &name,
                &mut sink,
                Chunk {
                    batch: &batch,
                    start,
                    end,
                },
                &stats,
                &abort,
                &policy,
            );
        }
        if rx.is_empty() {
            let _ = sink.flush();
        }
    }
    let _ = sink.flush();
}

/// Delivers one chunk with retries; returns the index after the last value accounted for.
fn deliver_chunk(
    name: &str,
    sink: &mut AnySink,
    mut chunk: Chunk<'_>,
    stats: &SinkStats,
    abort: &AtomicBool,
    policy: &RetryPolicy,
) -> usize {
    let mut attempt = 0;
    loop {
        if abort.load(Ordering::Relaxed) {
            stats.drop_values(DropReason::Shutdown, chunk.len() as u64);
            return chunk.end;
        }
        match sink.deliver(chunk) {
            Ok(bytes) => {
                let dropped = sink.last_encode_drops().min(chunk.len() as u64);
                stats.drop_values(DropReason::Translation, dropped);
                SinkStats::add(&stats.values_delivered, chunk.len() as u64 - dropped);
                SinkStats::add(&stats.bytes, bytes);
                return chunk.end;
            }
            Err(SinkError::Fatal(msg)) => {
                tracing::error!(sink = name, error = %msg, values = chunk.len(), "dropping chunk");
                stats.drop_values(DropReason::Fatal, chunk.len() as u64);
                return chunk.end;
            }
            Err(e) => {
                if let SinkError::Partial { delivered, .. } = &e {
                    let d = (*delivered).min(chunk.len());
                    SinkStats::add(&stats.values_delivered, d as u64);
                    chunk.start += d;
                }
                if attempt >= policy.max_retries {
                    tracing::error!(sink = name, error = %e, values = chunk.len(), "retries exhausted");
                    stats.drop_values(DropReason::RetriesExhausted, chunk.len() as u64);
                    return chunk.end;
                }
                tracing::warn!(sink = name, error = %e, attempt, "delivery failed, retrying");
                SinkStats::add(&stats.retries, 1);
                sleep_unless_aborted(backoff(policy, attempt), abort);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::model::SeriesType;

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
        h.tx.send(batch(3)).unwrap();
        h.tx.send(batch(2)).unwrap();
        let stats = h.stats.clone();
        drop(h);
        assert!(rt.shutdown(Duration::from_secs(5)));
        assert_eq!(SinkStats::get(&stats.values_received), 5);
        assert_eq!(SinkStats::get(&stats.values_delivered), 5);
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
    fn backoff_is_capped() {
        let p = RetryPolicy::default();
        for a in 0..40 {
            assert!(backoff(&p, a) <= p.cap);
        }
    }
}
