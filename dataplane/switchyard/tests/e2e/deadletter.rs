//! Dead letters: a vendor refusing requests with a 400 (a 4xx no retry can fix) has them kept
//! in `<state_dir>/deadletter/<sink>` with its answer and the request's series, counted in
//! `/metrics` and the ledger (`rejected`), listed by `GET /v1/deadletter[/<sink>]` and
//! cleared by `DELETE /v1/deadletter/<sink>` with the bearer token only.

use super::harness::{http_request, post_point, Instance, Options, Vendor};
use serde_json::Value;
use std::path::PathBuf;

const SECRET: &str = "dd-key-never-shown-9f31";
const TOKEN: &str = "control-token-dl-77";

fn state_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-e2e-deadletter-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn json(sy: &Instance, path: &str) -> (u16, Value) {
    let (status, body) = sy.get(path);
    assert!(!body.contains(SECRET), "{path} shows the API key: {body}");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

fn sink(sy: &Instance, family: &str) -> f64 {
    sy.metric(&format!("{family}{{sink=\"dd\"}}"))
}

fn delete(sy: &Instance, path: &str, headers: &[&str]) -> (u16, Value) {
    let r = http_request(sy.control, "DELETE", path, headers, b"");
    let v = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body));
    (r.status, v)
}

#[test]
fn a_vendor_refusal_is_kept_as_a_dead_letter_counted_listed_and_cleared_with_the_token() {
    // The first three requests are refused with a 400 and a body; the rest are taken.
    let vendor = Vendor::start(
        "datadog",
        &[
            "--fail-status",
            "400",
            "--fail-count",
            "3",
            "--keep-values",
            "100",
        ],
    );
    let state = state_dir();
    let token_file = state.join("control.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let sy = Instance::start(Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\n\
             max_retries = 3\nmax_in_flight = 1\n",
            vendor.url()
        ),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), SECRET.into())],
        control_extra: format!("token_file = \"{}\"", token_file.display()),
        ..Options::default()
    });
    for i in 0..5 {
        post_point(sy.http, &format!("dl.m{i}"), i);
    }
    sy.wait_metric("switchyard_sink_delivered_values_total{sink=\"dd\"}", 2.0);
    sy.wait_metric("switchyard_sink_deadletter_entries_total{sink=\"dd\"}", 3.0);

    // The entries, newest first: the vendor's status and answer, the request's series.
    let (status, list) = json(&sy, "/v1/deadletter/dd");
    assert_eq!(status, 200, "{list:#}");
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{list:#}");
    assert_eq!(list["more"], false);
    for (e, metric) in entries.iter().zip(["dl.m2", "dl.m1", "dl.m0"]) {
        assert_eq!(e["sink"], "dd");
        assert_eq!(e["status"], 400, "{e:#}");
        assert_eq!(
            e["request"],
            format!("POST {}/api/v1/series", vendor.url()),
            "{e:#}"
        );
        assert!(
            e["response"].as_str().unwrap().contains("injected failure"),
            "{e:#}"
        );
        assert_eq!(e["values"], 1);
        let body: Value = serde_json::from_str(e["request_body"].as_str().unwrap()).unwrap();
        assert_eq!(body["series"][0]["metric"], metric, "{e:#}");
        assert_eq!(
            body["series"][0]["points"][0][1],
            0.0 + metric[4..].parse::<f64>().unwrap()
        );
    }
    let (_, newest) = json(&sy, "/v1/deadletter/dd?limit=1");
    assert_eq!(newest["entries"].as_array().unwrap().len(), 1);
    assert_eq!(newest["more"], true);
    assert_eq!(
        newest["entries"][0]["request_body"],
        entries[0]["request_body"]
    );
    assert!(state.join("deadletter").join("dd").is_dir());

    // Summary, metrics and ledger agree: the values are rejected, not delivered.
    let (_, summary) = json(&sy, "/v1/deadletter");
    let dd = summary["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == "dd")
        .unwrap_or_else(|| panic!("{summary:#}"));
    assert_eq!(
        (&dd["entries"], &dd["values"], &dd["evicted"]),
        (&3.into(), &3.into(), &0.into())
    );
    assert!(dd["bytes"].as_u64().unwrap() > 0);
    assert_eq!(sink(&sy, "switchyard_sink_deadletter_values_total"), 3.0);
    assert_eq!(
        sink(&sy, "switchyard_sink_deadletter_evicted_entries_total"),
        0.0
    );
    assert_eq!(
        sink(&sy, "switchyard_sink_deadletter_bytes"),
        dd["bytes"].as_f64().unwrap()
    );
    let rejected =
        sy.metric("switchyard_sink_dropped_values_total{sink=\"dd\",reason=\"rejected\"}");
    assert_eq!(
        rejected, 3.0,
        "every dead-lettered value is counted rejected"
    );
    assert_eq!(
        sink(&sy, "switchyard_sink_retries_total"),
        0.0,
        "a 400 is never retried"
    );
    let (_, stats) = json(&sy, "/v1/stats");
    let ledger = stats["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sink"] == "dd")
        .unwrap();
    assert_eq!(ledger["values"]["dropped"]["rejected"], 3, "{ledger:#}");
    assert_eq!(ledger["values"]["delivered"], 2, "{ledger:#}");
    assert_eq!(vendor.stats()["metrics"]["dl.m3"]["points"], 1);

    // Unknown sinks and sinks without dead letters: 404.
    assert_eq!(sy.get("/v1/deadletter/nope").0, 404);
    assert_eq!(sy.get("/v1/deadletter/out").0, 404);

    // Clearing is a change: the bearer token is required.
    let (status, _) = delete(&sy, "/v1/deadletter/dd", &[]);
    assert_eq!(status, 401);
    let (status, _) = delete(&sy, "/v1/deadletter/dd", &["Authorization: Bearer wrong"]);
    assert_eq!(status, 401);
    assert_eq!(
        json(&sy, "/v1/deadletter/dd").1["entries"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (status, v) = delete(&sy, "/v1/deadletter/nope", &[&bearer]);
    assert_eq!(status, 404, "{v:#}");
    let (status, v) = delete(&sy, "/v1/deadletter/dd", &[&bearer]);
    assert_eq!((status, &v["cleared"]), (200, &3.into()), "{v:#}");
    let (_, list) = json(&sy, "/v1/deadletter/dd");
    assert_eq!(list["entries"], serde_json::json!([]));
    let (_, summary) = json(&sy, "/v1/deadletter");
    assert_eq!(summary["sinks"][0]["entries"], 0);
    assert_eq!(summary["sinks"][0]["cleared"], 3);
    assert_eq!(sink(&sy, "switchyard_sink_deadletter_bytes"), 0.0);
    assert_eq!(
        sink(&sy, "switchyard_sink_deadletter_entries_total"),
        3.0,
        "a counter of what was written"
    );

    let log = sy.log_text();
    let _ = sy.stop();
    assert!(!log.contains(SECRET), "the API key is in the log");
    let _ = std::fs::remove_dir_all(&state);
}
