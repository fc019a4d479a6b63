//! The owner shard's persistent series state: merges partials from every shard, emits each
//! owned series once per flush with gostatsd's Datadog naming, then resets and expires.
//!
//! Emission (gostatsd `pkg/backends/datadog`):
//! - counter `k`: `k` as `rate` (sum / interval) and `k.count` as `gauge` (sum);
//! - gauge `k`: `k` as `gauge`; set `k`: `k` as `gauge` of the distinct count;
//! - timer `k`: gauges `k.lower .upper .count .mean .median .std .sum .sum_squares`, `k.count_ps`
//!   as `rate`, then per percentile `k.count_N .mean_N .sum_N .sum_squares_N .upper_N`
//!   (`lower_N` for negative N).
//!
//! A series that received nothing this interval is still emitted (counters and timers as 0,
//! gauges with their last value, sets as 0) until it has been idle for `expiry`, as gostatsd
//! does; with an expiry of 0 only series updated in the interval are emitted.
//!
//! Threading: owned by one shard's flush task; never touched by the ingest loop.

use super::interval::{GaugePartial, MemberSet, Partials, SetPartial, TimerPartial};
use super::timer;
use super::Entry;
use crate::model::{SeriesBatch, SeriesType};
use hashbrown::hash_table::Entry as Slot;
use hashbrown::HashTable;

/// A configured percentile threshold with its precomputed sub-metric suffixes.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentile {
    /// Threshold in percent; negative keeps the highest values.
    pub pct: f64,
    count: String,
    mean: String,
    sum: String,
    sum_squares: String,
    boundary: String,
}

impl Percentile {
    /// Builds the suffixes gostatsd uses: `.` in the number becomes `_` (`99.9` -> `99_9`).
    pub fn new(pct: f64) -> Self {
        let n = format!("{pct}").replace('.', "_");
        let bound = if pct >= 0.0 { "upper" } else { "lower" };
        Self {
            pct,
            count: format!(".count_{n}"),
            mean: format!(".mean_{n}"),
            sum: format!(".sum_{n}"),
            sum_squares: format!(".sum_squares_{n}"),
            boundary: format!(".{bound}_{n}"),
        }
    }
}

#[derive(Debug, Default)]
struct CounterState {
    sum: f64,
    last_update_ns: u64,
}

#[derive(Debug, Default)]
struct GaugeState {
    value: f64,
    last_update_ns: u64,
    /// Newest absolute value merged this flush, with its time.
    pending_abs: Option<(u64, f64)>,
    /// Deltas that followed `pending_abs` on its shard.
    pending_abs_delta: f64,
    /// Deltas from shards that saw no absolute value this interval.
    pending_free_delta: f64,
    touched: bool,
}

#[derive(Debug, Default)]
struct TimerState {
    values: Vec<f64>,
    sampled_count: f64,
    last_update_ns: u64,
}

#[derive(Debug, Default)]
struct SetState {
    members: MemberSet,
    last_update_ns: u64,
}

/// What a flush did, for telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Series (before sub-metric expansion) emitted.
    pub series_emitted: u64,
    /// Values written to the batch (after expansion).
    pub values_emitted: u64,
    /// Series removed as idle.
    pub series_expired: u64,
    /// Series still held after the flush.
    pub series_active: u64,
}

/// Persistent per-owner aggregation state.
#[derive(Debug)]
pub struct OwnerStore {
    counters: HashTable<Entry<CounterState>>,
    gauges: HashTable<Entry<GaugeState>>,
    timers: HashTable<Entry<TimerState>>,
    sets: HashTable<Entry<SetState>>,
    percentiles: Vec<Percentile>,
    expiry_ns: u64,
}

fn merge_into<S: Default, P>(
    table: &mut HashTable<Entry<S>>,
    parts: Vec<Entry<P>>,
    mut apply: impl FnMut(&mut S, P),
) {
    for Entry {
        hash,
        check,
        key,
        val,
        ..
    } in parts
    {
        let state = match table.entry(hash, |e| e.check == check, |e| e.hash) {
            Slot::Occupied(o) => &mut o.into_mut().val,
            Slot::Vacant(v) => {
                &mut v
                    .insert(Entry {
                        hash,
                        check,
                        key,
                        samples: 0,
                        val: S::default(),
                    })
                    .into_mut()
                    .val
            }
        };
        apply(state, val);
    }
}

impl OwnerStore {
    /// A store emitting `percentiles`, expiring series idle for longer than `expiry_ns`
    /// (0: keep only series updated in the flushed interval).
    pub fn new(percentiles: &[f64], expiry_ns: u64) -> Self {
        Self {
            counters: HashTable::new(),
            gauges: HashTable::new(),
            timers: HashTable::new(),
            sets: HashTable::new(),
            percentiles: percentiles.iter().copied().map(Percentile::new).collect(),
            expiry_ns,
        }
    }

