//! The local log as the stream between the dataplane and a vendor: statsd and HTTP traffic
//! into a `local_log` sink, a `[[workers]]` entry delivering it to a `loadgen vendor`
//! (Datadog kind). Exact counts when nothing fails; after a kill -9, everything that was
//! durable in the log arrives at least once and the worker resumes from its committed
//! offset.

use super::harness::{self, http_post, Instance, Options, Vendor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn log_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-e2e-log-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn options(log: &Path, vendor: &Vendor, flush: &str) -> Options {
    Options {
        extra_sinks: format!(
            "[sinks.stream]\ntype = \"local_log\"\ndir = \"{}\"\n\n\
             [sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD_KEY\"\n\
             compression = \"gzip\"\nmax_retries = 0\n\n\
             [[workers]]\nfrom = \"stream\"\nto = [\"dd\"]\nmax_records = 4\n",
            log.display(),
            vendor.url()
        ),
        route_to: vec!["stream".into()],
        env: vec![("SY_TEST_DD_KEY".into(), "k".into())],
        flush_interval: flush.into(),
        ..Options::default()
    }
}

/// Waits (bounded) until the vendor accepted at least `points` points.
fn wait_points(v: &Vendor, points: u64) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = v.stats();
        if s["points"].as_u64().unwrap_or(0) >= points {
            return s;
        }
        assert!(
            Instant::now() < until,
            "vendor stayed below {points} points: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn points_of(s: &Value, metric: &str) -> u64 {
    s["metrics"][metric]["points"].as_u64().unwrap_or(0)
}

/// `n` HTTP series `{prefix}.{i}`, two points each, in one v1 payload (202 asserted).
fn post_series(sy: &Instance, prefix: &str, n: usize) {
    let series: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{\"metric\":\"{prefix}.{i}\",\"points\":[[1700000000,{i}],[1700000010,1]],\"type\":\"gauge\",\"tags\":[\"src:http\"]}}"
            )
        })
        .collect();
    let body = format!("{{\"series\":[{}]}}", series.join(","));
    let r = http_post(
        sy.http,
        "/api/v1/series",
        &["DD-API-KEY: client", "Content-Type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
}

/// `n` statsd gauges `{prefix}.{i}` (one datagram each line batch).
fn send_gauges(sy: &Instance, prefix: &str, n: usize) {
    let lines: Vec<String> = (0..n).map(|i| format!("{prefix}.{i}:{i}|g")).collect();
    for chunk in lines.chunks(20) {
        harness::send_raw(sy.statsd, &[chunk.join("\n").as_bytes()]);
    }
}

#[test]
fn statsd_and_http_reach_the_vendor_through_the_log_exactly_once() {
    let dd = Vendor::start("datadog", &[]);
    let log = log_dir("exact");
    let sy = Instance::start(options(&log, &dd, "1h"));
    post_series(&sy, "http.a", 30);
    post_series(&sy, "http.b", 5);
    send_gauges(&sy, "udp", 50);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 50.0);
    // The HTTP payloads are in the log and delivered while the process runs.
    let s = wait_points(&dd, 70);
    assert_eq!(points_of(&s, "http.a.7"), 2, "{s:#}");
    let (_, stats) = sy.get("/v1/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["workers"][0]["worker"], "stream.0", "{stats:#}");
    // SIGTERM: the final flush goes into the log and the worker delivers it before exit.
    sy.stop();
    let s = wait_points(&dd, 120);
    assert_eq!(s["points"], 120, "exactly once: {s:#}");
    assert_eq!(s["failed_requests"], 0, "{s:#}");
    for i in [0, 17, 49] {
        assert_eq!(points_of(&s, &format!("udp.{i}")), 1, "udp.{i}: {s:#}");
        assert_eq!(
            s["metrics"][format!("udp.{i}")]["value_sum"].as_f64(),
            Some(i as f64)
        );
    }
    assert_eq!(points_of(&s, "http.b.4"), 2);
    assert_eq!(s["metrics"]["http.b.4"]["value_sum"].as_f64(), Some(5.0));
    let _ = std::fs::remove_dir_all(&log);
}

#[test]
fn after_kill_9_every_durable_point_arrives_and_the_worker_resumes() {
    let dd = Vendor::start("datadog", &[]);
    let log = log_dir("crash");
    // Statsd flushes every second, so its aggregates are in the log before the crash.
    let sy = Instance::start(options(&log, &dd, "1s"));
    // Phase A: delivered and committed before the crash.
    post_series(&sy, "a", 40);
    wait_points(&dd, 80);
    sy.wait_metric(
        "switchyard_worker_committed_offset{worker=\"stream.0\"}",
        1.0,
    );
    // Phase B: durable in the log while the vendor refuses everything, then kill -9.
    dd.control(r#"{"fail_status":503,"fail_count":1000000}"#);
    for k in 0..3 {
        post_series(&sy, &format!("b{k}"), 20);
    }
    send_gauges(&sy, "c", 30);
    // Acknowledged into the log: durable (the sink counts a value delivered once it is).
    sy.wait_metric(
        "switchyard_sink_delivered_values_total{sink=\"stream\"}",
        230.0,
    );
    sy.signal(libc::SIGKILL);
    drop(sy);

    dd.control(r#"{"fail_count":0}"#);
    let sy = Instance::start(options(&log, &dd, "1h"));
    let s = wait_points(&dd, 230);
    for i in [0, 29] {
        assert_eq!(points_of(&s, &format!("c.{i}")), 1, "c.{i}: {s:#}");
    }
    for k in 0..3 {
        for i in [0, 19] {
            assert!(points_of(&s, &format!("b{k}.{i}")) >= 2, "b{k}.{i}: {s:#}");
        }
    }
    // Resumed from the committed offset: A is not delivered again.
    assert_eq!(points_of(&s, "a.0"), 2, "{s:#}");
    assert_eq!(points_of(&s, "a.39"), 2, "{s:#}");
    sy.stop();
    let s = dd.stats();
    assert_eq!(s["points"], 230, "nothing delivered twice: {s:#}");
    let _ = std::fs::remove_dir_all(&log);
}

#[test]
fn a_workers_only_host_delivers_what_another_process_logged() {
    let log = log_dir("workers-only");
    let stream = format!(
        "[sinks.stream]\ntype = \"local_log\"\ndir = \"{}\"\n",
        log.display()
    );
    // A writer: everything into the log, no worker.
    let writer = Instance::start(Options {
        extra_sinks: stream.clone(),
        route_to: vec!["stream".into()],
        ..Options::default()
    });
    post_series(&writer, "w", 10);
    writer.wait_metric(
        "switchyard_sink_delivered_values_total{sink=\"stream\"}",
        20.0,
    );
    assert!(
        writer.stop().is_empty(),
        "nothing goes to the file sink directly"
    );
    // A worker host: no routes at all, one worker from the log to the NDJSON file sink.
    let reader = Instance::start(Options {
        extra_sinks: format!("{stream}\n[[workers]]\nfrom = \"stream\"\nto = [\"out\"]\n"),
        routes: Some(String::new()),
        ..Options::default()
    });
    reader.wait_metric(
        "switchyard_worker_batches_delivered_total{worker=\"stream.0\"}",
        1.0,
    );
    let all = reader.stop();
    assert_eq!(all.len(), 10, "{all:?}");
    let w3 = harness::series(&all, "w.3", &["src:http"]);
    assert_eq!(
        w3["points"],
        serde_json::json!([[1.7e9, 3.0], [1700000010.0, 1.0]])
    );
    let _ = std::fs::remove_dir_all(&log);
}
