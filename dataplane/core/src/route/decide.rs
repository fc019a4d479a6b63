//! Per-series evaluation of a [`CompiledRoutes`]: which sinks, which rules, dropped or
//! sampled out. The result is meant to be cached per series by the caller.

use super::compile::{CompiledRoutes, NamePattern, Rule};
use super::{Input, InputKind, SinkSet};
use smallvec::SmallVec;

/// What the routes decide for one series.
///
/// Rule indices refer to the [`CompiledRoutes`] that made the decision; a cached decision
/// is only valid with that table version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Sinks that receive the series.
    pub sinks: SinkSet,
    /// Sinks a matching rule would have sent to but for its `sample` (and that no other
    /// rule sends to): the ledger's `sampled_out`.
    pub sampled_out: SinkSet,
    /// The drop rule that discarded the series, if any (`sinks` is then empty).
    pub dropped_by: Option<u32>,
    /// Sinks earlier rules (or sampled-out ones) would have sent to before the drop: the
    /// ledger's `route_dropped`.
    pub dropped_from: SinkSet,
    /// Whether [`CompiledRoutes::rewrite`] changes the name or tags.
    pub rewrites: bool,
    /// Whether a `durable = true` rule sends the series somewhere: an HTTP payload holding
    /// it is answered only once it is durable at every sink it is queued for.
    pub durable: bool,
    /// Rules that applied (matched, and in their sample), in table order: per-route
    /// counters. Inline up to four.
    pub matched: SmallVec<[u32; 4]>,
}

/// Reusable buffers for [`CompiledRoutes::decide_with`], one per shard: evaluation then
/// allocates nothing once they have grown to the table's size.
#[derive(Debug, Default, Clone)]
pub struct DecideScratch {
    candidates: Vec<u32>,
    patterns: Vec<bool>,
}

/// The salted hash that places a series in or out of a rule's sample.
#[inline]
fn sample_point(series_hash: u64, salt: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&series_hash.to_le_bytes(), salt)
}

fn split_tag(tag: &str) -> (&str, &str) {
    tag.split_once(':').unwrap_or((tag, ""))
}

impl CompiledRoutes {
    /// Decides where one series goes. `name` and `tags` (`key:value` or bare `key`, in any
    /// order) are the series as it arrived; `series_hash` must be the same for the same
    /// series on every shard and across restarts (a hash of name, tags and host), as it
    /// places the series in or out of every `sample`.
    ///
    /// Allocates its buffers; the hot path keeps a [`DecideScratch`] and calls
    /// [`Self::decide_with`].
    pub fn decide(
        &self,
        input: Input<'_>,
        name: &str,
        tags: &[&str],
        series_hash: u64,
    ) -> Decision {
        self.decide_with(
            &mut DecideScratch::default(),
            input,
            name,
            tags,
            series_hash,
        )
    }

    /// [`Self::decide`] with reused buffers.
    ///
    /// Only rules indexed under the name (exact, prefix, glob/regex set), under one of the
    /// tags, or with no indexable condition are examined; they are then evaluated in table
    /// order: a `drop` rule empties the decision and stops, a `final` rule stops, a series
    /// outside a rule's `sample` skips that rule.
    pub fn decide_with(
        &self,
        scratch: &mut DecideScratch,
        input: Input<'_>,
        name: &str,
        tags: &[&str],
        series_hash: u64,
    ) -> Decision {
        let c = &mut scratch.candidates;
        c.clear();
        c.extend_from_slice(&self.always);
        if let Some(b) = self.exact.get(name) {
            c.extend_from_slice(b);
        }
        self.prefixes
            .for_each_prefix_of(name.as_bytes(), |b| c.extend_from_slice(b));
        if let Some(set) = &self.set {
            let p = &mut scratch.patterns;
            p.clear();
            p.resize(set.len(), false);
            if set.matches_read_at(p, name.as_bytes(), 0) {
                for (i, hit) in p.iter().enumerate() {
                    match self.pattern_rule.get(i) {
                        Some(&r) if *hit && r != u32::MAX => c.push(r),
                        _ => {}
                    }
                }
            }
        }
        if !self.tag_eq.is_empty() || !self.tag_key.is_empty() {
            for t in tags {
                if let Some(b) = self.tag_eq.get(*t) {
                    c.extend_from_slice(b);
                }
                if let Some(b) = self.tag_key.get(split_tag(t).0) {
                    c.extend_from_slice(b);
                }
            }
        }
        c.sort_unstable();
        c.dedup();

        let mut d = Decision::default();
        for &i in c.iter() {
            let Some(rule) = self.rules.get(i as usize) else {
                continue;
            };
            if !rule_matches(rule, &scratch.patterns, input, name, tags) {
                continue;
            }
            if let Some(below) = rule.sample_below {
                if sample_point(series_hash, rule.salt) >= below {
                    d.sampled_out = d.sampled_out.union(rule.sinks);
                    continue;
                }
            }
            d.matched.push(i);
            if rule.drop {
                d.dropped_by = Some(i);
                break;
            }
            d.sinks = d.sinks.union(rule.sinks);
            d.rewrites |= rule.rewrites();
            d.durable |= rule.durable;
            if rule.is_final {
                break;
            }
        }
        if d.dropped_by.is_some() {
            d.dropped_from = d.sinks.union(d.sampled_out);
            d.sinks = SinkSet::EMPTY;
            d.sampled_out = SinkSet::EMPTY;
            d.rewrites = false;
            d.durable = false;
        } else {
            d.sampled_out = d.sampled_out.minus(d.sinks);
        }
        d
    }
}

fn rule_matches(
    rule: &Rule,
    patterns: &[bool],
    input: Input<'_>,
    name: &str,
    tags: &[&str],
) -> bool {
    if let Some(m) = &rule.input {
        let ok = match m {
            super::compile::InputMatch::Kind(k) => *k == input.kind,
            super::compile::InputMatch::Listener(l) => **l == *input.listener,
        };
        if !ok {
            return false;
        }
    }
    if rule.exact.as_deref().is_some_and(|x| x != name)
        || rule.prefix.as_deref().is_some_and(|p| !name.starts_with(p))
        || !rule.patterns.iter().all(|p| match p {
            NamePattern::Set(i) => patterns.get(*i as usize).copied().unwrap_or(false),
            NamePattern::Own(re) => re.is_match(name.as_bytes()),
        })
    {
        return false;
    }
    rule.tags_eq.iter().all(|t| tags.contains(&&**t))
        && rule
            .has_keys
            .iter()
            .all(|k| tags.iter().any(|x| split_tag(x).0 == &**k))
        && rule.tags_match.iter().all(|(k, re)| {
            tags.iter().any(|x| {
                let (xk, xv) = split_tag(x);
                xk == &**k && re.is_match(xv)
            })
        })
}

impl InputKind {
    /// The `match.input` spelling of this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            InputKind::Statsd => "statsd",
            InputKind::Http => "http",
        }
    }
}
