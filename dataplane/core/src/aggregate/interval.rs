//! Per-shard partial aggregates for the current flush interval.
//!
//! Threading: owned by one shard, touched only by its ingest loop; drained by its flush task.
//! Memory is bounded by `max_series` (distinct series per interval) and `max_timer_values`
//! (buffered timer samples); lines over either cap are rejected with
//! [`LineError::SeriesLimit`] / [`LineError::TimerValuesLimit`] and counted by the caller.

use super::key::{member_hash, HostSource, KeyBuilder, SeriesId};
use super::{owner_of, Entry};
use crate::statsd::{LineError, MetricKind, MetricLine};
use hashbrown::hash_table::Entry as Slot;
use hashbrown::{HashSet, HashTable};

/// How a signed gauge value (`+3|g`, `-3|g`) is read, per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GaugeDialect {
    /// DogStatsD and gostatsd: a sign is part of the value, which is set.
    #[default]
    Dogstatsd,
    /// Etsy statsd: a signed value adjusts the current value.
    Etsy,
}

/// A gauge's partial for one interval on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GaugePartial {
    /// Last absolute value seen this interval.
    pub abs: Option<f64>,
    /// When `abs` was seen (monotonic nanoseconds), to order shards' values.
    pub abs_at: u64,
    /// Sum of deltas seen after `abs` (or this interval, if there is no `abs`).
    pub delta: f64,
    /// Deltas of other shards' partials that saw no absolute value, merged in by
    /// [`Partials::absorb`]: they apply on top of whichever absolute value wins, as in
    /// [`OwnerStore::merge`](super::OwnerStore::merge). Always 0 when `abs` is `None`
    /// (such deltas are in `delta`) and on a partial straight from an aggregator.
    pub other_delta: f64,
}

impl GaugePartial {
    /// Folds `later` (merged after `self`) into `self` exactly as [`OwnerStore`] would
    /// merge the two one after the other: the newest absolute value wins (`later` on a tie)
    /// with the deltas that followed it; deltas from partials without an absolute value
    /// always count.
    ///
    /// [`OwnerStore`]: super::OwnerStore
    pub fn absorb(&mut self, later: GaugePartial) {
        match (self.abs, later.abs) {
            (None, None) => self.delta += later.delta + later.other_delta,
            (Some(_), None) => self.other_delta += later.delta + later.other_delta,
            (None, Some(_)) => {
                let free = self.delta + self.other_delta;
                *self = later;
                self.other_delta += free;
            }
            (Some(_), Some(_)) => {
                let other = self.other_delta + later.other_delta;
                if later.abs_at >= self.abs_at {
                    *self = later;
                }
                self.other_delta = other;
            }
        }
    }
}

/// A timer's partial: raw values and the sample-rate-scaled count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerPartial {
    /// Raw values in arrival order.
    pub values: Vec<f64>,
    /// Sum of `1/rate` over the values.
    pub sampled_count: f64,
}

/// Distinct set members, stored as their 64-bit hashes ([`member_hash`],
/// the same in every process, so forwarders' sets union exactly). Member hashes use a fixed
/// seed that anyone can compute, so the table hashes them again with a per-table random key:
/// members chosen to collide in the table's buckets cannot degrade it (hash flooding).
pub type MemberSet = HashSet<u64, foldhash::fast::RandomState>;

/// A set's partial: hashes of the distinct members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetPartial {
    /// 64-bit hashes of the members (collisions are negligible at set sizes seen in statsd).
    pub members: MemberSet,
}

/// Partial aggregates drained from a shard at a flush, all for one owner.
#[derive(Debug, Default)]
pub struct Partials {
    /// Counter sums (already scaled by 1/rate).
    pub counters: Vec<Entry<f64>>,
    /// Gauge partials.
    pub gauges: Vec<Entry<GaugePartial>>,
    /// Timer partials (timers, histograms, distributions).
    pub timers: Vec<Entry<TimerPartial>>,
    /// Set partials.
    pub sets: Vec<Entry<SetPartial>>,
}

