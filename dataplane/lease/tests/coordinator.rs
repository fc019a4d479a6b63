//! One test per coordinator rule, on the memory store with a manual clock (no sleeping).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use switchyard_lease::{
    Checkpoint, ChildShard, Coordinator, Lease, LeaseConfig, LeaseError, LeaseStore, ManualClock,
    MemoryStore, ShardEndOutcome,
};

type Coord = Coordinator<MemoryStore, ManualClock>;

const F: Duration = Duration::from_secs(10);

fn worker(id: &str, store: &MemoryStore, clock: &ManualClock) -> Coord {
    Coordinator::new(id, store.clone(), clock.clone(), LeaseConfig::default())
}

async fn store_with(keys: &[&str]) -> MemoryStore {
    let store = MemoryStore::new();
    for k in keys {
        assert!(store
            .create_if_absent(&Lease::new(*k, Checkpoint::TrimHorizon))
            .await
            .unwrap());
    }
    store
}

fn held(c: &Coord) -> Vec<String> {
    c.held_leases().into_iter().map(|h| h.lease.key).collect()
}

#[tokio::test]
async fn expiry_is_observed_by_the_takers_clock() {
    let clock = ManualClock::new();
    let store = store_with(&["s0"]).await;
    let mut a = worker("a", &store, &clock);
    let mut b = worker("b", &store, &clock);
    assert_eq!(a.take_leases().await.unwrap().taken, vec!["s0"]);
    // b first sees the counter now; a never renews again (it died).
    assert!(b.take_leases().await.unwrap().taken.is_empty());
    clock.advance(F);
    assert!(
        b.take_leases().await.unwrap().taken.is_empty(),
        "unchanged for exactly failover is not expired"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.take_leases().await.unwrap().taken, vec!["s0"]);
    assert!(store.snapshot()[0].is_owned_by("b"));
    assert_eq!(store.snapshot()[0].owner_switches, 2);
}

#[tokio::test]
async fn renewed_leases_are_never_taken() {
    let clock = ManualClock::new();
    let store = store_with(&["s0"]).await;
    let mut a = worker("a", &store, &clock);
    let mut b = worker("b", &store, &clock);
    a.take_leases().await.unwrap();
    for _ in 0..40 {
        clock.advance(a.config().renew_interval);
        assert_eq!(a.renew_leases().await.renewed, 1);
        let r = b.take_leases().await.unwrap();
        assert!(r.taken.is_empty() && r.stolen.is_empty());
    }
    assert_eq!(held(&a), vec!["s0"]);
}

#[tokio::test]
async fn held_lease_is_lost_locally_after_failover_without_renewal() {
    let clock = ManualClock::new();
    let store = store_with(&["s0"]).await;
    let mut a = worker("a", &store, &clock);
    a.take_leases().await.unwrap();
    clock.advance(F);
    assert!(a.holds("s0").is_some());
    clock.advance(Duration::from_millis(1));
    assert!(a.holds("s0").is_none());
    let before = store.snapshot()[0].counter;
    // The checkpoint is refused locally, without a store write.
    assert!(matches!(
        a.checkpoint("s0", Checkpoint::seq(5, 0)).await,
        Err(LeaseError::Lost { .. })
    ));
    assert_eq!(store.snapshot()[0].counter, before);
    assert_eq!(a.renew_leases().await.lost, vec!["s0"]);
}

#[tokio::test]
async fn balance_steals_one_per_round_from_the_most_loaded_above_target() {
    let clock = ManualClock::new();
    let store = store_with(&["s0", "s1", "s2", "s3", "s4"]).await;
    let mut a = worker("a", &store, &clock);
    let mut b = worker("b", &store, &clock);
    let mut c = worker("c", &store, &clock);
    assert_eq!(a.take_leases().await.unwrap().taken.len(), 5);
    // Workers = {a, b}: target 3; b steals one per round while a holds more than 3.
    for (round, expect) in [(1, 1), (2, 1), (3, 0)] {
        clock.advance(Duration::from_secs(1));
        a.renew_leases().await;
        let r = b.take_leases().await.unwrap();
        assert_eq!(r.stolen.len(), expect, "round {round}");
        assert!(r.taken.is_empty());
    }
    a.renew_leases().await;
    assert_eq!((held(&a).len(), held(&b).len()), (3, 2));
    assert_eq!(
        a.counters().lost,
        2,
        "a dropped each stolen lease at its next renewal"
    );
    // c joins: workers = 3, target 2; a (3) is the only one above target.
    let r = c.take_leases().await.unwrap();
    assert_eq!(r.stolen.len(), 1);
    let victim = store.get(&r.stolen[0]).await.unwrap().unwrap();
    assert!(victim.is_owned_by("c"));
    a.renew_leases().await;
    assert_eq!((held(&a).len(), held(&b).len(), held(&c).len()), (2, 2, 1));
    // c needs 1 more, but nobody is above target: no steal.
    let r = c.take_leases().await.unwrap();
    assert!(r.stolen.is_empty() && r.taken.is_empty());
}

