//! Kafka workers (cargo feature `kafka`) against a real broker, tansu (start it with
//! `.ci/servers/tansu.sh`; `KAFKA_BROKERS` overrides `127.0.0.1:9092`): statsd batches
//! produced by the `kafka` sink are delivered to file sinks by two workers of one consumer
//! group; after one stops the other takes every partition; offsets are committed only after
//! delivery, so a restarted member resumes after what was delivered and a record whose
//! delivery never succeeded is read again by the next member.

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::Config;
use switchyard_core::egress::Egress;
use switchyard_core::model::{SeriesBatch, SeriesType};
use switchyard_kafka::admin;
use switchyard_sinks::{spawn_sinks, RetryPolicy};
use switchyard_testkit::{kafka_brokers, unique};
use switchyard_workers::{spawn_workers, spawn_workers_with, WorkerProbe, WorkerRuntime};

/// Series per produced round.
const SERIES: usize = 40;

fn kafka_sink(brokers: &str, topic: &str) -> String {
    format!("[sinks.stream]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n")
}

/// One statsd flush: gauges `m0..m{SERIES}` (tag `k:<i mod 3>`, host `h`), all with the
/// value `round`.
fn round_batch(round: usize) -> Egress {
    let mut b = SeriesBatch::new(1_700_000_000 + 10 * round as u64, 10.0);
    for i in 0..SERIES {
        let tag = format!("k:{}", i % 3);
        let id = b.identity(&format!("m{i}"), [tag.as_str()], "h");
        b.push(id, "", SeriesType::Gauge, round as f64);
    }
    Egress::Series(Arc::new(b))
}

/// Produces `rounds` through the `kafka` sink (returns once the broker acknowledged them).
fn produce(brokers: &str, topic: &str, rounds: std::ops::Range<usize>) {
    let src = format!(
        "{}\n[[routes]]\nname = \"all\"\nto = [\"stream\"]\n",
        kafka_sink(brokers, topic)
    );
    let sinks = spawn_sinks(&Config::from_toml(&src).unwrap()).unwrap();
    let h = sinks.handles().into_iter().next().unwrap();
    for r in rounds {
        h.tx.send(round_batch(r)).unwrap();
    }
    drop(h);
    assert!(
        sinks.shutdown(Duration::from_secs(30)),
        "producing timed out"
    );
}

/// A worker-only config: the kafka sink, a file sink `local` at `out`, one worker.
fn worker_config(brokers: &str, topic: &str, group: &str, id: &str, to: &str) -> Config {
    let src = format!(
        "{}\n{to}\n[[workers]]\nfrom = \"stream\"\nto = [\"local\"]\nworker_id = \"{id}\"\n\
         group = \"{group}\"\nfailover = \"3s\"\nmax_records = 3\n",
        kafka_sink(brokers, topic)
    );
    Config::from_toml(&src).unwrap()
}

fn file_sink(out: &Path) -> String {
    format!(
        "[sinks.local]\ntype = \"file\"\npath = \"{}\"\n",
        out.display()
    )
}

/// Values delivered to an NDJSON file, per series name.
fn delivered(out: &Path) -> BTreeMap<String, Vec<f64>> {
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for l in std::fs::read_to_string(out).unwrap_or_default().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for p in v["points"].as_array().unwrap() {
            m.entry(v["metric"].as_str().unwrap().to_owned())
                .or_default()
                .push(p[1].as_f64().unwrap());
        }
    }
    m
}