impl Partials {
    /// Merges `other` into `self`, one entry per series (same `hash` and `check`): counters
    /// summed, gauges as [`GaugePartial::absorb`] (the newest absolute value wins, `other`'s on
    /// a tie), timer values appended and counts added, sets unioned, line counts added.
    /// Entries new to `self` are moved, not copied. The result merges into an
    /// [`OwnerStore`](super::OwnerStore) exactly as `self` then `other` would have.
    pub fn absorb(&mut self, other: Partials) {
        absorb_entries(&mut self.counters, other.counters, |a, b| *a += b);
        absorb_entries(&mut self.gauges, other.gauges, GaugePartial::absorb);
        absorb_entries(&mut self.timers, other.timers, |a, b| {
            a.values.extend_from_slice(&b.values);
            a.sampled_count += b.sampled_count;
        });
        absorb_entries(&mut self.sets, other.sets, |a, b| {
            if a.members.len() < b.members.len() {
                let small = std::mem::replace(&mut a.members, b.members);
                a.members.extend(small);
            } else {
                a.members.extend(b.members);
            }
        });
    }

    /// Number of series in this part.
    pub fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.timers.len() + self.sets.len()
    }
    /// Whether this part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn absorb_entries<V>(
    into: &mut Vec<Entry<V>>,
    from: Vec<Entry<V>>,
    mut merge: impl FnMut(&mut V, V),
) {
    if from.is_empty() {
        return;
    }
    if into.is_empty() {
        *into = from;
        return;
    }
    // Index of `into` by series id; entries of one table never repeat a series.
    let mut index: HashTable<usize> = HashTable::with_capacity(into.len());
    for (i, e) in into.iter().enumerate() {
        index.insert_unique(e.hash, i, |&j| into.get(j).map_or(0, |e| e.hash));
    }
    for e in from {
        let found = index
            .find(e.hash, |&j| {
                into.get(j)
                    .is_some_and(|x| x.hash == e.hash && x.check == e.check)
            })
            .copied();
        match found.and_then(|j| into.get_mut(j)) {
            Some(x) => {
                x.samples = x.samples.saturating_add(e.samples);
                merge(&mut x.val, e.val);
            }
            None => {
                let j = into.len();
                let h = e.hash;
                into.push(e);
                index.insert_unique(h, j, |&k| into.get(k).map_or(0, |e| e.hash));
            }
        }
    }
}

/// What feeding a batch of consolidated series (a forwarder's request) into an
/// [`IntervalAggregator`] did, for the caller's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedOutcome {
    /// Series folded into the aggregator.
    pub ok: u64,
    /// Series rejected, by [`LineError::index`].
    pub rejected: [u64; LineError::COUNT],
}

impl FeedOutcome {
    /// Series rejected for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Counts one series' result.
    pub fn record(&mut self, r: Result<(), LineError>) {
        match r {
            Ok(()) => self.ok += 1,
            Err(e) => {
                if let Some(slot) = self.rejected.get_mut(e.index()) {
                    *slot += 1;
                }
            }
        }
    }
}

/// Where a line came from and how to read it.
#[derive(Debug, Clone, Copy)]
pub struct LineContext<'a> {
    /// Source of the series' host.
    pub host: HostSource<'a>,
    /// Gauge sign dialect of the listener.
    pub dialect: GaugeDialect,
    /// Monotonic time of the datagram, nanoseconds.
    pub now_ns: u64,
    /// Listener scope of the series (0: aggregated across listeners; see
    /// [`super::SeriesKey::scope`]).
    pub scope: u8,
}

