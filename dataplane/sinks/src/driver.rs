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
//! accounts every value as delivered or dropped by reason ([`Ctx::deliver_or_dead_letter`]
//! also keeps a refused request in the sink's dead letters, [`crate::deadletter`]). At shutdown the queue's senders
//! are dropped and the workers drain what is queued; anything left when the deadline passes
//! (queued, or waiting for a retry) is counted as dropped (`shutdown`).
//!
//! A sink with `spill = true` ([`crate::spool`]): its workers hold a spool writer, the `Ctx`
//! defers retryable drops (`retries_exhausted`, `shutdown`) and the worker writes the item to
//! the spool instead (`spilled`); while the sink's circuit is open, or past the shutdown
//! deadline, items go to the spool without a request, and while it is open with the spool
//! full nothing is taken off the queue (the intake pushes back). Its [`SPILLERS`] spiller
//! threads move the oldest items of a half-full queue to the spool (a slow vendor).
//!
//! A payload of a `durable = true` route carries a `Durability`: each worker (or spiller)
//! reports after handling it whether its values are durable (delivered or spooled), which
//! is when the intake answers.
//!
//! A sink that delivers several items together (the Kinesis sink's `linger`) takes the
//! following queued items itself with [`Ctx::next_item`] while it handles one: they count as
//! received when taken, and every value of every item taken is settled before `handle`
//! returns, so nothing sits in a sink between items (the ledger's `in_flight` covers them
//! meanwhile) and the payload bytes of the items handled together are split over their
//! values together.

use crate::deadletter::DeadLetter;
use crate::sink::AnySink;
use crate::slots::{SinkSlots, Slot};
use crate::spool::{self, Gate, Spool};
use crate::stats::{DropReason, SinkStats};
use crate::SinkError;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::config::{Config, SinkConfig, SinkKind};
use switchyard_core::egress::{Durability, Egress};

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
            SinkKind::Kinesis(s) => Self {
                max_retries: s.stream_settings.max_retries,
                ..Self::default()
            },
            SinkKind::Kafka(s) => Self {
                max_retries: s.stream_settings.max_retries,
                ..Self::default()
            },
            SinkKind::LocalLog(s) => Self {
                max_retries: s.stream_settings.max_retries,
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

/// The running sinks: every sink the config defines, in [`SinkSlots`] the shards and route
/// tables index, and their worker threads. [`SinkRuntime::reconcile`] applies a reloaded
/// config's sinks.
pub struct SinkRuntime {
    slots: Arc<SinkSlots>,
    /// Each slot's config (`None` once removed), to tell which sinks a reload changed.
    configs: Mutex<Vec<Option<SinkConfig>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    abort: Arc<AtomicBool>,
    policy: Box<dyn Fn(&SinkConfig) -> RetryPolicy + Send + Sync>,
    /// Where spilling sinks keep their spool (the config's `state_dir`, fixed at start).
    state_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SinkRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkRuntime")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// What [`SinkRuntime::reconcile`] changed, by sink name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkChanges {
    /// New sinks (a slot appended, or a removed sink's slot reused).
    pub added: Vec<String>,
    /// Sinks whose config changed: new queue and workers, same slot and counters.
    pub changed: Vec<String>,
    /// Sinks no longer in the config.
    pub removed: Vec<String>,
}

impl SinkChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Builds every sink the config defines and starts its workers.
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
    policy: impl Fn(&SinkConfig) -> RetryPolicy + Send + Sync + 'static,
) -> Result<SinkRuntime, (String, SinkError)> {
    let rt = SinkRuntime {
        slots: Arc::new(SinkSlots::default()),
        configs: Mutex::new(Vec::new()),
        threads: Mutex::new(Vec::new()),
        abort: Arc::new(AtomicBool::new(false)),
        policy: Box::new(policy),
        state_dir: cfg.state_dir.clone(),
    };
    rt.reconcile(cfg)?;
    Ok(rt)
}

