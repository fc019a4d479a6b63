//! Aggregation end to end in the pure core: statsd lines -> shard partials -> owner stores ->
//! NDJSON. Golden files pin the wire output; property tests pin the thread-per-core split.

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::path::Path;
use switchyard_core::aggregate::{
    GaugeDialect, HostSource, IntervalAggregator, LineContext, OwnerStore,
};
use switchyard_core::encode::datadog_series::write_batch;
use switchyard_core::model::SeriesBatch;
use switchyard_core::statsd::{lines, parse_message, Message};

const SEED: u64 = 42;
const TS: u64 = 1_700_000_000;

/// Feeds `datagrams[i]` to shard `shard_of[i]`, exchanges partials, flushes every owner and
/// returns the sorted NDJSON lines.
fn aggregate(
    datagrams: &[String],
    shard_of: &[usize],
    shards: usize,
    dialect: GaugeDialect,
) -> Vec<String> {
    let mut aggs: Vec<IntervalAggregator> = (0..shards)
        .map(|_| IntervalAggregator::new(SEED, 64, 1_000_000, 1_000_000))
        .collect();
    for (i, d) in datagrams.iter().enumerate() {
        let agg = &mut aggs[shard_of.get(i).copied().unwrap_or(0) % shards];
        for line in lines(d.as_bytes()) {
            if let Ok(Message::Metric(m)) = parse_message(line) {
                let cx = LineContext {
                    host: HostSource::Sender("10.0.0.1"),
                    dialect,
                    now_ns: i as u64,
                    scope: 0,
                };
                let _ = agg.ingest(&m, cx);
            }
        }
    }
    let mut stores: Vec<OwnerStore> = (0..shards)
        .map(|_| OwnerStore::new(&[90.0, -10.0, 99.9], 0))
        .collect();
    for agg in &mut aggs {
        for (owner, part) in agg.drain_by_owner(shards).into_iter().enumerate() {
            stores[owner].merge(part, 1_000);
        }
    }
    let mut out = Vec::new();
    for store in &mut stores {
        let mut batch = SeriesBatch::new(TS, 10.0);
        store.flush(&mut batch, 1_000);
        write_batch(&mut out, &batch);
    }
    let mut v: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn golden(case: &str, dialect: GaugeDialect) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case);
    let input = std::fs::read_to_string(dir.join("input")).unwrap();
    // One datagram per input line; `\n` and `\r` inside a line stand for those bytes.
    let datagrams: Vec<String> = input
        .lines()
        .map(|l| l.replace("\\n", "\n").replace("\\r", "\r"))
        .collect();
    let got = aggregate(&datagrams, &[], 1, dialect).join("\n") + "\n";
    let path = dir.join("expected");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        got, want,
        "golden {case} differs (UPDATE_GOLDEN=1 rewrites it, on purpose only)"
    );
}

#[test]
fn golden_counters() {
    golden("counters", GaugeDialect::Dogstatsd);
}

#[test]
fn golden_gauges_etsy() {
    golden("gauges_etsy", GaugeDialect::Etsy);
}

#[test]
fn golden_timers() {
    golden("timers", GaugeDialect::Dogstatsd);
}

#[test]
fn golden_sets_and_tags() {
    golden("sets_and_tags", GaugeDialect::Dogstatsd);
}

