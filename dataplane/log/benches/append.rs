//! Append throughput of the local log against the disk's sequential write rate, measured
//! in the same run on the same filesystem.
//!
//! `taskset -c 1 cargo bench -p switchyard-log --bench append [-- DIR [MIB]]`
//!
//! 1. `dd if=/dev/zero of=DIR/dd.bin bs=1M count=MIB oflag=direct conv=fdatasync`: the disk's
//!    O_DIRECT sequential write rate, one fdatasync at the end.
//! 2. The log on one glommio executor, 64 KiB records, MIB MiB in total, three sync
//!    policies: one sync at the end (what dd does), a sync per 1 MiB (16 records, group
//!    commit of a busy shard) and a sync per record (the worst case: every record waits for
//!    its own fdatasync).
//!
//! 3. dd again with `oflag=direct,dsync` at 1 MiB and 64 KiB blocks: the disk's rate when
//!    every write is flushed, the ceiling for the two sync-often policies.
//!
//! Prints one line per measurement, MB/s = 10^6 bytes per second of payload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use switchyard_log::{Log, LogConfig};

const RECORD: usize = 64 << 10;

fn dd(dir: &Path, mib: u64) -> (f64, String) {
    dd_with(dir, mib, "1M", mib, "oflag=direct", "conv=fdatasync")
}

/// dd writing `count` blocks of `bs` (`mib` MiB in all) with the given flags.
fn dd_with(dir: &Path, mib: u64, bs: &str, count: u64, oflag: &str, conv: &str) -> (f64, String) {
    let file = dir.join("dd.bin");
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg(format!("bs={bs}"))
        .arg(format!("count={count}"))
        .arg(oflag)
        .arg(conv)
        .output()
        .expect("running dd");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    // "536870912 bytes (537 MB, 512 MiB) copied, 1.234 s, 435 MB/s"
    let secs = text
        .split(", ")
        .find_map(|p| {
            p.strip_suffix(" s")
                .and_then(|s| s.trim().parse::<f64>().ok())
        })
        .expect("dd output");
    let bytes = (mib << 20) as f64;
    (
        bytes / secs / 1e6,
        text.lines().last().unwrap_or_default().to_string(),
    )
}

fn log_run(dir: PathBuf, mib: u64, sync_every: u64) -> (f64, u64) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(2 << 20)
        .spawn(move || async move {
            let _ = std::fs::remove_dir_all(&dir);
            let cfg = LogConfig {
                segment_bytes: 256 << 20,
                retention_bytes: None,
                retention_age: None,
                ..LogConfig::default()
            };
            let log = Log::open(&dir, cfg).await.unwrap();
            let records = (mib << 20) / RECORD as u64;
            let payload: Vec<u8> = (0..RECORD).map(|i| (i * 7) as u8).collect();
            let t = Instant::now();
            for i in 0..records {
                log.append(&payload).await.unwrap();
                if (i + 1) % sync_every == 0 {
                    log.sync().await.unwrap();
                }
            }
            let d = log.sync().await.unwrap();
            let el = t.elapsed().max(Duration::from_micros(1));
            assert_eq!(d, records);
            let syncs = log.syncs();
            drop(log);
            let _ = std::fs::remove_dir_all(&dir);
            (
                (records * RECORD as u64) as f64 / el.as_secs_f64() / 1e6,
                syncs,
            )
        })
        .unwrap()
        .join()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let base = args.first().map_or_else(
        || std::env::temp_dir().join("switchyard-log-bench"),
        PathBuf::from,
    );
    let mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(512);
    std::fs::create_dir_all(&base).unwrap();
    let mut out = std::io::stdout().lock();
    let (dd_mbs, dd_line) = dd(&base, mib);
    writeln!(
        out,
        "dd  bs=1M count={mib} oflag=direct conv=fdatasync: {dd_mbs:.0} MB/s  ({dd_line})"
    )
    .unwrap();
    // The disk with a flush after every write, as the log's sync policies do.
    let (d1, _) = dd_with(
        &base,
        mib / 4,
        "1M",
        mib / 4,
        "oflag=direct,dsync",
        "conv=notrunc",
    );
    writeln!(
        out,
        "dd  bs=1M count={} oflag=direct,dsync (flush per 1 MiB): {d1:.0} MB/s",
        mib / 4
    )
    .unwrap();
    let (d64, _) = dd_with(
        &base,
        mib / 8,
        "64K",
        mib / 8 * 16,
        "oflag=direct,dsync",
        "conv=notrunc",
    );
    writeln!(
        out,
        "dd  bs=64K count={} oflag=direct,dsync (flush per 64 KiB): {d64:.0} MB/s",
        mib / 8 * 16
    )
    .unwrap();
    for (name, every) in [
        ("sync at end", u64::MAX),
        ("sync per 1 MiB", 16),
        ("sync per record", 1),
    ] {
        // The per-record case is slow on a disk with costly flushes: a quarter of the data.
        let m = if every == 1 { (mib / 4).max(16) } else { mib };
        let (mbs, syncs) = log_run(base.join("log"), m, every);
        writeln!(
            out,
            "log 64 KiB records, {m} MiB, {name}: {mbs:.0} MB/s ({:.0}% of dd), {syncs} syncs",
            mbs / dd_mbs * 100.0
        )
        .unwrap();
    }
    let (dd2, _) = dd(&base, mib);
    writeln!(out, "dd again: {dd2:.0} MB/s").unwrap();
    let _ = std::fs::remove_dir_all(&base);
}
