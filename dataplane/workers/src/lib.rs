//! Stream workers (`[[workers]]`): read batches back from a stream and deliver them to
//! sinks, at least once.
//!
//! This crate runs workers over the local log (`type = "local_log"`). Each worker is one
//! thread with a small glommio executor (the log's reader needs one; 512 KiB of I/O memory).
//! It reads records from the consumer offset it committed last (consumer name
//! `<from>.<worker_id or index>`, stable across restarts), decodes each envelope
//! (`switchyard-stream`: rkyv in place, or SignalFx JSON), turns the batch into Datadog
//! `/api/v1/series` payloads ([`convert`]) and hands them, synchronously, to its own
//! instances of the `to` sinks ([`AnySink::handle`] with a [`Ctx`] whose per-item tally it
//! reads back).
//!
//! At least once: the consumer offset is committed only after every `to` sink delivered
//! every payload of every record read (or dropped it for a reason a retry cannot fix:
//! rejected, unsupported, no API key...). A payload a sink could not deliver (its retries
//! exhausted) is sent again to that sink only, after a backoff (200 ms doubling to 30 s),
//! forever: a record is never skipped. A crash redelivers at most the records read since the
//! last commit (one read batch, `max_records`). Memory is bounded by one read batch and the
//! payloads of one record.
//!
//! Shutdown ([`WorkerRuntime::shutdown`], after the sinks drained what the shards sent):
//! each worker delivers what is durable in the log, commits and exits; at the deadline the
//! in-flight record is abandoned (not committed: it is read again at the next start).
//!
//! Metrics (per worker, label `worker` = its consumer name; rendered by the control plane
//! from [`WorkerProbe`]): `switchyard_worker_records_read_total`,
//! `switchyard_worker_batches_delivered_total` (records every sink delivered),
//! `switchyard_worker_redeliveries_total` (payloads sent again after a failure),
//! `switchyard_worker_decode_errors_total` (records that cannot be decoded: counted,
//! logged, skipped), `switchyard_worker_lag_records` (records behind the durable end).

pub mod convert;

use convert::PayloadLimits;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::config::{Config, SinkConfig, SinkKind, WorkerConfig};
use switchyard_core::egress::Egress;
use switchyard_log::{LogError, LogHandle, ReadBatch, ReadLimits};
use switchyard_sinks::sink::local_log::LogService;
use switchyard_sinks::stats::SinkStats;
use switchyard_sinks::{AnySink, Ctx, RetryPolicy, SinkError};
use switchyard_stream::StreamDecoder;

/// I/O memory of a worker's glommio executor.
const IO_MEMORY: usize = 512 << 10;
/// Pause when the log has nothing new.
const IDLE: Duration = Duration::from_millis(50);
/// First and largest wait before a failed payload is sent again.
const REDELIVER_BASE: Duration = Duration::from_millis(200);
const REDELIVER_CAP: Duration = Duration::from_secs(30);
/// Payload bytes per read at most.
const READ_MAX_BYTES: usize = 4 << 20;

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
    /// `(records_read, batches_delivered, redeliveries, decode_errors, lag, committed)`.
    pub fn snapshot(&self) -> [u64; 6] {
        let s = &self.stats;
        [
            WorkerStats::get(&s.records_read),
            WorkerStats::get(&s.batches_delivered),
            WorkerStats::get(&s.redeliveries),
            WorkerStats::get(&s.decode_errors),
            WorkerStats::get(&s.lag),
            WorkerStats::get(&s.committed),
        ]
    }
}

/// The running workers.
#[derive(Debug)]
pub struct WorkerRuntime {
    threads: Vec<JoinHandle<()>>,
    probes: Vec<WorkerProbe>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
}

