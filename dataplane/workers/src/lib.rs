//! Stream workers (`[[workers]]`): read batches back from a stream and deliver them to
//! sinks, at least once.
//!
//! - [`deliver`]: what every worker does with a record: decode the envelope, turn the batch
//!   into Datadog `/api/v1/series` payloads ([`convert`]) and hand them to the worker's own
//!   instances of its `to` sinks, sending a failed payload again (to that sink only) until
//!   it is delivered: a record is never skipped.
//! - [`local_log`]: the local-log worker (consumer offsets in the log).
//! - [`kinesis`]: the Kinesis worker (one lease per shard, `switchyard-lease`).
//! - `kafka` (cargo feature `kafka`): the Kafka worker (a consumer-group member,
//!   `switchyard-kafka`; offsets committed after delivery).
//!
//! At least once: a position (consumer offset, lease checkpoint) is committed only after
//! every `to` sink delivered every payload of every record before it (or dropped it for a
//! reason a retry cannot fix: rejected, unsupported, no API key...).
//!
//! Shutdown ([`WorkerRuntime::shutdown`], after the sinks drained what the shards sent):
//! each worker delivers what it can, commits and exits; at the deadline the in-flight record
//! is abandoned (not committed: it is read again at the next start).
//!
//! Metrics (per worker, label `worker` = its consumer name; rendered by the control plane
//! from [`WorkerProbe`]): `switchyard_worker_records_read_total`,
//! `switchyard_worker_batches_delivered_total` (records every sink delivered),
//! `switchyard_worker_redeliveries_total` (payloads sent again after a failure),
//! `switchyard_worker_decode_errors_total` (records that cannot be decoded: counted,
//! logged, skipped), `switchyard_worker_lag_records` (records behind the durable end),
//! `switchyard_worker_committed_offset`, `switchyard_worker_read_errors_total` (failed
//! stream reads, retried) and `switchyard_worker_leases_held` (Kinesis).

pub mod convert;
pub mod deliver;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kinesis;
pub mod local_log;

use deliver::{Delivery, TargetSpec};
use local_log::LogWorker;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::config::{Config, SinkConfig, SinkKind, WorkerConfig};
use switchyard_sinks::sink::local_log::LogService;
use switchyard_sinks::stats::SinkStats;
use switchyard_sinks::{RetryPolicy, SinkError};

/// Why workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A worker reads a stream kind this build cannot consume yet.
    #[error("worker {0}: reading `{1}` sinks is not available in this build yet")]
    Unsupported(String, &'static str),
    /// A sink could not be built or the log opened.
    #[error("worker {worker}: sink `{sink}`: {error}")]
    Sink {
        /// The worker.
        worker: String,
        /// The sink.
        sink: String,
        /// Why.
        error: SinkError,
    },
    /// A config reference that validation should have caught.
    #[error("worker {0}: {1}")]
    Config(String, String),
    /// The thread could not be spawned.
    #[error("worker {0}: spawning its thread: {1}")]
    Spawn(String, std::io::Error),
}

/// A worker's counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Records read from the log.
    pub records_read: AtomicU64,
    /// Records delivered to every `to` sink.
    pub batches_delivered: AtomicU64,
    /// Payloads sent again to a sink after it failed them.
    pub redeliveries: AtomicU64,
    /// Records that could not be decoded (skipped).
    pub decode_errors: AtomicU64,
    /// Records behind the durable end of the log.
    pub lag: AtomicU64,
    /// The committed offset.
    pub committed: AtomicU64,
    /// Failed stream reads (Kinesis calls), retried.
    pub read_errors: AtomicU64,
    /// Leases held (Kinesis).
    pub leases_held: AtomicU64,
    /// Points of series outside the hash range of the shard they were read from, left out
    /// (Kinesis: a producer put them there during a reshard and sent them again to the
    /// shard that holds them).
    pub misplaced_points: AtomicU64,
}

impl WorkerStats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The control plane's view of one worker.
#[derive(Debug, Clone)]
pub struct WorkerProbe {
    /// Consumer name (`<from>.<id>`).
    pub name: String,
    /// The stream sink it reads.
    pub from: String,
    /// The sinks it delivers to.
    pub to: Vec<String>,
    /// Its counters.
    pub stats: Arc<WorkerStats>,
}

impl WorkerProbe {
    /// `(records_read, batches_delivered, redeliveries, decode_errors, lag, committed,
    /// read_errors, leases_held, misplaced_points)`.
    pub fn snapshot(&self) -> [u64; 9] {
        let s = &self.stats;
        [
            WorkerStats::get(&s.records_read),
            WorkerStats::get(&s.batches_delivered),
            WorkerStats::get(&s.redeliveries),
            WorkerStats::get(&s.decode_errors),
            WorkerStats::get(&s.lag),
            WorkerStats::get(&s.committed),
            WorkerStats::get(&s.read_errors),
            WorkerStats::get(&s.leases_held),
            WorkerStats::get(&s.misplaced_points),
        ]
    }
}

/// The running workers.
#[derive(Debug)]
pub struct WorkerRuntime {
    threads: Vec<JoinHandle<()>>,
    probes: Vec<WorkerProbe>,
    leases: Vec<kinesis::LeaseAccess>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
}

