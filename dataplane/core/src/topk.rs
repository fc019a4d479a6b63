//! Bounded-memory heavy hitters over a sliding window: which metric names (or any other
//! keys) carry the most weight, for the control plane's "top talkers" view.
//!
//! Each window is a Space-Saving summary (Metwally, Agrawal, El Abbadi, "Efficient
//! computation of frequent and top-k elements in data streams", ICDT 2005) with a fixed
//! number of counters `k`. For a stream of total weight `N` it guarantees:
//! - every key whose true weight exceeds `N / k` is tracked;
//! - a tracked key's `count` is an upper bound of its true weight, and `count - error` a
//!   lower bound (`error` is at most `N / k`).
//!
//! Summaries merge (per-shard sketches combined by the control plane) with the rule of
//! Agarwal et al., "Mergeable summaries" (PODS 2012) and Cafaro et al. (2016): a key missing
//! from one side is charged that side's minimum counter (0 when it is not full), and the
//! largest `k` results are kept; the same guarantees then hold for `N = N1 + N2`.
//!
//! The window slides by generations: [`TopK`] keeps the summary of the current window and of
//! the one before, rotating when time crosses a window boundary (boundaries are multiples of
//! the window, so sketches on different shards rotate together); [`TopK::top`] merges both,
//! covering between one and two windows. Time is passed in (`now`, a [`Duration`] since any
//! fixed origin shared by the sketches to be merged); nothing here reads a clock.
//!
//! Memory is fixed at `k` counters per generation. [`TopK::observe`] looks a key up by
//! `&str` and allocates nothing when it is already tracked; replacing the smallest counter
//! reuses the evicted key's `String` buffer (no allocation when the new key fits in it).
//! Per-shard plain data: no locks, no atomics. Emits no metrics itself.

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::time::Duration;

/// The default number of counters per generation.
pub const DEFAULT_CAPACITY: usize = 1024;

/// One heavy hitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopEntry {
    /// The key.
    pub name: String,
    /// Estimated weight: never below the true weight.
    pub count: u64,
    /// Maximum overestimation: `count - error` is never above the true weight.
    pub error: u64,
}

#[derive(Debug, Clone)]
struct Counter {
    key: String,
    count: u64,
    error: u64,
    /// Position in `SpaceSaving::heap`.
    at: usize,
}

/// A Space-Saving summary with a fixed number of counters.
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    capacity: usize,
    hasher: RandomState,
    /// Live slot ids, looked up by their key.
    index: HashTable<usize>,
    /// Slots `..live` are in use; later ones keep their key buffers for reuse.
    slots: Vec<Counter>,
    live: usize,
    /// Live slot ids, a binary min-heap by count.
    heap: Vec<usize>,
    total: u64,
}

