//! One shard's use of a [`CompiledRoutes`] snapshot: decisions cached per series, statsd
//! batches split by destination, and the per-route and per-sink routing counts.
//!
//! The cache maps a stable series hash ([`series_hash`]) to an interned [`Decision`]
//! (distinct decisions are few: one per combination of rules a series can match), so a
//! series seen before costs one hash lookup. It is bounded ([`CACHE_CAPACITY`] series,
//! [`MAX_DECISIONS`] distinct decisions): when full it is emptied at the start of the next
//! batch or payload ([`Router::begin`]) and refills, and it is emptied when a new table is
//! installed ([`Router::install`]).

use super::compile::CompiledRoutes;
use super::decide::{DecideScratch, Decision};
use super::rewrite::Rewrite;
use super::{Input, InputKind, SinkSet};
use crate::model::SeriesBatch;
use crate::telemetry::{RouteCounters, SinkEnqueueCounters};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Most series whose decision a router keeps.
pub const CACHE_CAPACITY: usize = 1 << 20;
/// Most distinct decisions a router interns.
pub const MAX_DECISIONS: usize = 1 << 14;

/// Salt separating the HTTP intake's cache entries from statsd's for the same series (a
/// rule may match on the input).
const HTTP_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// The hash that identifies a series for routing: stable across shards and restarts, and
/// independent of tag order (statsd and HTTP series with the same name, tags and host get
/// the same hash, so a `sample` picks the same series from both).
pub fn series_hash<'a>(name: &str, tags: impl IntoIterator<Item = &'a str>, host: &str) -> u64 {
    use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};
    let tags = tags
        .into_iter()
        .fold(0u64, |acc, t| acc.wrapping_add(xxh3_64(t.as_bytes())));
    xxh3_64_with_seed(name.as_bytes(), xxh3_64_with_seed(host.as_bytes(), tags))
}

/// The destinations of one flushed statsd batch.
#[derive(Debug, Default)]
pub struct RoutedBatch {
    /// One batch per distinct non-empty sink set, with the series routed there (renamed
    /// and retagged where a route says so). The original batch when every series goes to
    /// the same sinks unchanged.
    pub groups: Vec<(SinkSet, Arc<SeriesBatch>)>,
}

/// A shard's router: the current table, the decision cache, reused buffers and the
/// per-rule counts since the last [`Router::drain_route_counts`].
#[derive(Debug)]
pub struct Router {
    routes: Arc<CompiledRoutes>,
    scratch: DecideScratch,
    rewrite: Rewrite,
    decisions: Vec<Decision>,
    interned: HashMap<Decision, u32, foldhash::fast::FixedState>,
    cache: HashMap<u64, u32, nohash_hasher::BuildNoHashHasher<u64>>,
    rule_counts: Vec<RouteCounters>,
    per_record: Vec<u32>,
    batch_series: Vec<(u64, u32)>,
}

impl Router {
    /// A router over `routes`.
    pub fn new(routes: Arc<CompiledRoutes>) -> Self {
        let rules = routes.rule_count();
        Self {
            routes,
            scratch: DecideScratch::default(),
            rewrite: Rewrite::default(),
            decisions: Vec::new(),
            interned: HashMap::default(),
            cache: HashMap::default(),
            rule_counts: vec![RouteCounters::default(); rules],
            per_record: Vec::new(),
            batch_series: Vec::new(),
        }
    }

    /// The table in use.
    pub fn routes(&self) -> &Arc<CompiledRoutes> {
        &self.routes
    }

    /// Switches to another table: the cache is emptied. Per-rule counts not yet drained
    /// are kept under their rule names in `out`.
    pub fn install(
        &mut self,
        routes: Arc<CompiledRoutes>,
        out: &mut BTreeMap<String, RouteCounters>,
    ) {
        self.drain_route_counts(out);
        self.rule_counts = vec![RouteCounters::default(); routes.rule_count()];
        self.routes = routes;
        self.clear_cache();
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.interned.clear();
        self.decisions.clear();
    }

    /// Starts a batch or payload: empties the cache if it outgrew its bounds. Decision
    /// indices from [`Self::decide`] stay valid until the next `begin` or
    /// [`Self::install`] (the cache is never emptied in between, so it may pass its bounds
    /// by one batch).
    pub fn begin(&mut self) {
        if self.cache.len() >= CACHE_CAPACITY || self.decisions.len() >= MAX_DECISIONS {
            self.clear_cache();
        }
    }

    /// A cached decision by index (from [`Self::decide`]).
    pub fn decision(&self, i: u32) -> Option<&Decision> {
        self.decisions.get(i as usize)
    }

