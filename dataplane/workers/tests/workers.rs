//! Workers over a real local log: statsd batches appended through the `local_log` sink are
//! delivered to a file sink exactly once across restarts, and a vendor that fails requests
//! gets every record again until it takes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::config::Config;
use switchyard_core::egress::Egress;
use switchyard_core::model::{SeriesBatch, SeriesType};
use switchyard_sinks::{spawn_sinks, RetryPolicy};
use switchyard_workers::{spawn_workers, spawn_workers_with};

fn batch(first: usize, n: usize) -> Arc<SeriesBatch> {
    let mut b = SeriesBatch::new(1_700_000_000, 10.0);
    for i in first..first + n {
        let id = b.identity(&format!("m{i}"), ["a:b"], "h");
        b.push(id, "", SeriesType::Count, i as f64);
    }
    Arc::new(b)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn file_sink_gets_every_series_once_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ndjson");
    let src = format!(
        r#"
[sinks.stream]
type = "local_log"
dir = "{}"
[sinks.local]
type = "file"
path = "{}"
[[routes]]
name = "all"
to = ["stream"]
[[workers]]
from = "stream"
to = ["local"]
max_records = 2
"#,
        tmp.path().join("log").display(),
        out.display()
    );
    let cfg = Config::from_toml(&src).unwrap();
    for round in 0..2 {
        let sinks = spawn_sinks(&cfg).unwrap();
        let workers = spawn_workers(&cfg, |_| None).unwrap();
        let h = sinks
            .handles()
            .into_iter()
            .find(|h| h.name == "stream")
            .unwrap();
        for k in 0..5 {
            h.tx.send(Egress::Series(batch(round * 100 + k * 10, 10)))
                .unwrap();
        }
        drop(h);
        assert!(sinks.shutdown(Duration::from_secs(10)));
        let probe = workers.probes().remove(0);
        assert!(workers.shutdown(Duration::from_secs(10)));
        let got = lines(&out);
        assert_eq!(got.len(), 50 * (round + 1), "round {round}");
        let [read, delivered, redeliveries, decode_errors, lag, committed, ..] = probe.snapshot();
        assert_eq!(
            (read, delivered),
            (5, 5),
            "this run read only its own records"
        );
        assert_eq!((redeliveries, decode_errors, lag), (0, 0, 0));
        assert_eq!(committed, 5 * (round as u64 + 1));
    }
    let got = lines(&out);
    let mut names: Vec<String> = got
        .iter()
        .map(|v| v["metric"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 100, "every series exactly once");
    let m142 = got.iter().find(|v| v["metric"] == "m142").unwrap();
    assert_eq!(m142["points"][0], serde_json::json!([1.7e9, 142.0]));
    assert_eq!(m142["type"], "count");
    assert_eq!(m142["tags"], serde_json::json!(["a:b"]));
}

/// A Datadog intake that answers 503 to the first `fail` requests and 202 after, keeping
/// the bodies it accepted.
fn flaky_vendor(fail: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = AtomicUsize::new(0);
    let g = got.clone();
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
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = if n < fail {
                    "503 Service Unavailable"
                } else {
                    g.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    "202 Accepted"
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: 15\r\nContent-Type: application/json\r\n\r\n{{\"status\":\"ok\"}}"
                );
                s.write_all(resp.as_bytes()).unwrap();
            }
        }
    });
    (url, got)
}

#[test]
fn failed_deliveries_are_sent_again_until_the_vendor_takes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, got) = flaky_vendor(3);
    std::env::set_var("SY_WORKER_TEST_KEY", "k");
    let src = format!(
        r#"
[sinks.stream]
type = "local_log"
dir = "{}"
[sinks.dd]
type = "datadog"
endpoint = "{url}"
api_key_env = "SY_WORKER_TEST_KEY"
compression = "none"
[[routes]]
name = "all"
to = ["stream"]
[[workers]]
from = "stream"
to = ["dd"]
"#,
        tmp.path().join("log").display(),
    );
    let cfg = Config::from_toml(&src).unwrap();
    let sinks = spawn_sinks(&cfg).unwrap();
    let no_retries = |_: &_| RetryPolicy {
        max_retries: 0,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
    };
    let workers = spawn_workers_with(&cfg, |_| None, no_retries).unwrap();
    let probe = workers.probes().remove(0);
    let h = sinks
        .handles()
        .into_iter()
        .find(|h| h.name == "stream")
        .unwrap();
    h.tx.send(Egress::Series(batch(0, 7))).unwrap();
    drop(h);
    assert!(sinks.shutdown(Duration::from_secs(10)));
    wait_until("the vendor to accept the record", || {
        !got.lock().unwrap().is_empty()
    });
    assert!(workers.shutdown(Duration::from_secs(10)));
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1, "accepted once");
    assert_eq!(got[0]["series"].as_array().unwrap().len(), 7);
    let [read, delivered, redeliveries, _, lag, committed, ..] = probe.snapshot();
    assert_eq!((read, delivered, lag, committed), (1, 1, 0, 1));
    assert_eq!(redeliveries, 3, "three failed attempts, each sent again");
}
