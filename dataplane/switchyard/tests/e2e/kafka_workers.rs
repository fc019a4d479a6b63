//! Kafka as the stream between the dataplane and a vendor (cargo feature `kafka`; a real
//! broker, tansu: start it with `.ci/servers/tansu.sh`, `KAFKA_BROKERS` overrides
//! `127.0.0.1:9092`): one switchyard writes statsd and HTTP traffic into a `kafka` sink, two
//! worker-only switchyards (no routes) of one consumer group deliver it to a `loadgen vendor`
//! (Datadog kind). One worker process is killed with SIGKILL mid-stream: the other takes its
//! partitions once the session times out and every point reaches the vendor at least once.

use super::harness::{self, http_post, Instance, Options, Vendor};
use serde_json::Value;
use std::time::{Duration, Instant};
use switchyard_kafka::admin::create_topic;
use switchyard_testkit::{kafka_brokers, unique};

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

/// `n` statsd gauges `{prefix}.{i}` = i.
fn send_gauges(sy: &Instance, prefix: &str, n: usize) {
    let lines: Vec<String> = (0..n).map(|i| format!("{prefix}.{i}:{i}|g")).collect();
    for chunk in lines.chunks(20) {
        harness::send_raw(sy.statsd, &[chunk.join("\n").as_bytes()]);
    }
}

fn points_of(s: &Value, metric: &str) -> u64 {
    s["metrics"][metric]["points"].as_u64().unwrap_or(0)
}

/// A worker-only switchyard: the kafka sink (not routed to), the vendor, one worker.
fn worker(stream: &str, vendor: &Vendor, group: &str, id: &str) -> Instance {
    Instance::start(Options {
        extra_sinks: format!(
            "{stream}\n[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD_KEY\"\n\
             compression = \"gzip\"\n\n\
             [[workers]]\nfrom = \"stream\"\nto = [\"dd\"]\nworker_id = \"{id}\"\ngroup = \"{group}\"\n\
             failover = \"3s\"\nmax_records = 4\n",
            vendor.url()
        ),
        routes: Some(String::new()),
        env: vec![("SY_TEST_DD_KEY".into(), "k".into())],
        ..Options::default()
    })
}

fn delivered(w: &Instance, id: &str) -> f64 {
    w.metric(&format!(
        "switchyard_worker_batches_delivered_total{{worker=\"stream.{id}\"}}"
    ))
}

#[test]
fn kafka_workers_deliver_every_point_at_least_once_when_one_is_killed() {
    let brokers = kafka_brokers();
    let topic = unique("sy-e2e-kw");
    create_topic(&brokers, &topic, 4, Duration::from_secs(10)).unwrap();
    let group = unique("sy-e2e-kw-group");
    let stream =
        format!("[sinks.stream]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n");
    let dd = Vendor::start("datadog", &[]);
    let w1 = worker(&stream, &dd, &group, "w1");
    let w2 = worker(&stream, &dd, &group, "w2");
    // The writer flushes statsd every second, so its gauges go out while the workers run.
    let writer = Instance::start(Options {
        extra_sinks: stream.clone(),
        route_to: vec!["stream".into()],
        flush_interval: "1s".into(),
        ..Options::default()
    });

    // Warm-up: traffic until both workers delivered records (each holds partitions).
    let mut warm = 0;
    let until = Instant::now() + Duration::from_secs(30);
    while delivered(&w1, "w1") < 1.0 || delivered(&w2, "w2") < 1.0 {
        assert!(
            Instant::now() < until,
            "both workers should get partitions:\n{}\n{}",
            w1.log_text(),
            w2.log_text()
        );
        post_series(&writer, &format!("warm{warm}"), 20);
        warm += 1;
        std::thread::sleep(Duration::from_millis(300));
    }

    // Mid-stream: w1 is killed between HTTP payloads and statsd flushes.
    for k in 0..6 {
        post_series(&writer, &format!("b{k}"), 20);
        if k == 2 {
            send_gauges(&writer, "c", 30);
            w1.signal(libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(w1);
    send_gauges(&writer, "d", 30);
    writer.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 60.0);
    // SIGTERM: the last flush goes into the topic before the writer exits.
    writer.stop();

    let mut expect: Vec<(String, u64)> = Vec::new();
    for k in 0..warm {
        expect.extend((0..20).map(|i| (format!("warm{k}.{i}"), 2)));
    }
    for k in 0..6 {
        expect.extend((0..20).map(|i| (format!("b{k}.{i}"), 2)));
    }
    for p in ["c", "d"] {
        expect.extend((0..30).map(|i| (format!("{p}.{i}"), 1)));
    }
    let total: u64 = expect.iter().map(|(_, n)| n).sum();
    let until = Instant::now() + Duration::from_secs(40);
    let s = loop {
        let s = dd.stats();
        if expect.iter().all(|(m, n)| points_of(&s, m) >= *n) {
            break s;
        }
        assert!(
            Instant::now() < until,
            "points missing at the vendor (expected {total} at least), e.g. {:?}:\n{s:#}\n{}",
            expect
                .iter()
                .filter(|(m, n)| points_of(&s, m) < *n)
                .take(5)
                .collect::<Vec<_>>(),
            w2.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(s["points"].as_u64().unwrap() >= total, "{s:#}");
    assert_eq!(
        s["metrics"]["d.29"]["value_sum"].as_f64(),
        Some(29.0 * points_of(&s, "d.29") as f64)
    );
    w2.stop();
}