/// A series value already consolidated by a forwarder (gostatsd's `/v2/raw`, Switchyard's
/// [`forward`](crate::forward) format), folded in as is: nothing is scaled by a sample rate
/// again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Consolidated<'a> {
    /// A count with sample rates already applied; added to the interval's sum.
    Counter(f64),
    /// A gauge's current value; set, as an absolute value seen at `now_ns`.
    Gauge(f64),
    /// Raw timer values and their sample-rate-scaled count (which need not equal the number
    /// of values: gostatsd counts a packed line once).
    Timer {
        /// Raw values.
        values: &'a [f64],
        /// Sum of `1/rate` over the samples.
        sampled_count: f64,
    },
    /// Distinct set members.
    Set(&'a [String]),
    /// A gauge's interval partial (Etsy deltas kept): with `abs`, as the lines `abs|g` then
    /// `+delta|g` (the absolute value seen at `now_ns`); without, as `+delta|g`.
    GaugePartial {
        /// Last absolute value, if any.
        abs: Option<f64>,
        /// Sum of the deltas after `abs` (or of all deltas without one).
        delta: f64,
    },
    /// Distinct set members as their [`member_hash`]es.
    MemberHashes(&'a [u64]),
}

/// The shard-local aggregator for the current interval.
#[derive(Debug)]
pub struct IntervalAggregator {
    keys: KeyBuilder,
    counters: HashTable<Entry<f64>>,
    gauges: HashTable<Entry<GaugePartial>>,
    timers: HashTable<Entry<TimerPartial>>,
    sets: HashTable<Entry<SetPartial>>,
    series: usize,
    max_series: usize,
    timer_values: usize,
    max_timer_values: usize,
}

fn slot<'t, V: Default>(
    table: &'t mut HashTable<Entry<V>>,
    keys: &KeyBuilder,
    id: SeriesId,
    series: &mut usize,
    max_series: usize,
) -> Result<&'t mut V, LineError> {
    match table.entry(id.hash, |e| e.check == id.check, |e| e.hash) {
        Slot::Occupied(o) => {
            let e = o.into_mut();
            e.samples = e.samples.saturating_add(1);
            Ok(&mut e.val)
        }
        Slot::Vacant(v) => {
            if *series >= max_series {
                return Err(LineError::SeriesLimit);
            }
            *series += 1;
            let e = v.insert(Entry {
                hash: id.hash,
                check: id.check,
                key: keys.to_key(),
                samples: 1,
                val: V::default(),
            });
            Ok(&mut e.into_mut().val)
        }
    }
}

impl IntervalAggregator {
    /// A new aggregator. `seed` must be the same on every shard of the process.
    pub fn new(seed: u64, max_tags: usize, max_series: usize, max_timer_values: usize) -> Self {
        Self {
            keys: KeyBuilder::new(seed, max_tags),
            counters: HashTable::new(),
            gauges: HashTable::new(),
            timers: HashTable::new(),
            sets: HashTable::new(),
            series: 0,
            max_series,
            timer_values: 0,
            max_timer_values,
        }
    }

    /// The key builder (shared seed), for owners that must hash keys the same way.
    pub fn keys(&self) -> &KeyBuilder {
        &self.keys
    }

    /// Distinct series held for the current interval.
    pub fn series(&self) -> usize {
        self.series
    }