/// A sink built but not started: its instances (one per worker, each with its spool writer
/// when the sink spills) and queue.
struct Built {
    name: String,
    config: SinkConfig,
    sinks: Vec<(AnySink, Option<Spool>)>,
    /// `spill = true`: the spool writers of the sink's [`Spiller`]s.
    spillers: Vec<Spool>,
    /// Its dead letters, when newly opened.
    deadletter: Option<Arc<DeadLetter>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SinkRuntime {
    /// The slots shards and route tables index.
    pub fn slots(&self) -> Arc<SinkSlots> {
        self.slots.clone()
    }

    /// Producer handles of the sinks in the config, in slot order.
    pub fn handles(&self) -> Vec<SinkHandle> {
        self.slots.handles().into_iter().flatten().collect()
    }

    /// Read-only views for the control plane, by slot.
    pub fn probes(&self) -> Vec<SinkProbe> {
        self.slots.probes()
    }

    /// Makes the running sinks those of `cfg`: sinks with an unchanged config keep running
    /// untouched; new ones are started in new slots (or their old slot); changed ones get a
    /// new queue and workers in the same slot (the old workers drain the old queue); removed
    /// ones lose their handle. Publishes the new slots; the caller then stores a route table
    /// compiled against [`SinkSlots::route_names`] so the shards pick both up.
    ///
    /// # Errors
    /// A sink that could not be built, or more than `MAX_SINKS` sink names over the process's
    /// life; nothing changed then.
    pub fn reconcile(&self, cfg: &Config) -> Result<SinkChanges, (String, SinkError)> {
        let mut configs = lock(&self.configs);
        let mut slots: Vec<Slot> = self.slots.snapshot().to_vec();
        let mut changes = SinkChanges::default();
        let mut to_build = Vec::new();
        for (name, sc) in &cfg.sinks {
            let at = slots.iter().position(|s| s.name == *name);
            let same = at
                .and_then(|i| configs.get(i))
                .and_then(Option::as_ref)
                .is_some_and(|old| same_config(old, sc));
            if same {
                continue;
            }
            match at.and_then(|i| configs.get(i)).map(Option::is_some) {
                Some(true) => changes.changed.push(name.clone()),
                _ => changes.added.push(name.clone()),
            }
            to_build.push((name.clone(), sc.clone()));
        }
        for (i, s) in slots.iter().enumerate() {
            let live = configs.get(i).is_some_and(Option::is_some);
            if live && !cfg.sinks.contains_key(&s.name) {
                changes.removed.push(s.name.clone());
            }
        }
        let new_names = changes
            .added
            .iter()
            .filter(|n| !slots.iter().any(|s| s.name == **n))
            .count();
        if slots.len() + new_names > switchyard_core::route::MAX_SINKS {
            return Err((
                "sinks".into(),
                SinkError::Fatal(format!(
                    "{} distinct sink names over the process's life; at most {} (restart to reset)",
                    slots.len() + new_names,
                    switchyard_core::route::MAX_SINKS
                )),
            ));
        }
        // Build everything first: a sink that cannot be built changes nothing.
        let mut built = Vec::with_capacity(to_build.len());
        for (name, sc) in to_build {
            let n = workers(&sc);
            let mut sinks = Vec::with_capacity(n);
            for _ in 0..n {
                let sink = AnySink::build(&sc).map_err(|e| (name.clone(), e))?;
                let spool = match (&self.state_dir, sc.spill) {
                    (Some(dir), true) => {
                        Some(Spool::open(dir, &name, &sc).map_err(|e| (name.clone(), e))?)
                    }
                    _ => None,
                };
                sinks.push((sink, spool));
            }
            let mut spillers = Vec::new();
            if let (Some(dir), true) = (&self.state_dir, sc.spill) {
                for _ in 0..SPILLERS {
                    spillers.push(Spool::open(dir, &name, &sc).map_err(|e| (name.clone(), e))?);
                }
            }
            let known = at_slot(&slots, &name).and_then(|s| s.probe.stats.deadletter.get());
            let deadletter = match (&self.state_dir, known) {
                (Some(dir), None) if keeps_dead_letters(&sc) => Some(Arc::new(
                    DeadLetter::open(dir, &name, sc.deadletter_max_bytes).map_err(|e| {
                        (
                            name.clone(),
                            SinkError::Fatal(format!("opening its dead letters: {e}")),
                        )
                    })?,
                )),
                _ => None,
            };
            built.push(Built {
                name,
                config: sc,
                sinks,
                spillers,
                deadletter,
            });
        }
        let mut threads = lock(&self.threads);
        for b in built {
            let at = slots.iter().position(|s| s.name == b.name);
            // A changed or returning sink keeps its counters.
            let stats = at
                .and_then(|i| slots.get(i))
                .map_or_else(|| Arc::new(SinkStats::default()), |s| s.probe.stats.clone());
            match (b.deadletter, stats.deadletter.get()) {
                (Some(d), None) => {
                    let _ = stats.deadletter.set(d);
                }
                // A changed sink keeps its store; a reload may change the cap.
                (_, Some(d)) => d.set_max_bytes(if keeps_dead_letters(&b.config) {
                    b.config.deadletter_max_bytes
                } else {
                    0
                }),
                (None, None) => {}
            }
            let (tx, rx) = bounded(b.config.queue_batches);
            let pol = (self.policy)(&b.config);
            // The workers' token: the spiller stops once every worker did.
            let alive = Arc::new(());
            for (i, spool) in b.spillers.into_iter().enumerate() {
                let spiller = Spiller {
                    flags: i == 0,
                    name: b.name.clone(),
                    rx: rx.clone(),
                    stats: stats.clone(),
                    abort: self.abort.clone(),
                    spool,
                    items_cap: b.config.queue_batches as u64,
                    bytes_cap: b.config.queue_max_bytes,
                    workers: Arc::downgrade(&alive),
                };
                match std::thread::Builder::new()
                    .name(format!("sink-{}-spill-{i}", b.name))
                    .spawn(move || spiller.run())
                {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        tracing::error!(sink = %b.name, error = %e, "spawning the sink's spiller failed")
                    }
                }
            }
            for (w, (sink, spool)) in b.sinks.into_iter().enumerate() {
                let worker = Worker {
                    name: b.name.clone(),
                    rx: rx.clone(),
                    stats: stats.clone(),
                    abort: self.abort.clone(),
                    policy: pol,
                    spill: spool,
                    _alive: alive.clone(),
                };
                match std::thread::Builder::new()
                    .name(format!("sink-{}-{w}", b.name))
                    .spawn(move || worker.run(sink))
                {
                    Ok(t) => threads.push(t),
                    // Workers already started serve the queue; the sink runs with fewer.
                    Err(e) => {
                        tracing::error!(sink = %b.name, error = %e, "spawning a sink worker failed")
                    }
                }
            }
            let slot = Slot {
                name: b.name.clone(),
                handle: Some(SinkHandle {
                    name: b.name.clone(),
                    tx,
                    stats: stats.clone(),
                    queue_max_bytes: b.config.queue_max_bytes,
                }),
                probe: SinkProbe {
                    name: b.name.clone(),
                    stats,
                    queue_max_bytes: b.config.queue_max_bytes,
                    rx,
                },
            };
            match at {
                Some(i) => {
                    if let (Some(s), Some(c)) = (slots.get_mut(i), configs.get_mut(i)) {
                        *s = slot;
                        *c = Some(b.config);
                    }
                }
                None => {
                    slots.push(slot);
                    configs.push(Some(b.config));
                }
            }
        }
        for (s, c) in slots.iter_mut().zip(configs.iter_mut()) {
            if c.is_some() && !cfg.sinks.contains_key(&s.name) {
                s.handle = None;
                *c = None;
            }
        }
        self.slots.store(slots);
        Ok(changes)
    }

