//! Routes end to end: statsd lines and HTTP payloads routed by name prefix to different
//! vendors (`loadgen vendor`), a drop rule, a 10% stable sample over 2000 series, and a
//! rename with an added tag. Assertions are exact, per vendor; the ledger's
//! `distinct_series_1h` per sink is exact for a few series and within HyperLogLog error for
//! thousands.

use super::harness::{http_post, send_raw, Instance, Options, Vendor};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use switchyard_core::config::Config;
use switchyard_core::route::{compile, series_hash, Input, InputKind};

const ROUTES: &str = r#"
[[routes]]
name = "app-to-a"
match = { name_prefix = "app." }
to = ["a"]

[[routes]]
name = "web-to-b"
match = { name_prefix = "web." }
to = ["b"]

[[routes]]
name = "legacy-renamed-to-b"
match = { name_prefix = "legacy." }
rename = { prefix = "legacy.", to = "modern." }
add_tags = { migrated = "yes" }
to = ["b"]

[[routes]]
name = "load-trial"
match = { name_prefix = "load." }
sample = 0.1
to = ["trial"]

[[routes]]
name = "load-to-a"
match = { name_prefix = "load." }
to = ["a"]

[[routes]]
name = "no-debug"
match = { name_glob = "*.debug.*" }
drop = true
final = true
"#;

const LOAD_SERIES: usize = 2000;

fn options(a: &Vendor, b: &Vendor, trial: &Vendor) -> Options {
    let sink = |name: &str, v: &Vendor| {
        format!(
            "[sinks.{name}]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD_KEY\"\nmax_retries = 8\n\n",
            v.url()
        )
    };
    Options {
        extra_sinks: format!("{}{}{}", sink("a", a), sink("b", b), sink("trial", trial)),
        routes: Some(ROUTES.into()),
        env: vec![("SY_TEST_DD_KEY".into(), "dd-key".into())],
        ..Options::default()
    }
}

