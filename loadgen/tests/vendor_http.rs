//! Runs the real `loadgen vendor` binary on loopback and posts real client captures to it
//! (Datadog v1 gzip and zlib, v2 zstd1, SignalFx protobuf+gzip, copied from
//! `shared/reference/captures` into `tests/fixtures/`), checking that `/stats` counts exactly
//! the points and sums the captures hold; checks fault injection from the command line and
//! from `/control`; and runs the real `loadgen http` against it, checking that the points and
//! values the generator reports as accepted are exactly what the vendor counted. No timing is
//! asserted.

// Failing loudly is how a test reports; the helpers below are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// A running `loadgen vendor`, killed on drop.
struct Vendor {
    child: Child,
    addr: String,
    agent: ureq::Agent,
}

impl Vendor {
    fn start(kind: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["vendor", "--listen", "127.0.0.1:0", "--kind", kind])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Self { child, addr, agent }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts `body` with `headers`; returns the status, `Retry-After` and the body text.
    fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Option<String>, String) {
        let mut request = self.agent.post(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send(body).unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), retry_after, text)
    }

    fn stats(&self) -> Value {
        let mut response = self.agent.get(self.url("/stats")).call().unwrap();
        assert_eq!(response.status(), 200);
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Vendor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    std::fs::read(path).unwrap()
}

/// The `/stats` entry expected for one metric.
fn metric(points: u64, sum: f64, kind: Value, host: Value, labels: (Value, Value)) -> Value {
    json!({"points": points, "value_sum": sum, "type": kind, "host": host,
           "tags": labels.0, "dimensions": labels.1})
}

/// `stats["metrics"]` without the last-point fields, which the expectations leave out.
fn metrics_without_last(stats: &Value) -> Value {
    let mut metrics = stats["metrics"].clone();
    for entry in metrics.as_object_mut().unwrap().values_mut() {
        let entry = entry.as_object_mut().unwrap();
        entry.remove("last_value");
        entry.remove("last_timestamp");
    }
    metrics
}