    /// Folds one parsed line into the interval's partials.
    ///
    /// # Errors
    /// [`LineError::TooManyTags`], [`LineError::SeriesLimit`] or
    /// [`LineError::TimerValuesLimit`]; the line is then not applied at all.
    pub fn ingest(&mut self, line: &MetricLine<'_>, cx: LineContext<'_>) -> Result<(), LineError> {
        let id = self
            .keys
            .build_scoped(line.name, line.tags, cx.host, cx.scope)?;
        let (keys, n, max) = (&self.keys, &mut self.series, self.max_series);
        match line.kind {
            MetricKind::Counter => {
                let sum = slot(&mut self.counters, keys, id, n, max)?;
                let scale = 1.0 / line.sample_rate;
                for (v, _) in line.values() {
                    *sum += v * scale;
                }
            }
            MetricKind::Gauge => {
                let g = slot(&mut self.gauges, keys, id, n, max)?;
                for (v, signed) in line.values() {
                    if signed && cx.dialect == GaugeDialect::Etsy {
                        g.delta += v;
                    } else {
                        g.abs = Some(v);
                        g.abs_at = cx.now_ns;
                        g.delta = 0.0;
                    }
                }
            }
            MetricKind::Timer | MetricKind::Histogram | MetricKind::Distribution => {
                let count = if line.packed {
                    line.values().count()
                } else {
                    1
                };
                if self.timer_values + count > self.max_timer_values {
                    return Err(LineError::TimerValuesLimit);
                }
                let t = slot(&mut self.timers, keys, id, n, max)?;
                self.timer_values += count;
                let scale = 1.0 / line.sample_rate;
                for (v, _) in line.values() {
                    t.values.push(v);
                    t.sampled_count += scale;
                }
            }
            MetricKind::Set => {
                let member = member_hash(line.raw_values);
                let keys = &self.keys;
                let s = slot(&mut self.sets, keys, id, n, max)?;
                s.members.insert(member);
            }
        }
        Ok(())
    }

    /// Folds one consolidated series value (from a forwarder) into the interval's partials.
    /// `tags` is a comma-separated tag list, canonicalised like a line's; `cx.dialect` is not
    /// used. Counters add, gauges set, timers append their values and add their count, sets
    /// add their members: exactly what the lines the forwarder consolidated would have done
    /// here, up to the forwarder's own rounding.
    ///
    /// # Errors
    /// [`LineError::NonFiniteValue`] for a NaN or infinite value or count,
    /// [`LineError::InvalidValue`] for a negative timer count, and the errors of
    /// [`IntervalAggregator::ingest`]; the value is then not applied at all.
    pub fn ingest_consolidated(
        &mut self,
        name: &str,
        tags: &str,
        value: Consolidated<'_>,
        cx: LineContext<'_>,
    ) -> Result<(), LineError> {
        if name.is_empty() {
            return Err(LineError::EmptyName);
        }
        match value {
            Consolidated::Counter(v) | Consolidated::Gauge(v) if !v.is_finite() => {
                return Err(LineError::NonFiniteValue)
            }
            Consolidated::GaugePartial { abs, delta }
                if !delta.is_finite() || abs.is_some_and(|a| !a.is_finite()) =>
            {
                return Err(LineError::NonFiniteValue)
            }
            Consolidated::Timer {
                values,
                sampled_count,
            } => {
                if !sampled_count.is_finite() || values.iter().any(|v| !v.is_finite()) {
                    return Err(LineError::NonFiniteValue);
                }
                if sampled_count < 0.0 {
                    return Err(LineError::InvalidValue);
                }
                if self.timer_values.saturating_add(values.len()) > self.max_timer_values {
                    return Err(LineError::TimerValuesLimit);
                }
            }
            _ => {}
        }
        let id = self.keys.build_scoped(name, tags, cx.host, cx.scope)?;
        let (keys, n, max) = (&self.keys, &mut self.series, self.max_series);
        match value {
            Consolidated::Counter(v) => *slot(&mut self.counters, keys, id, n, max)? += v,
            Consolidated::Gauge(v) => {
                let g = slot(&mut self.gauges, keys, id, n, max)?;
                g.abs = Some(v);
                g.abs_at = cx.now_ns;
                g.delta = 0.0;
            }
            Consolidated::Timer {
                values,
                sampled_count,
            } => {
                let t = slot(&mut self.timers, keys, id, n, max)?;
                self.timer_values += values.len();
                t.values.extend_from_slice(values);
                t.sampled_count += sampled_count;
            }
            Consolidated::Set(members) => {
                let s = slot(&mut self.sets, keys, id, n, max)?;
                s.members.extend(members.iter().map(|m| member_hash(m)));
            }
            Consolidated::GaugePartial { abs, delta } => {
                let g = slot(&mut self.gauges, keys, id, n, max)?;
                match abs {
                    Some(a) => {
                        g.abs = Some(a);
                        g.abs_at = cx.now_ns;
                        g.delta = delta;
                    }
                    None => g.delta += delta,
                }
            }
            Consolidated::MemberHashes(members) => {
                let s = slot(&mut self.sets, keys, id, n, max)?;
                s.members.extend(members.iter().copied());
            }
        }
        Ok(())
    }

