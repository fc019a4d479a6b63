//! Migrating between vendors with live route changes (issue 4), against the real binary:
//! statsd and HTTP traffic flow continuously to two Datadog-kind vendors (`old` and `new`,
//! `loadgen vendor`) while the routes are changed through the control API, first to fork a
//! 10% sample of the series to a third vendor (`trial`), then to drop a prefix. Per vendor,
//! per series, exact: nothing lost or duplicated around either swap.
//!
//! Also the control API's refusals through the binary with a bearer token configured: every
//! refused `PUT /v1/routes` changes nothing, and the token never reaches the log.
//!
//! One thread sends the HTTP payloads one after another (each waits for its 202), and each
//! payload is routed whole, with the table its shard loaded when it accepted the payload. So
//! around a swap, the payloads a table change affects are exactly a prefix or a suffix of
//! the sequence: each payload carries its sequence number as every point's value, and a
//! vendor's per-series `value_sum` says which payloads it got.

use super::harness::{http_post, http_request, send_raw, Instance, Options, RawResponse, Vendor};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::Config;
use switchyard_core::route::{compile, series_hash, Input, InputKind, RouteTable};

/// `app.N` series per payload (kept by every table).
const APP: usize = 1000;
/// `debug.N` series per payload (dropped by the last table).
const DEBUG: usize = 50;
/// statsd counters `st.N`.
const ST: usize = 100;
/// Payloads sent under each table (at least) before moving on.
const PER_PHASE: u64 = 8;

const INITIAL_ROUTES: &str = r#"
[[routes]]
name = "all"
to = ["old", "new"]

[[routes]]
name = "trial-idle"
match = { name = "never.sent" }
to = ["trial"]
"#;

/// The fork: everything still to `old` and `new`, a stable 10% sample also to `trial`.
const FORK: &str = r#"{"routes": [
  {"name": "all", "to": ["old", "new"]},
  {"name": "trial", "sample": 0.1, "to": ["trial"]}]}"#;

/// Then `debug.*` dropped. The drop rule comes after `all`, not first: a drop rule's
/// `route_dropped` counts, per sink, the values that *earlier* rules sent to that sink (see
/// control/src/ledger.rs); first in the list it would discard the series before any rule
/// picked a sink, and no sink's ledger would show the dropped values. Placed here, `old` and
/// `new` account for every dropped point; `trial` (after the drop) never sees `debug.*`.
const DROP: &str = r#"{"routes": [
  {"name": "all", "to": ["old", "new"]},
  {"name": "no-debug", "match": {"name_prefix": "debug."}, "drop": true, "final": true},
  {"name": "trial", "sample": 0.1, "to": ["trial"]}]}"#;

fn sink(name: &str, v: &Vendor) -> String {
    format!(
        "[sinks.{name}]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD_KEY\"\nmax_retries = 8\n\n",
        v.url()
    )
}