    /// Closes the queues (callers must have dropped their handle clones), lets the workers
    /// drain within `deadline`, then aborts what is left. Returns whether all drained in time.
    pub fn shutdown(self, deadline: Duration) -> bool {
        let slots: Vec<Slot> = self
            .slots
            .snapshot()
            .iter()
            .map(|s| Slot {
                handle: None,
                ..s.clone()
            })
            .collect();
        self.slots.store(slots);
        let threads = std::mem::take(&mut *lock(&self.threads));
        let until = Instant::now() + deadline;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let clean = threads.iter().all(JoinHandle::is_finished);
        self.abort.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        clean
    }
}

/// Workers per sink: `max_in_flight` for HTTP sinks, [`crate::sink::local_log::WRITERS`]
/// for the local log, one for the others.
fn workers(sc: &SinkConfig) -> usize {
    match sc.kind() {
        SinkKind::Datadog(s) => s.http.max_in_flight,
        SinkKind::Signalfx(s) => s.http.max_in_flight,
        // Several writers share the log's fsyncs (group commit).
        SinkKind::LocalLog(_) => crate::sink::local_log::WRITERS,
        _ => 1,
    }
    .max(1)
}

/// Whether a sink keeps dead letters (given a `state_dir`): HTTP vendor sinks with a
/// non-zero `deadletter_max_bytes`.
fn keeps_dead_letters(sc: &SinkConfig) -> bool {
    matches!(sc.kind(), SinkKind::Datadog(_) | SinkKind::Signalfx(_)) && sc.deadletter_max_bytes > 0
}

/// The slot of sink `name`, if it has one.
fn at_slot<'s>(slots: &'s [Slot], name: &str) -> Option<&'s Slot> {
    slots.iter().find(|s| s.name == name)
}

/// Whether two sink configs are the same (compared as their serialized form).
fn same_config(a: &SinkConfig, b: &SinkConfig) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
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
    /// `spill = true`: this worker's spool writer (the circuit breaker is in the stats).
    spill: Option<Spool>,
    /// Held while the worker runs (the sink's [`Spiller`] stops once no worker holds it).
    _alive: Arc<()>,
}