    /// The decision for one series, cached by `hash` (see [`series_hash`]) and input kind.
    pub fn decide(&mut self, input: Input<'_>, name: &str, tags: &[&str], hash: u64) -> u32 {
        let key = match input.kind {
            InputKind::Statsd => hash,
            InputKind::Http => hash ^ HTTP_SALT,
        };
        if let Some(&i) = self.cache.get(&key) {
            return i;
        }
        let d = self
            .routes
            .decide_with(&mut self.scratch, input, name, tags, hash);
        let i = match self.interned.get(&d) {
            Some(&i) => i,
            None => {
                let i = self.decisions.len() as u32;
                self.decisions.push(d.clone());
                self.interned.insert(d, i);
                i
            }
        };
        self.cache.insert(key, i);
        i
    }

    /// Applies decision `i`'s rename and tag rules to a series (as given to
    /// [`Self::decide`]): `None` when it rewrites nothing.
    pub fn rewrite(&mut self, i: u32, name: &str, tags: &[&str]) -> Option<&Rewrite> {
        let d = self.decisions.get(i as usize)?;
        self.routes
            .rewrite(d, name, tags, &mut self.rewrite)
            .then_some(&self.rewrite)
    }

    /// Counts `points` values of one series (`new_series`: count it as a series too) under
    /// decision `i`: per matched rule, and per sink `route_dropped` / `sampled_out` into
    /// `sinks` (indexed like the table's sinks).
    pub fn account(
        &mut self,
        i: u32,
        points: u64,
        new_series: bool,
        sinks: &mut [SinkEnqueueCounters],
    ) {
        let Some(d) = self.decisions.get(i as usize) else {
            return;
        };
        for &r in &d.matched {
            if let Some(c) = self.rule_counts.get_mut(r as usize) {
                c.points += points;
                c.series += u64::from(new_series);
            }
        }
        for s in d.dropped_from.iter() {
            if let Some(c) = sinks.get_mut(s) {
                c.values_route_dropped += points;
            }
        }
        for s in d.sampled_out.iter() {
            if let Some(c) = sinks.get_mut(s) {
                c.values_sampled_out += points;
            }
        }
    }

    /// Adds the per-rule counts since the last call into `out` by rule name, and resets
    /// them. Allocates only for a rule name not yet in `out`.
    pub fn drain_route_counts(&mut self, out: &mut BTreeMap<String, RouteCounters>) {
        for (i, c) in self.rule_counts.iter_mut().enumerate() {
            if c.points == 0 && c.series == 0 {
                continue;
            }
            let Some(name) = self.routes.rule_name(i) else {
                continue;
            };
            match out.get_mut(name) {
                Some(e) => {
                    e.points += c.points;
                    e.series += c.series;
                }
                None => {
                    out.insert(name.to_string(), *c);
                }
            }
            *c = RouteCounters::default();
        }
    }

    /// Routes one flushed statsd batch: decides each series (by base name, tags and host;
    /// input `statsd`, and the listener of its scope: `""` for series aggregated across
    /// listeners), counts it ([`Self::account`]), and splits the batch by destination.
    pub fn route_batch(
        &mut self,
        batch: Arc<SeriesBatch>,
        sinks: &mut [SinkEnqueueCounters],
    ) -> RoutedBatch {
        let routes = self.routes.clone();
        self.begin();
        let mut per_record = std::mem::take(&mut self.per_record);
        per_record.clear();
        let mut batch_series = std::mem::take(&mut self.batch_series);
        batch_series.clear();
        let mut tags: Vec<&str> = Vec::new();
        let mut last = None;
        let mut cur = 0u32;
        for s in batch.iter() {
            let id = s.identity();
            let new_series = last != Some(id);
            if new_series {
                last = Some(id);
                tags.clear();
                tags.extend(s.tags());
                let scope = s.scope();
                let input = Input {
                    kind: InputKind::Statsd,
                    listener: routes.scope_listener(scope),
                };
                // The same series in another scope is another decision (and series).
                let h = scope_hash(
                    series_hash(s.base_name(), tags.iter().copied(), s.host()),
                    scope,
                );
                cur = self.decide(input, s.base_name(), &tags, h);
                batch_series.push((h, cur));
            }
            self.account(cur, 1, new_series, sinks);
            per_record.push(cur);
        }
        let first = per_record
            .first()
            .and_then(|&i| self.decision(i))
            .map_or(SinkSet::EMPTY, |d| d.sinks);
        let uniform = per_record.iter().all(|&i| {
            self.decision(i)
                .is_some_and(|d| d.sinks == first && !d.rewrites)
        });
        let mut out = RoutedBatch::default();
        if uniform {
            if !first.is_empty() {
                out.groups.push((first, batch));
            }
        } else {
            self.split(&batch, &per_record, &mut out);
        }
        self.per_record = per_record;
        self.batch_series = batch_series;
        out
    }

