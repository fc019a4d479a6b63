//! Deterministic simulation of several workers over one in-memory store with a shared manual
//! clock: random step sizes, tick orders, checkpoints and pauses (proptest picks the
//! schedule). Checks fencing, failover after a kill, balance, and shard lineage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use switchyard_lease::{
    Checkpoint, ChildShard, Coordinator, Lease, LeaseConfig, LeaseError, LeaseStore, ManualClock,
    MemoryStore, Mutation, ShardEndOutcome,
};

/// One successful store mutation, in store order.
#[derive(Clone, Debug)]
struct Event {
    op: &'static str,
    key: String,
    worker: String,
    counter: u64,
}

/// The memory store, logging every successful mutation.
#[derive(Clone, Default)]
struct Recording {
    inner: MemoryStore,
    log: Arc<Mutex<Vec<Event>>>,
}

impl LeaseStore for Recording {
    async fn create_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.inner.create_if_absent(lease).await
    }
    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        self.inner.list().await
    }
    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        self.inner.get(key).await
    }
    async fn update(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        mutation: Mutation,
    ) -> Result<Lease, LeaseError> {
        let op = mutation.name();
        let out = self.inner.update(key, worker, expected, mutation).await;
        if let Ok(l) = &out {
            self.log.lock().unwrap().push(Event {
                op,
                key: key.to_owned(),
                worker: worker.to_owned(),
                counter: l.counter,
            });
        }
        out
    }
    async fn delete(&self, key: &str, expected: u64) -> Result<(), LeaseError> {
        self.inner.delete(key, expected).await
    }
}

type Worker = Coordinator<Recording, ManualClock>;

struct Sim {
    clock: ManualClock,
    store: Recording,
    workers: Vec<Worker>,
    alive: Vec<bool>,
    paused_until: Vec<Duration>,
    rng: SmallRng,
    max_step: u64,
    next_seq: u128,
    random_checkpoints: bool,
}

impl Sim {
    fn new(n: usize, seed: u64, max_step: u64, config: &LeaseConfig) -> Self {
        let clock = ManualClock::new();
        let store = Recording::default();
        let workers = (0..n)
            .map(|i| {
                Coordinator::new(
                    format!("w{i}"),
                    store.clone(),
                    clock.clone(),
                    config.clone(),
                )
                .with_seed(seed ^ i as u64)
            })
            .collect();
        Sim {
            clock,
            store,
            workers,
            alive: vec![true; n],
            paused_until: vec![Duration::ZERO; n],
            rng: SmallRng::seed_from_u64(seed),
            max_step,
            next_seq: 1,
            random_checkpoints: true,
        }
    }

    fn now(&self) -> Duration {
        use switchyard_lease::Clock;
        self.clock.now()
    }

    /// Advances time randomly and ticks every live, unpaused worker in random order; each
    /// may checkpoint a held lease.
    async fn step(&mut self, pauses: bool) {
        self.clock
            .advance(Duration::from_millis(self.rng.gen_range(1..=self.max_step)));
        let mut order: Vec<usize> = (0..self.workers.len()).collect();
        order.shuffle(&mut self.rng);
        for i in order {
            if !self.alive[i] || self.now() < self.paused_until[i] {
                continue;
            }
            if pauses && self.rng.gen_bool(0.01) {
                // A stall (GC pause, overloaded host) longer than the lease.
                let pause = Duration::from_millis(self.rng.gen_range(5_000..25_000));
                self.paused_until[i] = self.now() + pause;
                continue;
            }
            self.workers[i].tick().await;
            let held = self.workers[i].held_leases();
            if self.random_checkpoints && !held.is_empty() && self.rng.gen_bool(0.3) {
                let key = held[self.rng.gen_range(0..held.len())].lease.key.clone();
                self.next_seq += 1;
                let cp = Checkpoint::seq(self.next_seq, 0);
                match self.workers[i].checkpoint(&key, cp).await {
                    Ok(_) | Err(LeaseError::Lost { .. }) => {}
                    Err(e) => panic!("checkpoint: {e}"),
                }
            }
            self.check_fencing();
        }
    }

