//! The spool full too (`spill_max_bytes`, the configured stand-in for a full disk) while the
//! vendor is down: the sink takes nothing it could neither send nor keep, so its queue
//! fills, HTTP clients get `503` with `Retry-After` and statsd batches are dropped and
//! counted `queue_full` (UDP cannot push back). Memory stays bounded by the queue. Once the
//! vendor is back, everything that was answered `202` is delivered, except values counted
//! `spool_full` (the item a worker held when the spool filled), and the ledger balances.

use crate::harness::{post_gauge, send_raw, Instance, Options, Vendor};
use crate::support::{dropped, kept_values, sink};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn post(sy: &Instance, value: u32) -> crate::harness::RawResponse {
    post_gauge(sy.http, "disk.p", value)
}

#[test]
fn with_the_vendor_down_and_the_spool_full_the_intake_pushes_back_and_nothing_accepted_is_lost() {
    let vendor = Vendor::start(
        "datadog",
        &[
            "--fail-status",
            "503",
            "--fail-count",
            "1000000",
            "--keep-values",
            "5000",
        ],
    );
    let state = std::env::temp_dir().join(format!("switchyard-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let cap = 16 * 1024;
    let sy = Instance::start(Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\n\
             max_retries = 0\nmax_in_flight = 1\nqueue_batches = 16\nspill = true\n\
             spill_max_bytes = {cap}\nreplay_share = 1.0\n",
            vendor.url()
        ),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "k".into())],
        flush_interval: "200ms".into(),
        ..Options::default()
    });
    // Post until the intake pushes back with the spool full (bounded). An earlier 503 is
    // possible (the spool's fsyncs falling behind on a busy disk): the client waits and
    // sends the next payload.
    let mut accepted = BTreeSet::new();
    let mut refusal = None;
    for i in 0..5000u32 {
        let r = post(&sy, i);
        match r.status {
            202 => {
                accepted.insert(i);
            }
            503 if sink(&sy, "switchyard_sink_spool_bytes") >= f64::from(cap) => {
                refusal = Some(r);
                break;
            }
            503 => std::thread::sleep(Duration::from_millis(50)),
            s => panic!("unexpected answer {s}: {}", r.body),
        }
    }
    let refusal = refusal.expect("the intake pushed back once memory and spool were full");
    assert!(
        refusal.header("retry-after").is_some(),
        "503 with Retry-After: {:?}",
        refusal.headers
    );
    // Statsd cannot be pushed back: its batches are dropped and counted.
    let until = Instant::now() + Duration::from_secs(20);
    while dropped(&sy, "queue_full") == 0.0 {
        send_raw(sy.statsd, &[b"disk.c:1|c"]);
        assert!(Instant::now() < until, "statsd batches counted queue_full");
        std::thread::sleep(Duration::from_millis(50));
    }
    // And still nothing more is taken while both are full.
    let r = post(&sy, 999_999);
    assert_eq!(r.status, 503, "{}", r.body);

    vendor.control("{\"fail_count\": 0}");
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let s = vendor.stats();
        let got: BTreeSet<u32> = kept_values(&s, "disk.p").into_iter().collect();
        let received = sink(&sy, "switchyard_sink_received_values_total");
        let done = sink(&sy, "switchyard_sink_delivered_values_total");
        let spilled = dropped(&sy, "spilled");
        let lost = dropped(&sy, "spool_full");
        let settled = received == done + spilled + lost;
        let missing: Vec<u32> = accepted.difference(&got).copied().collect();
        if (settled && missing.len() as f64 <= lost) || Instant::now() > until {
            assert!(
                settled,
                "received {received} = delivered {done} + spilled {spilled} + spool_full {lost}"
            );
            assert!(
                missing.len() as f64 <= lost,
                "every accepted point delivered but the {lost} counted spool_full: missing {missing:?}"
            );
            assert!(
                lost <= 2.0,
                "at most the items in hand when the spool filled: {lost}"
            );
            eprintln!(
                "{} payloads accepted before the 503; {spilled} values spilled, {lost} spool_full, {} statsd values queue_full",
                accepted.len(),
                dropped(&sy, "queue_full")
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for reason in ["retries_exhausted", "shutdown", "rejected", "fatal"] {
        assert_eq!(dropped(&sy, reason), 0.0, "{reason}");
    }
    let _ = sy.stop();
    let _ = std::fs::remove_dir_all(&state);
}
