//! Arbitrary bytes as a decompressed Datadog HTTP intake body, through every intake JSON
//! parser: `series_v1` and `series_v2` (each series on into the SignalFx `Translator`, both
//! `rate_as` settings), `check_run` (each check's gauge view translated too), `events` and
//! `distribution_points`.
//!
//! Beyond "no panic", it checks what must hold for any input: an `Ok(n)` means the callback
//! ran exactly `n` times (once for an event), and the counts a parser returns match what it
//! handed out; a rejection is `BodyError::Invalid` (a 400); events within the spec's limits;
//! the translator accounts for every point it was offered (written or dropped for a counted
//! reason); and the SignalFx body it writes is valid JSON holding exactly the points it says
//! it wrote.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde::Deserialize;
use switchyard_core::intake::events::{
    ALERT_TYPES, MAX_AGGREGATION_KEY_CHARS, MAX_TEXT_CHARS, PRIORITIES,
};
use switchyard_core::intake::{
    check_run, distribution_points, events, series_v1, series_v2, BodyError,
};
use switchyard_core::translate::{DdSeries, RateAs, TranslateConfig, Translator};

/// The SignalFx `/v2/datapoint` body, counted without building values.
#[derive(Deserialize)]
struct SfxBody {
    #[serde(default)]
    gauge: Vec<IgnoredAny>,
    #[serde(default)]
    counter: Vec<IgnoredAny>,
}

/// A parser of series-shaped bodies that hands out [`DdSeries`].
type SeriesParser = fn(
    &mut [u8],
    &mut simd_json::Buffers,
    &mut dyn FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError>;

fn v1(
    b: &mut [u8],
    bufs: &mut simd_json::Buffers,
    f: &mut dyn FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError> {
    series_v1::for_each_series(b, bufs, f)
}

fn v2(
    b: &mut [u8],
    bufs: &mut simd_json::Buffers,
    f: &mut dyn FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError> {
    series_v2::for_each_series(b, bufs, f)
}

fn checks(
    b: &mut [u8],
    bufs: &mut simd_json::Buffers,
    f: &mut dyn FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError> {
    check_run::for_each_check(b, bufs, |c| {
        assert!(c.status.code() <= 3);
        let mut point = [[None; 2]; 1];
        f(&c.as_gauge(1_700_000_000.0, &mut point));
    })
}

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    // Reused across every parse, as a shard reuses them across requests.
    let mut buffers = simd_json::Buffers::default();
    for parser in [v1 as SeriesParser, v2, checks] {
        for rate_as in [RateAs::Counter, RateAs::Gauge] {
            series(data, &mut buffers, parser, rate_as);
        }
    }
    event(data, &mut buffers);
    distributions(data, &mut buffers);
}

fn rejected(e: &BodyError) {
    assert!(matches!(e, BodyError::Invalid(_)), "{e:?}");
    assert_eq!(e.status(), 400);
}

fn series(data: &[u8], buffers: &mut simd_json::Buffers, parse: SeriesParser, rate_as: RateAs) {
    let mut body = data.to_vec();
    let mut t = Translator::new(TranslateConfig {
        rate_as,
        ..TranslateConfig::default()
    });
    let (mut calls, mut points) = (0usize, 0u64);
    let r = parse(&mut body, buffers, &mut |s| {
        calls += 1;
        points += s.points.len() as u64;
        t.push(s);
    });
    match r {
        Ok(n) => assert_eq!(n, calls),
        // Series before the faulty one were handed out already; the caller discards them.
        Err(e) => return rejected(&e),
    }
    let stats = t.take_stats();
    assert_eq!(stats.points_in, points);
    assert_eq!(
        stats.points_out + stats.dropped.iter().sum::<u64>(),
        stats.points_in,
        "{stats:?}"
    );
    let mut out = Vec::new();
    t.finish(&mut out);
    let sfx: SfxBody = match serde_json::from_slice(&out) {
        Ok(b) => b,
        Err(e) => panic!(
            "invalid SignalFx JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(
        (sfx.gauge.len() + sfx.counter.len()) as u64,
        stats.points_out
    );
}

fn event(data: &[u8], buffers: &mut simd_json::Buffers) {
    let mut body = data.to_vec();
    let mut calls = 0;
    let r = events::with_event(&mut body, buffers, |e| {
        calls += 1;
        assert!(e.text.chars().count() <= MAX_TEXT_CHARS);
        if let Some(k) = e.aggregation_key {
            assert!(k.chars().count() <= MAX_AGGREGATION_KEY_CHARS);
        }
        if let Some(p) = e.priority {
            assert!(PRIORITIES.contains(&p), "{p}");
        }
        if let Some(a) = e.alert_type {
            assert!(ALERT_TYPES.contains(&a), "{a}");
        }
    });
    match r {
        Ok(()) => assert_eq!(calls, 1),
        Err(e) => {
            assert_eq!(calls, 0);
            rejected(&e);
        }
    }
}

fn distributions(data: &[u8], buffers: &mut simd_json::Buffers) {
    let mut body = data.to_vec();
    let (mut series, mut points, mut values) = (0usize, 0usize, 0usize);
    let r = distribution_points::for_each_series(&mut body, buffers, |s| {
        series += 1;
        points += s.points.len();
        values += s.points.all_values().len();
        assert_eq!(s.points.iter().count(), s.points.len());
        let flat: Vec<f64> = s
            .points
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        assert_eq!(flat.len(), s.points.all_values().len());
        assert!(flat
            .iter()
            .zip(s.points.all_values())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    });
    match r {
        Ok(c) => {
            assert_eq!((c.series, c.points, c.values), (series, points, values));
        }
        Err(e) => rejected(&e),
    }
}
