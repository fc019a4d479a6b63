//! Per-shard partial aggregates for the current flush interval.
//!
//! Threading: owned by one shard, touched only by its ingest loop; drained by its flush task.
//! Memory is bounded by `max_series` (distinct series per interval) and `max_timer_values`
//! (buffered timer samples); lines over either cap are rejected with
//! [`LineError::SeriesLimit`] / [`LineError::TimerValuesLimit`] and counted by the caller.

use super::key::{HostSource, KeyBuilder, SeriesId};
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
}

/// A timer's partial: raw values and the sample-rate-scaled count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerPartial {
    /// Raw values in arrival order.
    pub values: Vec<f64>,
    /// Sum of `1/rate` over the values.
    pub sampled_count: f64,
}

/// Distinct set members, stored as their 64-bit hashes. They are already well-mixed hashes,
/// so the table does not hash them again.
pub type MemberSet = HashSet<u64, nohash_hasher::BuildNoHashHasher<u64>>;

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
    /// Number of series in this part.
    pub fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.timers.len() + self.sets.len()
    }
    /// Whether this part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// A series value already consolidated by a forwarder (gostatsd's `/v2/raw`), folded in as
/// is: nothing is scaled by a sample rate again.
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
                let member = self.keys.hash_member(line.raw_values);
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
                s.members
                    .extend(members.iter().map(|m| keys.hash_member(m)));
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