/// A request to the control port (one response, connection closed).
fn control(sy: &Instance, method: &str, path: &str, headers: &[&str], body: &[u8]) -> RawResponse {
    let mut h = vec!["Connection: close"];
    h.extend_from_slice(headers);
    http_request(sy.control, method, path, &h, body)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `GET /v1/routes`.
fn routes(sy: &Instance) -> Value {
    let (status, body) = sy.get("/v1/routes");
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// PUTs a table with `If-Match` set to the current version; returns the new version.
fn put_current(sy: &Instance, table: &str, auth: &[&str]) -> String {
    let v = routes(sy)["version"].as_str().unwrap().to_string();
    let if_match = format!("If-Match: \"{v}\"");
    let mut headers = vec!["Content-Type: application/json", if_match.as_str()];
    headers.extend_from_slice(auth);
    let r = control(sy, "PUT", "/v1/routes", &headers, table.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    let new = json(&r.body)["version"].as_str().unwrap().to_string();
    assert_ne!(new, v);
    new
}

/// Polls (bounded, 120 s) until `f` returns `Some`.
fn wait_until<T>(what: &str, sy: &Instance, mut f: impl FnMut() -> Result<T, String>) -> T {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > until => {
                panic!("{what}: gave up; last state: {last}\n{}", sy.log_text())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One accepted HTTP payload: its sequence number (the value of all its points) and when its
/// request started and its 202 arrived.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    start: Instant,
    end: Instant,
}

/// The v1 body of payload `seq`: every `app.N` and `debug.N`, one point of value `seq`.
fn payload(seq: u64) -> String {
    let ts = 1_700_000_000 + seq;
    let mut s = String::with_capacity((APP + DEBUG) * 70);
    s.push_str("{\"series\":[");
    let names = (0..APP)
        .map(|i| format!("app.{i}"))
        .chain((0..DEBUG).map(|i| format!("debug.{i}")));
    for (i, n) in names.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"metric\":\"{n}\",\"points\":[[{ts},{seq}]],\"type\":\"gauge\"}}"
        ));
    }
    s.push_str("]}");
    s
}

/// Sends payloads 1, 2, ... one at a time until `stop`; a refused payload (503 when a sink
/// queue is full) is sent again until accepted.
fn send_http(port: u16, stop: Arc<AtomicBool>, accepted: Arc<AtomicU64>) -> Vec<Sent> {
    let mut sent = Vec::new();
    let mut seq = 1;
    while !stop.load(Ordering::SeqCst) {
        let body = payload(seq);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let start = Instant::now();
            let r = http_post(
                port,
                "/api/v1/series",
                &["DD-API-KEY: client-key", "Content-Type: application/json"],
                body.as_bytes(),
            );
            if r.status == 202 {
                sent.push(Sent {
                    seq,
                    start,
                    end: Instant::now(),
                });
                break;
            }
            assert!(
                r.status == 503 && Instant::now() < until,
                "payload {seq}: {} {}",
                r.status,
                r.body
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        accepted.store(seq, Ordering::SeqCst);
        seq += 1;
    }
    sent
}

/// Sends rounds of `st.N:1|c` (every N, in datagrams of 20 lines) until `stop`; returns the
/// number of rounds.
fn send_statsd(port: u16, stop: Arc<AtomicBool>, rounds: Arc<AtomicU64>) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines: Vec<String> = (0..ST).map(|i| format!("st.{i}:1|c")).collect();
    let datagrams: Vec<String> = lines.chunks(20).map(|c| c.join("\n")).collect();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        for d in &datagrams {
            sock.send_to(d.as_bytes(), ("127.0.0.1", port)).unwrap();
        }
        n += 1;
        rounds.store(n, Ordering::SeqCst);
        // Paced so the kernel's socket buffer never overflows (the binary's line count is
        // checked against what was sent below).
        std::thread::sleep(Duration::from_millis(3));
    }
    n
}

/// Waits until both senders made `more` progress past where they are now.
fn let_traffic_flow(sy: &Instance, http: &AtomicU64, statsd: &AtomicU64) {
    let (h, s) = (http.load(Ordering::SeqCst), statsd.load(Ordering::SeqCst));
    wait_until("traffic to flow", sy, || {
        let (h2, s2) = (http.load(Ordering::SeqCst), statsd.load(Ordering::SeqCst));
        if h2 >= h + PER_PHASE && s2 >= s + 100 {
            Ok(())
        } else {
            Err(format!("http {h} -> {h2}, statsd rounds {s} -> {s2}"))
        }
    });
}

fn ledger(stats: &Value, sink: &str) -> Value {
    stats["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sink"] == sink)
        .unwrap_or_else(|| panic!("no ledger for {sink}: {stats:#}"))
        .clone()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {v:#}"))
}

/// Sum of `a..=b` (0 when empty).
fn sum_range(a: u64, b: u64) -> f64 {
    if b < a {
        0.0
    } else {
        ((a + b) * (b - a + 1) / 2) as f64
    }
}

/// (points, value_sum) of one metric at a vendor, (0, 0) when it got none.
fn got(stats: &Value, name: &str) -> (u64, f64) {
    let m = &stats["metrics"][name];
    (
        m["points"].as_u64().unwrap_or(0),
        m["value_sum"].as_f64().unwrap_or(0.0),
    )
}

