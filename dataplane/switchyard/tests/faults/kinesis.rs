//! Kinesis partial failures and throttling through the wire-level fake
//! (`switchyard_testkit::kinesis_fake`, awsJson1.1 on loopback): the real binary with a
//! `kinesis` sink gets statsd and HTTP traffic while the fake throttles single entries
//! (`ProvisionedThroughputExceededException`), fails others (`InternalFailure`) and fails
//! whole calls (HTTP 500 and HTTP 400 `ProvisionedThroughputExceededException`). Every value
//! ends accepted by the fake exactly once, as the ledger says, each series' values in the
//! order they were sent; the retries are counted in the metrics and the ledger balances.

use crate::harness::{http_post, send_raw, Instance, Options};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_stream::kpl::deaggregate;
use switchyard_stream::{Decoded, StreamDecoder};
use switchyard_testkit::kinesis_fake::{kinesis_fake, CallOutcome, Outcome};

const ROUNDS: u32 = 6;
/// Statsd gauges per round (`kn.udp.<s>`, each its own series).
const UDP: u32 = 20;
/// HTTP series per round (`kn.http.<j>`, one v1 payload each).
const HTTP: u32 = 10;
/// Faults are scripted for the first calls only, so every record goes through in the end
/// (a record failing more than `max_retries` times would be dropped instead).
const FAULTY_CALLS: usize = 30;

/// One value of round `r` for series index `i`.
fn value(r: u32, i: u32) -> u32 {
    r * 1000 + i
}

/// Per entry, in the first calls: entry 0 of every third call (from call 2) is throttled,
/// every later entry fails internally. A call carries one record per shard, so a statsd
/// flush (series on both shards) makes calls of two entries: call 0, the first flush, is
/// put in part.
fn entry_outcome(call: usize, i: usize) -> Outcome {
    match (call, i) {
        (c, _) if c >= FAULTY_CALLS => Outcome::Ok,
        (c, 0) if c % 3 == 2 => Outcome::Throttle,
        (_, 0) => Outcome::Ok,
        _ => Outcome::Internal,
    }
}

/// Per request: two 500s in a row, then three throttled calls in a row, then one more 500.
fn call_outcome(request: usize) -> CallOutcome {
    match request {
        2 | 3 | 12 => CallOutcome::Internal,
        6..=8 => CallOutcome::Throttle,
        _ => CallOutcome::Answer,
    }
}

fn stats(sy: &Instance) -> Value {
    serde_json::from_str(&sy.get("/v1/stats").1).unwrap()
}

fn ledger(s: &Value) -> Value {
    s["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sink"] == "k")
        .unwrap_or_else(|| panic!("no ledger for sink k: {s:#}"))["values"]
        .clone()
}

/// One sample of a `/v1/stats` series for sink `k` with further labels.
fn sample(s: &Value, name: &str, labels: &[(&str, &str)]) -> u64 {
    s["metrics"][name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} missing"))
        .iter()
        .find(|x| x["labels"]["sink"] == "k" && labels.iter().all(|(k, v)| x["labels"][*k] == *v))
        .and_then(|x| x["value"].as_u64())
        .unwrap_or(0)
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v:#}"))
}