impl SpaceSaving {
    /// An empty summary with `capacity` counters (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            hasher: RandomState::default(),
            index: HashTable::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            live: 0,
            heap: Vec::with_capacity(capacity),
            total: 0,
        }
    }

    /// The number of counters.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Total weight observed (and merged in).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Forgets everything, keeping the memory.
    pub fn clear(&mut self) {
        self.index.clear();
        self.heap.clear();
        self.live = 0;
        self.total = 0;
    }

    /// The smallest count when every counter is in use, else 0: the most weight an untracked
    /// key can have had.
    fn floor(&self) -> u64 {
        if self.live < self.capacity {
            return 0;
        }
        self.heap
            .first()
            .and_then(|&s| self.slots.get(s))
            .map_or(0, |c| c.count)
    }

    fn find(&self, hash: u64, key: &str) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&s| slots.get(s).is_some_and(|c| c.key == key))
            .copied()
    }

    /// The tracked estimate `(count, error)` for `key`.
    pub fn get(&self, key: &str) -> Option<(u64, u64)> {
        let s = self.find(self.hasher.hash_one(key), key)?;
        self.slots.get(s).map(|c| (c.count, c.error))
    }

    /// Adds `weight` to `key`.
    pub fn observe(&mut self, key: &str, weight: u64) {
        if weight == 0 {
            return;
        }
        self.total = self.total.saturating_add(weight);
        let hash = self.hasher.hash_one(key);
        if let Some(s) = self.find(hash, key) {
            if let Some(c) = self.slots.get_mut(s) {
                c.count = c.count.saturating_add(weight);
                let at = c.at;
                self.sift_down(at);
            }
            return;
        }
        if self.live < self.capacity {
            self.insert(hash, key, weight, 0);
            return;
        }
        // Replace the smallest counter: the newcomer inherits its count as possible error.
        let Some(&s) = self.heap.first() else { return };
        let old = match self.slots.get(s) {
            Some(c) => self.hasher.hash_one(c.key.as_str()),
            None => return,
        };
        if let Ok(entry) = self.index.find_entry(old, |&x| x == s) {
            entry.remove();
        }
        if let Some(c) = self.slots.get_mut(s) {
            c.key.clear();
            c.key.push_str(key);
            c.error = c.count;
            c.count = c.count.saturating_add(weight);
        }
        self.sift_down(0);
        self.index_slot(hash, s);
    }

    /// Tracks `key` in a fresh slot (there must be one free).
    fn insert(&mut self, hash: u64, key: &str, count: u64, error: u64) {
        let s = self.live;
        let at = self.heap.len();
        match self.slots.get_mut(s) {
            Some(c) => {
                c.key.clear();
                c.key.push_str(key);
                c.count = count;
                c.error = error;
                c.at = at;
            }
            None => self.slots.push(Counter {
                key: key.to_owned(),
                count,
                error,
                at,
            }),
        }
        self.live += 1;
        self.heap.push(s);
        self.sift_up(at);
        self.index_slot(hash, s);
    }

    fn index_slot(&mut self, hash: u64, s: usize) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, s, |&x| {
            slots.get(x).map_or(0, |c| hasher.hash_one(c.key.as_str()))
        });
    }

    fn count_at(&self, i: usize) -> u64 {
        self.heap
            .get(i)
            .and_then(|&s| self.slots.get(s))
            .map_or(u64::MAX, |c| c.count)
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        for k in [i, j] {
            if let Some(c) = self
                .heap
                .get(k)
                .copied()
                .and_then(|s| self.slots.get_mut(s))
            {
                c.at = k;
            }
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.count_at(parent) <= self.count_at(i) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut min = i;
            if self.count_at(l) < self.count_at(min) {
                min = l;
            }
            if self.count_at(r) < self.count_at(min) {
                min = r;
            }
            if min == i {
                break;
            }
            self.swap(i, min);
            i = min;
        }
    }

    /// The tracked keys, largest count first (ties by name).
    pub fn entries(&self) -> Vec<TopEntry> {
        let mut out: Vec<TopEntry> = self
            .slots
            .iter()
            .take(self.live)
            .map(|c| TopEntry {
                name: c.key.clone(),
                count: c.count,
                error: c.error,
            })
            .collect();
        out.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        out
    }

    /// Merges `other` into `self`: afterwards `self` summarises both streams with its own
    /// capacity (the guarantees hold for the smaller of the two capacities).
    pub fn merge(&mut self, other: &SpaceSaving) {
        let (floor, other_floor) = (self.floor(), other.floor());
        let mut all = self.entries();
        for e in &mut all {
            let (c, err) = other.get(&e.name).unwrap_or((other_floor, other_floor));
            e.count = e.count.saturating_add(c);
            e.error = e.error.saturating_add(err);
        }
        for c in other.slots.iter().take(other.live) {
            if self
                .find(self.hasher.hash_one(c.key.as_str()), &c.key)
                .is_none()
            {
                all.push(TopEntry {
                    name: c.key.clone(),
                    count: c.count.saturating_add(floor),
                    error: c.error.saturating_add(floor),
                });
            }
        }
        all.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        all.truncate(self.capacity);
        let total = self.total.saturating_add(other.total);
        self.clear();
        self.total = total;
        for e in all {
            let hash = self.hasher.hash_one(e.name.as_str());
            self.insert(hash, &e.name, e.count, e.error);
        }
    }
}

/// Why two [`TopK`]s cannot be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge top-k sketches with different windows ({ours:?} and {theirs:?})")]
pub struct WindowMismatch {
    /// This sketch's window.
    pub ours: Duration,
    /// The other sketch's window.
    pub theirs: Duration,
}

/// Heavy hitters over a sliding window of one to two `window`s: two Space-Saving generations.
#[derive(Debug, Clone)]
pub struct TopK {
    window: Duration,
    /// Index of the current window (`now / window`).
    epoch: u128,
    current: SpaceSaving,
    previous: SpaceSaving,
}

