//! `kill -9` of `switchyard` during sustained HTTP load (`loadgen http`), on a `durable =
//! true` route to a spilling sink whose vendor is down: every payload loadgen was told was
//! accepted (`202`) is in the spool, so the next process on the same `state_dir` delivers it
//! once the vendor is back. The vendor receives at least every accepted point, and at most
//! those plus the points of payloads that got no answer (in flight at the kill: they may
//! have reached the spool).

use crate::harness::{Instance, Options, Vendor};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const POINTS_PER_PAYLOAD: u64 = 10;

fn options(vendor: &Vendor, state: &Path) -> Options {
    Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\n\
             max_retries = 0\nmax_in_flight = 2\nspill = true\nreplay_share = 1.0\n",
            vendor.url()
        ),
        routes: Some("[[routes]]\nname = \"all\"\nto = [\"dd\"]\ndurable = true\n".into()),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "k".into())],
        ..Options::default()
    }
}

/// Runs `loadgen http` against `port` and returns its JSON summary.
fn loadgen(port: u16, rate: u32, seconds: u32) -> Value {
    let exe = Path::new(env!("CARGO_BIN_EXE_switchyard"))
        .parent()
        .unwrap()
        .join("loadgen");
    let out = Command::new(exe)
        .args([
            "http",
            "--target",
            &format!("http://127.0.0.1:{port}"),
            "--rate",
            &rate.to_string(),
            "--duration",
            &seconds.to_string(),
            "--points-per-payload",
            &POINTS_PER_PAYLOAD.to_string(),
            "--series",
            "200",
            "--encoding",
            "gzip",
            "--connections",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {v}"))
}

#[test]
fn kill_9_under_load_loses_no_payload_a_durable_route_accepted() {
    let vendor = Vendor::start(
        "datadog",
        &["--fail-status", "503", "--fail-count", "100000000"],
    );
    let state = std::env::temp_dir().join(format!("switchyard-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let a = Instance::start(options(&vendor, &state));
    // 40 payloads/s for 6 s; the process is killed 3 s in.
    let port = a.http;
    let run = std::thread::spawn(move || loadgen(port, 40, 6));
    std::thread::sleep(Duration::from_secs(3));
    a.signal(libc::SIGKILL);
    drop(a);
    let first = run.join().unwrap();
    assert!(n(&first, "payloads_accepted") > 0, "{first}");
    assert!(
        n(&first, "transport_errors") > 0,
        "the kill cut the run: {first}"
    );
    assert_eq!(vendor.stats()["points"], 0, "the vendor was down");

    // The next process on the same state_dir, the vendor back, more load.
    vendor.control("{\"fail_count\": 0}");
    let b = Instance::start(options(&vendor, &state));
    let second = loadgen(b.http, 40, 2);
    let accepted = n(&first, "points_accepted") + n(&second, "points_accepted");
    let unanswered = n(&first, "transport_errors") * POINTS_PER_PAYLOAD;

    let until = Instant::now() + Duration::from_secs(90);
    let (mut last, mut since) = (0, Instant::now());
    let got = loop {
        let got = vendor.stats()["points"].as_u64().unwrap_or(0);
        if got != last {
            (last, since) = (got, Instant::now());
        }
        let settled = got >= accepted && since.elapsed() >= Duration::from_secs(2);
        if settled || Instant::now() > until {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "accepted {accepted} points ({} before the kill), {unanswered} unanswered at the kill; the vendor got {got}",
        n(&first, "points_accepted")
    );
    assert!(
        got >= accepted,
        "every accepted point delivered: got {got} of {accepted}; first {first} second {second}"
    );
    assert!(
        got <= accepted + unanswered,
        "duplicates only from payloads unanswered at the kill: got {got}, accepted {accepted}, unanswered {unanswered}"
    );
    let _ = b.stop();
    let _ = std::fs::remove_dir_all(&state);
}
