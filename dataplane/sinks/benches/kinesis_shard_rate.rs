//! What the Kinesis sink sustains per shard under a backlog when the server answers at once:
//! bytes/s and records/s per shard against the 1 MiB/s and 1000 records/s shard limits.
//!
//! The real sink runs through its public driver (`spawn_sinks_with`, items on its queue)
//! against `switchyard_testkit::kinesis_fake` (answers every entry at once, records each
//! entry's arrival, shard and bytes, and here counts the KPL user records of each record).
//! Two loads, each more than the shards take:
//! - `statsd`: a flush of `--series` tagged series (default 100k) every second;
//! - `http`: `--payloads` Datadog v1 JSON payloads per second (default 1500), 50 series and
//!   100 points each, one queue item per payload.
//!
//! The steady rate of a shard is measured between its first arrival at least 2 s into the
//! run (after the buckets' 1 s burst) and its last arrival before the load stops: bytes and
//! records after the first arrival divided by the time between them (a paced shard takes a
//! record when its bucket holds the record's bytes, so this counts every byte once).
//!
//! `cargo bench -p switchyard-sinks --bench kinesis_shard_rate -- [--shards 2|4]
//! [--secs 25] [--mode statsd|http|both] [--series 100000] [--payloads 1500]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use base64::Engine;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::Config;
use switchyard_core::egress::{Egress, Endpoint, IntakePayload};
use switchyard_sinks::{spawn_sinks_with, DropReason, RetryPolicy, SinkStats};
use switchyard_stream::kpl::deaggregate;
use switchyard_testkit::kinesis_fake::{kinesis_fake, Arrival};

#[path = "support/flush.rs"]
mod support;
use support::flush;

const MIB: f64 = 1_048_576.0;
/// Arrivals before this (from the first) are the burst, left out of the steady figures.
const BURST_SKIP: Duration = Duration::from_secs(2);

struct Args {
    shards: usize,
    secs: u64,
    mode: String,
    series: usize,
    payloads: usize,
}

