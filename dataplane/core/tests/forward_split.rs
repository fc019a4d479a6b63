//! The forwarder/aggregator split (issue 7) against one server: random statsd lines are split
//! over 1..=4 forwarders (each an `IntervalAggregator` with its own seed, drained over a random
//! number of shards and merged with `Partials::absorb`), encoded with `ForwardEncoder`,
//! decoded and fed into an aggregator (another seed), flushed by an `OwnerStore`; the output
//! must equal one `IntervalAggregator` + `OwnerStore` fed every line.
//!
//! Counters (integer values, sample rates 1, 1/2 and 1/4: sums are exact in f64), sets and
//! timers (every statistic, percentiles included) must be exactly equal however lines are
//! split. Gauges are exact when every line of a gauge series goes through one forwarder,
//! which is the real case (a gauge comes from one host, and a host has one forwarder): the
//! generator sends each gauge series to one forwarder, chosen from its name, tags and host.
//! Gauges are read in the Etsy dialect, so deltas cross the wire too.
//!
//! A second property re-splits every forwarder's series over three aggregators with
//! `AggregatorRing` (and with one of them down): the union of the aggregators' outputs equals
//! the single server's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use switchyard_core::aggregate::{
    GaugeDialect, HostSource, IntervalAggregator, LineContext, OwnerStore, Partials,
};
use switchyard_core::encode::datadog_series::write_batch;
use switchyard_core::forward::{feed, AggregatorRing, ForwardDecoder, ForwardEncoder};
use switchyard_core::model::SeriesBatch;
use switchyard_core::statsd::parse_metric;

const TS: u64 = 1_700_000_000;
const HOSTS: [&str; 3] = ["10.0.0.1", "10.0.0.2", "web-3"];
const TAGS: [&str; 4] = ["", "env:prod", "svc:a,env:prod", "env:prod,svc:a,az:z1"];
const RATES: [&str; 3] = ["", "|@0.5", "|@0.25"];

/// One generated line: kind, series (name, tags, host), value, rate, forwarder choice.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    host: usize,
    /// Forwarder for non-gauges (mod N); gauges go by their series.
    pick: usize,
    gauge_series: Option<usize>,
}

fn line() -> impl Strategy<Value = Line> {
    (
        0..4usize,
        0..5usize,
        0..TAGS.len(),
        0..HOSTS.len(),
        -20i32..100,
        0..RATES.len(),
        any::<usize>(),
        0..4usize,
    )
        .prop_map(|(kind, n, t, host, v, r, pick, variant)| {
            let tags = if TAGS[t].is_empty() {
                String::new()
            } else {
                format!("|#{}", TAGS[t])
            };
            let (text, gauge_series) = match kind {
                0 => (format!("c{n}:{}|c{}{tags}", v.abs(), RATES[r]), None),
                1 => {
                    // Absolute values and Etsy deltas.
                    let val = match variant {
                        0 => format!("+{}", v.abs()),
                        1 => format!("-{}", v.abs()),
                        _ => format!("{}", v.abs()),
                    };
                    (format!("g{n}:{val}|g{tags}"), Some(n * 31 + t * 7 + host))
                }
                2 => {
                    let vals = if variant == 0 {
                        format!("{v}:{}", v + 3)
                    } else {
                        format!("{v}")
                    };
                    (format!("t{n}:{vals}|ms{}{tags}", RATES[r]), None)
                }
                _ => (format!("s{n}:u{}|s{tags}", v.rem_euclid(12)), None),
            };
            Line {
                text,
                host,
                pick,
                gauge_series,
            }
        })
}

fn ingest(agg: &mut IntervalAggregator, l: &Line, now_ns: u64) {
    let m = parse_metric(l.text.as_bytes()).unwrap();
    let cx = LineContext {
        host: HostSource::Sender(HOSTS[l.host]),
        dialect: GaugeDialect::Etsy,
        now_ns,
        scope: 0,
    };
    agg.ingest(&m, cx).unwrap();
}

