//! Switchyard as a gostatsd aggregator: the requests a real gostatsd forwarder sent
//! (`dataplane/core/tests/fixtures/captures/gostatsd`, copies of
//! `shared/reference/captures/gostatsd`) are replayed byte for byte (request line, headers,
//! body) to the binary's HTTP intake; the flushed series must equal what the real gostatsd
//! aggregator sent to Datadog, and every answer what gostatsd's aggregator answered.

use super::harness::{
    self, assert_exactly_once, http_raw, http_request, Instance, Options, RawResponse, Vendor,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn captures() -> PathBuf {
    harness::repo_root().join("dataplane/core/tests/fixtures/captures/gostatsd")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(captures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The capture `<stem>` as it went over the wire: its `.http` head (lines end in LF in the
/// file, CRLF on the wire) and its body.
fn recorded_request(stem: &str) -> Vec<u8> {
    let head = String::from_utf8(read(&format!("{stem}.http"))).unwrap();
    let mut req: Vec<u8> = head
        .lines()
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(&read(&format!("{stem}.body.bin")));
    req
}

/// Replays capture `stem` and returns the answer.
fn replay(port: u16, stem: &str) -> RawResponse {
    http_raw(port, &recorded_request(stem), 1).remove(0)
}

/// Every capture stem whose request line is `POST <path>` (sorted).
fn stems(path: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(captures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".http")?.to_string();
            let head = String::from_utf8(read(&name)).unwrap();
            (head.lines().next()? == format!("POST {path} HTTP/1.1")).then_some(stem)
        })
        .collect();
    out.sort();
    out
}

/// Waits (bounded) until a metric equals `want` (shards publish their counters about once a
/// second), and asserts it.
fn assert_metric(sy: &Instance, series: &str, want: f64) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let v = sy.metric(series);
        if v == want {
            return;
        }
        assert!(Instant::now() < until, "{series} = {v}, want {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_accepted(r: &RawResponse, what: &str) {
    assert_eq!(
        (r.status, r.body.as_str(), r.header("content-length")),
        (202, "", Some("0")),
        "{what}"
    );
}

/// `(metric, tags joined by ',', host)` -> `(type, value)`.
type Flushed = BTreeMap<(String, String, String), (String, f64)>;

fn key(s: &Value) -> (String, String, String) {
    let tags: Vec<&str> = s["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap()).collect())
        .unwrap_or_default();
    (
        s["metric"].as_str().unwrap().to_string(),
        tags.join(","),
        s["host"].as_str().unwrap_or("").to_string(),
    )
}

fn flushed(all: &[Value]) -> Flushed {
    all.iter()
        .map(|s| {
            let v = (
                s["type"].as_str().unwrap().to_string(),
                s["points"][0][1].as_f64().unwrap(),
            );
            (key(s), v)
        })
        .collect()
}

/// The series the real gostatsd aggregator sent to Datadog for the mixed lines (flush
/// interval 2 s, percentiles 90 and 99).
fn gostatsd_sent() -> Flushed {
    let dd: Value = serde_json::from_slice(&read("e2e_fwd_to_agg.datadog.json")).unwrap();
    let series = dd["requests"][0]["body"]["series"].as_array().unwrap();
    assert!(series.iter().all(|s| s["interval"] == 2));
    flushed(series)
}

#[test]
fn mixed_captures_flush_what_the_real_gostatsd_aggregator_sent() {
    let want = gostatsd_sent();
    assert_eq!(want.len(), 23);
    let stems = ["fwd_mixed_zlib", "fwd_mixed_lz4", "fwd_mixed_none"];
    for stem in stems {
        let sy = Instance::start(Options {
            statsd_extra: "percentiles = [90.0, 99.0]".into(),
            ..Options::default()
        });
        assert_accepted(&replay(sy.http, stem), stem);
        // m.c, m.g, m.s, m.t.
        sy.wait_metric("switchyard_aggregator_series_total{result=\"ok\"}", 4.0);
        let all = sy.stop();
        assert_exactly_once(&all);
        assert!(all.iter().all(|s| s["interval"] == 3600.0), "{all:?}");
        let got = flushed(&all);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{stem}"
        );
        for (k, (kind, v)) in &want {
            let (gk, gv) = &got[k];
            assert_eq!(gk, kind, "{stem} {k:?}");
            // Rates are per second of the flush interval: 2 s there, 1 h here.
            let gv = if kind == "rate" {
                gv * 3600.0 / 2.0
            } else {
                *gv
            };
            assert!(
                (gv - v).abs() <= 1e-9 * v.abs().max(1.0),
                "{stem} {k:?}: {gv} != {v}"
            );
        }
    }
}

#[test]
fn every_raw_capture_is_accepted_and_aggregates_as_the_forwarder_consolidated_it() {
    let raw = stems("/v2/raw");
    // counters, dynamic headers x3, gauges, mixed x3, sets, startup, timers.
    assert_eq!(raw.len(), 11, "{raw:?}");
    let mixed: Vec<&String> = raw.iter().filter(|s| s.starts_with("fwd_mixed")).collect();
    assert_eq!(mixed.len(), 3);
    let sy = Instance::start(Options {
        shards: 2,
        ..Options::default()
    });
    for stem in raw.iter().filter(|s| !s.starts_with("fwd_mixed")) {
        assert_accepted(&replay(sy.http, stem), stem);
    }
    // counters 4, gauges 4, sets 2, timers 2, dynamic headers 3; the startup message none.
    sy.wait_metric("switchyard_aggregator_series_total{result=\"ok\"}", 15.0);
    for (series, v) in [
        (
            "switchyard_http_requests_total{endpoint=\"gostatsd_raw\"}",
            8.0,
        ),
        (
            "switchyard_http_payloads_total{endpoint=\"gostatsd_raw\"}",
            8.0,
        ),
        (
            "switchyard_http_series_total{endpoint=\"gostatsd_raw\"}",
            15.0,
        ),
        ("switchyard_aggregator_series_total{result=\"ok\"}", 15.0),
    ] {
        assert_metric(&sy, series, v);
    }
    let (_, metrics) = sy.get("/metrics");
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            (l.starts_with("switchyard_aggregator_errors_total{")
                || l.starts_with("switchyard_aggregator_series_total{result=\"error\""))
                && !l.ends_with(" 0")
        })
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let all = sy.stop();
    assert_exactly_once(&all);
    // Every series' host is the original client's address carried in `Hostname`.
    assert!(all.iter().all(|s| s["host"] == "127.0.0.1"), "{all:?}");
    let got = flushed(&all);
    let v = |m: &str, tags: &str| -> f64 {
        got.get(&(m.into(), tags.into(), "127.0.0.1".into()))
            .unwrap_or_else(|| panic!("{m} [{tags}] not flushed: {got:?}"))
            .1
    };
    // Counters with the forwarder's sample-rate arithmetic (3@0.5 + 1@0.3 -> 6 + 3).
    assert_eq!(v("f.c.count", ""), 9.0);
    assert_eq!(v("f.c.count", "env:prod,role:web"), 3.0);
    assert_eq!(v("f.c2.count", "canary"), 1.0);
    assert_eq!(v("f.c3.count", ""), 1.0);
    // Gauges: last value, `+3` is 3, packed 1:2:7 is 7.
    assert_eq!(v("f.g", ""), 1.0);
    assert_eq!(v("f.g", "env:prod"), -2.5);
    assert_eq!(v("f.g2", ""), 3.0);
    assert_eq!(v("f.g3", ""), 7.0);
    // Sets: alice and bob; the tagged numeric member.
    assert_eq!(v("f.s", ""), 2.0);
    assert_eq!(v("f.s", "env:prod"), 1.0);
    // Timers: values 1..=5 with SampleCount 13.
    assert_eq!(v("f.t.count", ""), 13.0);
    assert_eq!(v("f.t.lower", ""), 1.0);
    assert_eq!(v("f.t.upper", ""), 5.0);
    assert_eq!(v("f.t.sum", ""), 15.0);
    assert_eq!(v("f.h.count", "env:prod"), 1.0);
    // Dynamic headers: one request per tenant, the tag kept in the series.
    assert_eq!(v("d.c.count", ""), 1.0);
    assert_eq!(v("d.c.count", "env:prod,tenant:acme"), 1.0);
    assert_eq!(v("d.c.count", "tenant:globex"), 1.0);
}