/// Waits (bounded) until the sink received `at_least` values.
fn wait_received(sy: &Instance, at_least: u64) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let l = ledger(&stats(sy));
        if n(&l, "received") >= at_least {
            return;
        }
        assert!(
            Instant::now() < until,
            "the sink stayed below {at_least} values: {l:#}\n{}",
            sy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kinesis_throttling_and_partial_failures_lose_nothing_and_keep_each_series_in_order() {
    // What the fake answered, entry by entry and request by request.
    let entries: Arc<Mutex<Vec<(usize, Outcome)>>> = Arc::default();
    let calls: Arc<Mutex<Vec<CallOutcome>>> = Arc::default();
    let (e2, c2) = (entries.clone(), calls.clone());
    let fake = kinesis_fake()
        .shards(2)
        .decide(move |call, i| {
            let o = entry_outcome(call, i);
            e2.lock().unwrap().push((call, o));
            o
        })
        .decide_call(move |request| {
            let o = call_outcome(request);
            c2.lock().unwrap().push(o);
            o
        })
        .start()
        .unwrap();
    // Small records (no linger) so the traffic makes many calls; enough retries that only
    // the scripted faults happen to an entry, never its drop.
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.k]\ntype = \"kinesis\"\nstream = \"fake\"\nregion = \"us-east-1\"\n\
             endpoint = \"{}\"\ncompression = \"none\"\nlinger = \"0s\"\nmax_retries = 8\n",
            fake.url
        ),
        route_to: vec!["k".into()],
        flush_interval: "1s".into(),
        env: [
            ("AWS_ACCESS_KEY_ID", "dummy"),
            ("AWS_SECRET_ACCESS_KEY", "dummy"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect(),
        ..Options::default()
    });

    // Each round: the statsd gauges (flushed once a second), then, once the flush carried
    // them (so every gauge series has one value per round, and the first call is that
    // flush), one HTTP payload per series.
    for r in 0..ROUNDS {
        let lines: Vec<String> = (0..UDP)
            .map(|s| format!("kn.udp.{s}:{}|g", value(r, s)))
            .collect();
        send_raw(sy.statsd, &[lines.join("\n").as_bytes()]);
        wait_received(&sy, u64::from(r * (UDP + HTTP) + UDP));
        for j in 0..HTTP {
            let body = format!(
                "{{\"series\":[{{\"metric\":\"kn.http.{j}\",\"points\":[[1700000000,{}]],\"type\":\"gauge\"}}]}}",
                value(r, j)
            );
            let resp = http_post(
                sy.http,
                "/api/v1/series",
                &["DD-API-KEY: k", "Content-Type: application/json"],
                body.as_bytes(),
            );
            assert_eq!(resp.status, 202, "{}", resp.body);
        }
        wait_received(&sy, u64::from((r + 1) * (UDP + HTTP)));
    }
    let total = u64::from(ROUNDS * (UDP + HTTP));

    // Settled: everything delivered, nothing dropped, nothing in flight.
    let until = Instant::now() + Duration::from_secs(40);
    let s = loop {
        let s = stats(&sy);
        let l = ledger(&s);
        if n(&l, "delivered") >= total && n(&l, "in_flight") == 0 {
            break s;
        }
        assert!(
            Instant::now() < until,
            "not every value delivered: {l:#}\n{}",
            sy.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let l = ledger(&s);
    assert_eq!(n(&l, "received"), total, "{l:#}");
    assert_eq!(n(&l, "delivered"), total, "{l:#}");
    for (reason, v) in l["dropped"].as_object().unwrap() {
        assert_eq!(v.as_u64(), Some(0), "dropped {reason}: {l:#}");
    }

    // The faults happened, and each was retried and counted.
    let entries = entries.lock().unwrap().clone();
    let calls = calls.lock().unwrap().clone();
    let count = |o: Outcome| entries.iter().filter(|&&(_, x)| x == o).count() as u64;
    // Calls where some entries were put and others failed.
    let partial = (0..FAULTY_CALLS)
        .filter(|&c| {
            let of = |o| {
                entries
                    .iter()
                    .any(|&(x, y)| x == c && (y == Outcome::Ok) == o)
            };
            of(true) && of(false)
        })
        .count();
    let (throttled, internal) = (count(Outcome::Throttle), count(Outcome::Internal));
    let failed_calls = calls.iter().filter(|&&c| c != CallOutcome::Answer).count() as u64;
    eprintln!(
        "{} requests ({failed_calls} failed whole, {partial} calls partly), {} entries: {throttled} \
         throttled, {internal} failed",
        calls.len(),
        entries.len()
    );
    assert!(
        throttled >= 3
            && internal >= 1
            && partial >= 1
            && entries[..2] == [(0, Outcome::Ok), (0, Outcome::Internal)],
        "{entries:?}"
    );
    assert_eq!(
        failed_calls, 6,
        "both kinds of whole-call failure: {calls:?}"
    );
    let records = |outcome| {
        sample(
            &s,
            "switchyard_sink_stream_records_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(records("throttled"), throttled);
    assert_eq!(records("failed"), internal);
    assert_eq!(
        sample(
            &s,
            "switchyard_sink_requests_total",
            &[("outcome", "retryable")]
        ),
        failed_calls
    );
    assert_eq!(
        sample(&s, "switchyard_sink_retries_total", &[]),
        throttled + internal + failed_calls,
        "every failed entry and call retried once per failure"
    );

    // What the fake accepted: decoded, each value exactly once, per series in order.
    let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut dec = StreamDecoder::default();
    let mut points = 0u64;
    for (c, call) in fake.calls().iter().enumerate() {
        for (i, (data, _)) in call.iter().enumerate() {
            if entry_outcome(c, i) != Outcome::Ok {
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            for u in deaggregate(&bytes) {
                let Decoded::Rkyv(b) = dec.decode(&u.data).unwrap() else {
                    panic!("rkyv records expected");
                };
                for series in b.series() {
                    for (_, v) in series.points() {
                        seen.entry(series.name().to_owned())
                            .or_default()
                            .push(v as u32);
                        points += 1;
                    }
                }
            }
        }
    }
    assert_eq!(points, total, "accepted points = the ledger's delivered");
    for (prefix, count) in [("kn.udp", UDP), ("kn.http", HTTP)] {
        for i in 0..count {
            let name = format!("{prefix}.{i}");
            let want: Vec<u32> = (0..ROUNDS).map(|r| value(r, i)).collect();
            assert_eq!(seen.get(&name), Some(&want), "{name}: once each, in order");
        }
    }
    assert_eq!(seen.len() as u32, UDP + HTTP);
    sy.stop();
}
