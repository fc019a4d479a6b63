//! The local file store under contention: several processes (and tasks inside each) race
//! compare-and-set takes on one file; no update may be lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use switchyard_lease::{Checkpoint, FileStore, Lease, LeaseError, LeaseStore};

const CHILD_ENV: &str = "SWITCHYARD_LEASE_FILE_CHILD";
const ATTEMPTS: usize = 150;

/// Racer process body, run by `two_processes_race_on_one_file` (ignored when run directly).
#[test]
#[ignore = "helper process for two_processes_race_on_one_file"]
fn file_store_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, name) = spec.split_once('|').unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let total: usize = rt.block_on(async {
        let tasks: Vec<_> = (0..2)
            .map(|t| {
                let store = FileStore::new(path);
                let me = format!("{name}-{t}");
                tokio::spawn(async move {
                    let mut wins = 0;
                    for _ in 0..ATTEMPTS {
                        let seen = store.get("k").await.unwrap().unwrap();
                        match store.take("k", &me, seen.counter).await {
                            Ok(l) => {
                                assert!(l.is_owned_by(&me));
                                wins += 1;
                            }
                            Err(LeaseError::Conflict { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    wins
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    println!("wins={total}");
}

#[tokio::test]
async fn two_processes_race_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.json");
    let store = FileStore::new(&path);
    assert!(store
        .create_if_absent(&Lease::new("k", Checkpoint::TrimHorizon))
        .await
        .unwrap());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["p0", "p1"]
        .iter()
        .map(|name| {
            Command::new(&exe)
                .args(["file_store_child", "--exact", "--ignored", "--nocapture"])
                .env(CHILD_ENV, format!("{}|{name}", path.display()))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut wins = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("wins="))
            .unwrap_or_else(|| panic!("no result in {text:?}"))
            .parse()
            .unwrap();
        assert!(n > 0, "every racer process won at least once: {text}");
        wins += n;
    }
    let lease = store.get("k").await.unwrap().unwrap();
    // Every successful take incremented the counter exactly once: no lost update.
    assert_eq!(lease.counter, wins);
    assert!(lease.owner.unwrap().starts_with('p'));
    assert!(!dir.path().join("leases.json.tmp").exists());
}
