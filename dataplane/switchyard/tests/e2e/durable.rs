//! `durable = true` routes: an HTTP payload holding a series such a route sends somewhere is
//! answered `202` only once every sink it is queued for made it durable (the vendor took it,
//! or it is in the sink's spool); a payload a sink could not keep, or that was not durable
//! within `durable_timeout`, is answered `503` with `Retry-After`. Other routes answer once
//! queued.

use super::harness::{post_gauge, Instance, Options, RawResponse, Vendor};
use serde_json::Value;
use std::path::PathBuf;

fn post(sy: &Instance, metric: &str, value: u32) -> RawResponse {
    post_gauge(sy.http, metric, value)
}

/// Routes: `d.*` durable, `p.*` plain, both to `dd`.
const ROUTES: &str = "[[routes]]\nname = \"durable\"\nmatch = { name_prefix = \"d.\" }\nto = [\"dd\"]\ndurable = true\n\n\
    [[routes]]\nname = \"plain\"\nmatch = { name_prefix = \"p.\" }\nto = [\"dd\"]\n";

fn options(vendor: &Vendor, sink_extra: &str, top_extra: String, http_extra: &str) -> Options {
    Options {
        top_extra,
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\n{sink_extra}",
            vendor.url()
        ),
        routes: Some(ROUTES.into()),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "k".into())],
        http_extra: http_extra.into(),
        ..Options::default()
    }
}

fn points(v: &Value, metric: &str) -> u64 {
    v["metrics"][metric]["points"].as_u64().unwrap_or(0)
}

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "switchyard-e2e-durable-{}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_durable_route_answers_once_the_vendor_has_the_payload_and_a_plain_route_once_queued() {
    let vendor = Vendor::start("datadog", &[]);
    // The vendor counts a request after a 2 s pause.
    vendor.control("{\"delay_ms\": 2000}");
    let sy = Instance::start(options(&vendor, "", String::new(), ""));

    let r = post(&sy, "p.x", 1);
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        points(&vendor.stats(), "p.x"),
        0,
        "a plain route answers once queued, before the vendor has it"
    );

    let r = post(&sy, "d.x", 1);
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        points(&vendor.stats(), "d.x"),
        1,
        "a durable route answers once the vendor has it"
    );
    // (Shards publish their counters about once a second.)
    sy.wait_metric("switchyard_http_durable_payloads_total", 1.0);
    let _ = sy.stop();
}

#[test]
fn a_durable_payload_no_sink_could_keep_or_that_took_too_long_is_answered_503() {
    let vendor = Vendor::start("datadog", &["--fail-status", "400", "--fail-count", "0"]);
    // A vendor failing with 503 and no spool: the payload is not durable.
    vendor.control("{\"fail_status\": 503, \"fail_count\": 1000}");
    let sy = Instance::start(options(
        &vendor,
        "max_retries = 0\n",
        String::new(),
        "durable_timeout = \"1s\"\n",
    ));
    let r = post(&sy, "d.x", 1);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    sy.wait_metric(
        "switchyard_http_errors_total{reason=\"not_durable\",status=\"503\"}",
        1.0,
    );
    // A plain route does not wait: 202 (and the value is then dropped, counted).
    assert_eq!(post(&sy, "p.x", 1).status, 202);

    // A vendor slower than durable_timeout: 503, and the payload may still arrive.
    vendor.control("{\"fail_count\": 0, \"delay_ms\": 3000}");
    let r = post(&sy, "d.y", 1);
    assert_eq!(r.status, 503, "{}", r.body);
    sy.wait_metric(
        "switchyard_http_errors_total{reason=\"durable_timeout\",status=\"503\"}",
        1.0,
    );
    let _ = sy.stop();
    assert_eq!(
        points(&vendor.stats(), "d.y"),
        1,
        "it still arrived (the client's retry would duplicate it: at-least-once)"
    );
}

#[test]
fn a_durable_payload_is_answered_once_spooled_and_survives_kill_9() {
    let vendor = Vendor::start(
        "datadog",
        &["--fail-status", "503", "--fail-count", "1000000"],
    );
    let state = state_dir("spool");
    let top = format!("state_dir = \"{}\"\n", state.display());
    let spill = "max_retries = 0\nmax_in_flight = 1\nspill = true\nreplay_share = 1.0\n";
    let a = Instance::start(options(&vendor, spill, top.clone(), ""));
    for i in 0..5 {
        let r = post(&a, "d.x", i);
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // Answered once in the spool: all five are there when the last answer came.
    assert_eq!(
        a.metric("switchyard_sink_dropped_values_total{sink=\"dd\",reason=\"spilled\"}"),
        5.0
    );
    a.signal(libc::SIGKILL);
    drop(a);
    vendor.control("{\"fail_count\": 0}");
    let b = Instance::start(options(&vendor, spill, top, ""));
    b.wait_metric("switchyard_sink_delivered_values_total{sink=\"dd\"}", 5.0);
    let _ = b.stop();
    assert_eq!(points(&vendor.stats(), "d.x"), 5);
    let _ = std::fs::remove_dir_all(&state);
}
