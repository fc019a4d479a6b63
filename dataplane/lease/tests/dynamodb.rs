//! The DynamoDB store against a local DynamoDB-compatible server (dynalite).
//!
//! Start it first (`./test.sh` does): `.ci/servers/dynalite.sh`. The endpoint is
//! `SWITCHYARD_DYNAMODB_ENDPOINT` (default `http://127.0.0.1:4571`). Without a server the
//! tests fail, saying how to start one.
#![cfg(feature = "dynamodb")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use switchyard_lease::{
    Checkpoint, ChildShard, Coordinator, DynamoDbStore, Lease, LeaseConfig, LeaseError, LeaseStore,
    ManualClock, SequenceNumber, ShardEndOutcome,
};

/// A store on a fresh table; fails when no server listens.
async fn store(test: &str) -> Option<DynamoDbStore> {
    let url = switchyard_testkit::DYNALITE.url();
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&url)
        .credentials_provider(Credentials::new("dummy", "dummy", None, None, "test"))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let store = DynamoDbStore::new(
        client,
        switchyard_testkit::unique(&format!("leases-{test}")),
    );
    store.create_table_if_absent().await.unwrap();
    // Idempotent.
    store.create_table_if_absent().await.unwrap();
    Some(store)
}

#[tokio::test]
async fn cas_operations_in_kcl_layout() {
    let Some(s) = store("cas").await else { return };
    let seq =
        SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap();
    let lease = Lease::new("shardId-000000000001", Checkpoint::TrimHorizon)
        .with_parents(["shardId-000000000000"])
        .with_hash_range(0, u128::MAX);
    assert!(s.create_if_absent(&lease).await.unwrap());
    assert!(!s.create_if_absent(&lease).await.unwrap());
    let key = lease.key.as_str();

    let a = s.take(key, "a", 0).await.unwrap();
    assert_eq!((a.counter, a.owner_switches), (1, 1));
    assert!(matches!(
        s.take(key, "b", 0).await,
        Err(LeaseError::Conflict { .. })
    ));
    let a = s.take(key, "a", 1).await.unwrap();
    assert_eq!(
        (a.counter, a.owner_switches),
        (2, 1),
        "retake by owner is no switch"
    );
    let a = s.renew(key, "a", 2).await.unwrap();
    assert_eq!(a.counter, 3);
    assert!(matches!(
        s.renew(key, "b", 3).await,
        Err(LeaseError::Lost { .. })
    ));
    assert!(matches!(
        s.renew(key, "a", 1).await,
        Err(LeaseError::Lost { .. })
    ));
    // A renew one behind by the same owner is indistinguishable from an SDK retry of a
    // renew that succeeded: like KCL, the store re-reads and reports success.
    assert_eq!(s.renew(key, "a", 2).await.unwrap().counter, 3);

    let cp = Checkpoint::seq(seq.clone(), 7);
    let a = s
        .update(
            key,
            "a",
            3,
            switchyard_lease::Mutation::PrepareCheckpoint(Checkpoint::AtTimestamp { millis: 5 }),
        )
        .await
        .unwrap();
    assert_eq!(
        a.pending_checkpoint,
        Some(Checkpoint::AtTimestamp { millis: 5 })
    );
    let a = s.checkpoint(key, "a", 4, cp.clone()).await.unwrap();
    assert_eq!(a.checkpoint, cp);
    assert_eq!(a.pending_checkpoint, None);
    assert_eq!(a.owner_switches, 0);
    assert!(matches!(
        s.checkpoint(key, "a", 5, Checkpoint::seq(seq.clone(), 6))
            .await,
        Err(LeaseError::InvalidCheckpoint { .. })
    ));

    let b = s.take(key, "b", 5).await.unwrap();
    assert_eq!((b.counter, b.owner_switches), (6, 1));
    assert!(matches!(
        s.checkpoint(key, "a", 5, cp.clone()).await,
        Err(LeaseError::Lost { .. })
    ));
    let b = s
        .mark_shard_end(key, "b", 6, vec!["c1".into(), "c2".into()])
        .await
        .unwrap();
    assert!(b.checkpoint.is_shard_end());
    let mut kids = b.children.clone();
    kids.sort();
    assert_eq!(kids, vec!["c1", "c2"]);
    let released = s.release(key, "b", 7).await.unwrap();
    assert_eq!((released.owner, released.counter), (None, 8));

    let got = s.get(key).await.unwrap().unwrap();
    assert_eq!(got.parents, vec!["shardId-000000000000"]);
    assert_eq!(got.hash_range.unwrap().end, u128::MAX);
    assert_eq!(s.list().await.unwrap().len(), 1);
    assert!(matches!(
        s.delete(key, 7).await,
        Err(LeaseError::Conflict { .. })
    ));
    s.delete(key, 8).await.unwrap();
    assert!(s.get(key).await.unwrap().is_none());
    assert!(matches!(
        s.delete(key, 8).await,
        Err(LeaseError::NotFound { .. })
    ));
    assert!(matches!(
        s.renew(key, "b", 8).await,
        Err(LeaseError::NotFound { .. })
    ));
}

#[tokio::test]
async fn coordinators_fail_over_and_split_on_dynamodb() {
    let Some(s) = store("coord").await else {
        return;
    };
    for k in ["s0", "s1", "s2"] {
        s.create_if_absent(&Lease::new(k, Checkpoint::TrimHorizon))
            .await
            .unwrap();
    }
    let clock = ManualClock::new();
    let mut a = Coordinator::new("a", s.clone(), clock.clone(), LeaseConfig::default());
    let mut b = Coordinator::new("b", s.clone(), clock.clone(), LeaseConfig::default());
    assert_eq!(a.take_leases().await.unwrap().taken.len(), 3);
    assert_eq!(b.take_leases().await.unwrap().stolen.len(), 1);
    assert_eq!(a.renew_leases().await.lost.len(), 1);
    // b observes a's renewed counters; then a dies and b takes the rest once they have
    // looked unchanged to b for longer than failover.
    assert!(b.take_leases().await.unwrap().stolen.is_empty());
    clock.advance(Duration::from_secs(6));
    b.renew_leases().await;
    clock.advance(Duration::from_secs(5));
    b.renew_leases().await;
    let r = b.take_leases().await.unwrap();
    assert_eq!(r.taken.len(), 2);
    assert_eq!(b.held_leases().len(), 3);
    // Split s0 into two children.
    b.checkpoint("s0", Checkpoint::seq(1, 0)).await.unwrap();
    let kids = [
        ChildShard {
            key: "s3".into(),
            parents: vec!["s0".into()],
            hash_range: Some(switchyard_lease::HashRange { start: 0, end: 9 }),
        },
        ChildShard {
            key: "s4".into(),
            parents: vec!["s0".into()],
            hash_range: None,
        },
    ];
    let out = b.mark_shard_end("s0", &kids).await.unwrap();
    assert!(matches!(out, ShardEndOutcome::Done { ref created, .. } if created.len() == 2));
    assert!(b.can_start("s3").await.unwrap());
    assert_eq!(
        s.get("s3").await.unwrap().unwrap().hash_range.unwrap().end,
        9
    );
}