#[test]
fn datadog_captures_decode_to_their_exact_points() {
    let vendor = Vendor::start("datadog", &[]);
    // datadog-api-client v1, gzip.
    let body = fixture("apiclient_v1-series_gzip.raw-body.gz");
    let (status, _, text) = vendor.post(
        "/api/v1/series",
        &[
            ("Content-Encoding", "gzip"),
            ("Content-Type", "text/json"),
            ("DD-API-KEY", "fake-dd-api-key"),
        ],
        &body,
    );
    assert_eq!((status, text.as_str()), (202, r#"{"status":"ok"}"#));
    let stats = vendor.stats();
    assert_eq!(stats["points"], 1);
    assert_eq!(stats["bytes_wire"], 123);
    assert_eq!(stats["bytes_decoded"], 132);
    assert_eq!(stats["api_keys"], json!({"fake-dd-api-key": 1}));
    assert_eq!(
        metrics_without_last(&stats),
        json!({"checkout.orders": metric(1, 12.0, json!("count"), Value::Null,
                                         (json!(["env:prod"]), Value::Null))})
    );
    assert_eq!(stats["metrics"]["checkout.orders"]["last_timestamp"], 1.7e9);

    // datadogpy v1, `deflate` (a zlib stream), key in the query string.
    let (status, _, _) = vendor.post("/reset", &[], b"");
    assert_eq!(status, 200);
    let body = fixture("ddpy-api_v1-series_deflate.raw-body.zlib");
    let (status, _, _) = vendor.post(
        "/api/v1/series?api_key=query-key",
        &[
            ("Content-Encoding", "deflate"),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 202);
    let stats = vendor.stats();
    assert_eq!(
        (stats["series"].clone(), stats["points"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(stats["bytes_decoded"], 365);
    assert_eq!(stats["value_sum"], 0.7 + 1234.5 + 5.0);
    assert_eq!(stats["api_keys"], json!({"query-key": 1}));
    assert_eq!(
        metrics_without_last(&stats),
        json!({
            "system.load.1": metric(1, 0.7, json!("gauge"), json!("web-1"),
                                    (json!(["env:prod"]), Value::Null)),
            "net.bytes_rcvd": metric(1, 1234.5, json!("rate"), json!("capture-host"),
                                     (json!(["iface:eth0"]), Value::Null)),
            "custom.untyped": metric(1, 5.0, Value::Null, json!("capture-host"),
                                     (json!([]), Value::Null)),
        })
    );

    // datadog-api-client v2, zstd1.
    vendor.post("/reset", &[], b"");
    let body = fixture("apiclient_v2-series_zstd1.raw-body.zst");
    let (status, _, text) = vendor.post(
        "/api/v2/series",
        &[
            ("Content-Encoding", "zstd1"),
            ("Content-Type", "application/json"),
            ("DD-API-KEY", "fake-dd-api-key"),
        ],
        &body,
    );
    assert_eq!((status, text.as_str()), (202, r#"{"errors":[]}"#));
    let stats = vendor.stats();
    assert_eq!(stats["points"], 3);
    assert_eq!(stats["bytes_decoded"], 470);
    assert_eq!(stats["encodings"], json!({"zstd": 1}));
    assert_eq!(
        metrics_without_last(&stats),
        json!({
            "system.load.1": metric(1, 0.7, json!("gauge"), json!("web-1"),
                                    (json!(["env:prod"]), Value::Null)),
            "checkout.orders": metric(1, 12.0, json!("count"), Value::Null,
                                      (json!(["env:prod"]), Value::Null)),
            "net.bytes_rcvd": metric(1, 123.4, json!("rate"), Value::Null,
                                     (json!([]), Value::Null)),
        })
    );

    // Bad JSON is a 400 with Datadog's error body, and adds nothing.
    let (status, _, text) = vendor.post("/api/v1/series", &[], b"{\"series\": [");
    assert_eq!(status, 400);
    assert!(text.starts_with(r#"{"errors":["#), "{text}");
    let stats = vendor.stats();
    assert_eq!(
        (stats["points"].clone(), stats["rejected_requests"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(
        stats["requests_by_path"]["/api/v1/series"],
        json!({"400": 1})
    );
    assert_eq!(stats["requests_without_key"], 1);
}

#[test]
fn signalfx_protobuf_capture_decodes_to_its_exact_points() {
    let vendor = Vendor::start("signalfx", &[]);
    let body = fixture("sfx_v2-datapoint_protobuf_gzip.raw-body.gz");
    let (status, _, text) = vendor.post(
        "/v2/datapoint",
        &[
            ("Content-Encoding", "gzip"),
            ("Content-Type", "application/x-protobuf"),
            ("X-SF-Token", "fake-sfx-token"),
        ],
        &body,
    );
    assert_eq!((status, text.as_str()), (200, r#""OK""#));
    let stats = vendor.stats();
    assert_eq!(stats["kind"], "signalfx");
    assert_eq!(
        (stats["series"].clone(), stats["points"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(stats["bytes_wire"], 138);
    assert_eq!(stats["bytes_decoded"], 135);
    assert_eq!(stats["api_keys"], json!({"fake-sfx-token": 1}));
    // What sfx_v2-datapoint_protobuf_gzip.pb.txt shows.
    assert_eq!(
        metrics_without_last(&stats),
        json!({
            "requests.total": metric(1, 1_234_567.0, json!("cumulative_counter"), Value::Null,
                                     (Value::Null, json!({}))),
            "app.queue.depth": metric(1, 42.0, json!("gauge"), Value::Null,
                                      (Value::Null, json!({"host": "web-1", "env": "prod"}))),
            "page.views": metric(1, 3.0, json!("counter"), Value::Null,
                                 (Value::Null, json!({"route": "home"}))),
        })
    );
    assert_eq!(stats["metrics"]["page.views"]["last_timestamp"], 1.7e12);

    // The JSON body of the same client (sfx_v2-datapoint_json.http), uncompressed.
    vendor.post("/reset", &[], b"");
    let body = br#"{"cumulative_counter": [{"metric": "requests.total", "value": 1234567, "timestamp": 1700000000000}], "gauge": [{"metric": "app.queue.depth", "value": 42.5, "timestamp": 1700000000000, "dimensions": {"host": "web-1", "env": "prod"}}], "counter": [{"metric": "page.views", "value": 3, "dimensions": {"route": "home"}}]}"#;
    let (status, _, _) = vendor.post(
        "/v2/datapoint",
        &[("Content-Type", "application/json"), ("X-SF-Token", "t2")],
        body,
    );
    assert_eq!(status, 200);
    let stats = vendor.stats();
    assert_eq!(stats["points"], 3);
    assert_eq!(stats["metrics"]["app.queue.depth"]["value_sum"], 42.5);
    assert_eq!(stats["api_keys"], json!({"t2": 1}));
    // Datadog paths do not exist on a SignalFx vendor.
    let (status, _, _) = vendor.post("/api/v1/series", &[], b"{}");
    assert_eq!(status, 404);
}

#[test]
fn injected_failures_come_first_then_requests_succeed() {
    let vendor = Vendor::start(
        "datadog",
        &[
            "--fail-status",
            "503",
            "--fail-count",
            "2",
            "--retry-after",
            "7",
        ],
    );
    let body = br#"{"series":[{"metric":"m","points":[[1700000000,2.5]],"type":"gauge"}]}"#;
    let headers = [("DD-API-KEY", "k")];
    for _ in 0..2 {
        let (status, retry_after, _) = vendor.post("/api/v1/series", &headers, body);
        assert_eq!((status, retry_after.as_deref()), (503, Some("7")));
    }
    let (status, retry_after, _) = vendor.post("/api/v1/series", &headers, body);
    assert_eq!((status, retry_after), (202, None));
    let stats = vendor.stats();
    assert_eq!(stats["failed_requests"], 2);
    assert_eq!(stats["accepted_requests"], 1);
    assert_eq!(stats["points"], 1);
    assert_eq!(stats["metrics"]["m"]["value_sum"], 2.5);
    assert_eq!(stats["failed_bytes_wire"], 2 * body.len());
    assert_eq!(
        stats["requests_by_path"]["/api/v1/series"],
        json!({"202": 1, "503": 2})
    );

    // The same at run time through /control.
    let (status, _, text) = vendor.post(
        "/control",
        &[],
        br#"{"fail_status":429,"fail_count":1,"retry_after":1,"delay_ms":0}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"fail_status": 429, "fail_count": 1, "retry_after": 1, "delay_ms": 0, "fail_every": 0})
    );
    let (status, retry_after, _) = vendor.post("/api/v1/series", &headers, body);
    assert_eq!((status, retry_after.as_deref()), (429, Some("1")));
    let (status, _, _) = vendor.post("/api/v1/series", &headers, body);
    assert_eq!(status, 202);
    let stats = vendor.stats();
    assert_eq!(stats["failed_requests"], 3);
    assert_eq!(stats["points"], 2);
    assert_eq!(stats["metrics"]["m"]["value_sum"], 5.0);
    assert_eq!(
        vendor.post("/control", &[], br#"{"nope":1}"#).0,
        400,
        "unknown control fields are refused"
    );
}

#[test]
fn only_accepted_keys_get_in_when_keys_are_given() {
    let vendor = Vendor::start("datadog", &["--accept-key", "good"]);
    let body = br#"{"series":[{"metric":"m","points":[[1700000000,1]]}]}"#;
    assert_eq!(
        vendor
            .post("/api/v1/series", &[("DD-API-KEY", "bad")], body)
            .0,
        403
    );
    assert_eq!(vendor.post("/api/v1/series", &[], body).0, 403);
    assert_eq!(
        vendor
            .post("/api/v1/series", &[("DD-API-KEY", "good")], body)
            .0,
        202
    );
    let mut validate = vendor
        .agent
        .get(vendor.url("/api/v1/validate"))
        .header("DD-API-KEY", "good")
        .call()
        .unwrap();
    assert_eq!(validate.status(), 200);
    assert_eq!(
        validate.body_mut().read_to_string().unwrap(),
        r#"{"valid":true}"#
    );
    let stats = vendor.stats();
    assert_eq!(stats["points"], 1);
    assert_eq!(stats["api_keys"], json!({"bad": 1, "good": 2}));
}

/// Runs `loadgen http` against `vendor` and returns its JSON summary.
fn run_http(vendor: &Vendor, extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "http",
            "--target",
            &vendor.url(""),
            "--json",
            "--no-progress",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn http_generator_and_vendor_agree_on_every_point() {
    let vendor = Vendor::start("datadog", &[]);
    let summary = run_http(
        &vendor,
        &[
            "--rate",
            "60",
            "--duration",
            "1",
            "--points-per-payload",
            "25",
            "--series",
            "300",
            "--encoding",
            "gzip",
            "--api-key",
            "load-key",
            "--connections",
            "2",
        ],
    );
    let stats = vendor.stats();
    let sent = summary["payloads_sent"].as_u64().unwrap();
    assert!(sent > 0 && sent <= 60, "{summary}");
    assert_eq!(summary["payloads_offered"], 60);
    assert_eq!(summary["transport_errors"], 0, "{summary}");
    assert_eq!(summary["payloads_by_status"], json!({"202": sent}));
    assert_eq!(summary["points_accepted"], sent * 25);
    assert_eq!(stats["accepted_requests"], sent);
    assert_eq!(stats["points"], summary["points_accepted"]);
    assert_eq!(stats["value_sum"], summary["value_sum_accepted"]);
    assert_eq!(stats["bytes_wire"], summary["compressed_bytes"]);
    assert_eq!(stats["bytes_decoded"], summary["uncompressed_bytes"]);
    assert_eq!(stats["encodings"], json!({"gzip": sent}));
    assert_eq!(stats["api_keys"], json!({"load-key": sent}));
    let counts: f64 = stats["metrics"]
        .as_object()
        .unwrap()
        .values()
        .filter(|m| m["type"] == "count")
        .map(|m| m["value_sum"].as_f64().unwrap())
        .sum();
    assert_eq!(json!(counts), summary["count_value_sum_accepted"]);
    // Realistic series: hosts and tags on every point.
    let first = stats["metrics"]["http.server.requests"].clone();
    assert!(
        first["host"].as_str().unwrap().starts_with("web-"),
        "{first}"
    );
    assert_eq!(first["tags"][0], "env:prod");
}

#[test]
fn http_generator_counts_vendor_failures_apart() {
    let vendor = Vendor::start("datadog", &["--fail-status", "503", "--fail-count", "3"]);
    let summary = run_http(
        &vendor,
        &[
            "--rate",
            "40",
            "--duration",
            "1",
            "--points-per-payload",
            "10",
            "--series",
            "50",
            "--encoding",
            "zstd",
            "--endpoint",
            "v2",
            "--connections",
            "1",
        ],
    );
    let stats = vendor.stats();
    let sent = summary["payloads_sent"].as_u64().unwrap();
    assert!(sent > 3, "{summary}");
    assert_eq!(
        summary["payloads_by_status"],
        json!({"202": sent - 3, "503": 3})
    );
    assert_eq!(summary["payloads_accepted"], sent - 3);
    assert_eq!(stats["failed_requests"], 3);
    assert_eq!(
        stats["requests_by_path"]["/api/v2/series"],
        json!({"202": sent - 3, "503": 3})
    );
    assert_eq!(stats["points"], summary["points_accepted"]);
    assert_eq!(stats["points"], (sent - 3) * 10);
    assert_eq!(stats["value_sum"], summary["value_sum_accepted"]);
    // v2 carries the host as a resource.
    assert!(stats["metrics"]["db.query.count"]["host"]
        .as_str()
        .unwrap()
        .starts_with("web-"));
}
