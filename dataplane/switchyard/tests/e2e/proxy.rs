//! The migration proxy end to end: real Datadog clients (PyPI `datadog` API and ThreadStats,
//! `datadog-api-client` v1/v2 with gzip, deflate and zstd1) POST to Switchyard, which passes
//! every payload to the old vendor and translates series for the new one, in parallel.
//! Both vendors are `loadgen vendor` processes that decode and count what arrives; the
//! assertions are exact.

use super::harness::{self, http_post, Instance, Options, Vendor};
use serde_json::Value;
use std::time::{Duration, Instant};

const CLIENT_KEY: &str = "client-key-7f3a";
const SFX_TOKEN: &str = "sfx-token-91bc";

fn dual_write(dd: &Vendor, sfx: &Vendor, extra_dd: &str, extra_sfx: &str) -> Options {
    Options {
        extra_sinks: format!(
            "[sinks.old]\ntype = \"datadog\"\nendpoint = \"{}\"\nmax_retries = 8\n{extra_dd}\n\n\
             [sinks.new]\ntype = \"signalfx\"\nendpoint = \"{}\"\ntoken_env = \"SY_TEST_SFX\"\nmax_retries = 8\n{extra_sfx}\n",
            dd.url(),
            sfx.url()
        ),
        route_to: vec!["old".into(), "new".into()],
        env: vec![("SY_TEST_SFX".into(), SFX_TOKEN.into())],
        ..Options::default()
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn assert_metric(v: &Vendor, stats: &Value, name: &str, points: u64, sum: f64, ty: &str) {
    let m = v.metric(stats, name);
    assert_eq!(m["points"], points, "{name}: {m}");
    assert!(near(m["value_sum"].as_f64().unwrap(), sum), "{name}: {m}");
    assert_eq!(m["type"], ty, "{name}: {m}");
}

/// Waits (bounded) until a vendor has accepted `n` requests.
fn wait_accepted(v: &Vendor, n: u64) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = v.stats();
        if s["accepted_requests"].as_u64().unwrap() >= n || Instant::now() > until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn real_clients_reach_the_old_vendor_unchanged_and_the_new_one_translated() {
    let dd = Vendor::start("datadog", &[]);
    let sfx = Vendor::start("signalfx", &[]);
    let sy = Instance::start(dual_write(&dd, &sfx, "", ""));
    let base = format!("http://127.0.0.1:{}", sy.http);
    harness::run_python("ddhttp.py", &["datadogpy", &base, CLIENT_KEY]);
    harness::run_python("ddhttp.py", &["threadstats", &base, CLIENT_KEY]);
    harness::run_python("ddhttp.py", &["apiclient", &base, CLIENT_KEY]);
    // datadogpy: 2 series posts, event, check, distribution; ThreadStats: 1 post;
    // api-client: 3 v1 + 3 v2 series, distribution, check, event.
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v1\"}",
        6.0,
    );
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v2\"}",
        3.0,
    );
    sy.stop();

    // The old vendor: every payload, with the client's own key.
    let s = wait_accepted(&dd, 15);
    assert_eq!(s["accepted_requests"], 15, "{s:#}");
    assert_eq!(s["requests_by_path"]["/api/v1/series"]["202"], 6, "{s:#}");
    assert_eq!(s["requests_by_path"]["/api/v2/series"]["202"], 3, "{s:#}");
    assert_eq!(
        s["requests_by_path"]["/api/v1/check_run"]["202"], 2,
        "{s:#}"
    );
    assert_eq!(s["requests_by_path"]["/api/v1/events"]["202"], 2, "{s:#}");
    assert_eq!(
        s["requests_by_path"]["/api/v1/distribution_points"]["202"],
        2
    );
    assert_eq!(s["api_keys"][CLIENT_KEY], 15, "{s:#}");
    assert_eq!(
        (s["check_runs"].as_u64(), s["events"].as_u64()),
        (Some(2), Some(2))
    );
    assert_metric(&dd, &s, "app.requests", 2, 4.0, "count");
    assert_metric(&dd, &s, "system.load.1", 1, 0.7, "gauge");
    assert_metric(&dd, &s, "net.bytes_rcvd", 1, 1234.5, "rate");
    assert_metric(&dd, &s, "client.v1.plain", 2, 1.6, "gauge");
    assert_metric(&dd, &s, "client.v1.gzip", 1, 12.0, "count");
    assert_metric(&dd, &s, "client.v1.deflate", 1, 12.0, "count");
    for enc in ["plain", "zstd1", "gzip"] {
        assert_metric(&dd, &s, &format!("client.v2.{enc}"), 2, 2.0, "gauge");
        assert_metric(&dd, &s, &format!("client.v2.{enc}.count"), 1, 12.0, "count");
    }
    assert_eq!(dd.metric(&s, "client.v2.zstd1")["host"], "web-2");
    assert_metric(&dd, &s, "request.latency", 3, 0.65, "distribution");
    assert_metric(&dd, &s, "ts.jobs", 1, 0.3, "rate");
    assert_metric(&dd, &s, "ts.temp", 1, 21.5, "gauge");

    // The new vendor: series translated (count -> counter, rate -> counter x interval,
    // checks -> status gauges), with the configured token.
    let s = sfx.stats();
    assert_eq!(s["api_keys"][SFX_TOKEN], s["accepted_requests"], "{s:#}");
    assert_metric(&sfx, &s, "app.requests", 2, 4.0, "counter");
    assert_metric(&sfx, &s, "system.load.1", 1, 0.7, "gauge");
    assert_metric(&sfx, &s, "net.bytes_rcvd", 1, 12345.0, "counter");
    assert_metric(&sfx, &s, "custom.untyped", 1, 5.0, "gauge");
    assert_metric(&sfx, &s, "client.v1.deflate", 1, 12.0, "counter");
    assert_metric(&sfx, &s, "client.v2.gzip", 2, 2.0, "gauge");
    assert_metric(&sfx, &s, "client.v2.gzip.count", 1, 12.0, "counter");
    assert_eq!(
        sfx.metric(&s, "client.v2.gzip")["dimensions"]["host"],
        "web-2"
    );
    let app = sfx.metric(&s, "app.requests");
    assert_eq!(app["dimensions"]["env"], "prod", "{app}");
    assert_eq!(app["dimensions"]["unnamed_canary"], "canary", "{app}");
    assert_eq!(app["dimensions"]["host"], "web-1", "{app}");
    assert_metric(&sfx, &s, "app.ok", 1, 1.0, "gauge");
    assert_metric(&sfx, &s, "client.ok", 1, 0.0, "gauge");
    assert_metric(&sfx, &s, "ts.jobs", 1, 3.0, "counter");
    // Distributions and events are for the old vendor only (counted as unsupported).
    assert!(s["metrics"]["request.latency"].is_null(), "{s:#}");
}

