//! Distinct series over the last hour, in bounded memory: the figure metrics vendors bill
//! by ("custom metrics" / "active time series"), estimated per sink from what the shards
//! send it.
//!
//! A [`Distinct`] is a ring of [`SLICES`] HyperLogLog sketches ([`Sketch`], from the
//! `cardinality-estimator` crate: HyperLogLog++ with exact counting up to 128 distinct
//! hashes), one per [`SLICE`] of wall-clock time. Slices are numbered by time since the Unix
//! epoch, so the counters of every shard rotate together and merge slice by slice. A series
//! is inserted as its 64-bit routing hash ([`crate::route::series_hash`]: name, tags and
//! host), already computed by the routing decision, so counting costs no extra hashing.
//!
//! [`Distinct::estimate`] merges the slices still inside the hour: the current slice and the
//! [`SLICES`]` - 1` before it, that is the series seen in the last 50 to 60 minutes (the
//! window ends on a slice boundary). Typical relative error: [`RELATIVE_ERROR`] (1.04 /
//! sqrt(2^12) for the crate's default precision 12), exact below 129 distinct series per
//! slice.
//!
//! Memory per sketch: 8 bytes up to 2 distinct hashes, a sorted array up to 128 (520 bytes),
//! then a fixed 3,092 bytes; at most [`SLICES`] sketches per counter. A slice is emptied
//! (its sketch dropped and started anew) when time enters the slice that reuses its place in
//! the ring.
//!
//! Plain data: one counter per shard and sink, no locks; the shards publish clones and the
//! control plane merges them ([`Distinct::merge_into`]). Nothing here reads a clock: `now`
//! is passed in (see [`crate::telemetry::top_clock`]). Emits no metrics itself (the control
//! plane renders `switchyard_sink_distinct_series{window="1h"}`).

use cardinality_estimator::CardinalityEstimator;
use std::time::Duration;

/// One HyperLogLog++ sketch over 64-bit series hashes (precision 12, 6-bit registers).
pub type Sketch = CardinalityEstimator<u64>;

/// The window the estimate covers.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// Slices in the window.
pub const SLICES: usize = 6;
/// The length of one slice (`WINDOW / SLICES`).
pub const SLICE: Duration = Duration::from_secs(WINDOW.as_secs() / SLICES as u64);
/// Typical (one standard deviation) relative error of an estimate past the exact range:
/// `1.04 / sqrt(2^12)`.
pub const RELATIVE_ERROR: f64 = 0.0162;

#[derive(Debug, Clone, Default)]
struct Slice {
    /// Slice number (time since the Unix epoch / [`SLICE`]); `None` before first use.
    number: Option<u64>,
    sketch: Sketch,
}

/// Distinct 64-bit hashes seen over the last [`WINDOW`], by [`SLICE`].
#[derive(Debug, Clone, Default)]
pub struct Distinct {
    slices: [Slice; SLICES],
}

fn slice_number(now: Duration) -> u64 {
    now.as_secs() / SLICE.as_secs()
}

fn place(number: u64) -> usize {
    (number % SLICES as u64) as usize
}

/// Whether slice `number` is inside the window ending in slice `current`.
fn live(number: u64, current: u64) -> bool {
    number <= current && current - number < SLICES as u64
}

impl Distinct {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one series, by its hash, at `now` (time since the Unix epoch). Allocates only
    /// when its slice's sketch grows (at most a few times per slice) or is started anew.
    #[inline]
    pub fn insert(&mut self, hash: u64, now: Duration) {
        let n = slice_number(now);
        let Some(s) = self.slices.get_mut(place(n)) else {
            return;
        };
        match s.number {
            Some(m) if m == n => {}
            // The place holds a later slice: the clock stepped back by an hour or more.
            // Count the series there rather than lose it or the later slice.
            Some(m) if m > n => {}
            _ => {
                s.number = Some(n);
                s.sketch = Sketch::new();
            }
        }
        s.sketch.insert_hash(hash);
    }

    /// Merges the slices inside the window ending at `now` into `out`.
    pub fn merge_into(&self, out: &mut Sketch, now: Duration) {
        let current = slice_number(now);
        for s in &self.slices {
            if s.number.is_some_and(|n| live(n, current)) {
                out.merge(&s.sketch);
            }
        }
    }

    /// Estimated distinct hashes in the window ending at `now`.
    pub fn estimate(&self, now: Duration) -> u64 {
        let mut all = Sketch::new();
        self.merge_into(&mut all, now);
        all.estimate() as u64
    }

    /// Merges `other` (another shard's counter) slice by slice: afterwards `self` counts
    /// what either saw. A slice of `other` older than the one `self` keeps in its place is
    /// ignored (it is out of `self`'s window).
    pub fn merge(&mut self, other: &Distinct) {
        for o in &other.slices {
            let Some(n) = o.number else { continue };
            let Some(s) = self.slices.get_mut(place(n)) else {
                continue;
            };
            match s.number {
                Some(m) if m == n => s.sketch.merge(&o.sketch),
                Some(m) if m > n => {}
                _ => s.clone_from(o),
            }
        }
    }