/// Flushes `parts` through one owner store and returns the sorted NDJSON lines.
fn flush(parts: Vec<Partials>) -> Vec<String> {
    let mut store = OwnerStore::new(&[90.0, -10.0, 50.0], 0);
    for p in parts {
        store.merge(p, 1_000);
    }
    let mut batch = SeriesBatch::new(TS, 10.0);
    store.flush(&mut batch, 1_000);
    let mut out = Vec::new();
    write_batch(&mut out, &batch);
    let mut v: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn single_server(lines: &[Line]) -> Vec<String> {
    let mut agg = IntervalAggregator::new(42, 64, 1 << 20, 1 << 20);
    for (i, l) in lines.iter().enumerate() {
        ingest(&mut agg, l, i as u64);
    }
    flush(agg.drain_by_owner(1))
}

/// Each forwarder's consolidated interval: lines split over `n` forwarders, each drained over
/// `shards` owners and merged back with `absorb`.
fn forwarders(lines: &[Line], n: usize, shards: usize) -> Vec<Partials> {
    let mut fwd: Vec<IntervalAggregator> = (0..n)
        .map(|i| IntervalAggregator::new(1_000 + i as u64, 64, 1 << 20, 1 << 20))
        .collect();
    for (i, l) in lines.iter().enumerate() {
        let f = l.gauge_series.unwrap_or(l.pick) % n;
        ingest(&mut fwd[f], l, i as u64);
    }
    fwd.iter_mut()
        .map(|a| {
            let mut parts = a.drain_by_owner(shards).into_iter();
            let mut all = parts.next().unwrap_or_default();
            for p in parts {
                all.absorb(p);
            }
            all
        })
        .collect()
}

/// One aggregator (its own seed) fed the given bodies, flushed.
fn aggregator(bodies: &[Vec<u8>], seed: u64) -> Vec<String> {
    let mut dec = ForwardDecoder::default();
    let mut agg = IntervalAggregator::new(seed, 64, 1 << 20, 1 << 20);
    for b in bodies {
        let view = dec.decode(b).unwrap();
        let out = feed(&view, &mut agg, 500, 0);
        assert_eq!(out.rejected_total(), 0);
        assert_eq!(out.ok, view.len() as u64);
    }
    flush(agg.drain_by_owner(1))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn forwarders_then_aggregator_equal_one_server(
        lines in proptest::collection::vec(line(), 1..300),
        n in 1..=4usize,
        shards in 1..=3usize,
    ) {
        let want = single_server(&lines);
        let mut bodies = Vec::new();
        for (i, p) in forwarders(&lines, n, shards).iter().enumerate() {
            let mut enc = ForwardEncoder::new(&format!("fwd-{i}"), 1000, &[] as &[&str]);
            let mut body = Vec::new();
            enc.encode(p, |_, _| true, &mut body).unwrap();
            bodies.push(body);
        }
        prop_assert_eq!(aggregator(&bodies, 7), want);
    }

    #[test]
    fn a_ring_of_three_aggregators_outputs_the_same_union(
        lines in proptest::collection::vec(line(), 1..300),
        n in 1..=4usize,
        down in 0..4usize,
    ) {
        let want = single_server(&lines);
        let ring = AggregatorRing::new(3);
        // `down == 3`: all up; otherwise that aggregator is down and its series fail over.
        let up = |i: usize| i != down;
        let mut per_agg: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        for (i, p) in forwarders(&lines, n, 2).iter().enumerate() {
            let mut enc = ForwardEncoder::new(&format!("fwd-{i}"), 1000, &[] as &[&str]);
            for (a, bodies) in per_agg.iter_mut().enumerate() {
                let mut body = Vec::new();
                enc.encode(p, |_, k| ring.pick(k.stable_hash(), up) == Some(a), &mut body).unwrap();
                bodies.push(body);
            }
        }
        let mut got = Vec::new();
        for (a, bodies) in per_agg.iter().enumerate() {
            let out = aggregator(bodies, 100 + a as u64);
            if a == down {
                prop_assert!(out.is_empty());
            }
            got.extend(out);
        }
        got.sort();
        prop_assert_eq!(got, want);
    }
}