    /// Calls `f(name, lines)` for every series of the current interval (before it is
    /// drained), for the top-names statistics.
    pub fn for_each_series(&self, mut f: impl FnMut(&str, u64)) {
        fn each<V>(t: &HashTable<Entry<V>>, f: &mut impl FnMut(&str, u64)) {
            for e in t {
                f(e.key.name(), u64::from(e.samples));
            }
        }
        each(&self.counters, &mut f);
        each(&self.gauges, &mut f);
        each(&self.timers, &mut f);
        each(&self.sets, &mut f);
    }

    /// Drains the interval's partials into one [`Partials`] per owner shard (`shards` parts,
    /// indexed by owner). The tables keep their capacity for the next interval.
    pub fn drain_by_owner(&mut self, shards: usize) -> Vec<Partials> {
        let shards = shards.max(1);
        let mut parts: Vec<Partials> = (0..shards).map(|_| Partials::default()).collect();
        fn spread<V>(
            t: &mut HashTable<Entry<V>>,
            parts: &mut [Partials],
            pick: fn(&mut Partials) -> &mut Vec<Entry<V>>,
        ) {
            let n = parts.len();
            for e in t.drain() {
                if let Some(p) = parts.get_mut(owner_of(e.hash, n)) {
                    pick(p).push(e);
                }
            }
        }
        spread(&mut self.counters, &mut parts, |p| &mut p.counters);
        spread(&mut self.gauges, &mut parts, |p| &mut p.gauges);
        spread(&mut self.timers, &mut parts, |p| &mut p.timers);
        spread(&mut self.sets, &mut parts, |p| &mut p.sets);
        self.series = 0;
        self.timer_values = 0;
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statsd::parse_metric;

    fn cx(dialect: GaugeDialect) -> LineContext<'static> {
        LineContext {
            host: HostSource::Sender("h"),
            dialect,
            now_ns: 1,
            scope: 0,
        }
    }

    fn feed(
        a: &mut IntervalAggregator,
        line: &str,
        dialect: GaugeDialect,
    ) -> Result<(), LineError> {
        a.ingest(&parse_metric(line.as_bytes()).unwrap(), cx(dialect))
    }

    #[test]
    fn counters_are_scaled_by_sample_rate_without_truncation() {
        let mut a = IntervalAggregator::new(1, 64, 100, 100);
        for _ in 0..3 {
            feed(&mut a, "x:1|c|@0.3", GaugeDialect::Dogstatsd).unwrap();
        }
        let p = a.drain_by_owner(1).pop().unwrap();
        assert!(
            (p.counters[0].val - 10.0).abs() < 1e-9,
            "{}",
            p.counters[0].val
        );
    }

    #[test]
    fn etsy_dialect_tracks_deltas_after_the_last_absolute() {
        let mut a = IntervalAggregator::new(1, 64, 100, 100);
        for l in ["g:5|g", "g:+3|g", "g:-1|g"] {
            feed(&mut a, l, GaugeDialect::Etsy).unwrap();
        }
        let p = a.drain_by_owner(1).pop().unwrap();
        assert_eq!(p.gauges[0].val.abs, Some(5.0));
        assert_eq!(p.gauges[0].val.delta, 2.0);
    }