fn post(sy: &Instance, path: &str, body: &str) {
    let r = http_post(
        sy.http,
        path,
        &["DD-API-KEY: client-key", "Content-Type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{path}: {}", r.body);
}

fn v1(series: &[(&str, f64, &[&str])]) -> String {
    let s: Vec<Value> = series
        .iter()
        .map(|(m, v, tags)| {
            serde_json::json!({"metric": m, "points": [[1_700_000_000, v]], "type": "gauge", "tags": tags})
        })
        .collect();
    serde_json::json!({ "series": s }).to_string()
}

/// Metric names a vendor received.
fn names(stats: &Value) -> BTreeSet<String> {
    stats["metrics"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A sink's `distinct_series_1h` in a `/v1/stats` document.
fn distinct(stats: &Value, sink: &str) -> u64 {
    stats["ledger"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["sink"] == sink))
        .and_then(|l| l["distinct_series_1h"].as_u64())
        .unwrap_or_else(|| panic!("no distinct_series_1h for {sink}: {stats:#}"))
}

/// Whether an estimate is within three typical HyperLogLog errors of the truth.
fn within_hll(estimate: u64, truth: usize) -> bool {
    let err = 3.0 * switchyard_core::distinct::RELATIVE_ERROR * truth as f64;
    (estimate as f64 - truth as f64).abs() <= err
}

/// Waits (bounded) until a vendor has received `points` points.
fn wait_points(v: &Vendor, points: u64) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = v.stats();
        if s["points"].as_u64().unwrap_or(0) >= points || Instant::now() > until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn statsd_and_http_are_routed_dropped_sampled_and_renamed_per_vendor() {
    let (a, b, trial) = (
        Vendor::start("datadog", &[]),
        Vendor::start("datadog", &[]),
        Vendor::start("datadog", &[]),
    );
    // Statsd series flushed every second, so the ledger sees them before the stop.
    let sy = Instance::start(Options {
        flush_interval: "1s".into(),
        ..options(&a, &b, &trial)
    });

    // HTTP: a payload all for `a` (passed through whole), a mixed one (split), one that
    // every rule drops (still 202), and a mixed v2 payload (split, re-encoded as v1).
    post(
        &sy,
        "/api/v1/series",
        &v1(&[("app.h1", 1.0, &[]), ("app.h2", 2.0, &["env:prod"])]),
    );
    post(
        &sy,
        "/api/v1/series",
        &v1(&[
            ("app.m1", 3.0, &[]),
            ("web.m2", 4.0, &["env:prod"]),
            ("legacy.m3", 5.0, &["k:v"]),
            ("app.debug.m4", 6.0, &[]),
        ]),
    );
    post(&sy, "/api/v1/series", &v1(&[("app.debug.gone", 7.0, &[])]));
    post(
        &sy,
        "/api/v2/series",
        r#"{"series":[{"metric":"app.v2a","type":3,"points":[{"timestamp":1700000000,"value":8}]},
                      {"metric":"web.v2b","type":3,"points":[{"timestamp":1700000000,"value":9}],"tags":["t:1"]}]}"#,
    );
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v1\"}",
        3.0,
    );
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v2\"}",
        1.0,
    );
    // Counted per sink and per route as the payloads were accepted (published with the
    // payload counters).
    let until = Instant::now() + Duration::from_secs(30);
    while sy.metric("switchyard_route_points_total{route=\"no-debug\"}") < 2.0
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sy.metric("switchyard_route_points_total{route=\"no-debug\"}"),
        2.0
    );
    assert_eq!(
        sy.metric("switchyard_sink_dropped_values_total{sink=\"a\",reason=\"route_dropped\"}"),
        2.0
    );
    assert_eq!(
        sy.metric("switchyard_route_series_total{route=\"app-to-a\"}"),
        6.0
    );
    assert_eq!(
        sy.metric("switchyard_route_points_total{route=\"web-to-b\"}"),
        2.0
    );
    let (_, stats) = sy.get("/v1/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let ledger_a = stats["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sink"] == "a")
        .unwrap();
    assert_eq!(
        ledger_a["values"]["dropped"]["route_dropped"], 2,
        "{ledger_a:#}"
    );

    // statsd: by prefix, a drop, a rename, and 2000 series of which `trial` gets a stable
    // 10%.
    send_raw(
        sy.statsd,
        &[
            b"app.hits:3|c|#env:prod\napp.hits:3|c|#env:prod\nweb.reqs:5|g\nlegacy.q:7|g|#k:v\napp.debug.x:1|c",
        ],
    );
    let load: Vec<String> = (0..LOAD_SERIES).map(|i| format!("load.s{i}:1|g")).collect();
    let datagrams: Vec<Vec<u8>> = load.chunks(50).map(|c| c.join("\n").into_bytes()).collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    send_raw(sy.statsd, &refs);
    sy.wait_metric(
        "switchyard_statsd_lines_total{result=\"ok\"}",
        (5 + LOAD_SERIES) as f64,
    );
    // Distinct series per sink over the hour, once the statsd series are flushed (`a` has
    // every point; the shards publish right after routing a flush): `b` got 3 HTTP and 2
    // statsd series (counted exactly, and none of the load series), `a` 4 HTTP series,
    // app.hits and the 2000 load series (an estimate; app.hits' sub-metrics are one
    // series).
    wait_points(&a, (4 + 2 + LOAD_SERIES) as u64);
    let until = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let (_, text) = sy.get("/v1/stats");
        let stats: Value = serde_json::from_str(&text).unwrap();
        if distinct(&stats, "b") >= 5 && within_hll(distinct(&stats, "a"), 4 + 1 + LOAD_SERIES)
            || Instant::now() > until
        {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(distinct(&stats, "b"), 5, "{stats:#}");
    let distinct_a = distinct(&stats, "a");
    assert!(
        within_hll(distinct_a, 4 + 1 + LOAD_SERIES),
        "a: {distinct_a}"
    );
    let distinct_trial = distinct(&stats, "trial");
    let gauge = sy.metric("switchyard_sink_distinct_series{sink=\"b\",window=\"1h\"}");
    assert_eq!(gauge, 5.0);
    let cfg = Config::from_toml(&std::fs::read_to_string(sy.dir.join("switchyard.toml")).unwrap())
        .unwrap();
    sy.stop();

    // `a`: app.* (statsd and HTTP) and every load.* series; nothing of web, legacy, debug.
    let sa = wait_points(&a, (4 + 2 + LOAD_SERIES) as u64);
    let got_a = names(&sa);
    for m in [
        "app.h1",
        "app.h2",
        "app.m1",
        "app.v2a",
        "app.hits",
        "app.hits.count",
    ] {
        assert!(got_a.contains(m), "{m} missing at a: {got_a:?}");
    }
    assert_eq!(a.metric(&sa, "app.hits.count")["value_sum"], 6.0);
    assert_eq!(a.metric(&sa, "app.m1")["value_sum"], 3.0);
    let load_a = got_a.iter().filter(|n| n.starts_with("load.")).count();
    assert_eq!(load_a, LOAD_SERIES);
    assert_eq!(
        got_a.len(),
        6 + LOAD_SERIES,
        "{:?}",
        got_a
            .iter()
            .filter(|n| !n.starts_with("load."))
            .collect::<Vec<_>>()
    );
    // Split payloads reach the vendor as v1 series; the passthrough one as it came.
    assert!(sa["requests_by_path"]["/api/v2/series"].is_null(), "{sa:#}");

    // `b`: web.* and legacy.* renamed, with the added tag, and nothing else.
    let sb = wait_points(&b, 5);
    let got_b = names(&sb);
    let want_b: BTreeSet<String> = ["web.m2", "web.v2b", "web.reqs", "modern.m3", "modern.q"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got_b, want_b);
    let m3 = b.metric(&sb, "modern.m3");
    assert_eq!(
        m3["tags"],
        serde_json::json!(["k:v", "migrated:yes"]),
        "{m3}"
    );
    assert_eq!(m3["value_sum"], 5.0);
    assert_eq!(
        b.metric(&sb, "modern.q")["tags"],
        serde_json::json!(["k:v", "migrated:yes"])
    );
    assert_eq!(b.metric(&sb, "web.v2b")["value_sum"], 9.0);

    // `trial`: exactly the load series in the rule's sample, as the route library decides
    // them (stable: the hash has no per-process seed), about 10% of them.
    let host = a.metric(&sa, "load.s0")["host"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let routes = compile(
        &cfg.route_table(),
        &cfg.routed_sinks(),
        &cfg.route_listeners(),
    )
    .unwrap();
    let trial_idx = cfg
        .routed_sinks()
        .iter()
        .position(|s| *s == "trial")
        .unwrap();
    let statsd = Input {
        kind: InputKind::Statsd,
        listener: "",
    };
    let want_trial: BTreeSet<String> = (0..LOAD_SERIES)
        .map(|i| format!("load.s{i}"))
        .filter(|n| {
            routes
                .decide(statsd, n, &[], series_hash(n, [], &host))
                .sinks
                .contains(trial_idx)
        })
        .collect();
    let st = wait_points(&trial, want_trial.len() as u64);
    let got_trial = names(&st);
    assert_eq!(got_trial, want_trial);
    let n = got_trial.len();
    assert!((140..=260).contains(&n), "{n} of {LOAD_SERIES} sampled");
    assert!(
        within_hll(distinct_trial, n),
        "trial: {distinct_trial} distinct for {n} series sent"
    );
}

const LIVE_ROUTES: &str = r#"
[[routes]]
name = "all-to-a"
to = ["a"]

[[routes]]
name = "web-to-b"
match = { name_prefix = "web." }
to = ["b"]

[[routes]]
name = "trial-idle"
match = { name = "never.sent" }
to = ["trial"]
"#;

const NEW_TABLE: &str = r#"{"routes": [
  {"name": "all-to-a", "to": ["a"]},
  {"name": "trial", "match": {"name_prefix": "load."}, "sample": 0.1, "to": ["trial"]},
  {"name": "no-web", "match": {"name_prefix": "web."}, "drop": true, "final": true}]}"#;

