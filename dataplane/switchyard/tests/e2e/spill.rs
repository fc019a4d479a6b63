//! Spill and replay (`spill = true`): a vendor that is down does not lose what Switchyard
//! accepted. What the vendor refuses goes to the sink's spool under `state_dir`; the circuit
//! opens after failures in a row (items then go straight to the spool); once the vendor takes
//! data again, the spool's replay delivers everything, also after a `kill -9`.

use super::harness::{post_point, Instance, Options, Vendor};
use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A datadog sink that spills, to `vendor`, one request in flight, no retries (a refusal
/// goes to the spool at once), statsd flushed every 200 ms.
fn spilling(vendor: &Vendor, state: &Path) -> Options {
    Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\n\
             max_retries = 0\nmax_in_flight = 1\nspill = true\nreplay_share = 1.0\n",
            vendor.url()
        ),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "k".into())],
        flush_interval: "200ms".into(),
        ..Options::default()
    }
}

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-e2e-spill-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A vendor answering every request 503 until told otherwise.
fn down_vendor() -> Vendor {
    Vendor::start(
        "datadog",
        &[
            "--fail-status",
            "503",
            "--fail-count",
            "1000000",
            "--keep-values",
            "100",
        ],
    )
}

/// What one increment adds to `spill.count`'s value sum at the vendor: statsd counters go to
/// Datadog as a per-second rate over the 200 ms flush interval.
const PER_INCREMENT: f64 = 5.0;