    /// The series of the last [`Self::route_batch`], once each: its [`series_hash`] (as
    /// computed for the decision) and the sinks it was routed to. For the per-sink distinct
    /// series counts ([`crate::distinct`]); valid until the next `route_batch`.
    pub fn batch_series(&self) -> impl Iterator<Item = (u64, SinkSet)> + '_ {
        self.batch_series.iter().map(|&(h, i)| {
            let sinks = self.decision(i).map_or(SinkSet::EMPTY, |d| d.sinks);
            (h, sinks)
        })
    }

    fn split(&mut self, batch: &SeriesBatch, per_record: &[u32], out: &mut RoutedBatch) {
        struct Group {
            set: SinkSet,
            batch: SeriesBatch,
            last: Option<(crate::model::IdentityRef, crate::model::IdentityRef)>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut tags: Vec<&str> = Vec::new();
        for (s, &i) in batch.iter().zip(per_record) {
            let Some(d) = self.decisions.get(i as usize) else {
                continue;
            };
            if d.sinks.is_empty() {
                continue;
            }
            let g = match groups.iter().position(|g| g.set == d.sinks) {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        set: d.sinks,
                        batch: SeriesBatch::new(batch.timestamp, batch.interval),
                        last: None,
                    });
                    groups.len() - 1
                }
            };
            let Some(g) = groups.get_mut(g) else {
                continue;
            };
            let src = s.identity();
            let id = match g.last {
                Some((from, to)) if from == src => to,
                _ => {
                    tags.clear();
                    tags.extend(s.tags());
                    let to = if self
                        .routes
                        .rewrite(d, s.base_name(), &tags, &mut self.rewrite)
                    {
                        g.batch
                            .identity(self.rewrite.name(), self.rewrite.tags(), s.host())
                    } else {
                        g.batch
                            .identity(s.base_name(), tags.iter().copied(), s.host())
                    };
                    g.last = Some((src, to));
                    to
                }
            };
            g.batch.push(id, s.suffix(), s.kind(), s.value());
        }
        out.groups = groups
            .into_iter()
            .map(|g| (g.set, Arc::new(g.batch)))
            .collect();
    }
}

