//! Arbitrary bytes as one statsd/DogStatsD datagram, through everything a shard does with it:
//! `lines` + `parse_message`, metrics into an `IntervalAggregator`, `drain_by_owner` to three
//! owners, `OwnerStore` merge and two flushes (the second expires every series), and the
//! Datadog NDJSON encoder.
//!
//! Beyond "no panic", it checks what must hold for any input: accepted values are finite,
//! caps are respected, a drain hands over every series exactly once, a flush emits every held
//! series once, and the encoder writes one valid JSON object per series.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use switchyard_core::aggregate::{
    GaugeDialect, HostSource, IntervalAggregator, LineContext, OwnerStore, Partials,
};
use switchyard_core::encode::datadog_series::write_batch;
use switchyard_core::model::SeriesBatch;
use switchyard_core::statsd::{lines, parse_message, Message};

/// Owner shards the partials are split across.
const SHARDS: usize = 3;
/// Small caps, so inputs reach the series, tag and timer-value limits.
const MAX_TAGS: usize = 16;
const MAX_SERIES: usize = 64;
const MAX_TIMER_VALUES: usize = 256;
/// Idle expiry of the owner stores, nanoseconds.
const EXPIRY_NS: u64 = 20;
/// When partials are merged and first flushed (monotonic nanoseconds).
const FLUSH_NS: u64 = 10;
/// A second flush time, at which every series has been idle past the expiry.
const SWEEP_NS: u64 = FLUSH_NS + EXPIRY_NS + 1;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    // Both host sources and both gauge dialects see every input.
    let setups = [
        (HostSource::Sender("10.0.0.1"), GaugeDialect::Dogstatsd),
        (HostSource::Tag, GaugeDialect::Etsy),
    ];
    for (host, dialect) in setups {
        let mut agg = IntervalAggregator::new(7, MAX_TAGS, MAX_SERIES, MAX_TIMER_VALUES);
        for (i, line) in lines(data).enumerate() {
            assert!(!line.is_empty() && !line.contains(&b'\n'));
            let m = match parse_message(line) {
                Ok(Message::Metric(m)) => m,
                Ok(Message::Event(e)) => {
                    assert!(!e.title.is_empty());
                    continue;
                }
                Ok(Message::ServiceCheck(sc)) => {
                    assert!(sc.status <= 3 && !sc.name.is_empty());
                    continue;
                }
                Err(_) => continue,
            };
            assert!(!m.name.is_empty());
            assert!(m.sample_rate > 0.0 && m.sample_rate <= 1.0);
            assert!(m.values().all(|(v, _)| v.is_finite()));
            assert!(m.values().count() >= 1);
            let cx = LineContext {
                host,
                dialect,
                now_ns: i as u64,
                scope: 0,
            };
            // Rejections (tags, series, timer values) are counted by the caller, not errors here.
            let _ = agg.ingest(&m, cx);
            assert!(agg.series() <= MAX_SERIES);
        }

        let series = agg.series();
        let parts = agg.drain_by_owner(SHARDS);
        assert_eq!(parts.len(), SHARDS);
        assert_eq!(parts.iter().map(Partials::len).sum::<usize>(), series);
        assert_eq!(agg.series(), 0);

        let mut stores: Vec<OwnerStore> = (0..SHARDS)
            .map(|_| OwnerStore::new(&[99.9, -10.0], EXPIRY_NS))
            .collect();
        for (store, part) in stores.iter_mut().zip(parts) {
            store.merge(part, FLUSH_NS);
        }
        assert_eq!(stores.iter().map(OwnerStore::len).sum::<usize>(), series);

        let mut out = Vec::new();
        for store in &mut stores {
            // The second flush is past the expiry: it still emits, then removes, everything.
            for now in [FLUSH_NS, SWEEP_NS] {
                let held = store.len();
                let mut batch = SeriesBatch::new(1_700_000_000, 10.0);
                let st = store.flush(&mut batch, now);
                assert_eq!(st.series_emitted as usize, held);
                assert_eq!(st.values_emitted as usize, batch.len());

                if now == SWEEP_NS {
                    // Same identities as the first flush: encoding them again finds nothing
                    // new and would double the target's main cost.
                    continue;
                }
                out.clear();
                write_batch(&mut out, &batch);
                let mut objects = 0;
                for obj in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    // `IgnoredAny` checks the syntax without building a tree: most of the
                    // target's time would otherwise go to allocating `Value`s.
                    let v: Result<IgnoredAny, _> = serde_json::from_slice(obj);
                    assert!(v.is_ok(), "invalid JSON: {}", String::from_utf8_lossy(obj));
                    objects += 1;
                }
                assert_eq!(objects, batch.len());
            }
            assert!(store.is_empty());
        }
    }
}
