//! Forwarder and aggregator tiers (issue 7), all real processes on loopback: forwarders
//! (`[forwarder]`) fed by the real `datadog` client, aggregators, and a `loadgen vendor`.
//!
//! The aggregators flush only when they stop (`flush_interval = "1h"`), so each of their
//! outputs is one interval holding everything the forwarders sent them: the values can be
//! compared exactly with what one server would have made of all the lines.

use super::harness::{self, free_tcp_port, send_raw, value, Instance, Options, Vendor};
use serde_json::Value;
use std::time::{Duration, Instant};

/// An aggregator on HTTP port `port`, sending to the file sink and to `vendor`.
fn aggregator(vendor: &Vendor, port: u16) -> Instance {
    Instance::start(Options {
        http_port: Some(port),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"FW_DD_KEY\"\n",
            vendor.url()
        ),
        route_to: vec!["out".into(), "dd".into()],
        env: vec![("FW_DD_KEY".into(), "fw-key".into())],
        ..Options::default()
    })
}

/// A forwarder sending every 200 ms to `aggregators`, adding the host tag `region:test`.
fn forwarder(aggregators: &[u16]) -> Instance {
    let urls: Vec<String> = aggregators
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect();
    Instance::start(Options {
        extra_sinks: format!(
            "[forwarder]\naggregators = [{}]\ninterval = \"200ms\"\ntags = [\"region:test\"]\ndown_for = \"1s\"\nrequest_timeout = \"2s\"\n",
            urls.join(", ")
        ),
        ..Options::default()
    })
}

/// The `forwarder` sink's ledger entry.
fn ledger(f: &Instance) -> Value {
    let (_, body) = f.get("/v1/stats");
    let stats: Value = serde_json::from_str(&body).unwrap();
    stats["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sink"] == "forwarder")
        .cloned()
        .unwrap_or_else(|| panic!("no forwarder sink in {stats:#}"))
}