#[test]
fn a_failing_vendor_is_retried_and_never_delays_the_other() {
    // The old vendor is down (503, Retry-After: 1) until told otherwise; the new one is up.
    let dd = Vendor::start(
        "datadog",
        &[
            "--fail-status",
            "503",
            "--fail-count",
            "1000000",
            "--retry-after",
            "1",
        ],
    );
    let sfx = Vendor::start("signalfx", &[]);
    let sy = Instance::start(dual_write(&dd, &sfx, "max_in_flight = 1", ""));
    let body = |i: u32| {
        format!(
            "{{\"series\":[{{\"metric\":\"retry.m{i}\",\"points\":[[1700000000,{i}]],\"type\":\"gauge\"}}]}}"
        )
    };
    for i in 0..4 {
        let r = http_post(
            sy.http,
            "/api/v1/series",
            &["DD-API-KEY: k", "Content-Type: application/json"],
            body(i).as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // The new vendor gets everything while the old one is still refusing.
    sy.wait_metric("switchyard_sink_delivered_values_total{sink=\"new\"}", 4.0);
    let s = sfx.stats();
    assert_eq!(s["points"], 4, "{s:#}");
    let d = dd.stats();
    assert_eq!(d["accepted_requests"], 0, "{d:#}");
    assert!(d["failed_requests"].as_u64().unwrap() >= 1, "{d:#}");
    // The old vendor recovers: the retries (honouring Retry-After) deliver every payload.
    dd.control("{\"fail_count\": 0}");
    let s = wait_accepted(&dd, 4);
    for i in 0..4 {
        assert_metric(&dd, &s, &format!("retry.m{i}"), 1, f64::from(i), "gauge");
    }
    assert!(sy.metric("switchyard_sink_retries_total{sink=\"old\"}") >= 1.0);
    assert_eq!(
        sy.metric("switchyard_sink_retries_total{sink=\"new\"}"),
        0.0
    );
    let all = sy.stop();
    assert!(all.is_empty());
}

#[test]
fn statsd_aggregates_reach_datadog_as_v1_series_with_the_configured_key() {
    let dd = Vendor::start("datadog", &[]);
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.old]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD_KEY\"\ncompression = \"gzip\"\n",
            dd.url()
        ),
        route_to: vec!["old".into()],
        env: vec![("SY_TEST_DD_KEY".into(), "configured-key-55".into())],
        ..Options::default()
    });
    harness::send_raw(
        sy.statsd,
        &[b"jobs.done:2|c|#env:prod\njobs.done:3|c|#env:prod\nqueue.depth:17|g"],
    );
    // An HTTP payload through the same sink carries the configured key, not the client's.
    let r = http_post(
        sy.http,
        "/api/v1/series",
        &["DD-API-KEY: client-key-0", "Content-Type: application/json"],
        b"{\"series\":[{\"metric\":\"via.http\",\"points\":[[1700000000,4]]}]}",
    );
    assert_eq!(r.status, 202);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 3.0);
    sy.stop();
    let s = wait_accepted(&dd, 2);
    assert_eq!(
        s["api_keys"]["configured-key-55"], s["accepted_requests"],
        "{s:#}"
    );
    assert!(s["api_keys"]["client-key-0"].is_null(), "{s:#}");
    assert_eq!(s["encodings"]["gzip"], s["accepted_requests"], "{s:#}");
    assert_metric(&dd, &s, "jobs.done.count", 1, 5.0, "gauge");
    assert_metric(&dd, &s, "jobs.done", 1, 5.0 / 3600.0, "rate");
    assert_metric(&dd, &s, "queue.depth", 1, 17.0, "gauge");
    let via = dd.metric(&s, "via.http");
    assert_eq!(
        (via["points"].as_u64(), via["value_sum"].as_f64()),
        (Some(1), Some(4.0))
    );
    assert!(
        via["type"].is_null(),
        "passed through as sent, without a type: {via}"
    );
    assert_eq!(dd.metric(&s, "queue.depth")["host"], "127.0.0.1");
}
