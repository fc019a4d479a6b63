//! The per-worker lease algorithm (KCL 2.x `DynamoDBLeaseCoordinator`, taker and renewer).
//!
//! One [`Coordinator`] per worker process: it renews the leases it holds, scans the store to
//! take expired leases and balance, fences checkpoints with the lease counter, finishes
//! shards (creating their child leases) and releases leases on request.
//!
//! Rules, in KCL's terms:
//! - Expiry is observed: each scan remembers, per lease, the local monotonic time at which
//!   its counter was first seen with its current value. A lease is expired when that value
//!   has not changed for `failover`, or when it has no owner. No timestamps cross machines.
//! - A held lease is lost locally once `now − last successful renew > failover` (the renew
//!   time is taken before the request is sent), or when a renew/checkpoint fails its
//!   compare-and-set. The data path must stop for that shard at once.
//! - Balancing: `target = ceil(live leases / workers)`, workers = distinct owners of unexpired
//!   leases plus this worker, capped by `max_leases`. Below target, take expired or unowned
//!   leases ("very old" first, otherwise in random order); if none is available, steal up to
//!   `max_steal` from the most loaded worker when it holds more than the target (or exactly
//!   the target while this worker needs more than one, as KCL does). Leases at `ShardEnd`
//!   are finished: never taken, stolen or counted.
//! - A child shard may start only once every parent is at `ShardEnd` or gone.
//! - Take rounds run every `take_interval`, so a dead worker's leases move within
//!   `2 × take_interval` of its last renewal; `scan_at_expiry` adds a scan when an observed
//!   lease would expire earlier, bounding that by `failover + take_interval`.
//!
//! Threading: `&mut self` methods, so one task drives a coordinator; the worker runtime
//! shares it with its shard readers behind a `tokio::sync::Mutex` (see [`run_shared`]).
//!
//! Telemetry: [`LeaseCounters`] (renewals, renew failures, leases lost, taken, stolen, CAS
//! conflicts, store errors, leases deleted), for the worker to export as
//! `switchyard_lease_<what>_total`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::clock::Clock;
use crate::config::LeaseConfig;
use crate::error::LeaseError;
use crate::lease::{Checkpoint, HashRange, Lease};
use crate::store::LeaseStore;

/// A child shard reported at the end of its parent (Kinesis `ChildShards`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's lease key.
    pub key: String,
    /// All parents of the child (one after a split, two after a merge).
    pub parents: Vec<String>,
    /// The child's hash-key range, if known.
    pub hash_range: Option<HashRange>,
}

/// A lease this worker holds, for `GET /v1/leases`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    /// The lease as last written by this worker.
    pub lease: Lease,
    /// Time since the last successful renew (or take or checkpoint).
    pub last_renew_age: Duration,
}

/// Running totals of lease events (exported by the worker as metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseCounters {
    /// Successful renewals.
    pub renewals: u64,
    /// Renewals that failed with a store error (the lease is kept until it expires locally).
    pub renew_failures: u64,
    /// Leases lost (CAS failure, stolen, or expired locally).
    pub lost: u64,
    /// Expired or unowned leases taken.
    pub taken: u64,
    /// Leases stolen from a more loaded worker.
    pub stolen: u64,
    /// Takes or deletes that lost their compare-and-set race.
    pub conflicts: u64,
    /// Store errors in take, cleanup and shard-end work.
    pub store_errors: u64,
    /// Finished leases deleted by cleanup.
    pub deleted: u64,
}

/// What one [`Coordinator::tick`] (or round) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Leases renewed.
    pub renewed: usize,
    /// Leases lost (stop processing them).
    pub lost: Vec<String>,
    /// Expired or unowned leases taken (start processing them).
    pub taken: Vec<String>,
    /// Leases stolen from another worker (start processing them).
    pub stolen: Vec<String>,
    /// Finished leases deleted.
    pub deleted: Vec<String>,
    /// Time until the next round is due.
    pub next_in: Duration,
}

/// Outcome of [`Coordinator::mark_shard_end`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardEndOutcome {
    /// The lease is at `ShardEnd` (and no longer held); `created` child leases were new.
    Done {
        /// The finished lease as written.
        lease: Box<Lease>,
        /// Child leases this call created.
        created: Vec<String>,
    },
    /// A merge child could not be created yet because exactly one of its parents' leases
    /// exists (KCL's "MissingMergeParentLease"); nothing was checkpointed, retry later.
    Deferred {
        /// The merge children whose other parent's lease is missing.
        children: Vec<String>,
    },
}