/// Waits (bounded, 60 s) until `f` counted `lines` statsd lines and its forwarder sink
/// holds nothing (everything received was delivered); returns the ledger entry.
fn wait_forwarded(f: &Instance, lines: f64) -> Value {
    f.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", lines);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let l = ledger(f);
        let v = &l["values"];
        let received = v["received"].as_u64().unwrap();
        if received > 0
            && v["delivered"] == v["received"]
            && v["queued"] == 0
            && v["in_flight"] == 0
            && l["balanced"] == true
        {
            return l;
        }
        assert!(
            Instant::now() < until,
            "forwarder did not settle: {l:#}\n{}",
            f.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that a ledger entry dropped nothing, for any reason.
fn assert_no_drops(l: &Value) {
    let dropped = l["values"]["dropped"].as_object().unwrap();
    assert!(dropped.values().all(|v| v == 0), "{l:#}");
}

/// Sends the two halves of one phase of `forwarded.py` traffic, one per forwarder.
fn send_phase(f0: &Instance, f1: &Instance, phase: &str) {
    harness::run_python("forwarded.py", &[&f0.statsd.to_string(), "0", phase]);
    harness::run_python("forwarded.py", &[&f1.statsd.to_string(), "1", phase]);
}

/// Lines per part of one phase (see `forwarded.py`).
const PART0_LINES: f64 = 60.0 + 50.0 + 30.0 + 2.0;
const PART1_LINES: f64 = 40.0 + 50.0 + 30.0;

/// Asserts one phase's series in an aggregator's output: exactly what one server would
/// have flushed from both forwarders' lines.
fn assert_phase(all: &[Value], phase: &str) {
    harness::assert_exactly_once(all);
    let p = format!("phase:{phase}");
    let tags = ["env:test", p.as_str(), "region:test"];
    let v = |m: &str| value(all, m, &tags);
    assert_eq!(v("fw.hits.count"), 100.0);
    // Timer values 1..=100, half from each forwarder: exact statistics and percentiles.
    assert_eq!(v("fw.latency.count"), 100.0);
    assert_eq!(v("fw.latency.lower"), 1.0);
    assert_eq!(v("fw.latency.upper"), 100.0);
    assert_eq!(v("fw.latency.median"), 50.5);
    assert_eq!(v("fw.latency.sum"), 5050.0);
    assert_eq!(v("fw.latency.upper_90"), 90.0);
    assert_eq!(v("fw.latency.count_90"), 90.0);
    // u0..u29 and u20..u49: 50 distinct members.
    assert_eq!(v("fw.users"), 50.0);
    assert_eq!(v("fw.queue"), 7.0);
    let hits = harness::series(all, "fw.hits.count", &tags);
    assert_eq!(hits["host"], "127.0.0.1", "{hits}");
}

#[test]
fn two_forwarders_give_the_aggregator_exactly_one_servers_result_and_buffer_while_it_is_down() {
    let vendor = Vendor::start("datadog", &[]);
    let port = free_tcp_port();
    let a1 = aggregator(&vendor, port);
    let (f0, f1) = (forwarder(&[port]), forwarder(&[port]));

    // Phase 1: the aggregator is up.
    send_phase(&f0, &f1, "1");
    wait_forwarded(&f0, PART0_LINES);
    wait_forwarded(&f1, PART1_LINES);
    let out1 = a1.stop();
    assert_phase(&out1, "1");

    // Phase 2: the aggregator is down; the forwarders hold what they consolidate.
    send_phase(&f0, &f1, "2");
    f0.wait_metric(
        "switchyard_statsd_lines_total{result=\"ok\"}",
        2.0 * PART0_LINES,
    );
    f1.wait_metric(
        "switchyard_statsd_lines_total{result=\"ok\"}",
        2.0 * PART1_LINES,
    );
    f0.wait_metric("switchyard_sink_retries_total{sink=\"forwarder\"}", 2.0);
    f1.wait_metric("switchyard_sink_retries_total{sink=\"forwarder\"}", 2.0);
    for f in [&f0, &f1] {
        let l = ledger(f);
        assert!(
            l["values"]["received"].as_u64().unwrap() > l["values"]["delivered"].as_u64().unwrap(),
            "phase 2 cannot have been delivered: {l:#}"
        );
    }
    std::thread::sleep(Duration::from_secs(1));

    // The aggregator comes back on the same address: the forwarders deliver.
    let a2 = aggregator(&vendor, port);
    for (f, lines) in [(&f0, 2.0 * PART0_LINES), (&f1, 2.0 * PART1_LINES)] {
        let l = wait_forwarded(f, lines);
        assert_no_drops(&l);
    }
    let out2 = a2.stop();
    assert_phase(&out2, "2");

    // The vendor received both flushes, exactly.
    let s = vendor.stats();
    assert_eq!(
        vendor.metric(&s, "fw.hits.count")["value_sum"],
        200.0,
        "{s:#}"
    );
    assert_eq!(vendor.metric(&s, "fw.latency.upper_90")["value_sum"], 180.0);
    assert_eq!(vendor.metric(&s, "fw.users")["value_sum"], 100.0);
    assert_eq!(vendor.metric(&s, "fw.queue")["points"], 2);
    let _ = (f0.stop(), f1.stop());
}

#[test]
fn each_series_goes_to_one_aggregator_and_fails_over_to_the_other() {
    let vendor = Vendor::start("datadog", &[]);
    let (pa, pb) = (free_tcp_port(), free_tcp_port());
    let (a, b) = (aggregator(&vendor, pa), aggregator(&vendor, pb));
    let f = forwarder(&[pa, pb]);
    let lines: Vec<String> = (0..40).map(|i| format!("fo.c{i}:{}|c", i + 1)).collect();
    let datagrams: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();

    // Both up: every series lands on exactly one of them.
    send_raw(f.statsd, &datagrams);
    wait_forwarded(&f, 40.0);
    // Stop b once it has everything; a keeps running.
    let out_b = b.stop();
    let on_b: Vec<usize> = (0..40)
        .filter(|i| {
            out_b
                .iter()
                .any(|s| s["metric"] == format!("fo.c{i}.count"))
        })
        .collect();
    assert!(
        !on_b.is_empty() && on_b.len() < 40,
        "the 40 series should be shared by both aggregators, b got {on_b:?}"
    );

    // b is down: its series go to a, the others still go to a.
    send_raw(f.statsd, &datagrams);
    let l = wait_forwarded(&f, 80.0);
    assert_no_drops(&l);
    let out_a = a.stop();
    let tags = ["region:test"];
    for i in 0..40usize {
        let sum: f64 = [&out_a, &out_b]
            .iter()
            .flat_map(|o| o.iter())
            .filter(|s| s["metric"] == format!("fo.c{i}.count"))
            .map(|s| s["points"][0][1].as_f64().unwrap())
            .sum();
        assert_eq!(sum, 2.0 * (i as f64 + 1.0), "fo.c{i}");
        // Each series once per aggregator output: a has both rounds of b's series (the
        // first round before b stopped went to b), one value per series.
        let on_a = value(&out_a, &format!("fo.c{i}.count"), &tags);
        let want = if on_b.contains(&i) { 1.0 } else { 2.0 } * (i as f64 + 1.0);
        assert_eq!(on_a, want, "fo.c{i}");
    }
    assert!(
        f.log_text().contains("aggregator failed"),
        "{}",
        f.log_text()
    );
    let _ = f.stop();
}

#[test]
fn the_forward_route_refuses_what_is_not_a_forward_body_with_a_reason() {
    let sy = Instance::start(Options::default());
    let path = "/switchyard/v1/forward";
    let ct = "Content-Type: application/x-switchyard-forward";
    let r = harness::http_post(sy.http, path, &["Content-Type: application/json"], b"{}");
    assert_eq!(r.status, 415, "{}", r.body);
    let r = harness::http_post(sy.http, path, &[ct], b"not a forward body");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not a forward body"), "{}", r.body);
    // A valid header declaring a 1 GiB archive: refused before anything is inflated.
    let mut bomb = b"SYFW\x01\0\0\0".to_vec();
    bomb.extend_from_slice(&(1u32 << 30).to_le_bytes());
    bomb.extend_from_slice(&[0x78, 0x9c, 0x03, 0x00]);
    let r = harness::http_post(sy.http, path, &[ct], &bomb);
    assert_eq!(r.status, 413, "{}", r.body);
    let r = harness::http_request(sy.http, "GET", path, &[], b"");
    assert_eq!(r.status, 405);
    sy.wait_metric(
        "switchyard_aggregator_errors_total{endpoint=\"switchyard_forward\",reason=\"content_type\"}",
        1.0,
    );
    sy.wait_metric(
        "switchyard_aggregator_errors_total{endpoint=\"switchyard_forward\",reason=\"unmarshal\"}",
        1.0,
    );
    sy.wait_metric(
        "switchyard_aggregator_errors_total{endpoint=\"switchyard_forward\",reason=\"too_large\"}",
        1.0,
    );
    let _ = sy.stop();
}

#[test]
fn a_forwarder_holds_aggregates_up_to_its_byte_cap_and_counts_what_it_cannot_hold() {
    // No aggregator answers; one byte of room: only the interval being retried is held.
    let dead = free_tcp_port();
    let f = Instance::start(Options {
        extra_sinks: format!(
            "[forwarder]\naggregators = [\"http://127.0.0.1:{dead}\"]\ninterval = \"100ms\"\nqueue_max_bytes = 1\n"
        ),
        ..Options::default()
    });
    for round in 0..3 {
        send_raw(f.statsd, &[format!("cap.c{round}:1|c").as_bytes()]);
        std::thread::sleep(Duration::from_millis(400));
    }
    f.wait_metric(
        "switchyard_sink_dropped_values_total{sink=\"forwarder\",reason=\"queue_full\"}",
        1.0,
    );
    let l = ledger(&f);
    let v = &l["values"];
    // One interval (one series) is held by the worker, retrying; the later ones were
    // refused at the flush and counted, none lost silently.
    assert_eq!(v["received"], 1, "{l:#}");
    assert_eq!(v["delivered"], 0, "{l:#}");
    assert_eq!(
        v["enqueued"].as_u64().unwrap() + v["dropped"]["queue_full"].as_u64().unwrap(),
        3,
        "{l:#}"
    );
    assert!(f.metric("switchyard_sink_queue_bytes{sink=\"forwarder\"}") > 0.0);
}
