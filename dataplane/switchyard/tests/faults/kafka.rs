//! The Kafka broker stopped (SIGKILL) and restarted under load: the real binary with a `kafka`
//! sink (cargo feature `kafka`) writes statsd and HTTP traffic to a tansu broker this test
//! starts itself on a free loopback port (never the shared one on :9092), found like
//! `.ci/servers/tansu.sh` installs it (`TANSU_BIN` overrides `<repo>/.ci/cache/venv-tansu/tansu`;
//! the test fails when it is missing). Traffic keeps coming while the broker is down and after
//! it is back: production resumes, every value the ledger counts delivered is on the topic
//! (at least once), and `received = delivered + dropped` (by reason) with nothing in flight.
//!
//! tansu 0.6.0 (the pinned build) has no storage that survives a restart: its only engine
//! here is `memory://` (`s3://` and `postgres://` need servers this machine does not run).
//! So the topic dies with the broker: the test reads what was delivered before the crash back
//! before killing it, creates the topic again after the restart (as an operator would), and
//! reads the rest back from the new broker.

use crate::harness::{free_tcp_port, post_point, repo_root, send_raw, Instance, Options};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_kafka::admin::create_topic;
use switchyard_kafka::{ConsumerConfig, GroupConsumer};
use switchyard_stream::{Decoded, StreamDecoder};
use switchyard_testkit::unique;

const PARTITIONS: i32 = 2;

/// The tansu binary `.ci/servers/tansu.sh` installs (or `TANSU_BIN`).
fn tansu_bin() -> PathBuf {
    let bin = std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".ci/cache/venv-tansu/tansu"));
    assert!(
        bin.exists(),
        "tansu not found at {}: run `.ci/servers/tansu.sh` from the repository root (it \
         installs it there; ./test.sh does) or set TANSU_BIN to a tansu 0.6 binary",
        bin.display()
    );
    bin
}

