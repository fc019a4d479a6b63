//! The Kinesis worker (`from` a `type = "kinesis"` sink): KCL-style consumption with one
//! lease per shard (`switchyard-lease`).
//!
//! Each `[[workers]]` entry is one worker (id `worker_id`, default `<hostname>-<pid>`) with:
//! - its own tokio runtime (one thread) for the AWS SDK and the lease store;
//! - a [`Coordinator`] over the configured store: a JSON file
//!   `<state_dir>/<lease_table>.json` (`lease_store = "local"`, the workers of one host) or
//!   a DynamoDB table with KCL's layout (`lease_store = "dynamodb"`, cargo feature
//!   `dynamodb`, a fleet). Failover from `failover`; renew and take intervals from
//!   `renew_interval` / `take_interval` (KCL's defaults derived from `failover` otherwise);
//!   a scan is also made when an observed lease would expire before the next take round;
//! - a control loop on the worker's thread that ticks the coordinator, syncs leases with
//!   `ListShards` ([`shard_sync`], at start and every [`SHARD_SYNC`]), starts a
//!   [`reader::ShardReader`] thread for each lease it holds, halts a reader at once when its
//!   lease is lost, stolen or released, and takes the children of a finished shard without
//!   waiting for the next take round.
//!
//! Shutdown: readers stop once caught up (an empty `GetRecords`), the leases are released
//! (another worker takes them without waiting for them to expire) and the thread exits; at
//! the abort deadline every reader is halted mid-record (not checkpointed: delivered again).
//!
//! The control plane reads and releases leases through [`LeaseAccess`]
//! (`GET /v1/leases`, `POST /v1/leases/{key}/release`).
//!
//! Metrics: [`WorkerStats`] (`records_read`, `read_errors`, `leases_held`, lease events in
//! [`LeaseAccess::counters`]); `lag` and `committed` stay 0 (a Kinesis position is a
//! per-shard sequence number, shown in `/v1/leases`).

pub mod reader;
pub mod shard_sync;

use crate::deliver::TargetSpec;
use crate::{WorkerError, WorkerStats};
use reader::{Exit, ShardReader};
use shard_sync::ShardInfo;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::config::{KinesisSettings, LeaseStoreKind, WorkerConfig};
use switchyard_lease::{
    AnyStore, Coordinator, FileStore, HashRange, Lease, LeaseConfig, LeaseCounters, LeaseStore,
    SystemClock,
};
use switchyard_sinks::sink::kinesis::{load_client, sdk_err};

/// A worker's coordinator, shared by its control loop, its readers and the control plane.
pub type SharedCoordinator = Arc<tokio::sync::Mutex<Coordinator<AnyStore, SystemClock>>>;

/// How often leases are synced with `ListShards`.
pub const SHARD_SYNC: Duration = Duration::from_secs(60);
/// Longest sleep of the control loop (how fast it notices stops and finished readers).
const LOOP_MAX: Duration = Duration::from_millis(100);

/// The default worker id: `<hostname>-<pid>`.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchyard".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Every shard of `stream` (open and closed), following `NextToken`.
///
/// # Errors
/// The failed call, as text.
pub async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<ShardInfo>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let page = req
            .send()
            .await
            .map_err(|e| format!("ListShards {stream}: {}", sdk_err(&e)))?;
        for s in page.shards() {
            out.push(ShardInfo {
                id: s.shard_id().to_owned(),
                parents: s
                    .parent_shard_id()
                    .into_iter()
                    .chain(s.adjacent_parent_shard_id())
                    .map(str::to_owned)
                    .collect(),
                range: s.hash_key_range().and_then(reader::range),
            });
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// One row of `GET /v1/leases`.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    /// The lease as stored.
    pub lease: Lease,
    /// Time since this process's last successful renew, for leases a worker of this process
    /// holds.
    pub last_renew_age: Option<Duration>,
}

