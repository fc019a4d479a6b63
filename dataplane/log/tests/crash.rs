//! kill -9 crash test: a writer process appends numbered records and reports each durable
//! offset; it is killed with SIGKILL at a random moment, the log is reopened, and every
//! record reported durable must be there, intact, contiguous, with a clean tail. Several
//! rounds on the same directory, so recovery is also followed by appends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use glommio::{LocalExecutorBuilder, Placement};
use rand::{Rng, SeedableRng};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_log::{Log, LogConfig, ReadBatch, ReadLimits};

/// The crash writer's payload for record `n` (see src/bin/crash_writer.rs).
fn payload(n: u64) -> Vec<u8> {
    let mut v = n.to_le_bytes().to_vec();
    let extra = (n % 2000) as usize;
    v.extend((0..extra).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8));
    v
}

/// Runs the writer until killed after `after`; returns the highest durable offset it
/// reported.
fn crash_writer(dir: &Path, seed: u64, after: Duration) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-log-crash-writer"))
        .arg(dir)
        .arg(seed.to_string())
        .arg((128u64 << 10).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reported = Arc::new(Mutex::new(0u64));
    let r2 = reported.clone();
    let lines = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(d) = line.strip_prefix("durable ") {
                let d: u64 = d.parse().unwrap();
                let mut r = r2.lock().unwrap();
                assert!(d >= *r, "durable offsets go up");
                *r = d;
            }
        }
    });
    std::thread::sleep(after);
    // Child::kill sends SIGKILL.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer ended on its own: {status:?}");
    lines.join().unwrap();
    let d = *reported.lock().unwrap();
    d
}

/// Reopens the log and checks it; returns its next offset.
fn verify(dir: PathBuf, reported: u64) -> u64 {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let cfg = LogConfig {
                segment_bytes: 128 << 10,
                retention_bytes: None,
                retention_age: None,
                ..LogConfig::default()
            };
            let log = Log::open(&dir, cfg).await.unwrap();
            let next = log.next_offset();
            assert!(
                next >= reported,
                "lost acknowledged records: log ends at {next}, {reported} were reported durable"
            );
            let mut r = log.handle().reader();
            let mut b = ReadBatch::new();
            let mut at = 0;
            while at < next {
                r.read(
                    at,
                    ReadLimits {
                        max_records: 500,
                        max_bytes: 1 << 20,
                    },
                    &mut b,
                )
                .await
                .unwrap();
                assert!(!b.is_empty(), "records {at}..{next} unreadable");
                for rec in b.iter() {
                    assert_eq!(rec.offset, at, "records are contiguous");
                    assert_eq!(rec.payload, &payload(at)[..], "record {at} intact");
                    at += 1;
                }
            }
            // The tail is clean: the last segment ends exactly after its last frame.
            let mut segs: Vec<(u64, u64)> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| {
                    let e = e.unwrap();
                    let base = e
                        .file_name()
                        .into_string()
                        .unwrap()
                        .strip_suffix(".log")?
                        .parse()
                        .ok()?;
                    Some((base, e.metadata().unwrap().len()))
                })
                .collect();
            segs.sort_unstable();
            let &(base, size) = segs.last().unwrap();
            let frames: u64 = (base..next).map(|n| 16 + payload(n).len() as u64).sum();
            if frames == 0 && size == 4096 {
                // A segment created by this open (the writer was killed before its
                // first segment existed, or with its header torn, which recovery
                // removes): the header is written as one DMA block, zeros after it.
                let bytes = std::fs::read(dir.join(format!("{base:020}.log"))).unwrap();
                assert!(
                    bytes[32..].iter().all(|&b| b == 0),
                    "fresh segment {base}: only zeros after its header"
                );
            } else {
                assert_eq!(
                    size,
                    32 + frames,
                    "last segment {base} has bytes after its last frame"
                );
            }
            next
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn kill_9_loses_nothing_reported_durable() {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("crash test seed {seed} (CRASH_SEED to replay)");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut last_next = 0;
    for round in 0..6 {
        let after = Duration::from_millis(rng.gen_range(30..600));
        let reported = crash_writer(dir.path(), rng.gen(), after);
        let next = verify(dir.path().to_path_buf(), reported);
        eprintln!(
            "round {round}: killed after {after:?}, {reported} reported durable, {next} recovered"
        );
        assert!(next >= last_next, "records from an earlier round vanished");
        last_next = next;
    }
    assert!(last_next > 0, "the writer never got anything durable");
}