impl Worker {
    fn run(mut self, mut sink: AnySink) {
        let mut spill = self.spill.take();
        let ctx = Ctx {
            queue: Some(&self.rx),
            defer_retryable: spill.is_some(),
            ..Ctx::new(&self.name, &self.stats, &self.abort, self.policy)
        };
        loop {
            // A spilling sink whose circuit is open and whose spool is full takes nothing:
            // it could neither send nor keep the item, so it stays queued, the queue fills
            // and the intake pushes back (until the shutdown deadline).
            if let Some(spool) = &spill {
                if !self.abort.load(Ordering::Relaxed)
                    && self.stats.breaker.is_open(Instant::now())
                    && !spool.has_room(&self.stats)
                {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
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
            count_received(&self.stats, &item);
            ctx.tally.reset();
            ctx.extra_bytes.set(0);
            match &mut spill {
                None => sink.handle(&item, &ctx),
                Some(spool) => handle_spilling(&mut sink, &item, &ctx, spool),
            }
            // A payload of a durable route: report whether this sink made it durable (with
            // the items taken together, which share the tally).
            let durable = ctx.tally.durable();
            settle(&item, durable);
            for d in ctx.taken_durable.take() {
                d.settle(durable);
            }
            // The payload bytes of every item handled together (the sink may have taken more
            // with `Ctx::next_item`), split over their values together.
            let bytes = payload_bytes(&item) + ctx.extra_bytes.take();
            if bytes > 0 {
                ctx.tally.split_bytes(bytes, &self.stats);
                self.stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
            if let Egress::Forward(f) = &item {
                // The flush reserved it (not payload bytes: no byte ledger).
                self.stats
                    .queued_bytes
                    .fetch_sub(f.heap_bytes, Ordering::Relaxed);
            }
            if self.rx.is_empty() {
                let _ = sink.flush();
            }
        }
        let _ = sink.flush();
    }
}

/// Spillers per spilling sink: their spool writes share fsyncs (group commit), so they keep
/// up with a faster intake than one would.
pub const SPILLERS: usize = crate::sink::local_log::WRITERS;

/// How often a spiller looks at its queue.
pub const SPILL_POLL: Duration = Duration::from_millis(10);

/// A spilling sink's queue is backlogged from half full (in items or in payload bytes): its
/// [`Spiller`]s then move the oldest queued items to the spool until it is down to a
/// quarter. (The other half absorbs a slow spool write: fsyncs on a busy disk.)
fn backlog(items: u64, items_cap: u64, bytes: u64, bytes_cap: u64) -> (bool, bool) {
    let high = items * 2 >= items_cap || bytes * 2 >= bytes_cap;
    let low = items * 4 <= items_cap && bytes * 4 <= bytes_cap;
    (high, low)
}

/// A consumer that keeps a spilling sink's queue from filling while its vendor is slow
/// (a sink has [`SPILLERS`] of them):
/// from half full (items or bytes) it takes the oldest queued items and writes them to the
/// spool (`spilled`, replayed later) until the queue is down to a quarter, so the intake keeps
/// accepting. While the queue is being spilled it sets
/// [`SinkStats::backlogged`], and the spool's replay waits: live traffic goes first. When
/// the spool is full too it takes nothing: the queue fills and the intake pushes back (HTTP
/// `503` with `Retry-After`) or counts `queue_full` (statsd).
struct Spiller {
    /// Whether this one keeps [`SinkStats::backlogged`] (one of the sink's spillers does).
    flags: bool,
    name: String,
    rx: Receiver<Egress>,
    stats: Arc<SinkStats>,
    abort: Arc<AtomicBool>,
    spool: Spool,
    items_cap: u64,
    bytes_cap: u64,
    /// The workers' token: gone once every worker stopped (the queue is closed and drained).
    workers: std::sync::Weak<()>,
}

impl Spiller {
    fn run(mut self) {
        let ctx = Ctx::new(&self.name, &self.stats, &self.abort, RetryPolicy::default());
        let mut spilling = false;
        while self.workers.strong_count() > 0 {
            let items = self.rx.len() as u64;
            let bytes = self.stats.queued_bytes.load(Ordering::Relaxed);
            let (high, low) = backlog(items, self.items_cap, bytes, self.bytes_cap);
            if high {
                spilling = true;
            } else if low {
                spilling = false;
            }
            if self.flags {
                self.stats.backlogged.store(spilling, Ordering::Relaxed);
            }
            if spilling && self.spool.has_room(&self.stats) {
                if let Ok(item) = self.rx.try_recv() {
                    if self.stats.first_time(DropReason::Spilled) {
                        tracing::warn!(sink = %self.name, queued = items,
                            "the sink's queue is filling: spilling its oldest items to the spool (logged once)");
                    }
                    count_received(&self.stats, &item);
                    ctx.begin_item();
                    spool::spill(&mut self.spool, &item, item.points(), &ctx);
                    settle(&item, ctx.tally.durable());
                    let bytes = payload_bytes(&item);
                    if bytes > 0 {
                        ctx.tally.split_bytes(bytes, &self.stats);
                        self.stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                    }
                    continue;
                }
            }
            std::thread::sleep(SPILL_POLL);
        }
        if self.flags {
            self.stats.backlogged.store(false, Ordering::Relaxed);
        }
    }
}

/// Handles one item of a spilling sink: straight to the spool while the circuit is open
/// (or past the shutdown deadline), else to the vendor, spooling the values it did not take
/// (retries exhausted, shutdown).
fn handle_spilling(sink: &mut AnySink, item: &Egress, ctx: &Ctx<'_>, spool: &mut Spool) {
    let breaker = &ctx.stats.breaker;
    let gate = if ctx.aborting() {
        Gate::Open
    } else {
        breaker.gate(Instant::now())
    };
    if gate == Gate::Open {
        return spool::spill(spool, item, item.points(), ctx);
    }
    ctx.deferred.set(0);
    ctx.deferred_parts.borrow_mut().clear();
    sink.handle(item, ctx);
    let failed = ctx.deferred.take();
    let parts = ctx.deferred_parts.take();
    if failed > 0 && ctx.tally.delivered.get() == 0 {
        breaker.failure(Instant::now(), gate == Gate::Probe, ctx.stats);
    } else {
        breaker.success(ctx.stats);
    }
    // A statsd batch sent in parts: only the parts not delivered go to the spool. Anything
    // else goes whole (a part of it the vendor took may be delivered twice).
    if let Egress::Series(b) = item {
        let in_parts: usize = parts.iter().map(ExactSizeIterator::len).sum();
        if failed > 0 && in_parts as u64 == failed && in_parts < b.len() {
            let rest = Egress::Series(Arc::new(b.select(&parts)));
            return spool::spill(spool, &rest, failed, ctx);
        }
    }
    spool::spill(spool, item, failed, ctx);
}

/// Reports to a payload of a `durable = true` route whether this sink made it durable.
fn settle(item: &Egress, durable: bool) {
    if let Egress::Payload(p) = item {
        if let Some(d) = &p.durable {
            d.settle(durable);
        }
    }
}

/// Counts an item taken off the queue as received.
fn count_received(stats: &SinkStats, item: &Egress) {
    match item {
        Egress::Series(b) => {
            SinkStats::add(&stats.batches, 1);
            SinkStats::add(&stats.values_received, b.len() as u64);
            SinkStats::add(&stats.series_received, b.len() as u64);
        }
        Egress::Payload(p) => {
            SinkStats::add(&stats.payloads, 1);
            SinkStats::add(&stats.values_received, p.points);
            SinkStats::add(&stats.series_received, p.series);
            SinkStats::add(&stats.payload_bytes_received, p.body.bytes.len() as u64);
        }
        Egress::Forward(f) => {
            let n = f.partials.len() as u64;
            SinkStats::add(&stats.batches, 1);
            SinkStats::add(&stats.values_received, n);
            SinkStats::add(&stats.series_received, n);
        }
    }
}

/// Body bytes of a payload (0 for a statsd batch).
fn payload_bytes(item: &Egress) -> u64 {
    match item {
        Egress::Payload(p) => p.body.bytes.len() as u64,
        Egress::Series(_) | Egress::Forward(_) => 0,
    }
}

/// What [`Ctx::deliver_or_dead_letter`] records about a request besides its body.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterRequest<'a> {
    /// The URL POSTed to.
    pub url: &'a str,
    /// The body's `Content-Type`.
    pub content_type: &'a str,
    /// The request headers (credential values are redacted from what is kept).
    pub headers: &'a [(&'a str, &'a str)],
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
    /// What became of the current item's values (for its byte split).
    tally: Tally,
    /// The queue the driver's worker serves (`None` when a caller drives the sink itself).
    queue: Option<&'a Receiver<Egress>>,
    /// Payload body bytes of the items taken with [`Ctx::next_item`] for the current one.
    extra_bytes: Cell<u64>,
    /// Values dropped for a reason a later attempt could fix (`retries_exhausted`,
    /// `shutdown`) are kept in `deferred` instead of counted dropped: a spilling sink's
    /// worker spools them, a stream worker delivers them again ([`Ctx::redelivering`]).
    defer_retryable: bool,
    deferred: Cell<u64>,
    /// The series of the current statsd batch the request being delivered carries
    /// ([`Ctx::set_part`]), and those of the requests whose values were deferred: a
    /// spilling sink spools only those.
    part: Cell<Option<(usize, usize)>>,
    deferred_parts: std::cell::RefCell<Vec<std::ops::Range<usize>>>,
    /// The durable-route reports owed for the items taken with [`Ctx::next_item`].
    taken_durable: std::cell::RefCell<Vec<Arc<Durability>>>,
}

/// Values of the current item delivered and dropped by reason.
#[derive(Debug, Default)]
struct Tally {
    delivered: Cell<u64>,
    dropped: [Cell<u64>; DropReason::ALL.len()],
}

impl Tally {
    /// Whether every value is durable: none dropped for a reason a later attempt could fix
    /// (`retries_exhausted`, `shutdown`, `spool_full`) or for an error of the sink
    /// (`fatal`). Values spilled are durable; values dropped for good (`rejected`,
    /// `translation`, `unsupported`...) are settled: a client's retry could not change them.
    fn durable(&self) -> bool {
        [
            DropReason::RetriesExhausted,
            DropReason::Shutdown,
            DropReason::SpoolFull,
            DropReason::Fatal,
        ]
        .iter()
        .all(|r| self.dropped.get(*r as usize).is_none_or(|c| c.get() == 0))
    }

    fn reset(&self) {
        self.delivered.set(0);
        for d in &self.dropped {
            d.set(0);
        }
    }

    /// Splits `bytes` between delivered and the drop reasons in proportion to the values
    /// (the remainder of the integer division goes to delivered, or, when nothing was
    /// delivered, to the reason with the most values); a payload without values counts as
    /// delivered unless a drop reason was recorded.
    fn split_bytes(&self, bytes: u64, stats: &SinkStats) {
        let total = self
            .dropped
            .iter()
            .fold(self.delivered.get(), |a, d| a.saturating_add(d.get()));
        let mut shares = [0u64; DropReason::ALL.len()];
        let mut assigned = 0u64;
        if total > 0 {
            for (share, d) in shares.iter_mut().zip(&self.dropped) {
                *share = (u128::from(bytes) * u128::from(d.get()) / u128::from(total)) as u64;
                assigned += *share;
            }
        }
        let mut delivered = bytes - assigned.min(bytes);
        if self.delivered.get() == 0 && total > 0 {
            let most = self
                .dropped
                .iter()
                .enumerate()
                .max_by_key(|(_, d)| d.get())
                .map_or(0, |(i, _)| i);
            if let Some(s) = shares.get_mut(most) {
                *s += delivered;
            }
            delivered = 0;
        }
        SinkStats::add(&stats.payload_bytes_delivered, delivered);
        for (c, share) in stats.payload_bytes_dropped.iter().zip(shares) {
            SinkStats::add(c, share);
        }
    }
}

/// What became of one item's values, read with [`Ctx::item_tally`] after
/// [`AnySink::handle`] (a stream worker checks it before it checkpoints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemTally {
    /// Values delivered.
    pub delivered: u64,
    /// Values dropped, every reason together.
    pub dropped: u64,
    /// Of those, values a later attempt could deliver (`retries_exhausted`, `shutdown`).
    pub dropped_retryable: u64,
}

impl<'a> Ctx<'a> {
    /// A context for a caller that drives a sink itself (a stream worker calling
    /// [`AnySink::handle`] synchronously): values are accounted in `stats`, retries follow
    /// `policy`, and `abort` stops waiting (what is left is dropped as `shutdown`). Call
    /// [`Ctx::begin_item`] before each item and read [`Ctx::item_tally`] after it.
    pub fn new(
        name: &'a str,
        stats: &'a SinkStats,
        abort: &'a AtomicBool,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            name,
            stats,
            abort,
            policy,
            tally: Tally::default(),
            queue: None,
            extra_bytes: Cell::new(0),
            defer_retryable: false,
            deferred: Cell::new(0),
            taken_durable: std::cell::RefCell::new(Vec::new()),
            part: Cell::new(None),
            deferred_parts: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// [`Ctx::new`] for a caller that delivers what fails again until it is delivered (a
    /// stream worker): values that fail retryably are not counted dropped (they stay in
    /// flight, `received - delivered - dropped`) but reported in
    /// [`ItemTally::dropped_retryable`]; the caller counts an item received once, however
    /// often it sends it.
    pub fn redelivering(
        name: &'a str,
        stats: &'a SinkStats,
        abort: &'a AtomicBool,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            defer_retryable: true,
            ..Self::new(name, stats, abort, policy)
        }
    }

