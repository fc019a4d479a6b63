//! Choosing an aggregator per series: rendezvous (highest random weight) hashing.
//!
//! Each aggregator `i` has a fixed 64-bit key (from its name, or its index); a series with
//! stable hash `h` ([`SeriesKey::stable_hash`](crate::aggregate::SeriesKey::stable_hash))
//! scores `mix(h ^ key_i)` on every aggregator and goes to the highest score among those that
//! are up. So every forwarder sends one series to one aggregator (percentiles and set unions
//! stay exact), an aggregator that is down hands each of its series to that series' next
//! highest scorer (spread over all the others, not piled on a neighbour), and removing an
//! aggregator from the list moves only the series it had.

/// SplitMix64's finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed of the aggregators' keys (fixed: every forwarder must compute the same keys).
const NODE_SEED: u64 = 0x5357_5952_494e_4731; // "SWYRING1"

/// The aggregators a forwarder sends to, for rendezvous hashing. Cheap to build; immutable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorRing {
    keys: Vec<u64>,
}

impl AggregatorRing {
    /// `n` aggregators identified by their index: the same list (in the same order) must be
    /// configured on every forwarder.
    pub fn new(n: usize) -> Self {
        Self {
            keys: (0..n as u64)
                .map(|i| xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), NODE_SEED))
                .collect(),
        }
    }

    /// Aggregators identified by name (their URL): the order of the list does not matter,
    /// and adding or removing one moves only the series that it gains or had. Index `i` of
    /// [`AggregatorRing::pick`] is `names[i]`.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        Self {
            keys: names
                .iter()
                .map(|n| xxhash_rust::xxh3::xxh3_64_with_seed(n.as_ref().as_bytes(), NODE_SEED))
                .collect(),
        }
    }

    /// Number of aggregators.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no aggregator.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn score(&self, i: usize, stable_hash: u64) -> u64 {
        self.keys.get(i).map_or(0, |k| mix(stable_hash ^ k))
    }

    /// The aggregator for a series: the highest scorer among those for which `is_up(i)`
    /// holds (failover: when the first choice is down, its next highest scorer); `None` when
    /// none is up. Ties (probability 2^-64) go to the lower index. Costs one mix per
    /// aggregator.
    pub fn pick(&self, stable_hash: u64, is_up: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in 0..self.keys.len() {
            if !is_up(i) {
                continue;
            }
            let s = self.score(i, stable_hash);
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, i));
            }
        }
        best.map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{HostSource, KeyBuilder};

    fn hashes(n: usize) -> Vec<u64> {
        let mut kb = KeyBuilder::new(7, 64);
        (0..n)
            .map(|i| {
                kb.build(
                    &format!("svc.m{}", i % 97),
                    &format!("i:{i}"),
                    HostSource::Sender("h"),
                )
                .unwrap();
                kb.to_key().stable_hash()
            })
            .collect()
    }

    #[test]
    fn picks_are_stable_across_rings_and_key_builders() {
        let (a, b) = (AggregatorRing::new(5), AggregatorRing::new(5));
        let hs = hashes(1000);
        let mut other = KeyBuilder::new(99, 64);
        for (i, &h) in hs.iter().enumerate() {
            assert_eq!(a.pick(h, |_| true), b.pick(h, |_| true));
            other
                .build(
                    &format!("svc.m{}", i % 97),
                    &format!("i:{i}"),
                    HostSource::Sender("h"),
                )
                .unwrap();
            assert_eq!(other.to_key().stable_hash(), h);
        }
        assert_eq!(AggregatorRing::new(0).pick(1, |_| true), None);
        assert_eq!(a.pick(1, |_| false), None);
        assert_eq!(AggregatorRing::new(1).pick(1, |_| true), Some(0));
    }

    #[test]
    fn spreads_evenly() {
        let ring = AggregatorRing::new(4);
        let mut counts = [0usize; 4];
        for h in hashes(40_000) {
            counts[ring.pick(h, |_| true).unwrap()] += 1;
        }
        // 10 000 expected each; 5 standard deviations is about 430.
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn a_down_aggregator_moves_only_its_series_and_spreads_them() {
        let ring = AggregatorRing::new(4);
        let mut moved_to = [0usize; 4];
        for h in hashes(20_000) {
            let before = ring.pick(h, |_| true).unwrap();
            let after = ring.pick(h, |i| i != 2).unwrap();
            if before == 2 {
                assert_ne!(after, 2);
                moved_to[after] += 1;
            } else {
                assert_eq!(after, before);
            }
        }
        assert_eq!(moved_to[2], 0);
        for i in [0, 1, 3] {
            assert!(moved_to[i] > 1_300, "{moved_to:?}");
        }
    }

    #[test]
    fn removing_a_named_aggregator_moves_only_its_series() {
        let names = [
            "http://a:8080",
            "http://b:8080",
            "http://c:8080",
            "http://d:8080",
        ];
        let all = AggregatorRing::from_names(&names);
        let without_b =
            AggregatorRing::from_names(&["http://d:8080", "http://a:8080", "http://c:8080"]);
        let remaining = ["http://d:8080", "http://a:8080", "http://c:8080"];
        let mut moved = 0;
        for h in hashes(10_000) {
            let before = names[all.pick(h, |_| true).unwrap()];
            let after = remaining[without_b.pick(h, |_| true).unwrap()];
            if before == "http://b:8080" {
                moved += 1;
            } else {
                assert_eq!(before, after);
            }
        }
        assert!((2_000..3_000).contains(&moved), "{moved}");
    }
}