    /// Series currently held.
    pub fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.timers.len() + self.sets.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Merges one shard's partials for this owner; `now_ns` marks the series as updated.
    pub fn merge(&mut self, p: Partials, now_ns: u64) {
        merge_into(&mut self.counters, p.counters, |s, v| {
            s.sum += v;
            s.last_update_ns = now_ns;
        });
        merge_into(&mut self.gauges, p.gauges, |s, v: GaugePartial| {
            s.touched = true;
            s.last_update_ns = now_ns;
            match v.abs {
                Some(abs) => {
                    // The newest absolute value wins; deltas that followed an older absolute
                    // on another shard cannot be ordered against it and are dropped.
                    if s.pending_abs.is_none_or(|(at, _)| v.abs_at >= at) {
                        s.pending_abs = Some((v.abs_at, abs));
                        s.pending_abs_delta = v.delta;
                    }
                    // Deltas of shards without an absolute value, pre-merged by
                    // `Partials::absorb`.
                    s.pending_free_delta += v.other_delta;
                }
                None => s.pending_free_delta += v.delta + v.other_delta,
            }
        });
        merge_into(&mut self.timers, p.timers, |s, v: TimerPartial| {
            if s.values.is_empty() {
                s.values = v.values;
            } else {
                s.values.extend_from_slice(&v.values);
            }
            s.sampled_count += v.sampled_count;
            s.last_update_ns = now_ns;
        });
        merge_into(&mut self.sets, p.sets, |s, v: SetPartial| {
            if s.members.is_empty() {
                s.members = v.members;
            } else {
                s.members.extend(v.members);
            }
            s.last_update_ns = now_ns;
        });
    }

    /// Emits every held series into `out` (whose `interval` is the flush interval in seconds),
    /// then resets interval state and removes series idle for longer than the expiry.
    pub fn flush(&mut self, out: &mut SeriesBatch, now_ns: u64) -> FlushStats {
        let interval = if out.interval > 0.0 {
            out.interval
        } else {
            1.0
        };
        let mut st = FlushStats::default();
        let before = out.len();
        for e in self.counters.iter() {
            let id = out.identity_scoped(e.key.name(), e.key.tags(), e.key.host(), e.key.scope());
            out.push(id, "", SeriesType::Rate, e.val.sum / interval);
            out.push(id, ".count", SeriesType::Gauge, e.val.sum);
            st.series_emitted += 1;
        }
        for e in self.gauges.iter_mut() {
            let g = &mut e.val;
            if g.touched {
                g.value = match g.pending_abs {
                    Some((_, abs)) => abs + g.pending_abs_delta + g.pending_free_delta,
                    None => g.value + g.pending_free_delta,
                };
                g.pending_abs = None;
                g.pending_abs_delta = 0.0;
                g.pending_free_delta = 0.0;
                g.touched = false;
            }
            let id = out.identity_scoped(e.key.name(), e.key.tags(), e.key.host(), e.key.scope());
            out.push(id, "", SeriesType::Gauge, g.value);
            st.series_emitted += 1;
        }
        for e in self.sets.iter() {
            let id = out.identity_scoped(e.key.name(), e.key.tags(), e.key.host(), e.key.scope());
            out.push(id, "", SeriesType::Gauge, e.val.members.len() as f64);
            st.series_emitted += 1;
        }
        for e in self.timers.iter_mut() {
            let t = &mut e.val;
            let id = out.identity_scoped(e.key.name(), e.key.tags(), e.key.host(), e.key.scope());
            let s = timer::stats(&mut t.values).unwrap_or_default();
            let count = (t.sampled_count + 0.5).floor();
            out.push(id, ".lower", SeriesType::Gauge, s.lower);
            out.push(id, ".upper", SeriesType::Gauge, s.upper);
            out.push(id, ".count", SeriesType::Gauge, count);
            out.push(
                id,
                ".count_ps",
                SeriesType::Rate,
                t.sampled_count / interval,
            );
            out.push(id, ".mean", SeriesType::Gauge, s.mean);
            out.push(id, ".median", SeriesType::Gauge, s.median);
            out.push(id, ".std", SeriesType::Gauge, s.std);
            out.push(id, ".sum", SeriesType::Gauge, s.sum);
            out.push(id, ".sum_squares", SeriesType::Gauge, s.sum_squares);
            for p in &self.percentiles {
                if let Some(th) = timer::threshold(&t.values, p.pct) {
                    out.push(id, &p.count, SeriesType::Gauge, th.count);
                    out.push(id, &p.mean, SeriesType::Gauge, th.mean);
                    out.push(id, &p.sum, SeriesType::Gauge, th.sum);
                    out.push(id, &p.sum_squares, SeriesType::Gauge, th.sum_squares);
                    out.push(id, &p.boundary, SeriesType::Gauge, th.boundary);
                }
            }
            st.series_emitted += 1;
        }
        st.values_emitted = (out.len() - before) as u64;
        st.series_expired = self.reset(now_ns);
        st.series_active = self.len() as u64;
        st
    }

    fn reset(&mut self, now_ns: u64) -> u64 {
        let expiry = self.expiry_ns;
        let keep = |last: u64| expiry > 0 && now_ns.saturating_sub(last) <= expiry;
        let before = self.len();
        self.counters.retain(|e| {
            e.val.sum = 0.0;
            keep(e.val.last_update_ns)
        });
        self.gauges.retain(|e| keep(e.val.last_update_ns));
        self.timers.retain(|e| {
            e.val.values.clear();
            e.val.sampled_count = 0.0;
            keep(e.val.last_update_ns)
        });
        self.sets.retain(|e| {
            e.val.members.clear();
            keep(e.val.last_update_ns)
        });
        (before - self.len()) as u64
    }
}