/// Whether every series has every value of `rounds` in at least one of `outs`.
fn has_rounds(outs: &[&Path], rounds: std::ops::Range<usize>) -> bool {
    let mut all: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for o in outs {
        for (k, v) in delivered(o) {
            all.entry(k)
                .or_default()
                .extend(v.iter().map(|x| *x as u64));
        }
    }
    (0..SERIES).all(|i| {
        all.get(&format!("m{i}"))
            .is_some_and(|s| rounds.clone().all(|r| s.contains(&(r as u64))))
    })
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(cfg: &Config) -> (WorkerRuntime, WorkerProbe) {
    let w = spawn_workers(cfg, |_| None).unwrap();
    let p = w.probes().remove(0);
    (w, p)
}

#[test]
fn tansu_two_workers_share_partitions_and_the_survivor_takes_over() {
    let brokers = kafka_brokers();
    let topic = unique("sy-kw");
    admin::create_topic(&brokers, &topic, 4, Duration::from_secs(10)).unwrap();
    let group = unique("sy-kw-group");
    let tmp = tempfile::tempdir().unwrap();
    let (out_a, out_b, out_a2) = (
        tmp.path().join("a.ndjson"),
        tmp.path().join("b.ndjson"),
        tmp.path().join("a2.ndjson"),
    );
    let (a, pa) = start(&worker_config(
        &brokers,
        &topic,
        &group,
        "a",
        &file_sink(&out_a),
    ));
    let (b, pb) = start(&worker_config(
        &brokers,
        &topic,
        &group,
        "b",
        &file_sink(&out_b),
    ));
    assert_eq!(pa.name, "stream.a");

    // Phase 1: produce a round at a time until both members delivered records (the group
    // needs a few seconds to give each its partitions).
    let mut rounds = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while pa.snapshot()[1] == 0 || pb.snapshot()[1] == 0 {
        assert!(
            Instant::now() < until,
            "both members should get partitions: a {:?}, b {:?}",
            pa.snapshot(),
            pb.snapshot()
        );
        produce(&brokers, &topic, rounds..rounds + 1);
        rounds += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until("every series of phase 1 at least once", || {
        has_rounds(&[&out_a, &out_b], 0..rounds)
    });

    // Phase 2: a leaves (committing what it delivered); b takes every partition.
    assert!(a.shutdown(Duration::from_secs(10)));
    let a_lines = std::fs::read_to_string(&out_a).unwrap().lines().count();
    let phase2 = rounds..rounds + 3;
    produce(&brokers, &topic, phase2.clone());
    wait_until("b to deliver every series of phase 2", || {
        has_rounds(&[&out_b], phase2.clone())
    });
    assert_eq!(
        std::fs::read_to_string(&out_a).unwrap().lines().count(),
        a_lines,
        "a stopped"
    );
    let [_, _, _, decode_errors, _, committed, ..] = pb.snapshot();
    assert_eq!(decode_errors, 0);
    assert!(committed > 0, "b committed offsets: {:?}", pb.snapshot());

    // Phase 3: b leaves too; a restarted member gets only what came after: every record
    // before was delivered and committed.
    assert!(b.shutdown(Duration::from_secs(10)));
    let last = phase2.end;
    let (a2, pa2) = start(&worker_config(
        &brokers,
        &topic,
        &group,
        "a",
        &file_sink(&out_a2),
    ));
    produce(&brokers, &topic, last..last + 1);
    wait_until("the restarted member to deliver the last round", || {
        has_rounds(&[&out_a2], last..last + 1)
    });
    assert!(a2.shutdown(Duration::from_secs(10)));
    let again = delivered(&out_a2);
    assert_eq!(again.len(), SERIES);
    for (name, values) in &again {
        assert_eq!(
            values,
            &vec![last as f64],
            "{name}: only the round produced after the restart"
        );
    }
    let [read, delivered_records, ..] = pa2.snapshot();
    assert_eq!(read, delivered_records);
}

/// A Datadog intake that answers 503 to everything, counting requests.
fn refusing_vendor() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let n = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                n.fetch_add(1, Ordering::SeqCst);
                s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
            }
        }
    });
    (url, seen)
}

#[test]
fn tansu_a_record_is_committed_only_once_delivered() {
    let brokers = kafka_brokers();
    let topic = unique("sy-kw-commit");
    admin::create_topic(&brokers, &topic, 1, Duration::from_secs(10)).unwrap();
    let group = unique("sy-kw-commit-group");
    produce(&brokers, &topic, 0..1);

    // A member whose vendor refuses everything: it reads the record and keeps sending it.
    let (url, requests) = refusing_vendor();
    std::env::set_var("SY_KAFKA_WORKER_TEST_KEY", "k");
    let dd = format!(
        "[sinks.local]\ntype = \"datadog\"\nendpoint = \"{url}\"\n\
         api_key_env = \"SY_KAFKA_WORKER_TEST_KEY\"\ncompression = \"none\"\n"
    );
    let no_retries = |_: &_| RetryPolicy {
        max_retries: 0,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
    };
    let failing = spawn_workers_with(
        &worker_config(&brokers, &topic, &group, "a", &dd),
        |_| None,
        no_retries,
    )
    .unwrap();
    let probe = failing.probes().remove(0);
    wait_until("the record to be sent again", || {
        requests.load(Ordering::SeqCst) >= 2
    });
    // Stopped while redelivering: at the deadline the record is abandoned uncommitted.
    assert!(!failing.shutdown(Duration::from_millis(300)));
    let [read, delivered_records, redeliveries, _, _, committed, ..] = probe.snapshot();
    assert_eq!(read, 1);
    assert_eq!(delivered_records, 0);
    assert!(redeliveries >= 1);
    assert_eq!(committed, 0);

    // The next member of the group reads that record again and delivers it.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ndjson");
    let (w, p) = start(&worker_config(
        &brokers,
        &topic,
        &group,
        "b",
        &file_sink(&out),
    ));
    wait_until("the next member to deliver the record", || {
        has_rounds(&[&out], 0..1)
    });
    assert!(w.shutdown(Duration::from_secs(10)));
    let [read, delivered_records, _, _, _, committed, ..] = p.snapshot();
    assert_eq!((read, delivered_records), (1, 1));
    assert_eq!(committed, 1, "the offset after the one record");
}