fn load_payload(value: f64, extra: &str) -> String {
    let mut s: Vec<Value> = (0..LIVE_SERIES)
        .map(|i| serde_json::json!({"metric": format!("load.h{i}"), "points": [[1_700_000_000, value]], "type": "gauge"}))
        .collect();
    s.push(
        serde_json::json!({"metric": extra, "points": [[1_700_000_000, value]], "type": "gauge"}),
    );
    serde_json::json!({ "series": s }).to_string()
}

const LIVE_SERIES: usize = 400;

#[test]
fn a_table_put_through_the_api_reaches_every_shard_mid_stream() {
    let (a, b, trial) = (
        Vendor::start("datadog", &[]),
        Vendor::start("datadog", &[]),
        Vendor::start("datadog", &[]),
    );
    let sy = Instance::start(Options {
        shards: 2,
        routes: Some(LIVE_ROUTES.into()),
        ..options(&a, &b, &trial)
    });
    let (_, before) = sy.get("/v1/routes");
    let before: Value = serde_json::from_str(&before).unwrap();
    let v1 = before["version"].as_str().unwrap().to_string();
    assert!(v1.starts_with("file-"), "{before}");
    assert_eq!(before["shards"].as_array().unwrap().len(), 2, "{before}");

    // Before the swap: everything to `a`, web.* to `b` too.
    post(&sy, "/api/v1/series", &load_payload(1.0, "web.before"));

    // A stale version is refused and changes nothing; the current one is installed.
    assert_eq!(sy.put_routes("nope", NEW_TABLE).status, 412);
    let r = sy.put_routes(&v1, NEW_TABLE);
    assert_eq!(r.status, 200, "{}", r.body);
    let put: Value = serde_json::from_str(&r.body).unwrap();
    let v2 = put["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    // Every shard reports the new version (checked about once a second).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, now) = sy.get("/v1/routes");
        let now: Value = serde_json::from_str(&now).unwrap();
        if now["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["version"] == v2.as_str())
        {
            assert_eq!(now["version"], v2.as_str());
            break;
        }
        assert!(Instant::now() < until, "shards never ran {v2}: {now}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // After the swap: a 10% fork of load.* to `trial`, web.* dropped.
    post(&sy, "/api/v1/series", &load_payload(2.0, "web.after"));
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v1\"}",
        2.0,
    );
    sy.wait_metric(
        "switchyard_sink_dropped_values_total{sink=\"a\",reason=\"route_dropped\"}",
        1.0,
    );
    let cfg = Config::from_toml(&std::fs::read_to_string(sy.dir.join("switchyard.toml")).unwrap())
        .unwrap();
    sy.stop();

    // `a`: every load series once per phase (nothing lost or duplicated around the swap),
    // web.before, not web.after.
    let sa = wait_points(&a, (2 * LIVE_SERIES + 1) as u64);
    assert_eq!(sa["points"], 2 * LIVE_SERIES + 1, "{sa:#}");
    for i in 0..LIVE_SERIES {
        let m = a.metric(&sa, &format!("load.h{i}"));
        assert_eq!(
            (m["points"].as_u64(), m["value_sum"].as_f64()),
            (Some(2), Some(3.0)),
            "{m}"
        );
    }
    assert!(sa["metrics"]["web.after"].is_null());
    // `b`: web.before only.
    let sb = wait_points(&b, 1);
    assert_eq!(names(&sb), BTreeSet::from(["web.before".to_string()]));
    // `trial`: exactly the sampled load series, from the second payload only.
    let table: switchyard_core::route::RouteTable = serde_json::from_str(NEW_TABLE).unwrap();
    let routes = compile(&table, &cfg.routed_sinks(), &cfg.route_listeners()).unwrap();
    let trial_idx = cfg
        .routed_sinks()
        .iter()
        .position(|s| *s == "trial")
        .unwrap();
    let http = Input {
        kind: InputKind::Http,
        listener: "",
    };
    let want: BTreeSet<String> = (0..LIVE_SERIES)
        .map(|i| format!("load.h{i}"))
        .filter(|n| {
            routes
                .decide(http, n, &[], series_hash(n, [], ""))
                .sinks
                .contains(trial_idx)
        })
        .collect();
    let st = wait_points(&trial, want.len() as u64);
    assert_eq!(names(&st), want);
    assert_eq!(st["points"], want.len(), "{st:#}");
    assert!(
        (15..=70).contains(&want.len()),
        "{} of {LIVE_SERIES}",
        want.len()
    );
}

#[test]
fn a_route_on_a_statsd_listener_keeps_its_series_apart_from_other_listeners() {
    // A third listener, named in a route: its series aggregate apart from the same series
    // on the other listeners (which stay aggregated together, as without such a route).
    let port = super::harness::free_udp_port();
    let name = format!("udp://127.0.0.1:{port}");
    let side = std::env::temp_dir().join(format!(
        "switchyard-e2e-listener-{}.ndjson",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&side);
    let sy = Instance::start(Options {
        shards: 2,
        extra_listen: vec![format!("\"{name}\"")],
        extra_sinks: format!(
            "[sinks.side]\ntype = \"file\"\npath = \"{}\"\n",
            side.display()
        ),
        routes: Some(format!(
            "[[routes]]\nname = \"from-side\"\nmatch = {{ input = \"{name}\" }}\nto = [\"side\"]\nfinal = true\n\n\
             [[routes]]\nname = \"rest\"\nto = [\"out\"]\n"
        )),
        ..Options::default()
    });
    send_raw(sy.statsd, &[&b"hits:1|c\nlat:10|ms"[..]; 3]);
    send_raw(sy.etsy, &[&b"hits:1|c"[..]; 2]);
    send_raw(port, &[&b"hits:1|c\nlat:30|ms"[..]; 7]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 22.0);
    let out = sy.stop();
    let side_out = super::harness::read_series(&side);
    let _ = std::fs::remove_file(&side);
    super::harness::assert_exactly_once(&out);
    super::harness::assert_exactly_once(&side_out);
    assert_eq!(
        super::harness::value(&out, "hits.count", &[]),
        5.0,
        "{out:?}"
    );
    assert_eq!(super::harness::value(&out, "lat.count", &[]), 3.0);
    assert_eq!(
        super::harness::value(&side_out, "hits.count", &[]),
        7.0,
        "{side_out:?}"
    );
    assert_eq!(super::harness::value(&side_out, "lat.count", &[]), 7.0);
    assert_eq!(super::harness::value(&side_out, "lat.upper", &[]), 30.0);
}