/// One `to` sink of a worker.
struct Target {
    name: String,
    sink: AnySink,
    stats: Arc<SinkStats>,
    policy: RetryPolicy,
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
        stop: stop.clone(),
        abort: abort.clone(),
    };
    let mut prepared = Vec::new();
    for (i, w) in cfg.workers.iter().enumerate() {
        let name = consumer_name(w, i);
        let from = cfg
            .sinks
            .get(&w.from)
            .ok_or_else(|| WorkerError::Config(name.clone(), format!("no sink `{}`", w.from)))?;
        let service = match from.kind() {
            SinkKind::LocalLog(s) => LogService::open(&s).map_err(|error| WorkerError::Sink {
                worker: name.clone(),
                sink: w.from.clone(),
                error,
            })?,
            SinkKind::Kinesis(_) => return Err(WorkerError::Unsupported(name, "kinesis")),
            SinkKind::Kafka(_) => return Err(WorkerError::Unsupported(name, "kafka")),
            _ => {
                return Err(WorkerError::Config(
                    name,
                    format!("`{}` is not a stream sink", w.from),
                ))
            }
        };
        let mut targets = Vec::new();
        for t in &w.to {
            let sc = cfg
                .sinks
                .get(t)
                .ok_or_else(|| WorkerError::Config(name.clone(), format!("no sink `{t}`")))?;
            let sink = AnySink::build(sc).map_err(|error| WorkerError::Sink {
                worker: name.clone(),
                sink: t.clone(),
                error,
            })?;
            targets.push(Target {
                name: t.clone(),
                sink,
                stats: stats_for(t).unwrap_or_default(),
                policy: policy(sc),
            });
        }
        let stats = Arc::new(WorkerStats::default());
        rt.probes.push(WorkerProbe {
            name: name.clone(),
            from: w.from.clone(),
            to: w.to.clone(),
            stats: stats.clone(),
        });
        prepared.push(Worker {
            name,
            service,
            targets,
            stats,
            max_records: w.max_records,
            stop: stop.clone(),
            abort: abort.clone(),
        });
    }
    for w in prepared {
        let name = w.name.clone();
        let t = std::thread::Builder::new()
            .name(format!("worker-{name}"))
            .spawn(move || w.run())
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

struct Worker {
    name: String,
    service: Arc<LogService>,
    targets: Vec<Target>,
    stats: Arc<WorkerStats>,
    max_records: usize,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
}

/// What became of one record.
enum Outcome {
    /// Every sink has it (or dropped it for good).
    Done,
    /// Aborted before every sink had it.
    Aborted,
}

impl Worker {
    fn run(self) {
        let ex = match glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(IO_MEMORY)
            .name("switchyard-worker")
            .make()
        {
            Ok(ex) => ex,
            Err(e) => {
                tracing::error!(worker = %self.name, error = %e, "cannot start the worker's executor");
                return;
            }
        };
        let name = self.name.clone();
        ex.run(async move {
            let mut w = self;
            w.work().await;
        });
        tracing::info!(worker = %name, "worker stopped");
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Waits `d` (on the executor), returning early on abort.
    async fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.aborted() {
            glommio::timer::sleep(
                Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }

    async fn start_offset(&self, log: &LogHandle) -> Option<u64> {
        let consumers = log.consumers();
        let mut wait = REDELIVER_BASE;
        loop {
            match consumers.committed(&self.name).await {
                Ok(Some(o)) => return Some(o),
                Ok(None) => return Some(log.start_offset()),
                Err(e) => {
                    tracing::error!(worker = %self.name, error = %e, "reading the committed offset failed; retrying");
                }
            }
            if self.aborted() || self.stopping() {
                return None;
            }
            self.pause(wait).await;
            wait = (wait * 2).min(REDELIVER_CAP);
        }
    }

    async fn work(&mut self) {
        let log = self.service.handle();
        let Some(mut next) = self.start_offset(&log).await else {
            return;
        };
        tracing::info!(worker = %self.name, from = next, durable = log.durable_offset(), "worker started");
        self.stats.committed.store(next, Ordering::Relaxed);
        let consumers = log.consumers();
        let mut reader = log.reader();
        let mut batch = ReadBatch::new();
        let mut decoder = StreamDecoder::default();
        let limits = ReadLimits {
            max_records: self.max_records.max(1),
            max_bytes: READ_MAX_BYTES,
        };
        let mut read_wait = REDELIVER_BASE;
        loop {
            let durable = log.durable_offset();
            self.stats
                .lag
                .store(durable.saturating_sub(next), Ordering::Relaxed);
            if self.aborted() || (self.stopping() && next >= durable) {
                break;
            }
            if let Err(e) = reader.read(next, limits, &mut batch).await {
                match e {
                    LogError::OffsetOutOfRange { start, .. } if next < start => {
                        tracing::error!(worker = %self.name, lost = start - next, from = next, to = start,
                            "records were deleted by retention before this worker read them");
                        next = start;
                    }
                    e => {
                        tracing::error!(worker = %self.name, offset = next, error = %e, "reading the log failed; retrying");
                        self.pause(read_wait).await;
                        read_wait = (read_wait * 2).min(REDELIVER_CAP);
                    }
                }
                continue;
            }
            read_wait = REDELIVER_BASE;
            if batch.is_empty() {
                glommio::timer::sleep(IDLE).await;
                continue;
            }
            SinkStatsExt::add(&self.stats.records_read, batch.len() as u64);
            let mut done_to = next;
            for rec in batch.iter() {
                match self
                    .deliver_record(&mut decoder, rec.offset, rec.payload)
                    .await
                {
                    Outcome::Done => done_to = rec.offset + 1,
                    Outcome::Aborted => break,
                }
            }
            if done_to > next {
                match consumers.commit(&self.name, done_to).await {
                    Ok(()) => self.stats.committed.store(done_to, Ordering::Relaxed),
                    Err(e) => {
                        tracing::error!(worker = %self.name, offset = done_to, error = %e,
                            "committing the offset failed (the records will be delivered again after a restart)")
                    }
                }
                next = done_to;
            }
        }
    }

    /// Delivers one record to every target, retrying failed payloads (to the sinks that
    /// failed them only) until all are delivered or the runtime aborts.
    async fn deliver_record(
        &mut self,
        decoder: &mut StreamDecoder,
        offset: u64,
        record: &[u8],
    ) -> Outcome {
        let limits = PayloadLimits {
            max_series: self
                .targets
                .iter()
                .map(|t| t.sink.limits().max_series)
                .min()
                .unwrap_or(usize::MAX)
                .min(PayloadLimits::default().max_series),
            ..PayloadLimits::default()
        };
        let payloads: Vec<Egress> = match decoder
            .decode(record)
            .map_err(|e| e.to_string())
            .and_then(|d| convert::to_payloads(d, limits).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                SinkStatsExt::add(&self.stats.decode_errors, 1);
                tracing::error!(worker = %self.name, offset, error = %e,
                        "a record cannot be decoded: skipping it");
                return Outcome::Done;
            }
        };
        // pending[t][p]: payload p still to deliver to target t.
        let mut pending: Vec<Vec<bool>> = vec![vec![true; payloads.len()]; self.targets.len()];
        let mut wait = REDELIVER_BASE;
        let mut round = 0u32;
        loop {
            for (t, todo) in self.targets.iter_mut().zip(pending.iter_mut()) {
                let ctx = Ctx::new(&t.name, &t.stats, &self.abort, t.policy);
                for (p, left) in payloads.iter().zip(todo.iter_mut()) {
                    if !*left {
                        continue;
                    }
                    if round > 0 {
                        SinkStatsExt::add(&self.stats.redeliveries, 1);
                    }
                    count_received(&t.stats, p);
                    ctx.begin_item();
                    t.sink.handle(p, &ctx);
                    let tally = ctx.item_tally();
                    // Drops a retry cannot fix (rejected, unsupported...) are final.
                    *left = tally.dropped_retryable > 0;
                }
                let _ = t.sink.flush();
            }
            if pending.iter().flatten().all(|l| !*l) {
                SinkStatsExt::add(&self.stats.batches_delivered, 1);
                return Outcome::Done;
            }
            if self.aborted() {
                return Outcome::Aborted;
            }
            tracing::warn!(worker = %self.name, offset, wait_ms = wait.as_millis() as u64,
                "a sink could not take a record; sending it again after a pause");
            self.pause(wait).await;
            wait = (wait * 2).min(REDELIVER_CAP);
            round += 1;
        }
    }
}

/// The driver's received counters for an item a worker hands a sink.
fn count_received(stats: &SinkStats, item: &Egress) {
    if let Egress::Payload(p) = item {
        SinkStats::add(&stats.payloads, 1);
        SinkStats::add(&stats.values_received, p.points);
        SinkStats::add(&stats.series_received, p.series);
    }
}

/// `fetch_add` for the worker counters.
struct SinkStatsExt;

impl SinkStatsExt {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}