struct Held {
    lease: Lease,
    last_renew: Duration,
}

struct Observation {
    counter: u64,
    changed_at: Duration,
}

/// One worker's view and handling of the lease table.
pub struct Coordinator<S, C> {
    worker: String,
    store: S,
    clock: C,
    config: LeaseConfig,
    held: BTreeMap<String, Held>,
    observed: HashMap<String, Observation>,
    released: HashMap<String, Duration>,
    next_renew: Duration,
    next_take: Duration,
    next_cleanup: Duration,
    /// Earliest moment a lease owned by another worker expires by my observation.
    next_expiry: Option<Duration>,
    rng: SmallRng,
    counters: LeaseCounters,
}

impl<S: LeaseStore, C: Clock> Coordinator<S, C> {
    /// A coordinator for `worker` holding nothing yet; its first tick renews and scans.
    pub fn new(worker: impl Into<String>, store: S, clock: C, config: LeaseConfig) -> Self {
        let worker = worker.into();
        let mut h = DefaultHasher::new();
        worker.hash(&mut h);
        let now = clock.now();
        Coordinator {
            rng: SmallRng::seed_from_u64(h.finish()),
            next_renew: now,
            next_take: now,
            next_cleanup: now + config.cleanup_interval,
            next_expiry: None,
            worker,
            store,
            clock,
            config,
            held: BTreeMap::new(),
            observed: HashMap::new(),
            released: HashMap::new(),
            counters: LeaseCounters::default(),
        }
    }