#[tokio::test]
async fn steals_at_target_only_when_needing_more_than_one() {
    let clock = ManualClock::new();
    let store = store_with(&["s0", "s1", "s2", "s3", "s4", "s5"]).await;
    let (mut a, mut b, mut c) = (
        worker("a", &store, &clock),
        worker("b", &store, &clock),
        worker("c", &store, &clock),
    );
    let mut d = worker("d", &store, &clock);
    let cfg = LeaseConfig {
        max_leases: 2,
        ..LeaseConfig::default()
    };
    for w in [&mut a, &mut b, &mut c] {
        *w = Coordinator::new(
            w.worker_id().to_owned(),
            store.clone(),
            clock.clone(),
            cfg.clone(),
        );
        w.take_leases().await.unwrap();
    }
    assert_eq!((held(&a).len(), held(&b).len(), held(&c).len()), (2, 2, 2));
    // 6 leases, 4 workers: target 2; d needs 2 and everyone is at target: KCL steals one.
    assert_eq!(d.take_leases().await.unwrap().stolen.len(), 1);
    // Now d needs 1 and nobody is above target: no more.
    assert!(d.take_leases().await.unwrap().stolen.is_empty());
}

#[tokio::test]
async fn shard_end_leases_are_never_taken_or_stolen() {
    let clock = ManualClock::new();
    let store = store_with(&["s0", "s1", "s2"]).await;
    let mut a = worker("a", &store, &clock);
    let mut b = worker("b", &store, &clock);
    a.take_leases().await.unwrap();
    for k in ["s0", "s1"] {
        let done = a.mark_shard_end(k, &[]).await.unwrap();
        assert!(matches!(done, ShardEndOutcome::Done { .. }));
    }
    assert_eq!(held(&a), vec!["s2"]);
    // Live leases: 1; a holds it; b is at target-1 but a is only at target: nothing.
    let r = b.take_leases().await.unwrap();
    assert!(r.taken.is_empty() && r.stolen.is_empty());
    // a dies; long after, b takes the live lease but never the finished ones.
    clock.advance(F * 5);
    let r = b.take_leases().await.unwrap();
    assert_eq!(r.taken, vec!["s2"]);
    for l in store.snapshot() {
        if l.key != "s2" {
            assert!(l.is_owned_by("a") && l.checkpoint.is_shard_end());
        }
    }
}

#[tokio::test]
async fn very_old_leases_are_taken_first() {
    for seed in 0..16 {
        let clock = ManualClock::new();
        let store = store_with(&["held", "old"]).await;
        let cfg = LeaseConfig {
            max_leases: 1,
            ..LeaseConfig::default()
        };
        let mut b = Coordinator::new("b", store.clone(), clock.clone(), cfg).with_seed(seed);
        // Takes one lease ("held" or "old"), sees the other without taking it (max 1).
        let first = b.take_leases().await.unwrap().taken;
        assert_eq!(first.len(), 1);
        for _ in 0..10 {
            clock.advance(Duration::from_millis(3_001));
            assert_eq!(b.renew_leases().await.renewed, 1);
        }
        store
            .create_if_absent(&Lease::new("new", Checkpoint::TrimHorizon))
            .await
            .unwrap();
        b.release(&first[0]).await.unwrap();
        let other = if first[0] == "held" { "old" } else { "held" };
        let r = b.take_leases().await.unwrap();
        assert_eq!(r.taken, vec![other.to_owned()], "seed {seed}");
    }
}