/// `n` increments of counter `spill.count`, 20 ms apart (spread over several flushes).
fn count(sy: &Instance, n: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..n {
        sock.send_to(b"spill.count:1|c", ("127.0.0.1", sy.statsd))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` HTTP v1 series payloads, metric `spill.http`, value i.
fn post(sy: &Instance, n: u32) {
    for i in 0..n {
        post_point(sy.http, "spill.http", i);
    }
}

fn sink(sy: &Instance, family: &str) -> f64 {
    sy.metric(&format!("{family}{{sink=\"dd\"}}"))
}

fn dropped(sy: &Instance, reason: &str) -> f64 {
    sy.metric(&format!(
        "switchyard_sink_dropped_values_total{{sink=\"dd\",reason=\"{reason}\"}}"
    ))
}

/// Waits (bounded, 60 s) until the vendor has `counts` increments and `https` HTTP points.
fn wait_vendor(v: &Vendor, counts: f64, https: u64) -> Value {
    let counts = counts * PER_INCREMENT;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = v.stats();
        let c = s["metrics"]["spill.count"]["value_sum"]
            .as_f64()
            .unwrap_or(0.0);
        let h = s["metrics"]["spill.http"]["points"].as_u64().unwrap_or(0);
        if (c >= counts && h >= https) || Instant::now() > until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded, 30 s) until values were spilled and no more are for a second (the
/// flushes after the last increment are done and spilled).
fn wait_all_spilled(sy: &Instance) {
    let until = Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (-1.0, Instant::now());
    loop {
        let spilled = dropped(sy, "spilled");
        if spilled != last {
            (last, since) = (spilled, Instant::now());
        } else if spilled > 0.0 && since.elapsed() >= Duration::from_secs(1) {
            return;
        }
        assert!(
            Instant::now() < until,
            "spilled {spilled}: {}",
            sy.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_vendor_down_spills_and_the_replay_delivers_everything_once_it_recovers() {
    let vendor = down_vendor();
    let state = state_dir("down");
    let sy = Instance::start(spilling(&vendor, &state));
    count(&sy, 40);
    post(&sy, 10);
    // A few flushes after the last increment everything is in the spool; the circuit
    // opened after 5 items in a row failed.
    std::thread::sleep(Duration::from_millis(600));
    wait_all_spilled(&sy);
    assert_eq!(sink(&sy, "switchyard_sink_circuit_opens_total"), 1.0);
    assert_eq!(sink(&sy, "switchyard_sink_circuit_open"), 1.0);
    assert!(sink(&sy, "switchyard_sink_spool_bytes") > 0.0);
    assert!(state.join("spool").join("dd").is_dir());
    let refused = vendor.stats()["failed_requests"].as_u64().unwrap();
    assert!(
        refused >= 5,
        "the vendor was tried before the circuit opened"
    );
    assert_eq!(vendor.stats()["points"], 0);

    vendor.control("{\"fail_count\": 0}");
    let s = wait_vendor(&vendor, 40.0, 10);
    assert_eq!(
        s["metrics"]["spill.count"]["value_sum"],
        40.0 * PER_INCREMENT,
        "every increment, once: {s:#}"
    );
    let mut http: Vec<f64> = s["metrics"]["spill.http"]["values"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    http.sort_by(f64::total_cmp);
    assert_eq!(http, (0..10).map(f64::from).collect::<Vec<_>>(), "{s:#}");
    // The ledger: what was spilled came back through the replay and was delivered; nothing
    // was lost.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let received = sink(&sy, "switchyard_sink_received_values_total");
        let delivered = sink(&sy, "switchyard_sink_delivered_values_total");
        let spilled = dropped(&sy, "spilled");
        if received == delivered + spilled || Instant::now() > until {
            assert_eq!(
                received,
                delivered + spilled,
                "nothing in flight at the end"
            );
            assert_eq!(
                delivered, spilled,
                "every delivered value came from the spool"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for reason in ["retries_exhausted", "spool_full", "shutdown"] {
        assert_eq!(dropped(&sy, reason), 0.0, "{reason}");
    }
    assert!(
        sy.metric("switchyard_worker_batches_delivered_total{worker=\"dd.spool.replay\"}") > 0.0
    );
    // Once an item probes the vendor after the open period, the circuit closes and live
    // traffic goes to the vendor again (what spilled meanwhile is replayed).
    let until = Instant::now() + Duration::from_secs(30);
    let mut sent = 40;
    while sink(&sy, "switchyard_sink_circuit_open") != 0.0 {
        assert!(Instant::now() < until, "the circuit never closed");
        count(&sy, 5);
        sent += 5;
    }
    let s = wait_vendor(&vendor, f64::from(sent), 10);
    assert_eq!(
        s["metrics"]["spill.count"]["value_sum"],
        f64::from(sent) * PER_INCREMENT,
        "{s:#}"
    );
    // At rest the ledger balances, the replayed values included
    // (enqueued + replayed = received, nothing queued or in flight).
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = sy.get("/v1/stats");
        let stats: Value = serde_json::from_str(&body).unwrap();
        let l = stats["ledger"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["sink"] == "dd")
            .unwrap()
            .clone();
        let v = &l["values"];
        let at_rest = l["balanced"] == true && v["queued"] == 0 && v["in_flight"] == 0;
        if at_rest || Instant::now() > until {
            assert!(at_rest, "{l:#}");
            assert!(v["replayed"].as_u64().unwrap() > 0, "{l:#}");
            assert_eq!(
                v["enqueued"].as_u64().unwrap() + v["replayed"].as_u64().unwrap(),
                v["received"].as_u64().unwrap(),
                "{l:#}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = sy.stop();
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn the_spool_survives_kill_9_and_is_replayed_by_the_next_process() {
    let vendor = down_vendor();
    let state = state_dir("kill");
    let a = Instance::start(spilling(&vendor, &state));
    count(&a, 30);
    post(&a, 5);
    std::thread::sleep(Duration::from_millis(600));
    wait_all_spilled(&a);
    a.signal(libc::SIGKILL);
    drop(a);
    vendor.control("{\"fail_count\": 0}");
    assert_eq!(vendor.stats()["points"], 0);
    // A new process on the same state_dir replays what the spool holds.
    let b = Instance::start(spilling(&vendor, &state));
    let s = wait_vendor(&vendor, 30.0, 5);
    assert_eq!(
        s["metrics"]["spill.count"]["value_sum"],
        30.0 * PER_INCREMENT,
        "every increment accepted before the kill, once: {s:#}"
    );
    assert_eq!(s["metrics"]["spill.http"]["points"], 5, "{s:#}");
    let _ = b.stop();
    let _ = std::fs::remove_dir_all(&state);
}