/// Points a vendor got for the metrics whose name starts with `prefix`.
fn points_with_prefix(stats: &Value, prefix: &str) -> u64 {
    stats["metrics"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v["points"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// The series of a family (`prefix` + 0..count, untagged, from `kind` with `host`) that
/// `table` sends to `trial`.
fn sampled(
    table: &str,
    cfg_sinks: &[&str],
    (kind, host): (InputKind, &str),
    prefix: &str,
    count: usize,
) -> BTreeSet<String> {
    let table: RouteTable = serde_json::from_str(table).unwrap();
    let routes = compile(&table, cfg_sinks, &[] as &[&str]).unwrap();
    let trial = cfg_sinks.iter().position(|s| *s == "trial").unwrap();
    let input = Input { kind, listener: "" };
    (0..count)
        .map(|i| format!("{prefix}{i}"))
        .filter(|name| {
            routes
                .decide(input, name, &[], series_hash(name, [], host))
                .sinks
                .contains(trial)
        })
        .collect()
}

const HTTP: (InputKind, &str) = (InputKind::Http, "");

#[test]
fn a_migration_mid_stream_forks_a_sample_and_drops_a_prefix_losing_and_duplicating_nothing() {
    let (old, new, trial) = (
        Vendor::start("datadog", &[]),
        Vendor::start("datadog", &[]),
        Vendor::start("datadog", &[]),
    );
    let sy = Instance::start(Options {
        shards: 2,
        flush_interval: "200ms".into(),
        extra_sinks: format!(
            "{}{}{}",
            sink("old", &old),
            sink("new", &new),
            sink("trial", &trial)
        ),
        routes: Some(INITIAL_ROUTES.into()),
        env: vec![("SY_TEST_DD_KEY".into(), "dd-key".into())],
        ..Options::default()
    });
    // The routed sinks, in the order the route library indexes them.
    let cfg = Config::from_toml(&std::fs::read_to_string(sy.dir.join("switchyard.toml")).unwrap())
        .unwrap();
    let cfg_sinks = cfg.routed_sinks();
    assert_eq!(cfg_sinks, ["new", "old", "trial"]);
    assert_eq!(routes(&sy)["shards"].as_array().unwrap().len(), 2);

    let stop = Arc::new(AtomicBool::new(false));
    let (http_progress, statsd_progress) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let http_thread = {
        let (port, stop, p) = (sy.http, stop.clone(), http_progress.clone());
        std::thread::spawn(move || send_http(port, stop, p))
    };
    let statsd_thread = {
        let (port, stop, p) = (sy.statsd, stop.clone(), statsd_progress.clone());
        std::thread::spawn(move || send_statsd(port, stop, p))
    };

    // Phase 1: everything to old and new. Phase 2: the fork. Phase 3: the drop.
    let_traffic_flow(&sy, &http_progress, &statsd_progress);
    let fork_start = Instant::now();
    put_current(&sy, FORK, &[]);
    let fork_end = Instant::now();
    let_traffic_flow(&sy, &http_progress, &statsd_progress);
    let drop_start = Instant::now();
    let drop_version = put_current(&sy, DROP, &[]);
    let drop_end = Instant::now();
    let_traffic_flow(&sy, &http_progress, &statsd_progress);
    stop.store(true, Ordering::SeqCst);
    let sent = http_thread.join().unwrap();
    let rounds = statsd_thread.join().unwrap();
    let payloads = sent.len() as u64;
    assert_eq!(sent.last().unwrap().seq, payloads);
    let now = routes(&sy);
    assert_eq!(now["version"], drop_version.as_str(), "{now:#}");

    // Which payloads a swap may have affected: those not entirely before or after the PUT.
    let before = |t: Instant| sent.iter().filter(|s| s.end < t).count() as u64;
    let not_after = |t: Instant| sent.iter().filter(|s| s.start <= t).count() as u64;

    // Every statsd line arrived (UDP: checked, not assumed).
    let lines = rounds * ST as u64;
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", lines as f64);
    assert_eq!(
        sy.metric("switchyard_statsd_lines_total{result=\"ok\"}"),
        lines as f64
    );

    // At rest: both vendors have every app point and every statsd count, and every ledger
    // has published and drained.
    let (so, sn, st, stats) = wait_until("delivery to finish", &sy, || {
        let (so, sn, st) = (old.stats(), new.stats(), trial.stats());
        let (_, stats) = sy.get("/v1/stats");
        let stats = json(&stats);
        for (name, v) in [("old", &so), ("new", &sn)] {
            let app = points_with_prefix(v, "app.");
            let counts: f64 = (0..ST).map(|i| got(v, &format!("st.{i}.count")).1).sum();
            let debug = points_with_prefix(v, "debug.");
            let dropped = ledger(&stats, name)["values"]["dropped"]["route_dropped"]
                .as_u64()
                .unwrap_or(0);
            if app < APP as u64 * payloads
                || counts < lines as f64
                || debug + dropped < DEBUG as u64 * payloads
            {
                return Err(format!(
                    "{name}: app {app}, statsd counts {counts}, debug {debug} + dropped {dropped}"
                ));
            }
        }
        for (name, v) in [("old", &so), ("new", &sn), ("trial", &st)] {
            let l = ledger(&stats, name);
            let lv = &l["values"];
            if l["balanced"] != true
                || n(lv, "queued") != 0
                || n(lv, "in_flight") != 0
                || n(lv, "enqueued") != n(lv, "delivered")
                || n(lv, "delivered") != n(v, "points")
            {
                return Err(format!("{name}: {l}, vendor points {}", v["points"]));
            }
        }
        Ok((so, sn, st, stats))
    });

    // `old` and `new`: every app point exactly once (payloads 1..=n: sum n(n+1)/2).
    let app_names: Vec<String> = (0..APP).map(|i| format!("app.{i}")).collect();
    let debug_names: Vec<String> = (0..DEBUG).map(|i| format!("debug.{i}")).collect();
    let c_old = got(&so, "debug.0").0;
    for (name, v) in [("old", &so), ("new", &sn)] {
        for m in &app_names {
            assert_eq!(
                got(v, m),
                (payloads, sum_range(1, payloads)),
                "{name} {m} of {payloads} payloads"
            );
        }
        // debug.*: exactly the payloads before the drop, each once (a prefix 1..=c), the same
        // for every series and both vendors, and the rest counted as route_dropped.
        for m in &debug_names {
            assert_eq!(got(v, m), (c_old, sum_range(1, c_old)), "{name} {m}");
        }
        let l = ledger(&stats, name);
        assert_eq!(
            l["values"]["dropped"]["route_dropped"],
            DEBUG as u64 * (payloads - c_old),
            "{name}: {l:#}"
        );
        // statsd: each counter's counts over all flushes add up to what was sent.
        for i in 0..ST {
            assert_eq!(
                got(v, &format!("st.{i}.count")).1,
                rounds as f64,
                "{name} st.{i}.count"
            );
        }
        // Nothing else arrived, and nothing was lost on the way.
        for k in v["metrics"].as_object().unwrap().keys() {
            assert!(
                ["app.", "debug.", "st."].iter().any(|p| k.starts_with(p)),
                "{name} got {k}"
            );
        }
        assert_eq!(v["metrics_overflow_points"], 0);
        assert_eq!(v["failed_requests"], 0, "{v:#}");
    }
    assert!(
        (before(drop_start)..=not_after(drop_end)).contains(&c_old),
        "debug.* reached old through payload {c_old}; the drop PUT overlapped payloads {}..={}",
        before(drop_start) + 1,
        not_after(drop_end)
    );

    // `trial`: exactly the series of the table's stable sample (the route library decides
    // them; the rule's salt is its name, so both tables sample the same app series), about
    // 10% of them, each with exactly the payloads since the fork: a suffix c..=n, the same
    // for every series.
    let want_app = sampled(DROP, &cfg_sinks, HTTP, "app.", APP);
    assert_eq!(want_app, sampled(FORK, &cfg_sinks, HTTP, "app.", APP));
    assert!(
        (50..=150).contains(&want_app.len()),
        "{} of {APP} sampled",
        want_app.len()
    );
    let first_trial = payloads + 1 - got(&st, want_app.first().unwrap()).0;
    eprintln!(
        "migration: {payloads} payloads, {rounds} statsd rounds; fork at payload {first_trial} (PUT overlapped {}..={}), drop after {c_old} (PUT overlapped {}..={}); {} of {APP} app series sampled",
        before(fork_start) + 1,
        not_after(fork_end),
        before(drop_start) + 1,
        not_after(drop_end),
        want_app.len()
    );
    for m in &app_names {
        let expect = if want_app.contains(m) {
            (payloads + 1 - first_trial, sum_range(first_trial, payloads))
        } else {
            (0, 0.0)
        };
        assert_eq!(got(&st, m), expect, "trial {m}");
    }
    assert!(
        (before(fork_start) + 1..=not_after(fork_end) + 1).contains(&first_trial),
        "trial got payloads from {first_trial}; the fork PUT overlapped payloads {}..={}",
        before(fork_start) + 1,
        not_after(fork_end)
    );
    // debug.*: the sampled series, only from the payloads between the fork and the drop.
    let want_debug = sampled(FORK, &cfg_sinks, HTTP, "debug.", DEBUG);
    for m in &debug_names {
        let expect = if want_debug.contains(m) {
            (
                (c_old + 1).saturating_sub(first_trial),
                sum_range(first_trial, c_old),
            )
        } else {
            (0, 0.0)
        };
        assert_eq!(got(&st, m), expect, "trial {m}");
    }
    // statsd at trial: the sampled counters (decided at each flush, with the host the
    // binary stamps on statsd series), with some of their counts (those of the flushes
    // after the fork) and never more than was sent.
    let host = so["metrics"]["st.0.count"]["host"].as_str().unwrap_or("");
    let want_st = sampled(FORK, &cfg_sinks, (InputKind::Statsd, host), "st.", ST);
    assert!(!want_st.is_empty());
    assert_eq!(
        want_st,
        sampled(DROP, &cfg_sinks, (InputKind::Statsd, host), "st.", ST)
    );
    for i in 0..ST {
        let (_, s) = got(&st, &format!("st.{i}.count"));
        if want_st.contains(&format!("st.{i}")) {
            assert!(
                s > 0.0 && s <= rounds as f64,
                "trial st.{i}.count {s} of {rounds}"
            );
        } else {
            assert_eq!(s, 0.0, "trial st.{i}.count is outside the sample");
        }
    }
    for k in st["metrics"].as_object().unwrap().keys() {
        assert!(
            ["app.", "debug.", "st."].iter().any(|p| k.starts_with(p)),
            "trial got {k}"
        );
    }
    let lt = ledger(&stats, "trial");
    assert_eq!(lt["values"]["dropped"]["route_dropped"], 0, "{lt:#}");
    // Points of app series outside the sample, while the fork was in force, are sampled_out.
    assert!(
        n(&lt["values"]["dropped"], "sampled_out")
            >= (APP - want_app.len()) as u64 * (payloads + 1 - first_trial),
        "{lt:#}"
    );

    // Every sink's ledger balances, with nothing dropped but by the routes.
    for &name in &cfg_sinks {
        let l = ledger(&stats, name);
        let v = &l["values"];
        assert_eq!(n(v, "enqueued"), n(v, "received") + n(v, "queued"), "{l:#}");
        let lost: u64 = v["dropped"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "route_dropped" | "sampled_out"))
            .map(|(_, d)| d.as_u64().unwrap())
            .sum();
        assert_eq!(lost, 0, "{l:#}");
        assert_eq!(
            n(v, "received"),
            n(v, "delivered") + n(v, "in_flight"),
            "{l:#}"
        );
        assert_eq!(l["balanced"], true, "{l:#}");
        assert_eq!(l["clamped"], serde_json::json!([]), "{l:#}");
    }
    assert_eq!(
        n(&ledger(&stats, "old")["values"], "delivered"),
        n(&so, "points")
    );
    sy.stop();
}

/// `PUT /v1/routes` refusals through the binary, with a token file.
#[test]
fn route_changes_need_the_token_and_the_current_version_and_refusals_change_nothing() {
    let dir = std::env::temp_dir().join(format!("switchyard-e2e-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let token = format!("tok-{}-{nanos:x}", std::process::id());
    let token_file = dir.join("control.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let sy = Instance::start(Options {
        control_extra: format!("token_file = \"{}\"", token_file.display()),
        ..Options::default()
    });
    let initial = routes(&sy);
    let v0 = initial["version"].as_str().unwrap().to_string();
    let bearer = format!("Authorization: Bearer {token}");
    let current = format!("If-Match: \"{v0}\"");
    let table = r#"{"routes": [{"name": "all", "to": ["out"]},
        {"name": "no-x", "match": {"name_prefix": "x."}, "drop": true, "final": true}]}"#;
    let ct = "Content-Type: application/json";

    let unchanged = |what: &str, r: &RawResponse, status: u16, says: &str| {
        assert_eq!(r.status, status, "{what}: {}", r.body);
        let errors = json(&r.body)["errors"].to_string();
        assert!(errors.contains(says), "{what}: {errors} lacks {says:?}");
        assert!(!r.body.contains(&token), "{what} echoed the token");
        assert_eq!(routes(&sy), initial, "{what} changed the routes");
    };
    let put = |headers: &[&str], body: &[u8]| control(&sy, "PUT", "/v1/routes", headers, body);

    let r = put(&[ct, &current], table.as_bytes());
    unchanged("no Authorization", &r, 401, "missing credentials");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"switchyard\"")
    );
    // A wrong token is 401 too (auth.rs: 403 is only for mutating endpoints with no token
    // configured on a non-loopback listener).
    let r = put(
        &[ct, &current, "Authorization: Bearer not-the-token"],
        table.as_bytes(),
    );
    unchanged("wrong token", &r, 401, "invalid bearer token");
    let wrong_scheme = format!("Authorization: Basic {token}");
    let r = put(&[ct, &current, &wrong_scheme], table.as_bytes());
    unchanged("Basic scheme", &r, 401, "missing credentials");
    let r = put(&[ct, &bearer, "If-Match: \"file-0000\""], table.as_bytes());
    unchanged("stale If-Match", &r, 412, "is not the current version");
    let r = put(&[ct, &bearer], table.as_bytes());
    unchanged("no If-Match", &r, 428, "If-Match is required");
    let mut big = br#"{"routes": [], "pad": ""#.to_vec();
    big.resize((1 << 20) + 1, b'x');
    let r = put(&[ct, &bearer, &current], &big);
    unchanged("oversized body", &r, 413, "larger than 1048576 bytes");
    let r = put(
        &[ct, &bearer, &current],
        br#"{"routes": [{"name": "all", "to": ["out"]}"#,
    );
    unchanged("truncated JSON", &r, 400, "invalid route table JSON");
    assert!(
        r.body.contains("EOF") && r.body.contains("column"),
        "{}",
        r.body
    );
    let r = put(
        &[ct, &bearer, &current],
        br#"{"routes": [{"name": "to-nowhere", "to": ["nope"]}]}"#,
    );
    unchanged("unknown sink", &r, 400, "nope");
    assert!(r.body.contains("to-nowhere"), "{}", r.body);
    // The dry run needs the token too.
    let r = control(&sy, "POST", "/v1/routes/validate", &[ct], table.as_bytes());
    unchanged(
        "validate without Authorization",
        &r,
        401,
        "missing credentials",
    );

    // With the token and the current version: installed.
    let r = put(&[ct, &bearer, &current], table.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    let body = json(&r.body);
    let v1 = body["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v0);
    assert_eq!(r.header("etag"), Some(format!("\"{v1}\"").as_str()));
    let now = routes(&sy);
    assert_eq!(now["version"], v1.as_str());
    let names: Vec<&str> = now["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["all", "no-x"]);
    assert_eq!(now["routes"][1]["drop"], true, "{now:#}");
    // The old version is stale now.
    let r = put(&[ct, &bearer, &current], table.as_bytes());
    assert_eq!(r.status, 412, "{}", r.body);

    // The token never reached the log (which did record the change).
    wait_until("the change to be logged", &sy, || {
        let log = sy.log_text();
        log.contains("route table replaced")
            .then_some(())
            .ok_or(log)
    });
    let log = sy.log_text();
    assert!(!log.contains(&token), "token in the log:\n{log}");
    send_raw(sy.statsd, &[b"x.gone:1|c\nkept:1|c"]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 2.0);
    let out = sy.stop();
    let metric = |s: &Value| s["metric"].as_str().unwrap_or("").to_string();
    assert!(
        out.iter().all(|s| !metric(s).starts_with("x.gone")),
        "{out:?}"
    );
    assert!(out.iter().any(|s| metric(s).starts_with("kept")), "{out:?}");
    let _ = std::fs::remove_dir_all(dir);
}