/// The control plane's handle on one Kinesis worker's leases.
#[derive(Clone)]
pub struct LeaseAccess {
    /// The worker's id.
    pub worker: String,
    /// The stream sink it reads.
    pub from: String,
    /// The lease table (or file).
    pub table: String,
    coord: SharedCoordinator,
    handle: tokio::runtime::Handle,
    counters: Arc<Mutex<LeaseCounters>>,
}

impl std::fmt::Debug for LeaseAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseAccess")
            .field("worker", &self.worker)
            .field("from", &self.from)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl LeaseAccess {
    /// Every lease of the worker's table, with this worker's renew ages.
    ///
    /// # Errors
    /// A store error, as text.
    pub async fn list(&self) -> Result<Vec<LeaseRow>, String> {
        let coord = self.coord.clone();
        let task = self.handle.spawn(async move {
            let c = coord.lock().await;
            let held = c.held_leases();
            let all = c.store().list().await.map_err(|e| e.to_string())?;
            Ok(all
                .into_iter()
                .map(|lease| {
                    let last_renew_age = held
                        .iter()
                        .find(|h| h.lease.key == lease.key)
                        .map(|h| h.last_renew_age);
                    LeaseRow {
                        lease,
                        last_renew_age,
                    }
                })
                .collect())
        });
        task.await.map_err(|e| e.to_string())?
    }

    /// Releases `key` if this worker holds it: `Ok(None)` when it does not.
    ///
    /// # Errors
    /// A store error or a lost race, as text.
    pub async fn release(&self, key: &str) -> Result<Option<Lease>, String> {
        let coord = self.coord.clone();
        let key = key.to_owned();
        let task = self.handle.spawn(async move {
            let mut c = coord.lock().await;
            if c.holds(&key).is_none() {
                return Ok(None);
            }
            c.release(&key).await.map(Some).map_err(|e| e.to_string())
        });
        task.await.map_err(|e| e.to_string())?
    }

    /// Lease event totals so far.
    pub fn counters(&self) -> LeaseCounters {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Where the worker's leases live.
fn open_store(
    rt: &tokio::runtime::Runtime,
    w: &WorkerConfig,
    state_dir: Option<&Path>,
) -> Result<AnyStore, String> {
    match w.lease_store {
        LeaseStoreKind::Local => {
            let dir = state_dir
                .ok_or("lease_store = \"local\" needs the top-level state_dir".to_owned())?;
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("creating state_dir {}: {e}", dir.display()))?;
            Ok(AnyStore::File(FileStore::new(
                dir.join(format!("{}.json", w.lease_table)),
            )))
        }
        #[cfg(feature = "dynamodb")]
        LeaseStoreKind::Dynamodb => {
            let store = rt.block_on(switchyard_lease::DynamoDbStore::from_env(
                w.lease_table.clone(),
                w.lease_endpoint.as_deref(),
            ));
            rt.block_on(store.create_table_if_absent())
                .map_err(|e| format!("lease table {}: {e}", w.lease_table))?;
            Ok(AnyStore::DynamoDb(store))
        }
        #[cfg(not(feature = "dynamodb"))]
        LeaseStoreKind::Dynamodb => {
            let _ = rt;
            Err("lease_store = \"dynamodb\" needs a build with the `dynamodb` feature".to_owned())
        }
    }
}

/// The lease timing of `w`.
pub fn lease_config(w: &WorkerConfig) -> LeaseConfig {
    let mut c = LeaseConfig::with_failover(w.failover);
    if let Some(r) = w.renew_interval {
        c.renew_interval = r;
    }
    if let Some(t) = w.take_interval {
        c.take_interval = t;
    }
    c.scan_at_expiry = true;
    c
}

/// A Kinesis worker ready to run on its own thread.
pub struct KinesisWorker {
    name: String,
    worker_id: String,
    settings: KinesisSettings,
    /// Taken by [`KinesisWorker::run`] (a runtime must not be dropped inside itself).
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: aws_sdk_kinesis::Client,
    coord: SharedCoordinator,
    spec: TargetSpec,
    stats: Arc<WorkerStats>,
    max_records: i32,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    counters: Arc<Mutex<LeaseCounters>>,
}

/// Everything [`KinesisWorker::prepare`] needs from the config.
pub struct Setup<'a> {
    /// Probe name.
    pub name: String,
    /// The `[[workers]]` entry.
    pub worker: &'a WorkerConfig,
    /// The stream sink it reads.
    pub settings: &'a KinesisSettings,
    /// Top-level `state_dir`.
    pub state_dir: Option<&'a Path>,
    /// Its sinks.
    pub spec: TargetSpec,
    /// Its counters.
    pub stats: Arc<WorkerStats>,
    /// Graceful stop.
    pub stop: Arc<AtomicBool>,
    /// Deadline passed.
    pub abort: Arc<AtomicBool>,
}