#[test]
fn gostatsd_routes_answer_as_gostatsd_does_on_every_error_path() {
    let sy = Instance::start(Options {
        http_extra: "max_body_bytes = 4096\nmax_decompressed_bytes = 8192".into(),
        ..Options::default()
    });
    let p = sy.http;
    let err = |route: &str, reason: &str, want: f64| {
        let series = format!(
            "switchyard_aggregator_errors_total{{endpoint=\"{route}\",reason=\"{reason}\"}}"
        );
        assert_metric(&sy, &series, want);
    };
    let pb = ["Content-Type: application/x-protobuf"];
    let post = |path: &str, headers: &[&str], body: &[u8]| {
        let mut h = pb.to_vec();
        h.extend_from_slice(headers);
        http_request(p, "POST", path, &h, body)
    };
    let empty_answer = |r: &RawResponse, status: u16, what: &str| {
        assert_eq!(
            (r.status, r.body.as_str(), r.header("content-length")),
            (status, "", Some("0")),
            "{what}"
        );
    };

    // Bodies gostatsd refuses: 400 with an empty body, counted with gostatsd's reason.
    empty_answer(&post("/v2/raw", &[], b"\xff\xff\xff\xff"), 400, "garbage");
    let plain = read("fwd_mixed_none.pb");
    empty_answer(
        &post("/v2/raw", &[], &plain[..plain.len() - 3]),
        400,
        "truncated",
    );
    empty_answer(
        &post("/v2/raw", &["Content-Encoding: deflate"], &plain),
        400,
        "plain bytes labelled deflate",
    );
    empty_answer(
        &post("/v2/raw", &["Content-Encoding: deflate"], b""),
        400,
        "empty deflate",
    );
    empty_answer(
        &post(
            "/v2/raw",
            &["Content-Encoding: gzip"],
            &harness::gzip(&plain),
        ),
        400,
        "gzip",
    );
    empty_answer(
        &post("/v2/event", &[], b"\xff\xff\xff"),
        400,
        "garbage event",
    );
    err("gostatsd_raw", "unmarshal", 2.0);
    err("gostatsd_raw", "decompress", 2.0);
    err("gostatsd_raw", "encoding", 1.0);
    err("gostatsd_event", "unmarshal", 1.0);

    // Accepted as gostatsd accepts them: an empty body, no encoding, a query string, no
    // Content-Type at all, and no API key anywhere.
    empty_answer(&post("/v2/raw", &[], b""), 202, "empty message");
    empty_answer(
        &http_request(p, "POST", "/v2/raw?x=1", &[], &plain),
        202,
        "query string, no Content-Type",
    );
    empty_answer(&replay(p, "fwd_startup_nop"), 202, "startup message");

    // Wrong methods: 405 with an empty body.
    empty_answer(&http_request(p, "GET", "/v2/raw", &[], b""), 405, "GET");
    empty_answer(&http_request(p, "PUT", "/v2/raw", &[], &plain), 405, "PUT");
    empty_answer(&http_request(p, "GET", "/v2/event", &[], b""), 405, "GET");
    empty_answer(
        &http_request(p, "POST", "/healthcheck", &[], b""),
        405,
        "POST health",
    );
    err("gostatsd_raw", "method_not_allowed", 2.0);
    err("gostatsd_event", "method_not_allowed", 1.0);

    // Health checks.
    for path in ["/healthcheck", "/deepcheck"] {
        let r = http_request(p, "GET", path, &[], b"");
        assert_eq!(
            (
                r.status,
                r.body.as_str(),
                r.header("content-type"),
                r.header("content-length")
            ),
            (
                200,
                "{\"ok\":[],\"failed\":[]}\n",
                Some("application/json"),
                Some("22")
            ),
            "{path}"
        );
    }
    assert_metric(&sy, "switchyard_gostatsd_health_checks_total", 2.0);

    // Over the [http] caps: 413 (on the wire, and once decompressed: a zlib bomb).
    empty_answer(&post("/v2/raw", &[], &[0u8; 5000]), 413, "wire");
    let bomb = {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::best());
        let zeros = vec![0u8; 1 << 20];
        let mut out = vec![0u8; c.zlib_compress_bound(zeros.len())];
        let n = c.zlib_compress(&zeros, &mut out).unwrap();
        out.truncate(n);
        out
    };
    assert!(bomb.len() < 4096);
    empty_answer(
        &post("/v2/raw", &["Content-Encoding: deflate"], &bomb),
        413,
        "bomb",
    );
    err("gostatsd_raw", "too_large", 2.0);

    // Other paths stay the Datadog intake's.
    assert_eq!(post("/v2/raw/", &[], &plain).status, 404);
    assert_eq!(post("/v1/raw", &[], &plain).status, 404);

    // Requests per route; the accepted bodies fed their series, the refused ones nothing.
    assert_metric(
        &sy,
        "switchyard_http_requests_total{endpoint=\"gostatsd_raw\"}",
        12.0,
    );
    assert_metric(
        &sy,
        "switchyard_http_payloads_total{endpoint=\"gostatsd_raw\"}",
        3.0,
    );
    assert_metric(
        &sy,
        "switchyard_aggregator_series_total{result=\"ok\"}",
        4.0,
    );
    let all = sy.stop();
    assert_eq!(harness::value(&all, "m.c.count", &["env:prod"]), 5.0);
}

#[test]
fn a_gostatsd_event_reaches_the_vendor_as_a_datadog_event() {
    let dd = Vendor::start("datadog", &[]);
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\n",
            dd.url()
        ),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "dd-key-5e1".into())],
        ..Options::default()
    });
    let events = stems("/v2/event");
    assert_eq!(events, ["fwd_event-1", "fwd_event-2"]);
    for stem in &events {
        assert_accepted(&replay(sy.http, stem), stem);
    }
    assert_metric(
        &sy,
        "switchyard_http_payloads_total{endpoint=\"gostatsd_event\"}",
        2.0,
    );
    // Counted under the gostatsd route, not as events posted to /api/v1/events.
    assert_metric(
        &sy,
        "switchyard_http_payloads_total{endpoint=\"events\"}",
        0.0,
    );
    let until = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = dd.stats();
        if s["events"].as_u64() >= Some(2) || Instant::now() > until {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["events"], 2, "{s:#}");
    assert_eq!(s["requests_by_path"]["/api/v1/events"]["202"], 2, "{s:#}");
    assert_eq!(s["api_keys"]["dd-key-5e1"], 2, "{s:#}");
    sy.stop();
}
