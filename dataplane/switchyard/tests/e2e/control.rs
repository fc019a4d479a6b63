//! The control API of the real binary: the accounting ledger of `GET /v1/stats` after a run
//! with injected vendor failures, and `GET /readyz` following a vendor's health.

use super::harness::{http_post, Instance, Options, Vendor};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A Datadog sink `old` (one request in flight, `max_retries` retries) beside the file sink.
fn with_datadog(dd: &Vendor, max_retries: u32) -> Options {
    Options {
        extra_sinks: format!(
            "[sinks.old]\ntype = \"datadog\"\nendpoint = \"{}\"\nmax_in_flight = 1\nmax_retries = {max_retries}\n",
            dd.url()
        ),
        route_to: vec!["out".into(), "old".into()],
        ..Options::default()
    }
}

fn json(sy: &Instance, path: &str) -> (u16, Value) {
    let (status, body) = sy.get(path);
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

/// Polls `path` (bounded, 60 s) until `done` holds; returns the last body.
fn wait_for(sy: &Instance, path: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = json(sy, path);
        if done(status, &v) {
            return v;
        }
        if Instant::now() > until {
            panic!("{what}: last {path} ({status}): {v:#}\n{}", sy.log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ledger<'a>(stats: &'a Value, sink: &str) -> &'a Value {
    stats["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sink"] == sink)
        .unwrap_or_else(|| panic!("no ledger for {sink}: {stats:#}"))
}

/// One sample of a `/v1/stats` series.
fn sample(stats: &Value, name: &str, labels: &[(&str, &str)]) -> u64 {
    let want: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    stats["metrics"][name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} missing"))
        .iter()
        .find(|s| s["labels"] == Value::Object(want.clone()))
        .and_then(|s| s["value"].as_u64())
        .unwrap_or_else(|| panic!("{name} {labels:?} missing"))
}

/// Both identities, from the ledger's own fields.
fn assert_identity(l: &Value) {
    // The same identities in values and in HTTP payload body bytes.
    for v in [&l["values"], &l["bytes"]] {
        let n = |k: &str| v[k].as_u64().unwrap();
        let dropped: u64 = v["dropped"]
            .as_object()
            .unwrap()
            .iter()
            // Dropped by the shards before enqueueing: outside both sums.
            .filter(|(k, _)| !matches!(k.as_str(), "queue_full" | "route_dropped" | "sampled_out"))
            .map(|(_, d)| d.as_u64().unwrap())
            .sum();
        assert_eq!(
            n("enqueued") + n("replayed"),
            n("received") + n("queued"),
            "{l:#}"
        );
        assert_eq!(
            n("received"),
            n("delivered") + n("in_flight") + dropped,
            "{l:#}"
        );
    }
    assert_eq!(l["balanced"], true, "{l:#}");
    assert_eq!(l["clamped"], serde_json::json!([]), "{l:#}");
}

#[test]
fn the_ledger_accounts_for_every_point_after_injected_failures() {
    // The vendor fails its first 5 requests. With one retry per request and one request in
    // flight: payload 0 fails twice (dropped, retries exhausted), payload 1 too, payload 2
    // fails once then goes through, and everything after it is delivered.
    let dd = Vendor::start("datadog", &["--fail-status", "503", "--fail-count", "5"]);
    let sy = Instance::start(with_datadog(&dd, 1));
    let mut total = 0u64;
    let mut body_bytes = Vec::new();
    for i in 0..10u64 {
        let points: Vec<String> = (0..=i)
            .map(|j| format!("[{},{j}]", 1_700_000_000 + j))
            .collect();
        let body = format!(
            "{{\"series\":[{{\"metric\":\"ledger.m{i}\",\"points\":[{}],\"type\":\"gauge\"}}]}}",
            points.join(",")
        );
        let r = http_post(
            sy.http,
            "/api/v1/series",
            &["DD-API-KEY: k", "Content-Type: application/json"],
            body.as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        body_bytes.push(body.len() as u64);
        total += i + 1;
    }
    assert_eq!(total, 55);

    // At rest: the shards published what they enqueued and both sinks handled all of it.
    let stats = wait_for(&sy, "/v1/stats", "ledger at rest", |_, s| {
        ["out", "old"].iter().all(|sink| {
            let (v, b) = (&ledger(s, sink)["values"], &ledger(s, sink)["bytes"]);
            v["enqueued"] == total
                && v["received"] == total
                && v["in_flight"] == 0
                && b["enqueued"] == b["received"]
                && b["in_flight"] == 0
        })
    });
    for sink in ["out", "old"] {
        let l = ledger(&stats, sink);
        assert_identity(l);
        assert_eq!(l["values"]["queued"], 0, "{l:#}");
        assert_eq!(l["values"]["dropped"]["queue_full"], 0, "{l:#}");
        // The ledger and the series agree.
        assert_eq!(
            sample(
                &stats,
                "switchyard_sink_enqueued_values_total",
                &[("sink", sink)]
            ),
            total
        );
        assert_eq!(
            l["values"]["delivered"].as_u64().unwrap(),
            sample(
                &stats,
                "switchyard_sink_delivered_values_total",
                &[("sink", sink)]
            )
        );
    }
    let out = ledger(&stats, "out");
    assert_eq!(out["values"]["delivered"], total, "{out:#}");

    let old = ledger(&stats, "old");
    assert_eq!(old["values"]["delivered"], total - 3, "{old:#}");
    assert_eq!(old["values"]["dropped"]["retries_exhausted"], 3, "{old:#}");
    let other_drops: u64 = old["values"]["dropped"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "retries_exhausted")
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(other_drops, 0, "{old:#}");
    let req = |outcome: &str| {
        sample(
            &stats,
            "switchyard_sink_requests_total",
            &[("sink", "old"), ("outcome", outcome)],
        )
    };
    assert_eq!((req("retryable"), req("success")), (5, 8));

    // What the vendor accepted is what the ledger says was delivered, points and bytes.
    let v = dd.stats();
    assert_eq!(v["points"], total - 3, "{v:#}");
    assert_eq!(v["failed_requests"], 5, "{v:#}");
    let accepted_bytes =
        v["bytes_wire"].as_u64().unwrap() - v["failed_bytes_wire"].as_u64().unwrap();
    assert_eq!(old["bytes"]["sent"], accepted_bytes, "{old:#}");
    assert_eq!(old["bytes"]["held"], 0, "{old:#}");
    // In payload body bytes: all enqueued and received; the first two payloads dropped.
    let all: u64 = body_bytes.iter().sum();
    let lost = body_bytes[0] + body_bytes[1];
    assert_eq!(old["bytes"]["enqueued"], all, "{old:#}");
    assert_eq!(old["bytes"]["received"], all, "{old:#}");
    assert_eq!(
        old["bytes"]["dropped"]["retries_exhausted"], lost,
        "{old:#}"
    );
    assert_eq!(old["bytes"]["delivered"], all - lost, "{old:#}");
    let bytes =
        |labels: &[(&str, &str)]| sample(&stats, "switchyard_sink_payload_bytes_total", labels);
    assert_eq!(
        bytes(&[("sink", "old"), ("stage", "delivered")]),
        all - lost
    );
    assert_eq!(
        bytes(&[
            ("sink", "old"),
            ("stage", "dropped"),
            ("reason", "retries_exhausted")
        ]),
        lost
    );
    assert_eq!(
        sample(
            &stats,
            "switchyard_sink_enqueued_payload_bytes_total",
            &[("sink", "old")]
        ),
        all
    );
    sy.stop();
}

#[test]
fn readyz_reports_a_failing_vendor_until_it_recovers() {
    let dd = Vendor::start(
        "datadog",
        &["--fail-status", "503", "--fail-count", "1000000"],
    );
    let sy = Instance::start(with_datadog(&dd, 100));
    let (status, v) = json(&sy, "/readyz");
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["dataplane"]["ready"], true);

    let r = http_post(
        sy.http,
        "/api/v1/series",
        &["DD-API-KEY: k", "Content-Type: application/json"],
        br#"{"series":[{"metric":"ready.m","points":[[1700000000,1]],"type":"gauge"}]}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    // Five failed attempts in a row (the default threshold): not ready, and the body says why.
    let v = wait_for(&sy, "/readyz", "readyz to report the sink", |s, _| s == 503);
    assert_eq!(v["ready"], false);
    assert_eq!(v["dataplane"]["ready"], true, "{v:#}");
    let old = v["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == "old")
        .unwrap();
    assert_eq!(old["healthy"], false, "{v:#}");
    assert!(old["consecutive_failures"].as_u64().unwrap() >= 5, "{v:#}");
    assert!(v["errors"][0].as_str().unwrap().contains("`old`"), "{v:#}");

    // The vendor recovers: the next retry succeeds and the process is ready again.
    dd.control("{\"fail_count\": 0}");
    let v = wait_for(&sy, "/readyz", "readyz to recover", |s, _| s == 200);
    assert_eq!(v["ready"], true, "{v:#}");
    let (_, stats) = json(&sy, "/v1/stats");
    assert_eq!(ledger(&stats, "old")["values"]["delivered"], 1);
    sy.stop();
}