fn args() -> Args {
    let mut a = Args {
        shards: 2,
        secs: 25,
        mode: "both".into(),
        series: 100_000,
        payloads: 1500,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--shards" => a.shards = next.parse().expect("--shards N"),
            "--secs" => a.secs = next.parse().expect("--secs N"),
            "--mode" => a.mode = next,
            "--series" => a.series = next.parse().expect("--series N"),
            "--payloads" => a.payloads = next.parse().expect("--payloads N"),
            // `cargo bench` passes `--bench`; nothing else takes a value.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// A Datadog v1 series payload: 50 series of 2 points, distinct per `k`.
fn payload_body(k: usize) -> Vec<u8> {
    let series: Vec<String> = (0..50)
        .map(|j| {
            format!(
                r#"{{"metric":"app.intake.m{j}","points":[[1700000000,{k}.5],[1700000010,{j}.25]],"type":"gauge","host":"host-{:04}","tags":["service:svc-{}","env:prod","payload:{k}"]}}"#,
                k % 200,
                j % 50
            )
        })
        .collect();
    format!(r#"{{"series":[{}]}}"#, series.join(",")).into_bytes()
}

fn config(url: &str, queue: usize) -> Config {
    let src = format!(
        "[sinks.kin]\ntype = \"kinesis\"\nstream = \"fake\"\nregion = \"us-east-1\"\nendpoint = \"{url}\"\nqueue_batches = {queue}\n\n[[routes]]\nname = \"r\"\nto = [\"kin\"]\n"
    );
    Config::from_toml(&src).unwrap()
}

/// utime + stime of this process's thread named `name`.
fn thread_cpu(name: &str) -> Option<Duration> {
    let tick = 100.0; // USER_HZ on Linux
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        let after = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        return Some(Duration::from_secs_f64(ticks / tick));
    }
    None
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One shard's figures.
struct ShardFig {
    bytes_per_s: f64,
    records_per_s: f64,
    calls_per_s: f64,
    bytes_per_record: f64,
    users_per_record: f64,
    peak_second: usize,
    peak_sliding: usize,
    peak_records: usize,
    /// Aligned seconds of the steady window over 1 MiB, and seconds with arrivals.
    over: usize,
    seconds: usize,
    /// Peaks over the whole run, the initial burst included.
    run_second: usize,
    run_sliding: usize,
}

fn shard_figures(mine: &[Arrival], t0: Instant, load_end: Instant) -> Option<ShardFig> {
    let first = t0 + BURST_SKIP;
    let steady: Vec<&Arrival> = mine
        .iter()
        .filter(|a| a.at >= first && a.at <= load_end)
        .collect();
    let (a, z) = (steady.first()?, steady.last()?);
    let span = z.at.duration_since(a.at).as_secs_f64();
    if steady.len() < 3 || span <= 0.0 {
        return None;
    }
    let after = &steady[1..];
    let bytes: usize = after.iter().map(|x| x.bytes).sum();
    let mut calls: Vec<usize> = after.iter().map(|x| x.call).collect();
    calls.dedup();
    let all_bytes: usize = steady.iter().map(|x| x.bytes).sum();
    let users: u64 = steady.iter().map(|x| x.note).sum();
    // Aligned seconds (from the run's first arrival), and every 1 s window that starts at
    // an arrival: over the steady window, and over the whole run (the burst included).
    let peaks = |xs: &[&Arrival]| {
        let mut per_second: std::collections::BTreeMap<u64, (usize, usize)> = Default::default();
        for x in xs {
            let s = per_second
                .entry(x.at.duration_since(t0).as_secs())
                .or_default();
            s.0 += x.bytes;
            s.1 += 1;
        }
        let second = per_second.values().map(|s| s.0).max().unwrap_or(0);
        let records = per_second.values().map(|s| s.1).max().unwrap_or(0);
        let over = per_second.values().filter(|s| s.0 as f64 > MIB).count();
        let sliding = (0..xs.len())
            .map(|i| {
                xs[i..]
                    .iter()
                    .take_while(|b| b.at < xs[i].at + Duration::from_secs(1))
                    .map(|b| b.bytes)
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0);
        (second, sliding, records, over, per_second.len())
    };
    let (peak_second, peak_sliding, peak_records, over, seconds) = peaks(&steady);
    let whole: Vec<&Arrival> = mine.iter().collect();
    let (run_second, run_sliding, ..) = peaks(&whole);
    Some(ShardFig {
        bytes_per_s: bytes as f64 / span,
        records_per_s: after.len() as f64 / span,
        calls_per_s: calls.len() as f64 / span,
        bytes_per_record: all_bytes as f64 / steady.len() as f64,
        users_per_record: users as f64 / steady.len() as f64,
        peak_second,
        peak_sliding,
        peak_records,
        over,
        seconds,
        run_second,
        run_sliding,
    })
}

fn run(a: &Args, mode: &str) {
    let fake = kinesis_fake()
        .shards(a.shards)
        .max_record_kib(1024)
        .keep_data(false)
        .annotate(|data| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default();
            deaggregate(&bytes).len() as u64
        })
        .start()
        .unwrap();
    // Small queues: the backlog stays in front of the sink, not minutes of it behind.
    let queue = if mode == "statsd" { 4 } else { 256 };
    let rt = spawn_sinks_with(&config(&fake.url, queue), RetryPolicy::for_sink).unwrap();
    let handle = rt.handles().remove(0);
    let stats: Arc<SinkStats> = handle.stats.clone();
    let load = Duration::from_secs(a.secs);
    let (mut offered, mut late) = (0u64, Duration::ZERO);
    let load_start = Instant::now();
    let cpu0 = thread_cpu("sink-kin-0").unwrap_or_default();
    match mode {
        "statsd" => {
            let flushes: Vec<Egress> = (0..4)
                .map(|r| Egress::Series(Arc::new(flush(a.series, r))))
                .collect();
            let start = Instant::now();
            for k in 0..a.secs {
                let due = start + Duration::from_secs(k);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                late = late.max(Instant::now().saturating_duration_since(due));
                handle
                    .tx
                    .send(flushes[k as usize % flushes.len()].clone())
                    .unwrap();
                offered += a.series as u64;
            }
            std::thread::sleep((start + load).saturating_duration_since(Instant::now()));
        }
        _ => {
            let bodies: Vec<Vec<u8>> = (0..1000).map(payload_body).collect();
            let start = Instant::now();
            let tick = Duration::from_millis(10);
            let per_tick = (a.payloads as f64 * tick.as_secs_f64()).round() as usize;
            let mut k = 0usize;
            let mut t = 0u32;
            while start.elapsed() < load {
                let due = start + tick * t;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                late = late.max(Instant::now().saturating_duration_since(due));
                for _ in 0..per_tick {
                    let body = bodies[k % bodies.len()].clone();
                    k += 1;
                    let p = IntakePayload::json(Endpoint::SeriesV1, body, None, 50, 100);
                    handle.tx.send(Egress::Payload(Arc::new(p))).unwrap();
                    offered += 100;
                }
                t += 1;
            }
        }
    }
    let load_end = Instant::now();
    let cpu = thread_cpu("sink-kin-0")
        .unwrap_or_default()
        .saturating_sub(cpu0);
    drop(handle);
    // What is still queued or paced is dropped after 2 s (counted `shutdown`).
    rt.shutdown(Duration::from_secs(2));
    let arrivals = fake.arrivals();
    let Some(t0) = arrivals.first().map(|x| x.at) else {
        println!("{mode}: nothing arrived");
        return;
    };
    let el = load_end.duration_since(load_start).as_secs_f64();
    println!(
        "\n### {mode}, {} shards, {} s of load (load average at the end: {})",
        a.shards,
        a.secs,
        loadavg()
    );
    println!(
        "offered {offered} values ({:.0}/s; producer at most {:.0} ms behind schedule = the backlog pushing back), delivered {}, dropped at shutdown {} (the backlog), other drops {}, throttled {}, failed {}",
        offered as f64 / el,
        late.as_secs_f64() * 1e3,
        SinkStats::get(&stats.values_delivered),
        stats.dropped(DropReason::Shutdown),
        DropReason::ALL
            .iter()
            .filter(|&&r| r != DropReason::Shutdown)
            .map(|&r| stats.dropped(r))
            .sum::<u64>(),
        SinkStats::get(&stats.stream.records_throttled),
        SinkStats::get(&stats.stream.records_failed),
    );
    println!(
        "sink thread CPU during the load: {:.2} s of {el:.1} s ({:.0}%)",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / el * 100.0
    );
    println!(
        "\n| Shard | Steady MB/s | % of 1 MiB/s | Steady records/s | Calls/s | Bytes per record | User records per record | Steady: peak aligned second | Steady: peak sliding 1 s | Steady: seconds over 1 MiB | Peak records in a second | Whole run (burst): peak second / sliding |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for shard in 0..a.shards {
        let mine: Vec<Arrival> = arrivals
            .iter()
            .filter(|x| x.shard == shard)
            .copied()
            .collect();
        let Some(f) = shard_figures(&mine, t0, load_end) else {
            println!("| {shard} | too few arrivals in the steady window |");
            continue;
        };
        println!(
            "| {shard} | {:.3} | **{:.1}%** | {:.2} | {:.2} | {:.0} B = {:.3} MiB | {:.1} | {} B = {:.1}% | {} B = {:.1}% | {} of {} | {} | {:.1}% / {:.1}% |",
            f.bytes_per_s / 1e6,
            f.bytes_per_s / MIB * 100.0,
            f.records_per_s,
            f.calls_per_s,
            f.bytes_per_record,
            f.bytes_per_record / MIB,
            f.users_per_record,
            f.peak_second,
            f.peak_second as f64 / MIB * 100.0,
            f.peak_sliding,
            f.peak_sliding as f64 / MIB * 100.0,
            f.over,
            f.seconds,
            f.peak_records,
            f.run_second as f64 / MIB * 100.0,
            f.run_sliding as f64 / MIB * 100.0,
        );
    }
    let calls = arrivals.iter().map(|x| x.call).max().map_or(0, |c| c + 1);
    println!(
        "all shards: {} records in {calls} calls ({:.2} records per call)",
        arrivals.len(),
        arrivals.len() as f64 / calls.max(1) as f64
    );
}

fn main() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "dummy");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "dummy");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let a = args();
    println!(
        "kinesis_shard_rate: {} shards, {} s per load, load average at the start: {}",
        a.shards,
        a.secs,
        loadavg()
    );
    for mode in ["statsd", "http"] {
        if a.mode == mode || a.mode == "both" {
            run(&a, mode);
        }
    }
}
