//! Shared fixtures for the criterion benches (the benches live in `benches/`).
//!
//! Lines look like the ones `loadgen statsd` sends, so a bench and a whole-process run measure
//! the same traffic: series `i` is named `{prefix}{i}` (loadgen's prefix is [`LOADGEN_PREFIX`])
//! and has type `c`, `g`, `ms` or `s` by `i % 4`; counters carry `1`, gauges and timers a
//! decimal, sets a member `u{k}` with `k < 100`. Tagged lines end in
//! `|#env:prod,svc:s{i % 50},az:z{i % 3}`. [`APP_PREFIX`] gives names of a more typical
//! application length, about 44 plain or 25 tagged lines to a 1400-byte datagram.
//!
//! Everything is a pure function of its arguments (a SplitMix64 stream picks values and
//! orders), so two runs bench the same bytes. Nothing here can fail: fixtures that do not parse
//! are dropped by [`parse_metrics`], never unwrapped.

pub mod http;

use switchyard_core::aggregate::{GaugeDialect, HostSource, IntervalAggregator, LineContext};
use switchyard_core::statsd::{lines, parse_metric, MetricKind, MetricLine};

/// The largest datagram a client sends over a typical 1500-byte MTU (loadgen's default).
pub const DATAGRAM_BYTES: usize = 1400;

/// loadgen's metric name prefix: `lg.m{i}`.
pub const LOADGEN_PREFIX: &str = "lg.m";

/// A prefix of typical application length: `app.checkout.req.m{i}`.
pub const APP_PREFIX: &str = "app.checkout.req.m";

/// Seed for the series-key hasher of every benched aggregator.
pub const HASH_SEED: u64 = 0x5EED;

/// The statsd types of the fixtures, assigned to series round-robin.
pub const KINDS: [&str; 4] = ["c", "g", "ms", "s"];

/// SplitMix64 increment (the golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 finaliser: a bijective 64-bit mix, used as a counter-based random stream.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether lines carry DogStatsD tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `lg.m{i}:{value}|{type}`.
    Plain,
    /// `lg.m{i}:{value}|{type}|#env:prod,svc:s{i % 50},az:z{i % 3}`.
    Tagged,
}

/// The statsd type letter of series `series`.
pub fn kind_of(series: u32) -> &'static str {
    KINDS[series as usize % KINDS.len()]
}

/// Appends one line of series `series` named `{prefix}{series}` to `out` (no terminator);
/// `draw` picks the value.
pub fn push_line(out: &mut Vec<u8>, prefix: &str, series: u32, shape: Shape, draw: u64) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(n.format(series).as_bytes());
    out.push(b':');
    let kind = kind_of(series);
    match kind {
        "c" => out.push(b'1'),
        "s" => {
            out.push(b'u');
            out.extend_from_slice(n.format(draw % 100).as_bytes());
        }
        _ => {
            // Gauges up to 9999.99, timers up to 999.999 (milliseconds).
            let (whole, frac, width) = if kind == "g" {
                ((draw & 0xF_FFFF) % 10_000, (draw >> 20) % 100, 2)
            } else {
                ((draw & 0xF_FFFF) % 1_000, (draw >> 20) % 1_000, 3)
            };
            out.extend_from_slice(n.format(whole).as_bytes());
            out.push(b'.');
            let frac = n.format(frac);
            out.extend(std::iter::repeat_n(b'0', width - frac.len().min(width)));
            out.extend_from_slice(frac.as_bytes());
        }
    }
    out.push(b'|');
    out.extend_from_slice(kind.as_bytes());
    if shape == Shape::Tagged {
        out.extend_from_slice(b"|#env:prod,svc:s");
        out.extend_from_slice(n.format(series % 50).as_bytes());
        out.extend_from_slice(b",az:z");
        out.extend_from_slice(n.format(series % 3).as_bytes());
    }
}

/// One line of series `series` as an owned buffer.
pub fn line(prefix: &str, series: u32, shape: Shape, draw: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    push_line(&mut out, prefix, series, shape, draw);
    out
}