/// A series hash in listener scope `scope` (unchanged in scope 0).
fn scope_hash(h: u64, scope: u8) -> u64 {
    if scope == 0 {
        h
    } else {
        (h ^ u64::from(scope)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeriesType;
    use crate::route::{compile, RouteTable};

    fn table(toml_routes: &str) -> Arc<CompiledRoutes> {
        #[derive(serde::Deserialize)]
        struct T {
            routes: Vec<crate::route::RouteConfig>,
        }
        let t: T = toml::from_str(toml_routes).unwrap();
        let t = RouteTable {
            version: "1".into(),
            routes: t.routes,
        };
        Arc::new(compile(&t, &["new", "old", "trial"], &[] as &[&str]).unwrap())
    }

    fn batch(series: &[(&str, &[&str])]) -> Arc<SeriesBatch> {
        let mut b = SeriesBatch::new(100, 10.0);
        for (name, tags) in series {
            let id = b.identity(name, tags.iter().copied(), "h");
            b.push(id, "", SeriesType::Rate, 1.0);
            b.push(id, ".count", SeriesType::Gauge, 10.0);
        }
        Arc::new(b)
    }

    fn names(b: &SeriesBatch) -> Vec<String> {
        b.iter()
            .map(|s| format!("{}{}", s.name(), s.tags().collect::<Vec<_>>().join(",")))
            .collect()
    }

    #[test]
    fn uniform_batches_are_passed_through_and_mixed_ones_split_and_renamed() {
        let r = table(
            r#"
[[routes]]
name = "all"
to = ["old"]
[[routes]]
name = "co"
match = { name_prefix = "checkout." }
to = ["new"]
rename = { prefix = "checkout.", to = "shop." }
add_tags = { via = "sy" }
[[routes]]
name = "nodebug"
match = { name_glob = "debug.*" }
drop = true
"#,
        );
        let mut router = Router::new(r);
        let mut sinks = vec![SinkEnqueueCounters::default(); 3];
        let b = batch(&[("a", &["x:1"]), ("b", &[])]);
        let out = router.route_batch(b.clone(), &mut sinks);
        assert_eq!(out.groups.len(), 1);
        assert_eq!(out.groups[0].0, SinkSet(0b10));
        assert!(
            Arc::ptr_eq(&out.groups[0].1, &b),
            "passed through, not copied"
        );

        let b = batch(&[("a", &[]), ("checkout.pay", &["x:1"]), ("debug.q", &[])]);
        let out = router.route_batch(b, &mut sinks);
        let mut g = out.groups;
        g.sort_by_key(|x| x.0 .0);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!(g[0].0, SinkSet(0b10));
        assert_eq!(names(&g[0].1), vec!["a", "a.count"]);
        assert_eq!(g[1].0, SinkSet(0b11));
        assert_eq!(
            names(&g[1].1),
            vec!["shop.payvia:sy,x:1", "shop.pay.countvia:sy,x:1"]
        );
        let series: Vec<(u64, SinkSet)> = router.batch_series().collect();
        assert_eq!(
            series,
            vec![
                (series_hash("a", [], "h"), SinkSet(0b10)),
                (series_hash("checkout.pay", ["x:1"], "h"), SinkSet(0b11)),
                (series_hash("debug.q", [], "h"), SinkSet::EMPTY),
            ],
            "each series once, with the hash it was decided by and its sinks"
        );
        // debug.q: dropped from `old` (which `all` sent it to), 2 values.
        assert_eq!(sinks[1].values_route_dropped, 2);
        assert_eq!(sinks[0].values_route_dropped, 0);
        let mut counts = BTreeMap::new();
        router.drain_route_counts(&mut counts);
        assert_eq!(
            counts["all"],
            RouteCounters {
                points: 10,
                series: 5
            }
        );
        assert_eq!(
            counts["co"],
            RouteCounters {
                points: 2,
                series: 1
            }
        );
        assert_eq!(
            counts["nodebug"],
            RouteCounters {
                points: 2,
                series: 1
            }
        );
        router.drain_route_counts(&mut counts);
        assert_eq!(counts["all"].points, 10, "drained counts are reset");
    }

    #[test]
    fn a_sample_is_stable_and_counted_as_sampled_out() {
        let r = table(
            r#"
[[routes]]
name = "all"
to = ["old"]
[[routes]]
name = "trial"
sample = 0.1
to = ["trial"]
"#,
        );
        let mut router = Router::new(r.clone());
        let mut sinks = vec![SinkEnqueueCounters::default(); 3];
        let names: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
        let series: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
        let b = batch(&series);
        let out = router.route_batch(b.clone(), &mut sinks);
        let trial: Vec<String> = out
            .groups
            .iter()
            .filter(|g| g.0.contains(2))
            .flat_map(|g| g.1.iter().map(|s| s.name()))
            .collect();
        let n = trial.len() / 2;
        assert!((150..=250).contains(&n), "{n} of 2000 series sampled");
        assert_eq!(sinks[2].values_sampled_out, (4000 - trial.len()) as u64);
        // The same series again, from a fresh router (another shard, a restart): the same
        // ones.
        let mut again = Router::new(r);
        let out2 = again.route_batch(b, &mut sinks);
        let trial2: Vec<String> = out2
            .groups
            .iter()
            .filter(|g| g.0.contains(2))
            .flat_map(|g| g.1.iter().map(|s| s.name()))
            .collect();
        assert_eq!(trial, trial2);
    }

    #[test]
    fn indices_stay_valid_within_a_batch_past_the_bounds() {
        let mut router = Router::new(table("[[routes]]\nname = \"a\"\nto = [\"old\"]\n"));
        router.decisions = vec![Decision::default(); MAX_DECISIONS];
        let i = router.decide(
            Input {
                kind: InputKind::Http,
                listener: "",
            },
            "m",
            &[],
            1,
        );
        assert_eq!(router.decision(i).unwrap().sinks, SinkSet(0b10));
        router.begin();
        assert!(router.decision(i).is_none(), "emptied at the next batch");
    }

    #[test]
    fn series_hash_ignores_tag_order_only() {
        let a = series_hash("m", ["a:1", "b:2"], "h");
        assert_eq!(a, series_hash("m", ["b:2", "a:1"], "h"));
        assert_ne!(a, series_hash("m", ["a:1"], "h"));
        assert_ne!(a, series_hash("m", ["a:1", "b:2"], "g"));
        assert_ne!(a, series_hash("n", ["a:1", "b:2"], "h"));
    }

    #[test]
    fn installing_a_table_empties_the_cache_and_keeps_counts() {
        let mut router = Router::new(table("[[routes]]\nname = \"a\"\nto = [\"old\"]\n"));
        let mut sinks = vec![SinkEnqueueCounters::default(); 3];
        let b = batch(&[("x", &[])]);
        assert_eq!(
            router.route_batch(b.clone(), &mut sinks).groups[0].0,
            SinkSet(0b10)
        );
        let mut counts = BTreeMap::new();
        router.install(
            table("[[routes]]\nname = \"b\"\nto = [\"new\"]\n"),
            &mut counts,
        );
        assert_eq!(counts["a"].points, 2);
        assert_eq!(router.route_batch(b, &mut sinks).groups[0].0, SinkSet(0b01));
    }
}