    /// At most one worker believes it holds a lease with the store's current counter, and it
    /// is the store's owner.
    fn check_fencing(&self) {
        for lease in self.store.inner.snapshot() {
            let current: Vec<&str> = self
                .workers
                .iter()
                .filter(|w| {
                    w.holds(&lease.key)
                        .is_some_and(|h| h.counter == lease.counter)
                })
                .map(|w| w.worker_id())
                .collect();
            assert!(current.len() <= 1, "{}: {current:?}", lease.key);
            if let Some(w) = current.first() {
                assert!(
                    lease.is_owned_by(w),
                    "{} believed by {w}: {lease:?}",
                    lease.key
                );
            }
        }
    }

    /// Store-order log: counters go up by one per mutation, and no holder operation succeeds
    /// for a worker other than the one whose take (or create) came last.
    fn check_log(&self) {
        let mut owner: HashMap<&str, Option<&str>> = HashMap::new();
        let mut counter: HashMap<&str, u64> = HashMap::new();
        let log = self.store.log.lock().unwrap();
        for e in log.iter() {
            let last = counter.insert(&e.key, e.counter).unwrap_or(0);
            assert_eq!(e.counter, last + 1, "{e:?}");
            match e.op {
                "take" => {
                    owner.insert(&e.key, Some(&e.worker));
                }
                "release" => {
                    assert_eq!(
                        owner.insert(&e.key, None).flatten(),
                        Some(e.worker.as_str())
                    );
                }
                _ => assert_eq!(
                    owner.get(e.key.as_str()).copied().flatten(),
                    Some(e.worker.as_str()),
                    "{e:?} after another worker's take"
                ),
            }
        }
    }

    /// Lease key -> the live worker holding it with the store's current counter.
    fn holders(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for lease in self.store.inner.snapshot() {
            for (i, w) in self.workers.iter().enumerate() {
                if self.alive[i]
                    && w.holds(&lease.key)
                        .is_some_and(|h| h.counter == lease.counter)
                {
                    out.insert(lease.key.clone(), i);
                }
            }
        }
        out
    }