    #[test]
    fn dogstatsd_dialect_sets_signed_values() {
        let mut a = IntervalAggregator::new(1, 64, 100, 100);
        for l in ["g:5|g", "g:-3|g"] {
            feed(&mut a, l, GaugeDialect::Dogstatsd).unwrap();
        }
        let p = a.drain_by_owner(1).pop().unwrap();
        assert_eq!(p.gauges[0].val.abs, Some(-3.0));
        assert_eq!(p.gauges[0].val.delta, 0.0);
    }

    #[test]
    fn packed_timer_values_are_all_counted() {
        let mut a = IntervalAggregator::new(1, 64, 100, 100);
        feed(&mut a, "t:1:2:3|ms", GaugeDialect::Dogstatsd).unwrap();
        let p = a.drain_by_owner(1).pop().unwrap();
        assert_eq!(p.timers[0].val.values, vec![1.0, 2.0, 3.0]);
        assert_eq!(p.timers[0].val.sampled_count, 3.0);
    }

    #[test]
    fn series_cap_rejects_new_series_but_keeps_existing_ones() {
        let mut a = IntervalAggregator::new(1, 64, 2, 100);
        feed(&mut a, "a:1|c", GaugeDialect::Dogstatsd).unwrap();
        feed(&mut a, "b:1|g", GaugeDialect::Dogstatsd).unwrap();
        assert_eq!(
            feed(&mut a, "c:1|c", GaugeDialect::Dogstatsd),
            Err(LineError::SeriesLimit)
        );
        feed(&mut a, "a:1|c", GaugeDialect::Dogstatsd).unwrap();
        assert_eq!(a.series(), 2);
    }

    #[test]
    fn timer_value_cap_is_enforced() {
        let mut a = IntervalAggregator::new(1, 64, 10, 3);
        feed(&mut a, "t:1:2|ms", GaugeDialect::Dogstatsd).unwrap();
        assert_eq!(
            feed(&mut a, "t:1:2|ms", GaugeDialect::Dogstatsd),
            Err(LineError::TimerValuesLimit)
        );
        let _ = a.drain_by_owner(1);
        feed(&mut a, "t:1:2|ms", GaugeDialect::Dogstatsd).unwrap();
    }

    #[test]
    fn consolidated_values_fold_like_the_lines_they_stand_for() {
        let mut lines = IntervalAggregator::new(1, 64, 100, 100);
        for l in [
            "c:2|c|@0.5",
            "g:1|g",
            "g:-2|g",
            "t:1|ms",
            "t:2|ms|@0.5",
            "s:a|s",
            "s:b|s",
        ] {
            feed(&mut lines, l, GaugeDialect::Dogstatsd).unwrap();
        }
        let mut cons = IntervalAggregator::new(1, 64, 100, 100);
        let members = ["b".to_string(), "a".to_string()];
        for (name, v) in [
            ("c", Consolidated::Counter(4.0)),
            ("g", Consolidated::Gauge(-2.0)),
            (
                "t",
                Consolidated::Timer {
                    values: &[1.0, 2.0],
                    sampled_count: 3.0,
                },
            ),
            ("s", Consolidated::Set(&members)),
        ] {
            cons.ingest_consolidated(name, "", v, cx(GaugeDialect::Dogstatsd))
                .unwrap();
        }
        let (a, b) = (
            lines.drain_by_owner(1).pop().unwrap(),
            cons.drain_by_owner(1).pop().unwrap(),
        );
        assert_eq!(a.counters[0].val, b.counters[0].val);
        assert_eq!(a.counters[0].key, b.counters[0].key);
        assert_eq!(a.gauges[0].val, b.gauges[0].val);
        assert_eq!(a.timers[0].val, b.timers[0].val);
        assert_eq!(a.sets[0].val, b.sets[0].val);
    }