#[test]
fn idle_series_report_zeros_until_they_expire() {
    let mut agg = IntervalAggregator::new(SEED, 64, 100, 100);
    let mut store = OwnerStore::new(&[90.0], 5_000);
    let cx = LineContext {
        host: HostSource::Sender("h"),
        dialect: GaugeDialect::Dogstatsd,
        now_ns: 0,
        scope: 0,
    };
    for l in ["c:3|c", "g:7|g", "t:2|ms", "s:a|s"] {
        if let Ok(Message::Metric(m)) = parse_message(l.as_bytes()) {
            agg.ingest(&m, cx).unwrap();
        }
    }
    let flush = |store: &mut OwnerStore, agg: &mut IntervalAggregator, now: u64| {
        for p in agg.drain_by_owner(1) {
            store.merge(p, now);
        }
        let mut b = SeriesBatch::new(TS, 1.0);
        let st = store.flush(&mut b, now);
        let vals: Vec<(String, f64)> = b.iter().map(|s| (s.name(), s.value())).collect();
        (st, vals)
    };
    let (st, v) = flush(&mut store, &mut agg, 1_000);
    assert_eq!(st.series_emitted, 4);
    assert!(
        v.contains(&("c.count".into(), 3.0))
            && v.contains(&("g".into(), 7.0))
            && v.contains(&("s".into(), 1.0))
    );
    // Idle, within expiry: counters and timers 0, gauges keep their value, sets 0.
    let (st, v) = flush(&mut store, &mut agg, 4_000);
    assert_eq!(st.series_emitted, 4);
    assert!(v.contains(&("c.count".into(), 0.0)) && v.contains(&("g".into(), 7.0)));
    assert!(v.contains(&("t.count".into(), 0.0)) && v.contains(&("s".into(), 0.0)));
    assert!(
        !v.iter().any(|(n, _)| n == "t.upper_90"),
        "no percentiles without values"
    );
    // Idle longer than the expiry: emitted one last time, then gone.
    let (st, _) = flush(&mut store, &mut agg, 7_000);
    assert_eq!(
        (st.series_emitted, st.series_expired, st.series_active),
        (4, 4, 0)
    );
    let (st, v) = flush(&mut store, &mut agg, 8_000);
    assert_eq!(st.series_emitted, 0);
    assert!(v.is_empty());
}

fn line_strategy() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "b.c", "d_e", "f"]);
    let tags = prop::sample::select(vec!["", "|#x:1", "|#y:2,x:1", "|#x:1,y:2"]);
    (name, 0u32..4, -50i32..50, 1u8..20, tags).prop_map(|(n, t, v, m, tags)| match t {
        0 => format!("{n}:{v}|c{tags}"),
        1 => format!("{n}:{v}|g{tags}"),
        2 => format!("{n}:{}|ms{tags}", v.unsigned_abs()),
        _ => format!("{n}:m{m}|s{tags}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever shard each datagram lands on, the owners' merged output equals what one
    /// shard would produce from all the lines (integer values keep float sums exact).
    #[test]
    fn any_split_across_shards_gives_the_single_shard_result(
        datagrams in prop::collection::vec(prop::collection::vec(line_strategy(), 1..5), 1..40),
        shards in 2usize..5,
        seed in any::<u64>(),
    ) {
        let datagrams: Vec<String> = datagrams.into_iter().map(|d| d.join("\n")).collect();
        let shard_of: Vec<usize> = (0..datagrams.len()).map(|i| (seed.rotate_left(i as u32) as usize) % shards).collect();
        let one = aggregate(&datagrams, &[], 1, GaugeDialect::Dogstatsd);
        let many = aggregate(&datagrams, &shard_of, shards, GaugeDialect::Dogstatsd);
        prop_assert_eq!(one, many);
    }

    /// Counters keep their sum through aggregation: `.count` equals the sum of values sent.
    #[test]
    fn counter_sums_are_preserved(values in prop::collection::vec(-1000i64..1000, 1..200)) {
        let datagrams: Vec<String> = values.iter().map(|v| format!("k:{v}|c")).collect();
        let out = aggregate(&datagrams, &[], 1, GaugeDialect::Dogstatsd);
        let want: i64 = values.iter().sum();
        let count = out.iter().find(|l| l.contains("\"metric\":\"k.count\"")).unwrap();
        let v: serde_json::Value = serde_json::from_str(count).unwrap();
        prop_assert_eq!(v["points"][0][1].as_f64().unwrap(), want as f64);
    }
}