/// Packs `(series, draw)` lines, `\n`-separated, into datagrams of at most `max_bytes`, the
/// way a buffering client does: a line that does not fit starts the next datagram. A line
/// longer than `max_bytes` gets a datagram of its own.
pub fn pack(
    picks: impl IntoIterator<Item = (u32, u64)>,
    prefix: &str,
    shape: Shape,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::with_capacity(max_bytes);
    let mut one = Vec::with_capacity(64);
    for (series, draw) in picks {
        one.clear();
        push_line(&mut one, prefix, series, shape, draw);
        let sep = usize::from(!cur.is_empty());
        if !cur.is_empty() && cur.len() + sep + one.len() > max_bytes {
            out.push(std::mem::replace(&mut cur, Vec::with_capacity(max_bytes)));
        }
        if !cur.is_empty() {
            cur.push(b'\n');
        }
        cur.extend_from_slice(&one);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One full datagram of consecutive series starting at `first_series` (so the types cycle
/// `c g ms s`), filled until the next line would exceed `max_bytes`.
pub fn full_datagram(prefix: &str, shape: Shape, max_bytes: usize, first_series: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(max_bytes);
    let mut one = Vec::with_capacity(64);
    for j in 0u32.. {
        one.clear();
        let series = first_series.wrapping_add(j);
        push_line(&mut one, prefix, series, shape, mix(u64::from(series)));
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + one.len() > max_bytes {
            break;
        }
        if sep == 1 {
            out.push(b'\n');
        }
        out.extend_from_slice(&one);
    }
    out
}

/// Every series in `0..series` exactly once, in a pseudo-random order fixed by `seed`
/// (Fisher-Yates over SplitMix64), each with its own value draw.
pub fn shuffled(series: u32, seed: u64) -> Vec<(u32, u64)> {
    let mut order: Vec<u32> = (0..series).collect();
    for i in (1..order.len()).rev() {
        let j = (mix(seed ^ i as u64) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
        .into_iter()
        .enumerate()
        .map(|(j, s)| (s, mix(seed.wrapping_add(j as u64).wrapping_mul(GOLDEN))))
        .collect()
}

/// The flush fixture: every series in `0..series` once, except timers and sets, which get
/// `per_timer` lines each (so a timer holds that many values and a set up to that many
/// members). With `series` a multiple of 4, the four types have `series / 4` series each.
pub fn flush_picks(series: u32, per_timer: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for s in 0..series {
        let n = match kind_of(s) {
            "ms" | "s" => per_timer.max(1),
            _ => 1,
        };
        for k in 0..n {
            out.push((s, mix(u64::from(s) << 8 | u64::from(k))));
        }
    }
    out
}

/// Parses every metric line of `datagrams`, dropping anything that is not a metric (the
/// fixtures are all metrics, so nothing is dropped in practice).
pub fn parse_metrics(datagrams: &[Vec<u8>]) -> Vec<MetricLine<'_>> {
    datagrams
        .iter()
        .flat_map(|d| lines(d))
        .filter_map(|l| parse_metric(l).ok())
        .collect()
}

/// Number of timer values `lines` add to an aggregator (for draining before its cap).
pub fn timer_values(lines: &[MetricLine<'_>]) -> usize {
    lines
        .iter()
        .filter(|l| {
            matches!(
                l.kind,
                MetricKind::Timer | MetricKind::Histogram | MetricKind::Distribution
            )
        })
        .map(|l| l.values().count())
        .sum()
}

/// The context every benched line arrives with: a sender host and the DogStatsD dialect.
pub fn context(now_ns: u64) -> LineContext<'static> {
    LineContext {
        host: HostSource::Sender("10.0.0.1"),
        dialect: GaugeDialect::Dogstatsd,
        now_ns,
        scope: 0,
    }
}

/// An aggregator with room for `max_series` series and `max_timer_values` timer values.
pub fn aggregator(max_series: usize, max_timer_values: usize) -> IntervalAggregator {
    IntervalAggregator::new(HASH_SEED, 64, max_series, max_timer_values)
}

/// Ingests every line; returns how many were rejected (0 when the caps fit the fixture).
pub fn ingest_all(agg: &mut IntervalAggregator, lines: &[MetricLine<'_>], now_ns: u64) -> usize {
    let cx = context(now_ns);
    lines.iter().filter(|l| agg.ingest(l, cx).is_err()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::statsd::{parse_message, Message};

    #[test]
    fn full_datagrams_fit_and_parse() {
        for (shape, lo, hi) in [(Shape::Plain, 40, 50), (Shape::Tagged, 22, 28)] {
            let d = full_datagram(APP_PREFIX, shape, DATAGRAM_BYTES, 12_000);
            assert!(d.len() <= DATAGRAM_BYTES && d.len() > DATAGRAM_BYTES - 70);
            let n = lines(&d).count();
            assert!((lo..=hi).contains(&n), "{shape:?}: {n} lines");
            for l in lines(&d) {
                assert!(matches!(parse_message(l), Ok(Message::Metric(_))));
            }
        }
    }

    #[test]
    fn lines_match_the_loadgen_shape() {
        let lg = LOADGEN_PREFIX;
        assert_eq!(line(lg, 120, Shape::Plain, 0), b"lg.m120:1|c");
        assert_eq!(
            line(lg, 12, Shape::Tagged, 0),
            b"lg.m12:1|c|#env:prod,svc:s12,az:z0"
        );
        assert_eq!(line(lg, 1, Shape::Plain, 5 | 7 << 20), b"lg.m1:5.07|g");
        assert_eq!(line(lg, 2, Shape::Plain, 5 | 7 << 20), b"lg.m2:5.007|ms");
        assert_eq!(line(lg, 3, Shape::Plain, 142), b"lg.m3:u42|s");
    }

    #[test]
    fn shuffled_is_a_permutation() {
        let mut s: Vec<u32> = shuffled(1000, 9).into_iter().map(|(s, _)| s).collect();
        assert_ne!(s, (0..1000).collect::<Vec<_>>());
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn packed_fixtures_ingest_without_rejects() {
        let d = pack(
            flush_picks(400, 5),
            LOADGEN_PREFIX,
            Shape::Tagged,
            DATAGRAM_BYTES,
        );
        let parsed = parse_metrics(&d);
        assert_eq!(parsed.len(), 100 * 2 + 200 * 5);
        assert_eq!(timer_values(&parsed), 500);
        let mut agg = aggregator(1000, 1000);
        assert_eq!(ingest_all(&mut agg, &parsed, 1), 0);
        assert_eq!(agg.series(), 400);
    }
}
