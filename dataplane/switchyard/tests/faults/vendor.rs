//! A vendor that answers 500, then 429 with `Retry-After`, then 400, then is slow (2 s per
//! request), then recovers, while HTTP payloads arrive: every accepted point is delivered at
//! least once or counted `rejected` (the 400s: they cannot succeed), and the sink's ledger
//! balances (`received = delivered + spilled + rejected`, nothing else dropped, nothing left
//! in flight).

use crate::harness::{post_point, Instance, Options, Vendor};
use crate::support::{dropped, kept_values, sink};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Payloads `from..to`, one point each, metric `fault.p`, value i, 30 ms apart.
fn post(sy: &Instance, from: u32, to: u32) {
    for i in from..to {
        post_point(sy.http, "fault.p", i);
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// A statsd flush sent in 4 requests (10 series each) to a vendor failing every second
/// request: the parts it took are delivered, only the others go to the spool and are
/// replayed, so every counter arrives exactly once (a whole-batch spill would send the
/// delivered parts twice).
#[test]
fn a_statsd_batch_the_vendor_took_in_part_spools_only_the_rest() {
    let vendor = Vendor::start("datadog", &[]);
    vendor.control("{\"fail_status\": 503, \"fail_every\": 2}");
    let state = std::env::temp_dir().join(format!("switchyard-faults-part-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let sy = Instance::start(Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\nmax_retries = 0\n\
             max_in_flight = 1\nmax_series_per_request = 10\nspill = true\nreplay_share = 1.0\n",
            vendor.url()
        ),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "k".into())],
        flush_interval: "1s".into(),
        ..Options::default()
    });
    let rounds = 3;
    let lines: Vec<String> = (0..40).map(|i| format!("part.c{i}:1|c")).collect();
    let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    for _ in 0..rounds {
        crate::harness::send_raw(sy.statsd, &lines);
        std::thread::sleep(Duration::from_millis(1200));
    }
    // Every counter's rate sums to the increments (1 s flushes), once the spool drained.
    let sums = |s: &Value| -> Vec<f64> {
        (0..40)
            .map(|i| {
                s["metrics"][format!("part.c{i}")]["value_sum"]
                    .as_f64()
                    .unwrap_or(0.0)
            })
            .collect()
    };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = vendor.stats();
        let received = sink(&sy, "switchyard_sink_received_values_total");
        let delivered = sink(&sy, "switchyard_sink_delivered_values_total");
        let spilled = dropped(&sy, "spilled");
        let all = sums(&s).iter().all(|&v| v >= f64::from(rounds));
        if (all && received == delivered + spilled) || Instant::now() > until {
            assert_eq!(
                sums(&s),
                vec![f64::from(rounds); 40],
                "every increment exactly once: {s:#}"
            );
            assert_eq!(received, delivered + spilled);
            // (Idle counters flush zeros every second too: more values than increments.)
            assert!(
                spilled > 0.0 && spilled < received,
                "only parts spilled: {spilled} of {received}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = sy.stop();
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_vendor_failing_in_turns_loses_nothing_it_could_take_and_the_ledger_balances() {
    let vendor = Vendor::start("datadog", &["--keep-values", "1000"]);
    let state = std::env::temp_dir().join(format!("switchyard-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let sy = Instance::start(Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\nmax_retries = 1\n\
             max_in_flight = 2\nspill = true\nreplay_share = 1.0\nrequest_timeout = \"10s\"\n",
            vendor.url()
        ),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "k".into())],
        ..Options::default()
    });
    let total = 100;
    // 500s (retried, then spilled), 429s with Retry-After (honoured, then spilled), 400s
    // (rejected for good), a slow vendor (2 s per answer), then a healthy one.
    vendor.control("{\"fail_status\": 500, \"fail_count\": 6}");
    post(&sy, 0, 20);
    vendor.control("{\"fail_status\": 429, \"fail_count\": 6, \"retry_after\": 1}");
    post(&sy, 20, 40);
    vendor.control("{\"fail_status\": 400, \"fail_count\": 4, \"retry_after\": null}");
    post(&sy, 40, 60);
    vendor.control("{\"fail_count\": 0, \"delay_ms\": 2000}");
    post(&sy, 60, 80);
    vendor.control("{\"delay_ms\": 0}");
    post(&sy, 80, total);

    // Every value is delivered or rejected, and nothing stays in flight.
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let got: BTreeSet<u32> = kept_values(&vendor.stats(), "fault.p")
            .into_iter()
            .collect();
        let rejected = dropped(&sy, "rejected");
        let received = sink(&sy, "switchyard_sink_received_values_total");
        let delivered = sink(&sy, "switchyard_sink_delivered_values_total");
        let spilled = dropped(&sy, "spilled");
        let settled = received == delivered + spilled + rejected;
        if (got.len() as f64 + rejected >= f64::from(total) && settled) || Instant::now() > until {
            let s = vendor.stats();
            assert!(settled, "received {received} = delivered {delivered} + spilled {spilled} + rejected {rejected}: {s:#}");
            assert_eq!(
                got.len() as f64 + rejected,
                f64::from(total),
                "every point delivered (at least once) or rejected: {got:?} {s:#}"
            );
            assert!(got.iter().all(|&v| v < total));
            assert!(
                (1.0..=4.0).contains(&rejected),
                "the 400s rejected 1 to 4 values: {rejected}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for reason in [
        "retries_exhausted",
        "spool_full",
        "shutdown",
        "fatal",
        "no_api_key",
    ] {
        assert_eq!(dropped(&sy, reason), 0.0, "{reason}");
    }
    // The faults happened: refused requests, and values that went through the spool.
    let s = vendor.stats();
    let refused = s["failed_requests"].as_u64().unwrap();
    let spilled = dropped(&sy, "spilled");
    eprintln!(
        "{refused} requests refused, {spilled} values spilled and replayed, {} rejected",
        dropped(&sy, "rejected")
    );
    assert!(refused >= 6, "{s:#}");
    assert!(spilled > 0.0, "{s:#}");
    let _ = sy.stop();
    let _ = std::fs::remove_dir_all(&state);
}
