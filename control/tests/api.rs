//! The control API in process: the real router driven with `tower::ServiceExt::oneshot`,
//! over real (blackhole) sinks and a real telemetry registry. Every refused request is
//! checked to change nothing: the table in force, its version and the persisted file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use switchyard_control::{auth::Token, router, routes::persist, ControlState};
use switchyard_core::config::Config;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::SinkStats;
use tower::ServiceExt;

const TOKEN: &str = "t0k3n-5ecret-value";
static SEQ: AtomicUsize = AtomicUsize::new(0);

const CONFIG: &str = "[control]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"SY_CONTROL_TOKEN\"\n\
    [sinks.old]\ntype = \"blackhole\"\n[sinks.trial]\ntype = \"blackhole\"\n\
    [[routes]]\nname = \"all\"\nto = [\"old\"]\n\
    [[routes]]\nname = \"trial\"\nto = [\"trial\"]\n";

struct Api {
    app: Router,
    st: ControlState,
    dir: PathBuf,
    _sinks: switchyard_sinks::SinkRuntime,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn api(token: Option<&str>, loopback: bool) -> Api {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let sinks = switchyard_sinks::spawn_sinks(&cfg).unwrap();
    let telemetry = Arc::new(Telemetry::new(2));
    let dir = std::env::temp_dir().join(format!(
        "sy-control-api-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    // ControlState::new reads the token from the environment; build it by hand instead so
    // tests never touch process-wide state.
    let mut cfg_no_token = cfg.clone();
    cfg_no_token.control.token_env = None;
    let mut st = ControlState::new(&cfg_no_token, telemetry, sinks.slots()).unwrap();
    st.set_config(cfg);
    st.token = token.map(|t| Token::new(t.as_bytes()).unwrap());
    st.loopback_listener = loopback;
    st.state_dir = Some(dir.clone());
    // The in-memory backend stands in for the shards here.
    st.live_routes = true;
    Api {
        app: router(st.clone()),
        st,
        dir,
        _sinks: sinks,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            text: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, &[], Vec::new()).await
    }

    async fn version(&self) -> String {
        self.get("/v1/routes").await.json()["version"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The table in force, and whether anything was persisted.
    async fn state(&self) -> (Value, bool) {
        (
            self.get("/v1/routes").await.json(),
            persist::path(&self.dir).exists(),
        )
    }
}

const NEW_TABLE: &str = r#"{"routes": [
    {"name": "all-to-old", "to": ["old"]},
    {"name": "trial", "match": {"name_prefix": "checkout.", "tags": {"env": "prod"}}, "sample": 0.1, "to": ["trial"]},
    {"name": "no-debug", "match": {"name_glob": "debug.*"}, "drop": true, "final": true}]}"#;

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn get_routes_reports_the_version_per_shard_with_an_etag() {
    let a = api(Some(TOKEN), true);
    let r = a.get("/v1/routes").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let version = v["version"].as_str().unwrap();
    assert_eq!(
        v["routes"],
        serde_json::json!([{"name": "all", "to": ["old"]}, {"name": "trial", "to": ["trial"]}])
    );
    assert_eq!(
        v["shards"],
        serde_json::json!([{"shard": 0, "version": version}, {"shard": 1, "version": version}])
    );
    assert_eq!(r.headers[header::ETAG], format!("\"{version}\"").as_str());
}

#[tokio::test]
async fn put_with_the_token_and_current_version_replaces_and_persists_the_table() {
    let a = api(Some(TOKEN), false);
    let before = a.version().await;
    let auth = bearer();
    let r = a
        .call(
            Method::PUT,
            "/v1/routes",
            &[
                ("authorization", &auth),
                ("if-match", &format!("\"{before}\"")),
            ],
            NEW_TABLE.into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    let after = v["version"].as_str().unwrap().to_string();
    assert_ne!(after, before);
    assert_eq!(v["persisted"], true);
    assert_eq!(v["routes"][1]["name"], "trial");
    assert_eq!(a.version().await, after);
    assert_eq!(
        a.get("/v1/routes").await.json()["shards"][1]["version"],
        after.as_str()
    );
    let saved = persist::load(&a.dir).unwrap().unwrap();
    assert_eq!(
        (saved.table.version, saved.table.routes),
        (after.clone(), v["routes"].clone())
    );

    // The old version is now stale: 412, and nothing changes.
    let r = a
        .call(
            Method::PUT,
            "/v1/routes",
            &[("authorization", &auth), ("if-match", &before)],
            br#"{"routes": [{"name": "x", "to": ["trial"]}]}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert!(r.json()["errors"][0].as_str().unwrap().contains(&after));
    assert_eq!(a.version().await, after);
    assert_eq!(persist::load(&a.dir).unwrap().unwrap().table.version, after);
}

#[tokio::test]
async fn without_live_routing_a_valid_put_is_501_and_changes_nothing() {
    let mut a = api(Some(TOKEN), false);
    // As in the binary until the shards take route snapshots.
    a.st.live_routes = false;
    a.app = router(a.st.clone());
    let before = a.version().await;
    let auth = bearer();
    let r = a
        .call(
            Method::PUT,
            "/v1/routes",
            &[
                ("authorization", &auth),
                ("if-match", &format!("\"{before}\"")),
            ],
            NEW_TABLE.into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{}", r.text);
    assert!(r.text.contains("config file"), "{}", r.text);
    assert_eq!(a.state().await, (a.get("/v1/routes").await.json(), false));
    assert_eq!(a.version().await, before);
}

/// What a refused request is, its headers, its body and the status it must get.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, StatusCode);

#[tokio::test]
async fn every_refused_put_changes_nothing() {
    let a = api(Some(TOKEN), true);
    let v = a.version().await;
    let initial = a.state().await;
    assert!(!initial.1);
    let auth = bearer();
    let wrong = "Bearer not-the-token".to_string();
    let big = {
        let mut b = br#"{"routes": [{"name": "big", "to": ["old"], "match": {"name": ""#.to_vec();
        b.resize(b.len() + (1 << 20), b'a');
        b.extend_from_slice(br#""}}]}"#);
        b
    };
    let cases: Vec<Case> = vec![
        (
            "missing token",
            vec![("if-match", &v)],
            NEW_TABLE.into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong token",
            vec![("authorization", &wrong), ("if-match", &v)],
            NEW_TABLE.into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "not a bearer token",
            vec![("authorization", "Basic dXNlcjpwYXNz"), ("if-match", &v)],
            NEW_TABLE.into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "missing If-Match",
            vec![("authorization", &auth)],
            NEW_TABLE.into(),
            StatusCode::PRECONDITION_REQUIRED,
        ),
        (
            "stale If-Match",
            vec![
                ("authorization", &auth),
                ("if-match", "\"0123456789abcdef\""),
            ],
            NEW_TABLE.into(),
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            "oversized body",
            vec![("authorization", &auth), ("if-match", &v)],
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "invalid JSON",
            vec![("authorization", &auth), ("if-match", &v)],
            br#"{"routes": [{"name": "a", "to": ["old"]},]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "invalid table",
            vec![("authorization", &auth), ("if-match", &v)],
            br#"{"routes": [{"name": "a", "to": ["nowhere"]}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, headers, body, want) in cases {
        let r = a.call(Method::PUT, "/v1/routes", &headers, body).await;
        assert_eq!(r.status, want, "{what}: {}", r.text);
        let errors = r.json()["errors"].clone();
        assert!(
            errors.as_array().is_some_and(|e| !e.is_empty()),
            "{what}: {}",
            r.text
        );
        assert!(
            !r.text.contains(TOKEN) && !r.text.contains("not-the-token"),
            "{what}"
        );
        assert_eq!(a.state().await, initial, "{what} changed the table");
    }
    // What the errors say.
    let r = a
        .call(
            Method::PUT,
            "/v1/routes",
            &[("if-match", &v)],
            NEW_TABLE.into(),
        )
        .await;
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    let r = a
        .call(
            Method::PUT,
            "/v1/routes",
            &[("authorization", &auth), ("if-match", &v)],
            b"{\"routes\": [}".to_vec(),
        )
        .await;
    let msg = r.json()["errors"][0].as_str().unwrap().to_string();
    assert!(msg.contains("line 1 column"), "{msg}");
    let r = a
        .call(
            Method::PUT,
            "/v1/routes",
            &[("authorization", &auth), ("if-match", &v)],
            br#"{"routes": [{"name": "a", "to": ["nowhere"]}]}"#.to_vec(),
        )
        .await;
    let msg = r.json()["errors"][0].as_str().unwrap().to_string();
    assert!(
        msg.contains("routes[0] (\"a\").to[0]") && msg.contains("nowhere"),
        "{msg}"
    );
}

#[tokio::test]
async fn without_a_token_mutation_needs_a_loopback_listener() {
    let remote = api(None, false);
    let v = remote.version().await;
    let r = remote
        .call(
            Method::PUT,
            "/v1/routes",
            &[("if-match", &v)],
            NEW_TABLE.into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.json()["errors"][0].as_str().unwrap().contains("loopback"));
    let r = remote
        .call(Method::POST, "/v1/routes/validate", &[], NEW_TABLE.into())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(remote.version().await, v);

    let local = api(None, true);
    let v = local.version().await;
    let r = local
        .call(
            Method::PUT,
            "/v1/routes",
            &[("if-match", &v)],
            NEW_TABLE.into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_ne!(local.version().await, v);
}

#[tokio::test]
async fn validate_is_a_dry_run() {
    let a = api(Some(TOKEN), true);
    let initial = a.state().await;
    let auth = bearer();
    let r = a
        .call(Method::POST, "/v1/routes/validate", &[], NEW_TABLE.into())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = a
        .call(
            Method::POST,
            "/v1/routes/validate",
            &[("authorization", &auth)],
            NEW_TABLE.into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["routes"].as_array().unwrap().len(), 3);
    let r = a
        .call(
            Method::POST,
            "/v1/routes/validate",
            &[("authorization", &auth)],
            br#"{"routes": [{"name": "s", "to": ["old"], "sample": 2}]}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["valid"], false);
    assert!(r.json()["errors"][0].as_str().unwrap().contains("sample"));
    assert_eq!(a.state().await, initial);
    // The version a dry run reports is the one a PUT then installs.
    let dry = a
        .call(
            Method::POST,
            "/v1/routes/validate",
            &[("authorization", &auth)],
            NEW_TABLE.into(),
        )
        .await
        .json()["version"]
        .clone();
    let cur = initial.0["version"].as_str().unwrap().to_string();
    let put = a
        .call(
            Method::PUT,
            "/v1/routes",
            &[("authorization", &auth), ("if-match", &cur)],
            NEW_TABLE.into(),
        )
        .await
        .json();
    assert_eq!(put["version"], dry);
}

#[tokio::test]
async fn readyz_needs_the_dataplane_and_healthy_sinks() {
    let a = api(Some(TOKEN), true);
    assert_eq!(a.get("/healthz").await.status, StatusCode::OK);
    let r = a.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["dataplane"]["ready"], false);
    assert!(r.json()["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("dataplane"));

    a.st.ready.store(true, Ordering::Relaxed);
    let r = a.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["ready"], true);
    assert_eq!(r.json()["sinks"].as_array().unwrap().len(), 2);

    // Five failed attempts in a row (the default threshold) make a sink unhealthy.
    let old =
        a.st.sinks
            .probes()
            .into_iter()
            .find(|p| p.name == "old")
            .unwrap();
    SinkStats::add(&old.stats.consecutive_failures, 4);
    assert_eq!(a.get("/readyz").await.status, StatusCode::OK);
    SinkStats::add(&old.stats.consecutive_failures, 1);
    let r = a.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let v = r.json();
    assert_eq!(v["dataplane"]["ready"], true);
    let unhealthy: Vec<&Value> = v["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["healthy"] == false)
        .collect();
    assert_eq!(unhealthy.len(), 1);
    assert_eq!(unhealthy[0]["sink"], "old");
    assert!(v["errors"][0].as_str().unwrap().contains("`old`"), "{v}");
    old.stats.request(
        switchyard_sinks::RequestOutcome::Success,
        std::time::Duration::from_millis(1),
    );
    assert_eq!(a.get("/readyz").await.status, StatusCode::OK);
}

/// Parses Prometheus text into (series with labels, value).
fn prometheus(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn stats_json_carries_every_prometheus_series_and_the_ledger() {
    let a = api(Some(TOKEN), true);
    let old =
        a.st.sinks
            .probes()
            .into_iter()
            .find(|p| p.name == "old")
            .unwrap();
    SinkStats::add(&old.stats.values_received, 10);
    SinkStats::add(&old.stats.values_delivered, 6);
    old.stats
        .drop_values(switchyard_sinks::DropReason::RetriesExhausted, 3);
    // Two shards sent `old` overlapping sets of series (0..3000 and 2000..5000); `trial`
    // got nothing.
    let i_old =
        a.st.sinks
            .probes()
            .iter()
            .position(|p| p.name == "old")
            .unwrap();
    let now = switchyard_core::telemetry::top_clock();
    for (shard, range) in [(0, 0..3000), (1, 2000..5000)] {
        let mut d = vec![switchyard_core::distinct::Distinct::new(); a.st.sinks.probes().len()];
        for i in range {
            let h = switchyard_core::route::series_hash(&format!("m{i}"), ["env:x"], "h");
            d[i_old].insert(h, now);
        }
        a.st.telemetry.publish_distinct(shard, &d);
    }
    let text = a.get("/metrics").await.text;
    let stats = a.get("/v1/stats").await.json();
    let series = prometheus(&text);
    assert!(series.len() > 100, "{text}");
    let mut json_samples = 0;
    for (_, samples) in stats["metrics"].as_object().unwrap() {
        json_samples += samples.as_array().unwrap().len();
    }
    assert_eq!(json_samples, series.len());
    for (key, value) in &series {
        if key == "switchyard_uptime_seconds" {
            continue; // the one series that moves between the two reads
        }
        let (name, labels) = match key.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (key.as_str(), ""),
        };
        let want: serde_json::Map<String, Value> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (
                    k.to_string(),
                    Value::String(v.trim_matches('"').to_string()),
                )
            })
            .collect();
        let found = stats["metrics"][name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} missing from /v1/stats"))
            .iter()
            .find(|s| s["labels"] == Value::Object(want.clone()))
            .unwrap_or_else(|| panic!("{key} missing from /v1/stats"));
        assert_eq!(found["value"].as_f64().unwrap(), *value, "{key}");
    }
    assert_eq!(
        stats["metrics"]["switchyard_sink_delivered_values_total"][0],
        serde_json::json!({"labels": {"sink": "old"}, "value": 6})
    );
    let ledger = stats["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 2);
    let l = ledger.iter().find(|l| l["sink"] == "old").unwrap();
    assert_eq!(l["values"]["received"], 10);
    assert_eq!(l["values"]["in_flight"], 1);
    assert_eq!(l["values"]["dropped"]["retries_exhausted"], 3);
    let distinct = l["distinct_series_1h"].as_u64().unwrap();
    assert!(
        (4800..=5200).contains(&distinct),
        "{distinct} distinct series for 5000 sent (HyperLogLog, ~1.6% error)"
    );
    let gauge = series
        .iter()
        .find(|(k, _)| k == "switchyard_sink_distinct_series{sink=\"old\",window=\"1h\"}")
        .unwrap_or_else(|| panic!("no distinct series gauge in {text}"));
    assert_eq!(gauge.1, distinct as f64, "/metrics and the ledger agree");
    // Nothing was enqueued by a shard: the queue remainder is negative, clamped and flagged.
    assert_eq!(l["values"]["queued"], 0);
    assert_eq!(l["balanced"], false);
    assert_eq!(l["clamped"], serde_json::json!(["queued"]));
    let t = ledger.iter().find(|l| l["sink"] == "trial").unwrap();
    assert_eq!(t["balanced"], true);
    assert_eq!(t["distinct_series_1h"], 0);
}

#[tokio::test]
async fn config_is_the_effective_one_with_secrets_redacted() {
    let a = api(Some(TOKEN), true);
    let r = a.get("/v1/config").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["control"]["token_env"], "SY_CONTROL_TOKEN");
    assert_eq!(v["control"]["unhealthy_after_failures"], 5);
    // Defaults are filled in, durations rendered as in the file.
    assert_eq!(v["statsd"]["flush_interval"], "10s");
    assert_eq!(v["http"]["max_body_bytes"], 3_200_000);
    assert_eq!(v["sinks"]["old"]["type"], "blackhole");
    assert_eq!(v["routes"][0]["name"], "all");
    assert!(!r.text.contains(TOKEN));
}

#[tokio::test]
async fn releasing_a_lease_needs_the_token_and_answers_404_for_an_unknown_key() {
    let a = api(Some("s3cret"), true);
    let r = a.call(Method::GET, "/v1/leases", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["leases"], serde_json::json!([]));
    let path = "/v1/leases/shardId-000000000000/release";
    let r = a.call(Method::POST, path, &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = a
        .call(
            Method::POST,
            path,
            &[("authorization", "Bearer nope")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = a
        .call(
            Method::POST,
            path,
            &[("authorization", "Bearer s3cret")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.json()["errors"][0]
        .as_str()
        .unwrap()
        .contains("shardId-000000000000"));
    // Without a token, only a loopback listener may release.
    let remote = api(None, false);
    let r = remote.call(Method::POST, path, &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}