#[tokio::test]
async fn checkpoints_are_fenced_by_the_counter() {
    let clock = ManualClock::new();
    let store = store_with(&["s0"]).await;
    let mut a = worker("a", &store, &clock);
    let mut b = worker("b", &store, &clock);
    a.take_leases().await.unwrap();
    let at_a = a.checkpoint("s0", Checkpoint::seq(10, 0)).await.unwrap();
    assert!(b.take_leases().await.unwrap().taken.is_empty());
    clock.advance(F + Duration::from_millis(1));
    assert_eq!(
        a.renew_leases().await.lost,
        vec!["s0"],
        "no renewal for > failover"
    );
    assert_eq!(b.take_leases().await.unwrap().taken, vec!["s0"]);
    // The old holder's counter is fenced out at the store.
    assert!(matches!(
        store
            .checkpoint("s0", "a", at_a.counter, Checkpoint::seq(20, 0))
            .await,
        Err(LeaseError::Lost { .. })
    ));
    let cp = b.checkpoint("s0", Checkpoint::seq(20, 0)).await.unwrap();
    assert_eq!(cp.owner_switches, 0);
    assert_eq!(cp.counter, at_a.counter + 2);
    assert!(matches!(
        b.checkpoint("s0", Checkpoint::seq(19, 0)).await,
        Err(LeaseError::InvalidCheckpoint { .. })
    ));
}

#[tokio::test]
async fn a_stolen_lease_is_lost_at_the_next_renewal() {
    let clock = ManualClock::new();
    let store = store_with(&["s0", "s1", "s2", "s3"]).await;
    let mut a = worker("a", &store, &clock);
    let mut b = worker("b", &store, &clock);
    a.take_leases().await.unwrap();
    let stolen = b.take_leases().await.unwrap().stolen;
    assert_eq!(stolen.len(), 1);
    // a still believes it holds it until it talks to the store (optimistic leases)...
    assert!(a.holds(&stolen[0]).is_some());
    // ...but any write with its counter fails, and the renewal drops it.
    let r = a.renew_leases().await;
    assert_eq!(r.lost, stolen);
    assert_eq!(r.renewed, 3);
    assert!(matches!(
        a.checkpoint(&stolen[0], Checkpoint::seq(1, 0)).await,
        Err(LeaseError::Lost { .. })
    ));
}

#[tokio::test]
async fn children_start_after_parents_reach_shard_end() {
    let clock = ManualClock::new();
    let store = store_with(&["p1", "p2", "solo"]).await;
    let mut a = worker("a", &store, &clock);
    a.take_leases().await.unwrap();
    // Split: solo -> c1, c2.
    let split: Vec<ChildShard> = ["c1", "c2"]
        .iter()
        .map(|k| ChildShard {
            key: (*k).into(),
            parents: vec!["solo".into()],
            hash_range: None,
        })
        .collect();
    let merge = [ChildShard {
        key: "m".into(),
        parents: vec!["p1".into(), "p2".into()],
        hash_range: Some(switchyard_lease::HashRange { start: 0, end: 99 }),
    }];
    let ShardEndOutcome::Done { created, lease } = a.mark_shard_end("solo", &split).await.unwrap()
    else {
        panic!("split deferred")
    };
    assert_eq!(created, vec!["c1", "c2"]);
    assert_eq!(lease.children, vec!["c1", "c2"]);
    assert!(a.can_start("c1").await.unwrap());
    // Merge: both parents present, child created by the first to finish, starts after both.
    let ShardEndOutcome::Done { created, .. } = a.mark_shard_end("p1", &merge).await.unwrap()
    else {
        panic!("merge deferred")
    };
    assert_eq!(created, vec!["m"]);
    let m = store.get("m").await.unwrap().unwrap();
    assert_eq!(m.parents, vec!["p1", "p2"]);
    assert_eq!(m.checkpoint, Checkpoint::TrimHorizon);
    assert!(!a.can_start("m").await.unwrap());
    let ShardEndOutcome::Done { created, .. } = a.mark_shard_end("p2", &merge).await.unwrap()
    else {
        panic!("merge deferred")
    };
    assert!(created.is_empty());
    assert!(a.can_start("m").await.unwrap());
    // A parent that is gone counts as finished.
    store
        .delete("p1", store.get("p1").await.unwrap().unwrap().counter)
        .await
        .unwrap();
    assert!(a.can_start("m").await.unwrap());
}