impl TopK {
    /// A sketch with `capacity` counters per generation and windows of `window` (at least
    /// 1 ns).
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self {
            window: window.max(Duration::from_nanos(1)),
            epoch: 0,
            current: SpaceSaving::new(capacity),
            previous: SpaceSaving::new(capacity),
        }
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counters per generation.
    pub fn capacity(&self) -> usize {
        self.current.capacity()
    }

    /// Total weight in the two generations.
    pub fn total(&self) -> u64 {
        self.current.total().saturating_add(self.previous.total())
    }

    fn epoch_of(&self, now: Duration) -> u128 {
        now.as_nanos() / self.window.as_nanos().max(1)
    }

    /// Rotates generations up to the window holding `now`: a window ago becomes the previous
    /// generation, anything older is forgotten. Time going backwards changes nothing.
    pub fn advance(&mut self, now: Duration) {
        self.advance_to(self.epoch_of(now));
    }

    fn advance_to(&mut self, epoch: u128) {
        if epoch <= self.epoch {
            return;
        }
        if epoch == self.epoch + 1 {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        } else {
            self.current.clear();
            self.previous.clear();
        }
        self.epoch = epoch;
    }

    /// Adds `weight` to `key` at time `now`. A `now` in an earlier window than the current one
    /// counts in the current window. No allocation when `key` is already tracked.
    pub fn observe(&mut self, now: Duration, key: &str, weight: u64) {
        self.advance(now);
        self.current.observe(key, weight);
    }

    /// The `limit` heaviest keys of the current and previous windows, heaviest first. Call
    /// [`TopK::advance`] first to drop windows that have gone by without observations.
    pub fn top(&self, limit: usize) -> Vec<TopEntry> {
        let mut both = self.current.clone();
        both.merge(&self.previous);
        let mut out = both.entries();
        out.truncate(limit);
        out
    }