    /// Starts a new item: its tally restarts at zero.
    pub fn begin_item(&self) {
        self.tally.reset();
        self.deferred.set(0);
    }

    /// Values of the current item delivered and dropped so far.
    pub fn item_tally(&self) -> ItemTally {
        ItemTally {
            delivered: self.tally.delivered.get(),
            dropped: self.tally.dropped.iter().map(Cell::get).sum(),
            dropped_retryable: [DropReason::RetriesExhausted, DropReason::Shutdown]
                .iter()
                .filter_map(|r| self.tally.dropped.get(*r as usize))
                .map(Cell::get)
                .sum::<u64>()
                + self.deferred.get(),
        }
    }
}

impl Ctx<'_> {
    /// Whether the runtime is shutting down past its deadline (sinks with their own resend
    /// loops stop and drop what is left as `shutdown`).
    pub fn aborting(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Sleeps `d`, returning early when the runtime aborts (for a sink with its own resend
    /// loop).
    pub(crate) fn pause(&self, d: Duration) {
        sleep_unless_aborted(d, self.abort);
    }

    /// Takes the next queued item, waiting up to `wait`, for a sink that delivers several
    /// items together (the Kinesis sink's `linger`). The item counts as received now and
    /// becomes part of the current one: every value it carries must be accounted (delivered
    /// or dropped) before [`AnySink::handle`] returns, and the payload bytes of the items
    /// handled together are split over their values together. `None` when the caller drives
    /// the sink itself (no queue), when nothing arrives within `wait`, when the queue is
    /// closed and empty (shutdown), or when the runtime is aborting.
    pub fn next_item(&self, wait: Duration) -> Option<Egress> {
        let rx = self.queue?;
        if self.aborting() {
            return None;
        }
        let item = if wait.is_zero() {
            rx.try_recv().ok()?
        } else {
            rx.recv_timeout(wait).ok()?
        };
        count_received(self.stats, &item);
        self.extra_bytes
            .set(self.extra_bytes.get() + payload_bytes(&item));
        if let Egress::Payload(p) = &item {
            if let Some(d) = &p.durable {
                self.taken_durable.borrow_mut().push(d.clone());
            }
        }
        Some(item)
    }

    /// Counts `n` values as dropped for `reason` (for a spilling sink, values dropped for
    /// `retries_exhausted` or `shutdown` are spooled instead, see [`crate::spool`]).
    pub fn drop_values(&self, reason: DropReason, n: u64) {
        if self.defer_retryable
            && matches!(reason, DropReason::RetriesExhausted | DropReason::Shutdown)
        {
            self.deferred.set(self.deferred.get() + n);
            if let Some((start, end)) = self.part.get() {
                self.deferred_parts.borrow_mut().push(start..end);
            }
            return;
        }
        self.drop_final(reason, n);
    }

    /// Declares which series of the current statsd batch the next [`Ctx::deliver`] carries
    /// (`None` after it): a spilling sink then spools only the parts not delivered, not
    /// the whole batch (no duplicates of the parts the vendor took).
    pub fn set_part(&self, part: Option<std::ops::Range<usize>>) {
        self.part.set(part.map(|r| (r.start, r.end)));
    }

    /// Counts `n` values as dropped for `reason`, spilling sink or not.
    pub(crate) fn drop_final(&self, reason: DropReason, n: u64) {
        self.stats.drop_values(reason, n);
        if let Some(d) = self.tally.dropped.get(reason as usize) {
            d.set(d.get() + n);
        }
    }

    /// Counts `n` values as delivered.
    pub fn delivered(&self, n: u64) {
        SinkStats::add(&self.stats.values_delivered, n);
        self.tally.delivered.set(self.tally.delivered.get() + n);
    }

    /// Counts `n` values as dropped for `reason`; logs `why` the first time this sink drops
    /// for that reason (at `info` for `unsupported`, `error` otherwise).
    pub fn drop_once_logged(&self, reason: DropReason, n: u64, why: &str) {
        self.drop_values(reason, n);
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
        attempt: impl FnMut() -> Result<u64, SinkError>,
    ) -> bool {
        self.deliver_then(values, raw, attempt, |_, _| false)
    }

    /// [`Ctx::deliver`] for a request whose refusal (a 4xx that cannot succeed) goes to the
    /// sink's dead letters ([`crate::deadletter`]), when the sink keeps them: `request`
    /// says what was sent and `body` produces the body before compression (called only
    /// then). The values stay counted `rejected`.
    pub fn deliver_or_dead_letter<'b>(
        &self,
        values: u64,
        raw: u64,
        request: DeadLetterRequest<'_>,
        body: impl FnOnce() -> std::borrow::Cow<'b, [u8]>,
        attempt: impl FnMut() -> Result<u64, SinkError>,
    ) -> bool {
        self.deliver_then(values, raw, attempt, |status, response| {
            let Some(store) = self.stats.deadletter.get() else {
                return false;
            };
            let body = body();
            store.write(&crate::deadletter::Rejection {
                url: request.url,
                content_type: request.content_type,
                headers: request.headers,
                status,
                response,
                values,
                body: &body,
            })
        })
    }

    /// [`Ctx::deliver`], calling `rejected(status, response)` on a refusal (it returns
    /// whether the request was kept as a dead letter).
    fn deliver_then(
        &self,
        values: u64,
        raw: u64,
        mut attempt: impl FnMut() -> Result<u64, SinkError>,
        rejected: impl FnOnce(u16, &str) -> bool,
    ) -> bool {
        let stats = self.stats;
        let name = self.name;
        let mut n = 0;
        loop {
            if self.abort.load(Ordering::Relaxed) {
                self.drop_values(DropReason::Shutdown, values);
                return false;
            }
            match attempt() {
                Ok(sent) => {
                    self.delivered(values);
                    SinkStats::add(&stats.bytes, sent);
                    SinkStats::add(&stats.bytes_uncompressed, raw);
                    return true;
                }
                Err(SinkError::Fatal(msg)) => {
                    tracing::error!(sink = name, error = %msg, values, "dropping data");
                    self.drop_values(DropReason::Fatal, values);
                    return false;
                }
                Err(SinkError::Rejected {
                    status,
                    reason,
                    response,
                }) => {
                    let dead_lettered = rejected(status, &response);
                    tracing::error!(sink = name, status, response = %reason, values, dead_lettered,
                        "vendor rejected the data; dropping it (not retried)");
                    self.drop_values(DropReason::Rejected, values);
                    return false;
                }
                Err(e) => {
                    if n >= self.policy.max_retries {
                        tracing::error!(sink = name, error = %e, values, "retries exhausted");
                        self.drop_values(DropReason::RetriesExhausted, values);
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
        Ctx::new(
            "t",
            stats,
            abort,
            RetryPolicy {
                max_retries,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
        )
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
                response: String::new(),
            })
        }));
        assert_eq!(calls, 1, "a rejection is never retried");
        assert_eq!(stats.dropped(DropReason::Rejected), 4);

        abort.store(true, Ordering::Relaxed);
        assert!(!c.deliver(3, 1, || Ok(1)));
        assert_eq!(stats.dropped(DropReason::Shutdown), 3);
    }

    #[test]
    fn a_rejection_goes_to_the_dead_letters_and_stays_counted_rejected() {
        use std::borrow::Cow;
        let state = tempfile::tempdir().unwrap();
        let stats = SinkStats::default();
        let store = DeadLetter::open(state.path(), "t", 1 << 20).unwrap();
        stats.deadletter.set(Arc::new(store)).unwrap();
        let abort = AtomicBool::new(false);
        let c = ctx(&stats, &abort, 1);
        let req = DeadLetterRequest {
            url: "http://v/api/v1/series",
            content_type: "application/json",
            headers: &[],
        };
        let mut asked = 0;
        assert!(c.deliver_or_dead_letter(
            3,
            10,
            req,
            || {
                asked += 1;
                Cow::Borrowed(&b"{}"[..])
            },
            || Ok(5)
        ));
        assert_eq!(asked, 0, "the body is produced only for a dead letter");
        assert!(!c.deliver_or_dead_letter(
            4,
            10,
            req,
            || Cow::Borrowed(&br#"{"series":[{"metric":"m"}]}"#[..]),
            || Err(SinkError::Rejected {
                status: 403,
                reason: "POST: denied".into(),
                response: "{\"errors\":[\"denied\"]}".into(),
            })
        ));
        assert_eq!(stats.dropped(DropReason::Rejected), 4);
        // Retries running out is not a dead letter.
        assert!(!c.deliver_or_dead_letter(
            2,
            1,
            req,
            || Cow::Borrowed(&b"{}"[..]),
            || Err(SinkError::Retryable("503".into()))
        ));
        let store = stats.deadletter.get().unwrap();
        let (all, _) = store.read(10, usize::MAX).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0]["status"], 403);
        assert_eq!(all[0]["values"], 4);
        assert_eq!(all[0]["response"], "{\"errors\":[\"denied\"]}");
        assert_eq!(all[0]["request_body"], r#"{"series":[{"metric":"m"}]}"#);
        assert_eq!(store.counts().written_values, 4);
    }

    #[test]
    fn payload_bytes_split_in_proportion_to_values_and_add_up() {
        let stats = SinkStats::default();
        let abort = AtomicBool::new(false);
        let c = ctx(&stats, &abort, 0);
        c.delivered(7);
        c.drop_values(DropReason::Rejected, 3);
        c.tally.split_bytes(1000, &stats);
        assert_eq!(SinkStats::get(&stats.payload_bytes_delivered), 700);
        assert_eq!(
            SinkStats::get(&stats.payload_bytes_dropped[DropReason::Rejected as usize]),
            300
        );

        // Nothing delivered: the remainder goes to the reason with the most values.
        let stats = SinkStats::default();
        let c = ctx(&stats, &abort, 0);
        c.drop_values(DropReason::Fatal, 2);
        c.drop_values(DropReason::Rejected, 1);
        c.tally.split_bytes(1000, &stats);
        let fatal = SinkStats::get(&stats.payload_bytes_dropped[DropReason::Fatal as usize]);
        let rejected = SinkStats::get(&stats.payload_bytes_dropped[DropReason::Rejected as usize]);
        assert_eq!((fatal, rejected), (667, 333));
        assert_eq!(SinkStats::get(&stats.payload_bytes_delivered), 0);

        // A payload without values (events) counts as delivered; the tally resets per item.
        c.tally.reset();
        c.tally.split_bytes(50, &stats);
        assert_eq!(SinkStats::get(&stats.payload_bytes_delivered), 50);
    }
}