struct Running {
    thread: JoinHandle<Exit>,
    halt: Arc<AtomicBool>,
}

impl KinesisWorker {
    /// Builds the runtime, client and lease store and checks the stream exists.
    ///
    /// # Errors
    /// A runtime, store or stream that cannot be reached or set up.
    pub fn prepare(s: Setup<'_>) -> Result<(Self, LeaseAccess), WorkerError> {
        let fail = |m: String| WorkerError::Config(s.name.clone(), m);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("switchyard-kinesis-worker")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("worker runtime: {e}")))?;
        let client = rt.block_on(load_client(s.settings));
        rt.block_on(
            client
                .describe_stream_summary()
                .stream_name(&s.settings.stream)
                .send(),
        )
        .map_err(|e| {
            fail(format!(
                "DescribeStreamSummary {}: {}",
                s.settings.stream,
                sdk_err(&e)
            ))
        })?;
        let store = open_store(&rt, s.worker, s.state_dir).map_err(&fail)?;
        let worker_id = s.worker.worker_id.clone().unwrap_or_else(default_worker_id);
        let coord = Arc::new(tokio::sync::Mutex::new(Coordinator::new(
            worker_id.clone(),
            store,
            SystemClock::new(),
            lease_config(s.worker),
        )));
        let counters = Arc::new(Mutex::new(LeaseCounters::default()));
        let access = LeaseAccess {
            worker: worker_id.clone(),
            from: s.worker.from.clone(),
            table: s.worker.lease_table.clone(),
            coord: coord.clone(),
            handle: rt.handle().clone(),
            counters: counters.clone(),
        };
        Ok((
            KinesisWorker {
                name: s.name,
                worker_id,
                settings: s.settings.clone(),
                client,
                coord,
                spec: s.spec,
                stats: s.stats,
                max_records: i32::try_from(s.worker.max_records.clamp(1, 10_000)).unwrap_or(10_000),
                stop: s.stop,
                abort: s.abort,
                counters,
                handle: rt.handle().clone(),
                rt: Some(rt),
            },
            access,
        ))
    }

    /// Runs the worker's control loop on the calling thread until it stops.
    pub fn run(mut self) {
        let Some(rt) = self.rt.take() else {
            return;
        };
        tracing::info!(worker = %self.worker_id, stream = %self.settings.stream, "kinesis worker started");
        rt.block_on(self.control_loop());
        rt.shutdown_timeout(Duration::from_secs(1));
    }

    async fn sync_shards(&self) {
        let shards = match list_shards(&self.client, &self.settings.stream).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(worker = %self.worker_id, error = %e, "shard sync failed");
                return;
            }
        };
        let c = self.coord.lock().await;
        let leases = match c.store().list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(worker = %self.worker_id, error = %e, "shard sync: listing leases failed");
                return;
            }
        };
        for lease in shard_sync::leases_to_create(&shards, &leases) {
            match c.store().create_if_absent(&lease).await {
                Ok(true) => {
                    tracing::info!(worker = %self.worker_id, shard = %lease.key, parents = ?lease.parents, "lease created")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(worker = %self.worker_id, shard = %lease.key, error = %e, "creating a lease failed")
                }
            }
        }
    }

    /// Starts the reader of a held lease's shard; it delivers only the series of the lease's
    /// hash range when the lease has one (see [`crate::convert::HashScope`]).
    fn start_reader(&self, shard: &str, range: Option<HashRange>) -> Option<Running> {
        let targets = match self.spec.build(&self.name) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(worker = %self.worker_id, shard, error = %e, "cannot build the shard's sinks; retrying");
                return None;
            }
        };
        let halt = Arc::new(AtomicBool::new(false));
        let reader = ShardReader {
            worker: self.worker_id.clone(),
            stream: self.settings.stream.clone(),
            shard: shard.to_owned(),
            client: self.client.clone(),
            handle: self.handle.clone(),
            coord: self.coord.clone(),
            delivery: match range {
                Some(r) => crate::deliver::Delivery::new(&self.name, targets, self.stats.clone())
                    .with_hash_range(r.start, r.end),
                None => crate::deliver::Delivery::new(&self.name, targets, self.stats.clone()),
            },
            stats: self.stats.clone(),
            max_records: self.max_records,
            halt: halt.clone(),
            stop: self.stop.clone(),
        };
        match std::thread::Builder::new()
            .name(format!("shard-{shard}"))
            .spawn(move || reader.run())
        {
            Ok(thread) => Some(Running { thread, halt }),
            Err(e) => {
                tracing::error!(worker = %self.worker_id, shard, error = %e, "cannot spawn a shard reader; retrying");
                None
            }
        }
    }

    async fn control_loop(self) {
        let mut readers: HashMap<String, Running> = HashMap::new();
        let mut next_sync = Instant::now();
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if self.abort.load(Ordering::Relaxed) {
                for r in readers.values() {
                    r.halt.store(true, Ordering::Relaxed);
                }
                break;
            }
            if stopping && readers.is_empty() {
                break;
            }
            if !stopping && Instant::now() >= next_sync {
                self.sync_shards().await;
                next_sync = Instant::now() + SHARD_SYNC;
            }
            // Reap finished readers; a finished shard's children are taken at once.
            let done: Vec<String> = readers
                .iter()
                .filter(|(_, r)| r.thread.is_finished())
                .map(|(k, _)| k.clone())
                .collect();
            let mut shard_ended = false;
            for k in done {
                if let Some(r) = readers.remove(&k) {
                    shard_ended |= matches!(r.thread.join(), Ok(Exit::ShardEnded));
                }
            }
            let next_in = {
                let mut c = self.coord.lock().await;
                let report = c.tick().await;
                if shard_ended && !stopping {
                    if let Err(e) = c.take_leases().await {
                        tracing::warn!(worker = %self.worker_id, error = %e, "taking child leases failed");
                    }
                }
                for k in report.taken.iter().chain(&report.stolen) {
                    tracing::info!(worker = %self.worker_id, shard = %k, "lease acquired");
                }
                for k in &report.lost {
                    tracing::warn!(worker = %self.worker_id, shard = %k, "lease lost");
                }
                // Halt readers whose lease went (lost, stolen, released, expired locally);
                // start one for every held lease without a reader.
                for (k, r) in &readers {
                    if c.holds(k).is_none() {
                        r.halt.store(true, Ordering::Relaxed);
                    }
                }
                if !stopping {
                    for h in c.held_leases() {
                        if !readers.contains_key(&h.lease.key) && !h.lease.checkpoint.is_shard_end()
                        {
                            if let Some(r) = self.start_reader(&h.lease.key, h.lease.hash_range) {
                                readers.insert(h.lease.key.clone(), r);
                            }
                        }
                    }
                }
                self.stats
                    .leases_held
                    .store(c.held_leases().len() as u64, Ordering::Relaxed);
                *self
                    .counters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = c.counters().clone();
                report.next_in
            };
            tokio::time::sleep(next_in.min(LOOP_MAX)).await;
        }
        for (_, r) in readers.drain() {
            let _ = r.thread.join();
        }
        let released = self.coord.lock().await.release_all().await;
        self.stats.leases_held.store(0, Ordering::Relaxed);
        tracing::info!(worker = %self.worker_id, released, "kinesis worker stopped");
    }
}