    /// Merges another shard's sketch into this one, generation by generation (generations
    /// of windows both still cover; older ones of `other` are ignored).
    ///
    /// # Errors
    /// [`WindowMismatch`] if the windows differ; nothing is merged then.
    pub fn merge(&mut self, other: &TopK) -> Result<(), WindowMismatch> {
        if other.window != self.window {
            return Err(WindowMismatch {
                ours: self.window,
                theirs: other.window,
            });
        }
        self.advance_to(other.epoch);
        if other.epoch == self.epoch {
            self.current.merge(&other.current);
            self.previous.merge(&other.previous);
        } else if other.epoch + 1 == self.epoch {
            self.previous.merge(&other.current);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const W: Duration = Duration::from_secs(60);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut t = TopK::new(4, W);
        for (k, w) in [("a", 3), ("b", 1), ("a", 2), ("c", 7), ("b", 0)] {
            t.observe(secs(1), k, w);
        }
        let top = t.top(10);
        let got: Vec<_> = top
            .iter()
            .map(|e| (e.name.as_str(), e.count, e.error))
            .collect();
        assert_eq!(got, [("c", 7, 0), ("a", 5, 0), ("b", 1, 0)]);
        assert_eq!(t.top(1).len(), 1);
        assert_eq!(t.total(), 13);
    }

    #[test]
    fn eviction_charges_the_minimum_as_error() {
        let mut s = SpaceSaving::new(2);
        s.observe("a", 5);
        s.observe("b", 2);
        s.observe("c", 1); // evicts b (2): c = 3 with error 2
        assert_eq!(s.get("b"), None);
        assert_eq!(s.get("c"), Some((3, 2)));
        assert_eq!(s.get("a"), Some((5, 0)));
        s.observe("d", 1); // evicts c (3)
        assert_eq!(s.get("d"), Some((4, 3)));
        assert_eq!(s.total(), 9);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn windows_slide_by_generations() {
        let mut t = TopK::new(8, W);
        t.observe(secs(10), "old", 5);
        t.observe(secs(70), "new", 1); // next window: "old" is the previous generation
        let names = |t: &TopK| t.top(10).into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(&t), ["old", "new"]);
        t.observe(secs(30), "late", 1); // earlier window: counts in the current one
        assert_eq!(t.top(10).len(), 3);
        t.advance(secs(125)); // two windows after "old": gone; "new" is previous
        assert_eq!(names(&t), ["late", "new"]);
        t.advance(secs(10_000));
        assert!(t.top(10).is_empty());
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn merge_aligns_generations_and_rejects_other_windows() {
        let mut a = TopK::new(8, W);
        let mut b = TopK::new(8, W);
        a.observe(secs(10), "x", 1);
        b.observe(secs(10), "x", 2);
        b.observe(secs(70), "y", 4); // b is one window ahead
        a.merge(&b).unwrap();
        let got: Vec<_> = a.top(10).into_iter().map(|e| (e.name, e.count)).collect();
        assert_eq!(got, [("y".to_string(), 4), ("x".to_string(), 3)]);
        // A shard that has not rotated yet merges into the previous generation.
        let mut c = TopK::new(8, W);
        c.observe(secs(20), "x", 10);
        a.merge(&c).unwrap();
        assert_eq!(
            a.top(1)[0],
            TopEntry {
                name: "x".into(),
                count: 13,
                error: 0
            }
        );
        assert_eq!(
            a.merge(&TopK::new(8, secs(10))),
            Err(WindowMismatch {
                ours: W,
                theirs: secs(10)
            })
        );
    }

    #[test]
    fn evicted_key_buffers_are_reused() {
        let mut s = SpaceSaving::new(1);
        s.observe("a-long-key", 1);
        let ptr = s.slots[0].key.as_ptr();
        s.observe("short", 1);
        assert_eq!(s.get("short"), Some((2, 1)));
        assert_eq!(s.slots[0].key.as_ptr(), ptr);
        s.clear();
        s.observe("again", 1);
        assert_eq!(s.slots[0].key.as_ptr(), ptr);
        assert_eq!(s.get("short"), None);
    }

    /// Streams skewed towards a few keys, with weights.
    fn stream() -> impl Strategy<Value = Vec<(u8, u64)>> {
        prop::collection::vec((prop_oneof![3 => 0u8..4, 1 => 0u8..64], 1u64..5), 0..400)
    }

    fn check(top: &[TopEntry], truth: &HashMap<String, u64>, total: u64, cap: usize) {
        let listed: HashMap<&str, &TopEntry> = top.iter().map(|e| (e.name.as_str(), e)).collect();
        for (k, &n) in truth {
            if n as u128 * cap as u128 > total as u128 {
                assert!(
                    listed.contains_key(k.as_str()),
                    "{k} ({n} of {total}) missing"
                );
            }
        }
        for e in top {
            let n = truth.get(&e.name).copied().unwrap_or(0);
            assert!(e.count >= n, "{e:?} under true {n}");
            assert!(e.count - e.error <= n, "{e:?} lower bound above true {n}");
            assert!(
                e.error as u128 * cap as u128 <= total as u128,
                "{e:?} error > N/k"
            );
        }
    }

    proptest! {
        #[test]
        fn heavy_hitters_are_found_with_bounded_error(
            items in stream(), cap in 1usize..12, split in 0usize..400
        ) {
            let mut t = TopK::new(cap, W);
            let mut truth: HashMap<String, u64> = HashMap::new();
            for (i, (k, w)) in items.iter().enumerate() {
                // Two windows: the first `split` items in one, the rest in the next.
                let now = if i < split { secs(5) } else { secs(65) };
                let key = format!("k{k}");
                t.observe(now, &key, *w);
                *truth.entry(key).or_default() += w;
            }
            let total: u64 = truth.values().sum();
            prop_assert_eq!(t.total(), total);
            check(&t.top(cap), &truth, total, cap);
        }

        #[test]
        fn merged_shards_keep_the_guarantees(
            shards in prop::collection::vec(stream(), 1..4), cap in 1usize..12
        ) {
            let mut merged = TopK::new(cap, W);
            let mut truth: HashMap<String, u64> = HashMap::new();
            for items in &shards {
                let mut t = TopK::new(cap, W);
                for (k, w) in items {
                    let key = format!("k{k}");
                    t.observe(secs(5), &key, *w);
                    *truth.entry(key).or_default() += w;
                }
                merged.merge(&t).unwrap();
            }
            let total: u64 = truth.values().sum();
            prop_assert_eq!(merged.total(), total);
            check(&merged.top(cap), &truth, total, cap);
        }
    }
}