    /// Reseeds the random order in which expired leases and steal victims are picked.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = SmallRng::seed_from_u64(seed);
        self
    }

    /// This worker's id (the `owner` it writes).
    pub fn worker_id(&self) -> &str {
        &self.worker
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Event totals so far.
    pub fn counters(&self) -> &LeaseCounters {
        &self.counters
    }

    fn is_valid(&self, held: &Held, now: Duration) -> bool {
        now.saturating_sub(held.last_renew) <= self.config.failover
    }

    /// The leases this worker holds and may process now (not expired locally).
    pub fn held_leases(&self) -> Vec<HeldLease> {
        let now = self.clock.now();
        self.held
            .values()
            .filter(|h| self.is_valid(h, now))
            .map(|h| HeldLease {
                lease: h.lease.clone(),
                last_renew_age: now.saturating_sub(h.last_renew),
            })
            .collect()
    }

    /// The held lease `key`, if held and not expired locally.
    pub fn holds(&self, key: &str) -> Option<&Lease> {
        let now = self.clock.now();
        self.held
            .get(key)
            .filter(|h| self.is_valid(h, now))
            .map(|h| &h.lease)
    }

    fn valid_counter(&self, key: &str) -> Result<u64, LeaseError> {
        self.holds(key).map(|l| l.counter).ok_or(LeaseError::Lost {
            key: key.to_owned(),
        })
    }

    fn lose(&mut self, key: &str, report: &mut TickReport) {
        if self.held.remove(key).is_some() {
            self.counters.lost += 1;
            report.lost.push(key.to_owned());
            tracing::info!(worker = %self.worker, lease = key, "lease lost");
        }
    }

    fn hold(&mut self, lease: Lease, renewed_at: Duration) {
        self.observed.insert(
            lease.key.clone(),
            Observation {
                counter: lease.counter,
                changed_at: renewed_at,
            },
        );
        self.held.insert(
            lease.key.clone(),
            Held {
                lease,
                last_renew: renewed_at,
            },
        );
    }

    /// Runs whatever is due (renew round, take round, cleanup) and says when to call again.
    pub async fn tick(&mut self) -> TickReport {
        let now = self.clock.now();
        let mut report = TickReport::default();
        if now >= self.next_renew {
            self.next_renew = now + self.config.renew_interval;
            self.renew_round(&mut report).await;
        }
        if now >= self.next_take {
            self.next_take = now + self.config.take_interval;
            if let Err(e) = self.take_round(&mut report).await {
                self.counters.store_errors += 1;
                tracing::warn!(worker = %self.worker, error = %e, "lease take round failed");
            }
            if let (true, Some(at)) = (self.config.scan_at_expiry, self.next_expiry) {
                self.next_take = self.next_take.min(at.max(now));
            }
        }
        if now >= self.next_cleanup {
            self.next_cleanup = now + self.config.cleanup_interval;
            if let Err(e) = self.cleanup_round(&mut report).await {
                self.counters.store_errors += 1;
                tracing::warn!(worker = %self.worker, error = %e, "lease cleanup failed");
            }
        }
        let next = self.next_renew.min(self.next_take).min(self.next_cleanup);
        report.next_in = next.saturating_sub(self.clock.now());
        report
    }

    /// Renews every held lease now; drops those lost or expired locally.
    pub async fn renew_leases(&mut self) -> TickReport {
        let mut report = TickReport::default();
        self.renew_round(&mut report).await;
        report
    }

    async fn renew_round(&mut self, report: &mut TickReport) {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            let now = self.clock.now();
            let Some(counter) = self
                .held
                .get(&key)
                .filter(|h| self.is_valid(h, now))
                .map(|h| h.lease.counter)
            else {
                self.lose(&key, report);
                continue;
            };
            match self.store.renew(&key, &self.worker, counter).await {
                Ok(lease) => {
                    self.counters.renewals += 1;
                    report.renewed += 1;
                    self.hold(lease, now);
                }
                Err(e) if e.is_race() || matches!(e, LeaseError::NotFound { .. }) => {
                    self.lose(&key, report);
                }
                Err(e) => {
                    // Unknown outcome: keep the lease until it expires locally; the next
                    // renew may still succeed.
                    self.counters.renew_failures += 1;
                    tracing::warn!(worker = %self.worker, lease = %key, error = %e, "lease renew failed");
                }
            }
        }
    }

    /// Scans the store, takes expired leases and steals to balance, now.
    ///
    /// # Errors
    /// A store error from the scan or a take (the round stops there).
    pub async fn take_leases(&mut self) -> Result<TickReport, LeaseError> {
        let mut report = TickReport::default();
        self.take_round(&mut report).await?;
        Ok(report)
    }

    async fn take_round(&mut self, report: &mut TickReport) -> Result<(), LeaseError> {
        let leases = self.store.list().await?;
        let now = self.clock.now();
        let failover = self.config.failover;
        self.observe(&leases, now);
        self.reconcile_held(&leases, now, report);
        self.next_expiry = leases
            .iter()
            .filter(|l| {
                !l.checkpoint.is_shard_end() && l.owner.as_deref().is_some_and(|o| o != self.worker)
            })
            .filter_map(|l| self.observed.get(&l.key))
            .map(|o| o.changed_at + failover + self.config.epsilon)
            .filter(|&at| at > now)
            .min();

        let live: Vec<&Lease> = leases
            .iter()
            .filter(|l| !l.checkpoint.is_shard_end())
            .collect();
        let age = |l: &Lease| {
            self.observed
                .get(&l.key)
                .map_or(Duration::ZERO, |o| now.saturating_sub(o.changed_at))
        };
        let available = |l: &Lease| match l.owner.as_deref() {
            None => true,
            Some(o) if o == self.worker => !self.held.contains_key(&l.key),
            Some(_) => age(l) > failover,
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        counts.insert(self.worker.as_str(), 0);
        for l in &live {
            if let (false, Some(owner)) = (available(l), l.owner.as_deref()) {
                *counts.entry(owner).or_default() += 1;
            }
        }
        let workers = counts.len();
        let target = live.len().div_ceil(workers).min(self.config.max_leases);
        let mine = counts.get(self.worker.as_str()).copied().unwrap_or(0);
        let need = target.saturating_sub(mine);
        if need == 0 {
            return Ok(());
        }

        let mut candidates: Vec<&Lease> = live
            .iter()
            .copied()
            .filter(|l| available(l) && !self.released.contains_key(&l.key))
            .collect();
        let steal = candidates.is_empty();
        if steal {
            let victim = counts
                .iter()
                .filter(|(w, _)| **w != self.worker)
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)));
            let Some((victim, &load)) = victim else {
                return Ok(());
            };
            let n = if load > target {
                (load - target).min(need)
            } else if load == target && need > 1 {
                1
            } else {
                0
            };
            let n = n.min(self.config.max_steal);
            candidates = live
                .iter()
                .copied()
                .filter(|l| l.owner.as_deref() == Some(*victim) && !available(l))
                .collect();
            candidates.shuffle(&mut self.rng);
            candidates.truncate(n);
        } else {
            candidates.shuffle(&mut self.rng);
            let very_old = failover * self.config.very_old_factor;
            candidates.sort_by_key(|l| age(l) <= very_old);
            candidates.truncate(need);
        }

        let picks: Vec<(String, u64)> = candidates
            .iter()
            .map(|l| (l.key.clone(), l.counter))
            .collect();
        for (key, counter) in picks {
            let at = self.clock.now();
            match self.store.take(&key, &self.worker, counter).await {
                Ok(lease) => {
                    tracing::info!(worker = %self.worker, lease = %key, steal, "lease taken");
                    self.hold(lease, at);
                    if steal {
                        self.counters.stolen += 1;
                        report.stolen.push(key);
                    } else {
                        self.counters.taken += 1;
                        report.taken.push(key);
                    }
                }
                Err(e) if e.is_race() || matches!(e, LeaseError::NotFound { .. }) => {
                    self.counters.conflicts += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Records, per lease, when its counter was first seen at its current value.
    fn observe(&mut self, leases: &[Lease], now: Duration) {
        let mut seen = HashSet::with_capacity(leases.len());
        for l in leases {
            seen.insert(l.key.as_str());
            match self.observed.get(&l.key) {
                Some(o) if o.counter == l.counter => {}
                _ => {
                    self.observed.insert(
                        l.key.clone(),
                        Observation {
                            counter: l.counter,
                            changed_at: now,
                        },
                    );
                }
            }
        }
        self.observed.retain(|k, _| seen.contains(k.as_str()));
        let cooldown = self.config.failover;
        self.released
            .retain(|_, at| now.saturating_sub(*at) < cooldown);
    }

    /// Drops held leases the scan shows as gone, finished or owned by someone else.
    fn reconcile_held(&mut self, leases: &[Lease], now: Duration, report: &mut TickReport) {
        let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.key.as_str(), l)).collect();
        let gone: Vec<String> = self
            .held
            .iter()
            .filter(|(k, h)| {
                !self.is_valid(h, now)
                    || by_key
                        .get(k.as_str())
                        .is_none_or(|l| !l.is_owned_by(&self.worker) || l.checkpoint.is_shard_end())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.lose(&key, report);
        }
    }

    /// Checkpoints a held lease, fenced by its counter.
    ///
    /// # Errors
    /// `Lost` if the lease is not held (or expired locally, or the CAS fails: the lease is
    /// then dropped), `InvalidCheckpoint`, or a store error.
    pub async fn checkpoint(
        &mut self,
        key: &str,
        checkpoint: Checkpoint,
    ) -> Result<Lease, LeaseError> {
        let counter = self.valid_counter(key)?;
        let at = self.clock.now();
        let result = self
            .store
            .checkpoint(key, &self.worker, counter, checkpoint)
            .await;
        self.after_holder_op(key, at, result)
    }

    fn after_holder_op(
        &mut self,
        key: &str,
        at: Duration,
        result: Result<Lease, LeaseError>,
    ) -> Result<Lease, LeaseError> {
        match result {
            Ok(lease) => {
                self.hold(lease.clone(), at);
                Ok(lease)
            }
            Err(e) => {
                if e.is_race() || matches!(e, LeaseError::NotFound { .. }) {
                    self.lose(key, &mut TickReport::default());
                }
                Err(e)
            }
        }
    }

    /// Finishes a held shard: creates its child leases if absent (a merge child only when
    /// both parents' leases exist or both are gone), then checkpoints `ShardEnd` and stops
    /// holding the lease.
    ///
    /// # Errors
    /// `Lost` if the lease is not held or the CAS fails, or a store error.
    pub async fn mark_shard_end(
        &mut self,
        key: &str,
        children: &[ChildShard],
    ) -> Result<ShardEndOutcome, LeaseError> {
        self.valid_counter(key)?;
        let mut deferred = Vec::new();
        for child in children.iter().filter(|c| c.parents.len() >= 2) {
            let mut present = 0;
            for parent in &child.parents {
                if self.store.get(parent).await?.is_some() {
                    present += 1;
                }
            }
            if present != 0 && present != child.parents.len() {
                deferred.push(child.key.clone());
            }
        }
        if !deferred.is_empty() {
            return Ok(ShardEndOutcome::Deferred { children: deferred });
        }
        let mut created = Vec::new();
        for child in children {
            let mut lease = Lease::new(child.key.clone(), Checkpoint::TrimHorizon)
                .with_parents(child.parents.clone());
            lease.hash_range = child.hash_range;
            if self.store.create_if_absent(&lease).await? {
                created.push(child.key.clone());
            }
        }
        let counter = self.valid_counter(key)?;
        let keys = children.iter().map(|c| c.key.clone()).collect();
        match self
            .store
            .mark_shard_end(key, &self.worker, counter, keys)
            .await
        {
            Ok(lease) => {
                // Finished: nothing left to renew; nobody takes a ShardEnd lease.
                self.held.remove(key);
                Ok(ShardEndOutcome::Done {
                    lease: Box::new(lease),
                    created,
                })
            }
            Err(e) => {
                if e.is_race() || matches!(e, LeaseError::NotFound { .. }) {
                    self.lose(key, &mut TickReport::default());
                }
                Err(e)
            }
        }
    }

    /// Gives a held lease up (`POST /v1/leases/{key}/release`); this worker does not take it
    /// back for `failover`, so another worker can.
    ///
    /// # Errors
    /// `Lost` if not held or the CAS fails, or a store error.
    pub async fn release(&mut self, key: &str) -> Result<Lease, LeaseError> {
        let counter = self.valid_counter(key)?;
        let result = self.store.release(key, &self.worker, counter).await;
        self.held.remove(key);
        self.released.insert(key.to_owned(), self.clock.now());
        result
    }

    /// Releases every held lease (graceful shutdown), returning how many were released.
    pub async fn release_all(&mut self) -> usize {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        let mut released = 0;
        for key in keys {
            if self.release(&key).await.is_ok() {
                released += 1;
            }
        }
        released
    }

    /// True if the shard `key` may start: every parent lease is at `ShardEnd` or gone.
    ///
    /// # Errors
    /// `NotFound` for an unknown key, or a store error.
    pub async fn can_start(&self, key: &str) -> Result<bool, LeaseError> {
        let lease = self.store.get(key).await?.ok_or(LeaseError::NotFound {
            key: key.to_owned(),
        })?;
        for parent in &lease.parents {
            if let Some(p) = self.store.get(parent).await? {
                if !p.checkpoint.is_shard_end() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Deletes finished leases whose children all exist and have progressed, now.
    ///
    /// # Errors
    /// A store error from the scan or a delete.
    pub async fn cleanup(&mut self) -> Result<Vec<String>, LeaseError> {
        let mut report = TickReport::default();
        self.cleanup_round(&mut report).await?;
        Ok(report.deleted)
    }

    async fn cleanup_round(&mut self, report: &mut TickReport) -> Result<(), LeaseError> {
        let leases = self.store.list().await?;
        let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.key.as_str(), l)).collect();
        for l in &leases {
            let done = l.checkpoint.is_shard_end()
                && !l.children.is_empty()
                && l.children.iter().all(|c| {
                    by_key
                        .get(c.as_str())
                        .is_some_and(|c| c.checkpoint.has_progress())
                });
            if !done {
                continue;
            }
            match self.store.delete(&l.key, l.counter).await {
                Ok(()) => {
                    self.counters.deleted += 1;
                    report.deleted.push(l.key.clone());
                }
                Err(e) if e.is_race() || matches!(e, LeaseError::NotFound { .. }) => {
                    self.counters.conflicts += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// True if every parent of `lease` is at `ShardEnd` or absent from `all`.
pub fn parents_finished(lease: &Lease, all: &[Lease]) -> bool {
    lease.parents.iter().all(|p| {
        all.iter()
            .find(|l| &l.key == p)
            .is_none_or(|l| l.checkpoint.is_shard_end())
    })
}

/// Drives a shared coordinator on tokio until `shutdown` resolves, then releases its leases.
/// Shard readers lock the same mutex to read [`Coordinator::held_leases`] and checkpoint.
pub async fn run_shared<S, C>(
    coordinator: Arc<tokio::sync::Mutex<Coordinator<S, C>>>,
    shutdown: impl Future<Output = ()>,
) where
    S: LeaseStore,
    C: Clock,
{
    tokio::pin!(shutdown);
    loop {
        let wait = coordinator.lock().await.tick().await.next_in;
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    coordinator.lock().await.release_all().await;
}