    #[test]
    fn consolidated_values_are_validated_and_capped() {
        let mut a = IntervalAggregator::new(1, 2, 100, 3);
        let c = cx(GaugeDialect::Dogstatsd);
        let timer = |values: &'static [f64], sampled_count| Consolidated::Timer {
            values,
            sampled_count,
        };
        for (name, tags, v, want) in [
            (
                "g",
                "",
                Consolidated::Gauge(f64::INFINITY),
                LineError::NonFiniteValue,
            ),
            (
                "c",
                "",
                Consolidated::Counter(f64::NAN),
                LineError::NonFiniteValue,
            ),
            ("t", "", timer(&[f64::NAN], 1.0), LineError::NonFiniteValue),
            (
                "t",
                "",
                timer(&[1.0], f64::INFINITY),
                LineError::NonFiniteValue,
            ),
            ("t", "", timer(&[1.0], -1.0), LineError::InvalidValue),
            ("t", "", timer(&[1.0; 4], 4.0), LineError::TimerValuesLimit),
            (
                "c",
                "a,b,c",
                Consolidated::Counter(1.0),
                LineError::TooManyTags,
            ),
            ("", "", Consolidated::Counter(1.0), LineError::EmptyName),
        ] {
            assert_eq!(
                a.ingest_consolidated(name, tags, v, c),
                Err(want),
                "{name} {v:?}"
            );
        }
        assert_eq!(a.series(), 0);
        a.ingest_consolidated("t", "", timer(&[1.0; 3], 1.0), c)
            .unwrap();
        assert_eq!(
            a.ingest_consolidated("t", "", timer(&[1.0], 1.0), c),
            Err(LineError::TimerValuesLimit)
        );
    }

    fn flushed(parts: Vec<Partials>) -> Vec<(String, f64)> {
        let mut store = crate::aggregate::OwnerStore::new(&[50.0], 0);
        for p in parts {
            store.merge(p, 1);
        }
        let mut b = crate::model::SeriesBatch::new(1, 1.0);
        store.flush(&mut b, 1);
        let mut v: Vec<(String, f64)> = b
            .iter()
            .map(|s| {
                (
                    format!(
                        "{}|{}|{}",
                        s.name(),
                        s.host(),
                        s.tags().collect::<Vec<_>>().join(",")
                    ),
                    s.value(),
                )
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }

    #[test]
    fn absorb_merges_like_the_owner_store() {
        // Three shards' partials of the same series, gauges in every absolute/delta mix.
        let shard = |now_ns: u64, ls: &[&str]| {
            let mut a = IntervalAggregator::new(1, 64, 100, 100);
            for l in ls {
                let c = LineContext {
                    now_ns,
                    ..cx(GaugeDialect::Etsy)
                };
                a.ingest(&parse_metric(l.as_bytes()).unwrap(), c).unwrap();
            }
            a.drain_by_owner(1).pop().unwrap()
        };
        let parts = || {
            vec![
                shard(
                    10,
                    &[
                        "c:1|c",
                        "g:5|g",
                        "g:+1|g",
                        "h:+2|g",
                        "t:1|ms",
                        "s:a|s",
                        "only1:1|c",
                    ],
                ),
                shard(
                    5,
                    &[
                        "c:2|c|@0.5",
                        "g:+3|g",
                        "h:7|g",
                        "t:2:3|ms",
                        "s:b|s",
                        "s:a|s",
                    ],
                ),
                shard(
                    20,
                    &[
                        "c:3|c",
                        "g:9|g",
                        "g:-1|g",
                        "h:+4|g",
                        "k:+1|g",
                        "k:+2|g",
                        "t:4|ms|@0.25",
                        "only3:u|s",
                    ],
                ),
            ]
        };
        let want = flushed(parts());
        let mut it = parts().into_iter();
        let mut merged = it.next().unwrap();
        for p in it {
            merged.absorb(p);
        }
        assert_eq!(merged.len(), 8, "one entry per series");
        let c = merged
            .counters
            .iter()
            .find(|e| e.key.name() == "c")
            .unwrap();
        assert_eq!((c.val, c.samples), (8.0, 3));
        let t = merged.timers.iter().find(|e| e.key.name() == "t").unwrap();
        assert_eq!(t.val.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(t.val.sampled_count, 7.0);
        let s = merged.sets.iter().find(|e| e.key.name() == "s").unwrap();
        assert_eq!(s.val.members.len(), 2);
        let got = flushed(vec![merged]);
        assert_eq!(got, want);
        // g: newest absolute 9 (at 20) with its -1, plus shard 2's free +3: 11.
        assert!(got.contains(&("g|h|".to_string(), 11.0)), "{got:?}");
        // h: 7 (the only absolute) plus the free deltas +2 and +4: 13.
        assert!(got.contains(&("h|h|".to_string(), 13.0)), "{got:?}");
    }

    #[test]
    fn gauge_absorb_is_order_sensitive_only_on_ties() {
        let p = |abs: Option<f64>, abs_at, delta| GaugePartial {
            abs,
            abs_at,
            delta,
            other_delta: 0.0,
        };
        let mut a = p(Some(1.0), 5, 1.0);
        a.absorb(p(Some(2.0), 5, 2.0));
        assert_eq!(
            (a.abs, a.delta, a.other_delta),
            (Some(2.0), 2.0, 0.0),
            "the later wins a tie"
        );
        let mut b = p(None, 0, 4.0);
        b.absorb(p(Some(3.0), 1, 1.0));
        b.absorb(p(Some(2.0), 0, 7.0));
        assert_eq!(
            (b.abs, b.abs_at, b.delta, b.other_delta),
            (Some(3.0), 1, 1.0, 4.0)
        );
    }

    #[test]
    fn consolidated_gauge_partials_and_member_hashes() {
        let mut a = IntervalAggregator::new(1, 64, 100, 100);
        let c = cx(GaugeDialect::Dogstatsd);
        let g = |abs, delta| Consolidated::GaugePartial { abs, delta };
        a.ingest_consolidated("g", "", g(None, 2.0), c).unwrap();
        a.ingest_consolidated("g", "", g(None, 1.0), c).unwrap();
        a.ingest_consolidated("h", "", g(Some(4.0), 1.0), c)
            .unwrap();
        a.ingest_consolidated("h", "", g(None, 2.0), c).unwrap();
        assert_eq!(
            a.ingest_consolidated("h", "", g(Some(f64::NAN), 0.0), c),
            Err(LineError::NonFiniteValue)
        );
        assert_eq!(
            a.ingest_consolidated("h", "", g(None, f64::INFINITY), c),
            Err(LineError::NonFiniteValue)
        );
        let hashes = [member_hash("a"), member_hash("b")];
        a.ingest_consolidated("s", "", Consolidated::MemberHashes(&hashes), c)
            .unwrap();
        let names = ["b".to_string(), "c".to_string()];
        a.ingest_consolidated("s", "", Consolidated::Set(&names), c)
            .unwrap();
        let p = a.drain_by_owner(1).pop().unwrap();
        let gv = |n: &str| p.gauges.iter().find(|e| e.key.name() == n).unwrap().val;
        assert_eq!((gv("g").abs, gv("g").delta), (None, 3.0));
        assert_eq!(
            (gv("h").abs, gv("h").abs_at, gv("h").delta),
            (Some(4.0), 1, 3.0)
        );
        assert_eq!(p.sets[0].val.members.len(), 3);
    }

    #[test]
    fn drain_splits_by_owner_and_resets() {
        let mut a = IntervalAggregator::new(1, 64, 10_000, 100);
        for i in 0..1000 {
            feed(&mut a, &format!("m{i}:1|c"), GaugeDialect::Dogstatsd).unwrap();
        }
        let parts = a.drain_by_owner(4);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.iter().map(Partials::len).sum::<usize>(), 1000);
        for (o, p) in parts.iter().enumerate() {
            assert!(p.counters.iter().all(|e| owner_of(e.hash, 4) == o));
        }
        assert_eq!(a.series(), 0);
        assert!(a.drain_by_owner(4).iter().all(Partials::is_empty));
    }
}