    async fn run_until(&mut self, t: Duration, pauses: bool) {
        while self.now() < t {
            self.step(pauses).await;
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Kill a worker: the others hold all its leases within `failover + take_interval` with
    /// `scan_at_expiry`, and within two take rounds without it (KCL's worst case: the first
    /// scan after the last renewal sees the counter change, the next one sees it expired);
    /// fencing holds throughout, and balance converges to ceil(M/N) per worker. The slack is
    /// the simulation's tick granularity (a round runs at the first step after it is due).
    #[test]
    fn failover_fencing_and_balance(
        n in 2usize..=4,
        m in 1usize..=10,
        seed in any::<u64>(),
        kill in 0usize..4,
        max_step in 100u64..=3000,
        scan_at_expiry in any::<bool>(),
    ) {
        runtime().block_on(async {
            let config = LeaseConfig { scan_at_expiry, ..LeaseConfig::default() };
            let take = config.take_interval;
            let mut sim = Sim::new(n, seed, max_step, &config);
            for k in 0..m {
                let lease = Lease::new(format!("shard-{k:02}"), Checkpoint::TrimHorizon);
                sim.store.create_if_absent(&lease).await.unwrap();
            }
            // Chaos phase: pauses move leases around.
            sim.run_until(Duration::from_secs(120), true).await;
            // Calm phase: every lease is held by someone.
            let calm = sim.now() + take * 3;
            sim.run_until(calm, false).await;
            prop_assert_eq!(sim.holders().len(), m, "all held before the kill");

            let victim = kill % n;
            sim.alive[victim] = false;
            let killed_at = sim.now();
            let slack = Duration::from_millis(max_step);
            let bound = if scan_at_expiry {
                killed_at + config.failover + take + slack * 2
            } else {
                killed_at + (take + slack) * 2 + slack
            };
            sim.run_until(bound, false).await;
            let holders = sim.holders();
            prop_assert_eq!(holders.len(), m, "all leases held by survivors by the bound");
            prop_assert!(holders.values().all(|&i| i != victim));

            // Balance: at most one steal per worker per round; M rounds are plenty.
            let settle = sim.now() + (take + slack) * (m as u32 + 2);
            sim.run_until(settle, false).await;
            let holders = sim.holders();
            prop_assert_eq!(holders.len(), m);
            let target = m.div_ceil(n - 1);
            for i in (0..n).filter(|&i| i != victim) {
                let count = holders.values().filter(|&&h| h == i).count();
                prop_assert!(count <= target, "w{} holds {} > {}", i, count, target);
            }
            sim.check_log();
            Ok(())
        })?;
    }

    /// Split and merge lineage: r0 -> (a0, a1) -> b0 (merge), and r1 + r2 -> b1 (merge). A
    /// child is never checkpointed before every parent is at ShardEnd (or deleted), and the
    /// whole lineage completes despite a killed worker.
    #[test]
    fn children_start_only_after_parents_end(
        n in 2usize..=4,
        seed in any::<u64>(),
        kill in 0usize..4,
        ends_after in 1u128..=4,
        max_step in 100u64..=3000,
    ) {
        runtime().block_on(async {
            let config = LeaseConfig {
                cleanup_interval: Duration::from_secs(60),
                ..LeaseConfig::default()
            };
            let mut sim = Sim::new(n, seed, max_step, &config);
            sim.random_checkpoints = false;
            let child = |k: &str, parents: &[&str]| ChildShard {
                key: k.into(),
                parents: parents.iter().map(|p| (*p).to_owned()).collect(),
                hash_range: None,
            };
            let mut children: HashMap<&str, Vec<ChildShard>> = HashMap::new();
            children.insert("r0", vec![child("a0", &["r0"]), child("a1", &["r0"])]);
            children.insert("a0", vec![child("b0", &["a0", "a1"])]);
            children.insert("a1", vec![child("b0", &["a0", "a1"])]);
            children.insert("r1", vec![child("b1", &["r1", "r2"])]);
            children.insert("r2", vec![child("b1", &["r1", "r2"])]);
            for k in ["r0", "r1", "r2"] {
                sim.store.create_if_absent(&Lease::new(k, Checkpoint::TrimHorizon)).await.unwrap();
            }
            let victim = kill % n;
            let mut processed: HashMap<String, u128> = HashMap::new();
            let deadline = Duration::from_secs(3600);
            while sim.now() < deadline {
                if sim.now() > Duration::from_secs(200) {
                    sim.alive[victim] = false;
                }
                sim.step(false).await;
                for i in 0..n {
                    if !sim.alive[i] {
                        continue;
                    }
                    for held in sim.workers[i].held_leases() {
                        let key = held.lease.key.clone();
                        if !sim.workers[i].can_start(&key).await.unwrap() {
                            continue;
                        }
                        // Independent check against the store.
                        let all = sim.store.inner.snapshot();
                        for p in &held.lease.parents {
                            let parent = all.iter().find(|l| &l.key == p);
                            prop_assert!(
                                parent.is_none_or(|l| l.checkpoint.is_shard_end()),
                                "{} started before parent {:?}", key, parent
                            );
                        }
                        let progress = match &held.lease.checkpoint {
                            Checkpoint::Seq { seq, .. } => seq.as_str().parse::<u128>().unwrap(),
                            _ => 0,
                        };
                        match children.get(key.as_str()) {
                            Some(kids) if progress >= ends_after => {
                                match sim.workers[i].mark_shard_end(&key, kids).await {
                                    Ok(ShardEndOutcome::Done { .. }) | Err(LeaseError::Lost { .. }) => {}
                                    Ok(ShardEndOutcome::Deferred { children }) => {
                                        prop_assert!(false, "unexpected deferral {:?}", children)
                                    }
                                    Err(e) => prop_assert!(false, "{}", e),
                                }
                            }
                            _ if progress < ends_after => {
                                match sim.workers[i].checkpoint(&key, Checkpoint::seq(progress + 1, 0)).await {
                                    Ok(_) => {
                                        processed.insert(key.clone(), progress + 1);
                                    }
                                    Err(LeaseError::Lost { .. }) => {}
                                    Err(e) => prop_assert!(false, "{}", e),
                                }
                            }
                            _ => {}
                        }
                    }
                }
                if processed.get("b0") == Some(&ends_after) && processed.get("b1") == Some(&ends_after) {
                    break;
                }
            }
            prop_assert_eq!(processed.get("b0"), Some(&ends_after), "lineage did not complete");
            prop_assert_eq!(processed.get("b1"), Some(&ends_after));
            let all = sim.store.inner.snapshot();
            for k in ["r0", "r1", "r2", "a0", "a1"] {
                let l = all.iter().find(|l| l.key == k);
                prop_assert!(l.is_none_or(|l| l.checkpoint.is_shard_end()), "{} not finished", k);
            }
            let b0 = sim.store.inner.snapshot().into_iter().find(|l| l.key == "b0").unwrap();
            prop_assert_eq!(b0.parents, vec!["a0".to_owned(), "a1".to_owned()]);
            sim.check_log();
            Ok(())
        })?;
    }
}
