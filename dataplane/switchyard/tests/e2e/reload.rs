//! Reloads and persisted route tables, end to end: SIGHUP applies the file's new sinks and
//! changed routes (and refuses a broken file, changing nothing); a table accepted by
//! `PUT /v1/routes` is persisted under `state_dir`, survives a restart and a SIGHUP, and gives
//! way once the file's routes change. Assertions are on what the file sinks wrote.

use super::harness::{http_post, read_series, Instance, Options};
use serde_json::Value;
use std::path::Path;
use switchyard_core::config::Config;

fn post(sy: &Instance, metric: &str) {
    let body = serde_json::json!({"series": [
        {"metric": metric, "points": [[1_700_000_000, 1.0]], "type": "gauge"}]})
    .to_string();
    let r = http_post(
        sy.http,
        "/api/v1/series",
        &["DD-API-KEY: k", "Content-Type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{metric}: {}", r.body);
}

fn metrics_in(all: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = all
        .iter()
        .map(|s| s["metric"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn routes(sy: &Instance) -> Value {
    let (status, body) = sy.get("/v1/routes");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn file_version(config: &str) -> String {
    Config::from_toml(config).unwrap().route_table().version
}

/// Rewrites the instance's config file and sends SIGHUP; returns once the process logged
/// the outcome (`expect`).
fn reload(sy: &Instance, text: &str, expect: &str) -> String {
    std::fs::write(sy.config_path(), text).unwrap();
    sy.signal(libc::SIGHUP);
    sy.wait_log(expect)
}

#[test]
fn sighup_applies_new_sinks_and_changed_routes_and_refuses_a_broken_file() {
    let sy = Instance::start(Options::default());
    let original = std::fs::read_to_string(sy.config_path()).unwrap();
    assert_eq!(routes(&sy)["version"], file_version(&original));
    post(&sy, "before.reload");

    // A new sink, routes sending to it too, and a [statsd] change that needs a restart.
    // Outside the instance's directory, which `stop` removes.
    let extra = std::env::temp_dir().join(format!(
        "switchyard-e2e-extra-{}.ndjson",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&extra);
    let changed = original
        .replace("to = [\"out\"]", "to = [\"out\", \"extra\"]")
        .replace("expiry_interval = \"0s\"", "expiry_interval = \"5m\"")
        + &format!(
            "\n[sinks.extra]\ntype = \"file\"\npath = \"{}\"\n",
            extra.display()
        );
    assert_ne!(file_version(&changed), file_version(&original));
    let line = reload(&sy, &changed, "configuration reloaded");
    assert!(line.contains("added=[\"extra\"]"), "{line}");
    assert!(line.contains("routes_from_file=true"), "{line}");
    let warn = sy.wait_log("take effect only after a restart");
    assert!(warn.contains("statsd"), "{warn}");
    assert_eq!(routes(&sy)["version"], file_version(&changed));
    let (_, config) = sy.get("/v1/config");
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["sinks"]["extra"]["type"], "file", "{config}");
    post(&sy, "after.reload");

    // A file that does not parse changes nothing; the process keeps serving.
    reload(&sy, "[statsd\nbroken", "reload refused");
    assert_eq!(routes(&sy)["version"], file_version(&changed));
    post(&sy, "after.broken");

    let out = sy.stop();
    assert_eq!(
        metrics_in(&out),
        ["after.broken", "after.reload", "before.reload"]
    );
    assert_eq!(
        metrics_in(&read_series(&extra)),
        ["after.broken", "after.reload"]
    );
    let _ = std::fs::remove_file(&extra);
}

const FILE_ROUTES: &str = "[[routes]]\nname = \"all\"\nto = [\"out\"]\n";

const PUT_TABLE: &str = r#"{"routes": [
  {"name": "no-x", "match": {"name_prefix": "x."}, "drop": true, "final": true},
  {"name": "put-all", "to": ["out"]}]}"#;

fn with_state(state: &Path, routes: &str) -> Options {
    Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        routes: Some(routes.into()),
        ..Options::default()
    }
}

#[test]
fn a_put_table_survives_restart_and_sighup_until_the_file_routes_change() {
    let state = std::env::temp_dir().join(format!("switchyard-e2e-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);

    let first = Instance::start(with_state(&state, FILE_ROUTES));
    let file_v = routes(&first)["version"].as_str().unwrap().to_string();
    assert!(file_v.starts_with("file-"), "{file_v}");
    let r = first.put_routes(&file_v, PUT_TABLE);
    assert_eq!(r.status, 200, "{}", r.body);
    let put: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(put["persisted"], true, "{put}");
    let put_v = put["version"].as_str().unwrap().to_string();
    assert!(state.join("routes.json").exists());
    first.stop();

    // Restarted with the same file: the accepted table is in force again.
    let second = Instance::start(with_state(&state, FILE_ROUTES));
    assert_eq!(routes(&second)["version"], put_v.as_str());
    second.wait_log("starting with the persisted table");
    post(&second, "x.dropped");
    post(&second, "y.kept");
    // SIGHUP with the file's routes unchanged (a sink added) keeps the accepted table.
    let text = std::fs::read_to_string(second.config_path()).unwrap()
        + "\n[sinks.more]\ntype = \"blackhole\"\n";
    let line = reload(&second, &text, "configuration reloaded");
    assert!(line.contains("routes_from_file=false"), "{line}");
    assert_eq!(routes(&second)["version"], put_v.as_str());
    post(&second, "x.dropped.again");
    assert_eq!(metrics_in(&second.stop()), ["y.kept"]);

    // The file's routes changed since the table was accepted: the file wins.
    let edited = "[[routes]]\nname = \"everything\"\nto = [\"out\"]\n";
    let third = Instance::start(with_state(&state, edited));
    let v = routes(&third)["version"].as_str().unwrap().to_string();
    assert!(v.starts_with("file-") && v != file_v, "{v}");
    third.wait_log("the file's routes changed");
    post(&third, "x.kept");
    assert_eq!(metrics_in(&third.stop()), ["x.kept"]);
    let _ = std::fs::remove_dir_all(&state);
}
