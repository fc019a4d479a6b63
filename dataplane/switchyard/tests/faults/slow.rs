//! A vendor that takes 5 s to answer every request while HTTP payloads and statsd lines keep
//! arriving: the sink's queue (64 items, the default; 2 requests in flight) would fill within
//! three seconds,
//! but its spiller moves the oldest queued items to the spool, so every payload is answered
//! `202` and no statsd batch is dropped `queue_full`. Once the vendor is fast again the
//! spool's replay delivers what was spilled: every point arrives exactly once, and the
//! ledger balances (`received = delivered + spilled`, nothing else dropped, nothing in
//! flight).

use crate::harness::{post_gauge, send_raw, Instance, Options, Vendor};
use crate::support::{dropped, kept_values, sink};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[test]
fn a_vendor_slow_for_5s_per_request_spills_the_backlog_and_the_intake_keeps_accepting() {
    let vendor = Vendor::start("datadog", &["--keep-values", "1000"]);
    let state = std::env::temp_dir().join(format!("switchyard-slow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let sy = Instance::start(Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD\"\n\
             max_in_flight = 2\nspill = true\nreplay_share = 1.0\n\
             request_timeout = \"20s\"\n",
            vendor.url()
        ),
        route_to: vec!["dd".into()],
        env: vec![("SY_TEST_DD".into(), "k".into())],
        flush_interval: "1s".into(),
        ..Options::default()
    });
    vendor.control("{\"delay_ms\": 5000}");
    let total = 250u32;
    let started = Instant::now();
    for i in 0..total {
        // Answered 202 (asserted), though the vendor takes 5 s per request. A counter
        // increment adds 1 to the vendor's value sum (a per-second rate, 1 s flushes).
        let r = post_gauge(sy.http, "slow.p", i);
        assert_eq!(
            r.status,
            202,
            "payload {i} after {:?}: {} (spilled {}, spool_full {}, queue {}, received {})",
            started.elapsed(),
            r.body,
            dropped(&sy, "spilled"),
            dropped(&sy, "spool_full"),
            sink(&sy, "switchyard_sink_queue_depth_batches"),
            sink(&sy, "switchyard_sink_received_values_total"),
        );
        send_raw(sy.statsd, &[b"slow.c:1|c"]);
        std::thread::sleep(Duration::from_millis(25));
    }
    let slow_for = started.elapsed();
    let spilled_while_slow = dropped(&sy, "spilled");
    vendor.control("{\"delay_ms\": 0}");
    assert!(slow_for >= Duration::from_secs(5), "{slow_for:?}");
    assert!(
        spilled_while_slow > 0.0,
        "the backlog went to the spool while the vendor was slow"
    );
    assert_eq!(dropped(&sy, "queue_full"), 0.0, "no statsd batch dropped");

    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let s = vendor.stats();
        let got: BTreeSet<u32> = kept_values(&s, "slow.p").into_iter().collect();
        let counted = s["metrics"]["slow.c"]["value_sum"].as_f64().unwrap_or(0.0);
        let received = sink(&sy, "switchyard_sink_received_values_total");
        let delivered = sink(&sy, "switchyard_sink_delivered_values_total");
        let spilled = dropped(&sy, "spilled");
        let settled = received == delivered + spilled;
        let done = got.len() as u32 == total && counted >= f64::from(total);
        if (done && settled) || Instant::now() > until {
            assert!(
                settled,
                "received {received} = delivered {delivered} + spilled {spilled}: {s:#}"
            );
            assert_eq!(got.len() as u32, total, "every point delivered: {s:#}");
            // Whole items are spilled from the queue, never after a partial delivery:
            // exactly once.
            assert_eq!(
                kept_values(&s, "slow.p").len() as u32,
                total,
                "no duplicate: {s:#}"
            );
            assert_eq!(
                counted,
                f64::from(total),
                "every increment counted once: {s:#}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for reason in [
        "queue_full",
        "retries_exhausted",
        "spool_full",
        "shutdown",
        "rejected",
    ] {
        assert_eq!(dropped(&sy, reason), 0.0, "{reason}");
    }
    assert_eq!(
        sink(&sy, "switchyard_sink_circuit_opens_total"),
        0.0,
        "slow is not down: the circuit stayed closed"
    );
    eprintln!(
        "vendor slow for {slow_for:?}: {spilled_while_slow} values spilled meanwhile, {} in all",
        dropped(&sy, "spilled")
    );
    let _ = sy.stop();
    let _ = std::fs::remove_dir_all(&state);
}