/// A tansu broker of this test on `127.0.0.1:port`, in-memory storage.
struct Tansu {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Tansu {
    fn start(port: u16, log: PathBuf) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut t = Tansu {
            child: Some(child),
            port,
            log,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = t.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < until,
                "tansu did not answer on 127.0.0.1:{port} ({exited:?}):\n{}",
                t.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and wait until the port is closed.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sink's ledger entry in `GET /v1/stats`.
fn ledger(sy: &Instance) -> Value {
    let (_, body) = sy.get("/v1/stats");
    let stats: Value = serde_json::from_str(&body).unwrap();
    stats["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sink"] == "k")
        .unwrap_or_else(|| panic!("no ledger for sink k: {stats:#}"))["values"]
        .clone()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v:#}"))
}

fn dropped_total(l: &Value) -> u64 {
    l["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// Waits (bounded) until the sink received `at_least` values and settled every one of them
/// (delivered or dropped, nothing in flight); returns the ledger.
fn settled(sy: &Instance, at_least: u64, what: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(40);
    loop {
        let l = ledger(sy);
        if n(&l, "received") >= at_least
            && n(&l, "in_flight") == 0
            && n(&l, "queued") == 0
            && n(&l, "received") == n(&l, "delivered") + dropped_total(&l)
        {
            return l;
        }
        assert!(
            Instant::now() < until,
            "{what}: the sink did not settle {at_least} values: {l:#}\n{}",
            sy.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Values `from..to`: each an HTTP point of `fk.http` and a statsd gauge `fk.udp.<i>` (its
/// own series, so a flush cannot merge two), `gap` apart.
fn send(sy: &Instance, from: u32, to: u32, gap: Duration) {
    for i in from..to {
        post_point(sy.http, "fk.http", i);
        send_raw(sy.statsd, &[format!("fk.udp.{i}:{i}|g").as_bytes()]);
        std::thread::sleep(gap);
    }
}

/// What the topic holds: (HTTP values, statsd values), each value at least once.
#[derive(Debug, Default)]
struct Topic {
    http: BTreeSet<u32>,
    udp: BTreeSet<u32>,
}

impl Topic {
    fn has(&self, from: u32, to: u32) -> bool {
        (from..to).all(|i| self.http.contains(&i) && self.udp.contains(&i))
    }

    fn missing(&self, from: u32, to: u32) -> Vec<u32> {
        (from..to)
            .filter(|i| !self.http.contains(i) || !self.udp.contains(i))
            .collect()
    }
}

/// Reads the topic from the start with a new consumer group until `done` holds (bounded).
fn read_topic(brokers: &str, topic: &str, done: impl Fn(&Topic) -> bool) -> Topic {
    let mut cfg = ConsumerConfig::new(brokers, unique("sy-faults-read"));
    cfg.session_timeout = Duration::from_secs(6);
    let c = GroupConsumer::new(&cfg, &[topic]).unwrap();
    let mut dec = StreamDecoder::default();
    let mut seen = Topic::default();
    let until = Instant::now() + Duration::from_secs(30);
    while !done(&seen) && Instant::now() < until {
        let Some(r) = c.poll(Duration::from_millis(200)).unwrap() else {
            continue;
        };
        let Decoded::Rkyv(batch) = dec.decode(&r.payload).unwrap() else {
            panic!("rkyv records expected");
        };
        for s in batch.series() {
            for (_, v) in s.points() {
                let v = v as u32;
                if s.name() == "fk.http" {
                    seen.http.insert(v);
                } else {
                    assert_eq!(s.name(), format!("fk.udp.{v}"));
                    seen.udp.insert(v);
                }
            }
        }
    }
    seen
}

#[test]
fn a_kafka_broker_killed_and_restarted_loses_nothing_the_ledger_counts_delivered() {
    let dir = std::env::temp_dir().join(format!("switchyard-faults-tansu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_tcp_port();
    let mut broker = Tansu::start(port, dir.join("tansu.log"));
    let brokers = broker.brokers();
    let topic = unique("sy-faults-kafka");
    create_topic(&brokers, &topic, PARTITIONS, Duration::from_secs(10)).unwrap();
    // The default retry policy (5 retries, 10 s request and delivery timeout).
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.k]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n"
        ),
        route_to: vec!["k".into()],
        flush_interval: "1s".into(),
        ..Options::default()
    });
    let gap = Duration::from_millis(50);

    // A: values 0..30 with the broker up, all delivered; read back before the crash (the
    // broker's memory storage dies with it).
    send(&sy, 0, 30, gap);
    let a = settled(&sy, 60, "before the crash");
    assert_eq!(n(&a, "delivered"), 60, "{a:#}");
    let before = read_topic(&brokers, &topic, |t| t.has(0, 30));
    assert!(before.has(0, 30), "missing {:?}", before.missing(0, 30));

    // B: values 30..60 while the broker is down (3 s).
    broker.kill();
    send(&sy, 30, 60, Duration::from_millis(100));
    // Nothing can have been delivered while the broker was down.
    let down = ledger(&sy);
    assert_eq!(n(&down, "delivered"), 60, "{down:#}");

    // The broker back on the same port, the topic created again; C: values 60..90 once
    // production resumed.
    let broker = Tansu::start(port, dir.join("tansu.log"));
    create_topic(&brokers, &topic, PARTITIONS, Duration::from_secs(10)).unwrap();
    let b = settled(&sy, 120, "after the restart");
    send(&sy, 60, 90, gap);
    let l = settled(&sy, 180, "after the restart");
    assert_eq!(n(&l, "received"), 180, "{l:#}");
    assert_eq!(
        n(&l, "received"),
        n(&l, "delivered") + dropped_total(&l),
        "{l:#}"
    );
    let dropped_b = dropped_total(&b);
    let by_reason: Vec<(String, u64)> = l["dropped"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|(_, v)| *v > 0)
        .collect();
    eprintln!(
        "outage: {dropped_b} of 60 values dropped ({by_reason:?}), retries {}",
        sy.metric("switchyard_sink_retries_total{sink=\"k\"}")
    );
    // Whatever was dropped was an outage value, dropped because its retries ran out.
    assert_eq!(dropped_total(&l), dropped_b, "nothing dropped after: {l:#}");
    assert!(
        by_reason.iter().all(|(r, _)| r == "retries_exhausted"),
        "{l:#}"
    );
    sy.stop();

    // Every value of C (after recovery) is on the new topic, and of B all but what the
    // ledger counts dropped.
    let after = read_topic(&brokers, &topic, |t| {
        t.has(60, 90) && t.http.len() + t.udp.len() >= (120 - dropped_b) as usize
    });
    assert!(after.has(60, 90), "missing {:?}", after.missing(60, 90));
    let delivered_b = (30..60)
        .map(|i| u64::from(after.http.contains(&i)) + u64::from(after.udp.contains(&i)))
        .sum::<u64>();
    assert!(
        delivered_b >= 60 - dropped_b,
        "outage values on the topic: {delivered_b}, dropped {dropped_b}: missing {:?}\n{}",
        after.missing(30, 60),
        broker.log_text()
    );
    assert!(
        after.http.iter().chain(&after.udp).all(|&v| v >= 30),
        "the new broker holds no value from before the crash"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