    /// Heap and inline bytes of the sketches.
    pub fn size_of(&self) -> usize {
        self.slices
            .iter()
            .map(|s| std::mem::size_of::<Option<u64>>() + s.sketch.size_of())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-mixed 64-bit hash of `i`, as `series_hash` would give.
    fn h(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
    }

    const T0: Duration = Duration::from_secs(1_790_000_400); // a slice boundary

    fn within(estimate: u64, truth: u64, sigmas: f64) -> bool {
        (estimate as f64 - truth as f64).abs() <= sigmas * RELATIVE_ERROR * truth as f64
    }

    #[test]
    fn estimates_many_hashes_within_the_documented_error() {
        let mut d = Distinct::new();
        for i in 0..100_000 {
            d.insert(h(i), T0 + Duration::from_secs(i % 3000));
        }
        let e = d.estimate(T0 + Duration::from_secs(3000));
        assert!(within(e, 100_000, 3.0), "estimate {e} for 100000");
        // Memory is bounded: at most SLICES full sketches.
        assert!(d.size_of() <= SLICES * 3200, "{} bytes", d.size_of());
    }

    #[test]
    fn small_counts_are_exact_and_repeats_do_not_count() {
        let mut d = Distinct::new();
        assert_eq!(d.estimate(T0), 0);
        for round in 0..2 {
            for i in 0..100 {
                d.insert(h(i), T0 + Duration::from_secs(round * 60));
            }
        }
        assert_eq!(d.estimate(T0 + Duration::from_secs(120)), 100);
    }

    #[test]
    fn repeated_hashes_do_not_double_a_large_count() {
        let mut d = Distinct::new();
        for i in 0..50_000 {
            d.insert(h(i), T0);
        }
        let once = d.estimate(T0);
        // The same series again, in later slices of the same hour.
        for i in 0..50_000 {
            d.insert(h(i), T0 + Duration::from_secs(1800));
        }
        let twice = d.estimate(T0 + Duration::from_secs(1800));
        assert!(within(once, 50_000, 3.0), "{once}");
        assert!(within(twice, 50_000, 3.0), "{twice}");
    }

    #[test]
    fn hashes_older_than_the_hour_fall_out() {
        let mut d = Distinct::new();
        for i in 0..1000 {
            d.insert(h(i), T0);
        }
        for i in 1000..1100 {
            d.insert(h(i), T0 + Duration::from_secs(1200));
        }
        let e = |secs| d.estimate(T0 + Duration::from_secs(secs));
        let all = e(3599);
        assert!(within(all, 1100, 3.0), "{all}");
        // One hour after the first slice began, it is out of the window (100 distinct
        // hashes left: counted exactly).
        assert_eq!(e(3600), 100);
        // Two hours on, nothing is left.
        assert_eq!(e(7200), 0);

        // Reusing the first slice's place empties it.
        d.insert(h(9), T0 + Duration::from_secs(3600));
        assert_eq!(d.estimate(T0 + Duration::from_secs(3600)), 101);
    }

    #[test]
    fn merging_two_shards_equals_inserting_everything_in_one() {
        let (mut a, mut b, mut one) = (Distinct::new(), Distinct::new(), Distinct::new());
        for i in 0..60_000u64 {
            let t = T0 + Duration::from_secs(i % 3600);
            // Overlapping halves: 0..40k on a, 20k..60k on b.
            if i < 40_000 {
                a.insert(h(i), t);
            }
            if i >= 20_000 {
                b.insert(h(i), t);
            }
            one.insert(h(i), t);
        }
        let now = T0 + Duration::from_secs(3599);
        let mut via_sketch = Sketch::new();
        a.merge_into(&mut via_sketch, now);
        b.merge_into(&mut via_sketch, now);
        let mut merged = a.clone();
        merged.merge(&b);
        let truth = one.estimate(now);
        assert!(within(truth, 60_000, 3.0), "{truth}");
        assert_eq!(via_sketch.estimate() as u64, truth);
        assert_eq!(merged.estimate(now), truth);
        // And a merge never counts an overlap twice.
        assert!(a.estimate(now) < truth && b.estimate(now) < truth);
    }

    #[test]
    fn merge_keeps_the_later_slice_of_a_place() {
        let (mut a, mut b) = (Distinct::new(), Distinct::new());
        a.insert(h(1), T0 + WINDOW);
        b.insert(h(2), T0);
        b.insert(h(3), T0 + WINDOW);
        a.merge(&b);
        assert_eq!(a.estimate(T0 + WINDOW), 2, "b's stale slice ignored");
    }
}