/// The consumer name of the `index`-th worker of the config: `<from>.<worker_id>` or
/// `<from>.<index>`, with characters a consumer name cannot hold replaced by `_`.
pub fn consumer_name(w: &WorkerConfig, index: usize) -> String {
    let id = w.worker_id.clone().unwrap_or_else(|| index.to_string());
    let raw = format!("{}.{id}", w.from);
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    s
}

/// Starts every `[[workers]]` entry of `cfg`. `stats_for(sink)` gives the counters a `to`
/// sink's deliveries are accounted in (the running sink's, so the control plane shows them
/// together); `None`: counters of the worker's own.
///
/// # Errors
/// A worker reading a stream kind not supported yet, a sink that cannot be built, the log
/// that cannot be opened, or a thread that cannot be spawned.
pub fn spawn_workers(
    cfg: &Config,
    stats_for: impl Fn(&str) -> Option<Arc<SinkStats>>,
) -> Result<WorkerRuntime, WorkerError> {
    spawn_workers_with(cfg, stats_for, RetryPolicy::for_sink)
}

/// [`spawn_workers`] with a chosen retry policy per `to` sink (tests use short backoffs).
///
/// # Errors
/// As [`spawn_workers`].
pub fn spawn_workers_with(
    cfg: &Config,
    stats_for: impl Fn(&str) -> Option<Arc<SinkStats>>,
    policy: impl Fn(&SinkConfig) -> RetryPolicy,
) -> Result<WorkerRuntime, WorkerError> {
    let stop = Arc::new(AtomicBool::new(false));
    let abort = Arc::new(AtomicBool::new(false));
    let mut rt = WorkerRuntime {
        threads: Vec::new(),
        probes: Vec::new(),
        leases: Vec::new(),
        stop: stop.clone(),
        abort: abort.clone(),
    };
    let mut prepared: Vec<(String, Box<dyn FnOnce() + Send>)> = Vec::new();
    for (i, w) in cfg.workers.iter().enumerate() {
        let name = consumer_name(w, i);
        let from = cfg
            .sinks
            .get(&w.from)
            .ok_or_else(|| WorkerError::Config(name.clone(), format!("no sink `{}`", w.from)))?;
        let spec = TargetSpec::new(cfg, w, &name, &stats_for, &policy)?;
        let stats = Arc::new(WorkerStats::default());
        rt.probes.push(WorkerProbe {
            name: name.clone(),
            from: w.from.clone(),
            to: w.to.clone(),
            stats: stats.clone(),
        });
        let run: Box<dyn FnOnce() + Send> = match from.kind() {
            SinkKind::LocalLog(s) => {
                let service = LogService::open(&s).map_err(|error| WorkerError::Sink {
                    worker: name.clone(),
                    sink: w.from.clone(),
                    error,
                })?;
                let worker = LogWorker {
                    delivery: Delivery::new(&name, spec.build(&name)?, stats.clone()),
                    name: name.clone(),
                    service,
                    stats,
                    max_records: w.max_records,
                    share: w.share,
                    stop: stop.clone(),
                    abort: abort.clone(),
                };
                Box::new(move || worker.run())
            }
            SinkKind::Kinesis(settings) => {
                let (worker, access) = kinesis::KinesisWorker::prepare(kinesis::Setup {
                    name: name.clone(),
                    worker: w,
                    settings: &settings,
                    state_dir: cfg.state_dir.as_deref(),
                    spec,
                    stats,
                    stop: stop.clone(),
                    abort: abort.clone(),
                })?;
                rt.leases.push(access);
                Box::new(move || worker.run())
            }
            #[cfg(feature = "kafka")]
            SinkKind::Kafka(s) => {
                let delivery = Delivery::new(&name, spec.build(&name)?, stats.clone());
                let worker = kafka::KafkaWorker::new(
                    &name,
                    &s,
                    w,
                    delivery,
                    stats,
                    stop.clone(),
                    abort.clone(),
                )?;
                Box::new(move || worker.run())
            }
            #[cfg(not(feature = "kafka"))]
            SinkKind::Kafka(_) => return Err(WorkerError::Unsupported(name, "kafka")),
            _ => {
                return Err(WorkerError::Config(
                    name,
                    format!("`{}` is not a stream sink", w.from),
                ))
            }
        };
        prepared.push((name, run));
    }
    for (name, run) in prepared {
        let t = std::thread::Builder::new()
            .name(format!("worker-{name}"))
            .spawn(run)
            .map_err(|e| WorkerError::Spawn(name, e))?;
        rt.threads.push(t);
    }
    Ok(rt)
}

impl WorkerRuntime {
    /// The workers' views for the control plane.
    pub fn probes(&self) -> Vec<WorkerProbe> {
        self.probes.clone()
    }

    /// The Kinesis workers' leases, for the control plane.
    pub fn leases(&self) -> Vec<kinesis::LeaseAccess> {
        self.leases.clone()
    }

    /// Whether no worker is configured.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Stops the workers: each delivers what is durable in the log (call this after the
    /// sinks drained), commits and exits. At `deadline` the in-flight record is abandoned
    /// uncommitted. Returns whether every worker finished in time.
    pub fn shutdown(self, deadline: Duration) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        let until = Instant::now() + deadline;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let clean = self.threads.iter().all(JoinHandle::is_finished);
        self.abort.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        clean
    }
}