#[tokio::test]
async fn merge_child_deferred_when_one_parent_lease_is_missing() {
    let clock = ManualClock::new();
    let store = store_with(&["p1"]).await;
    let mut a = worker("a", &store, &clock);
    a.take_leases().await.unwrap();
    let merge = [ChildShard {
        key: "m".into(),
        parents: vec!["p1".into(), "p2".into()],
        hash_range: None,
    }];
    assert_eq!(
        a.mark_shard_end("p1", &merge).await.unwrap(),
        ShardEndOutcome::Deferred {
            children: vec!["m".into()]
        }
    );
    assert!(store.get("m").await.unwrap().is_none());
    assert_eq!(
        store.get("p1").await.unwrap().unwrap().checkpoint,
        Checkpoint::TrimHorizon
    );
    assert!(a.holds("p1").is_some());
}

#[tokio::test]
async fn release_hands_the_lease_to_another_worker() {
    let clock = ManualClock::new();
    let store = store_with(&["s0"]).await;
    let mut a = worker("a", &store, &clock);
    let mut b = worker("b", &store, &clock);
    a.take_leases().await.unwrap();
    b.take_leases().await.unwrap();
    let released = a.release("s0").await.unwrap();
    assert_eq!(released.owner, None);
    assert!(
        a.take_leases().await.unwrap().taken.is_empty(),
        "no immediate retake"
    );
    assert_eq!(b.take_leases().await.unwrap().taken, vec!["s0"]);
    assert!(matches!(
        a.release("s0").await,
        Err(LeaseError::Lost { .. })
    ));
}

#[tokio::test]
async fn restarted_worker_reclaims_its_own_leases_at_once() {
    let clock = ManualClock::new();
    let store = store_with(&["s0", "s1"]).await;
    let mut a = worker("a", &store, &clock);
    a.take_leases().await.unwrap();
    let mut a2 = worker("a", &store, &clock);
    assert_eq!(a2.take_leases().await.unwrap().taken.len(), 2);
    assert_eq!(
        store.snapshot()[0].owner_switches,
        1,
        "same owner: no switch"
    );
}

#[tokio::test]
async fn cleanup_deletes_parents_only_after_children_progress() {
    let clock = ManualClock::new();
    let store = store_with(&["p"]).await;
    let mut a = worker("a", &store, &clock);
    a.take_leases().await.unwrap();
    let child = [ChildShard {
        key: "c".into(),
        parents: vec!["p".into()],
        hash_range: None,
    }];
    a.mark_shard_end("p", &child).await.unwrap();
    assert!(a.cleanup().await.unwrap().is_empty());
    a.take_leases().await.unwrap();
    assert!(a.cleanup().await.unwrap().is_empty(), "child not started");
    a.checkpoint("c", Checkpoint::seq(1, 0)).await.unwrap();
    assert_eq!(a.cleanup().await.unwrap(), vec!["p"]);
    assert!(store.get("p").await.unwrap().is_none());
}

#[tokio::test]
async fn tick_runs_rounds_on_their_intervals() {
    let clock = ManualClock::new();
    let store = store_with(&["s0"]).await;
    let mut a = worker("a", &store, &clock);
    let first = a.tick().await;
    assert_eq!(first.taken, vec!["s0"]);
    assert_eq!(first.next_in, a.config().renew_interval);
    clock.advance(first.next_in);
    let second = a.tick().await;
    assert_eq!(second.renewed, 1);
    assert!(second.taken.is_empty());
    // Nothing due: nothing happens.
    let counter = store.snapshot()[0].counter;
    assert_eq!(a.tick().await.renewed, 0);
    assert_eq!(store.snapshot()[0].counter, counter);
}

#[tokio::test]
async fn scan_at_expiry_rescans_when_a_lease_would_expire() {
    for scan_at_expiry in [false, true] {
        let clock = ManualClock::new();
        let store = store_with(&["s0"]).await;
        let config = LeaseConfig {
            scan_at_expiry,
            ..LeaseConfig::default()
        };
        let mut a = worker("a", &store, &clock);
        let mut b = Coordinator::new("b", store.clone(), clock.clone(), config.clone());
        a.tick().await;
        b.tick().await; // observes a's lease; a dies now
        let expiry = F + config.epsilon;
        let mut taken_at = None;
        while taken_at.is_none() {
            clock.advance(Duration::from_millis(5));
            if !b.tick().await.taken.is_empty() {
                taken_at = Some(switchyard_lease::Clock::now(&clock));
            }
        }
        let expect = if scan_at_expiry {
            expiry
        } else {
            config.take_interval
        };
        assert_eq!(taken_at, Some(expect), "scan_at_expiry {scan_at_expiry}");
    }
}
