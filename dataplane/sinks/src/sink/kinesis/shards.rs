//! The stream's open shards and their hash-key ranges, for routing series to shards, and
//! the per-shard pacing that keeps what the sink offers a shard within its write limits.
//!
//! Built from `ListShards`: shards with an ending sequence number are closed (parents of a
//! split or merge) and left out, so only open shards receive records.
//!
//! [`Pacer`]: one token bucket per shard for bytes and one for records, refilled at the
//! configured rates (by default the AWS limits, 1 MiB/s and 1000 records/s) and holding at
//! most [`BURST`] of them. A record is offered only when its shard has the tokens, so over
//! any window of `t` seconds a shard is offered at most `rate * (t + BURST)`.

use std::time::{Duration, Instant};
use switchyard_stream::kpl::parse_hash_key;

/// Tokens a shard's buckets hold at most, in seconds of its rates.
pub const BURST: Duration = Duration::from_secs(1);

/// One shard's buckets.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    bytes: f64,
    records: f64,
    at: Instant,
}

/// Per-shard token buckets (bytes and records), indexed like the [`ShardMap`].
#[derive(Debug, Clone)]
pub struct Pacer {
    bytes_per_sec: f64,
    records_per_sec: f64,
    ids: Vec<String>,
    buckets: Vec<Bucket>,
}

impl Pacer {
    /// A pacer at `bytes_per_sec` and `records_per_sec` per shard (at least 1 each), with no
    /// shard yet ([`Pacer::remap`]).
    pub fn new(bytes_per_sec: u64, records_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1) as f64,
            records_per_sec: records_per_sec.max(1) as f64,
            ids: Vec::new(),
            buckets: Vec::new(),
        }
    }

    /// Bytes a shard's bucket holds at most: the largest record worth offering a shard.
    pub fn burst_bytes(&self) -> usize {
        (self.bytes_per_sec * BURST.as_secs_f64()) as usize
    }

    fn burst_records(&self) -> f64 {
        (self.records_per_sec * BURST.as_secs_f64()).max(1.0)
    }

    /// Follows a new shard map: a shard already known keeps its buckets (a refresh never
    /// hands out a new burst); a new one (a split's or merge's child) starts full.
    pub fn remap(&mut self, map: &ShardMap, now: Instant) {
        let full = Bucket {
            bytes: self.burst_bytes() as f64,
            records: self.burst_records(),
            at: now,
        };
        let mut buckets = Vec::with_capacity(map.len());
        let mut ids = Vec::with_capacity(map.len());
        for s in &map.shards {
            let old = self.ids.iter().position(|id| *id == s.id);
            buckets.push(
                old.and_then(|i| self.buckets.get(i).copied())
                    .unwrap_or(full),
            );
            ids.push(s.id.clone());
        }
        self.buckets = buckets;
        self.ids = ids;
    }

    fn refill(&mut self, shard: usize, now: Instant) -> Option<&mut Bucket> {
        let (cap_b, cap_r) = (self.burst_bytes() as f64, self.burst_records());
        let (rb, rr) = (self.bytes_per_sec, self.records_per_sec);
        let b = self.buckets.get_mut(shard)?;
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.bytes = (b.bytes + dt * rb).min(cap_b);
        b.records = (b.records + dt * rr).min(cap_r);
        b.at = now;
        Some(b)
    }

    /// Takes the tokens of one record of `bytes` for `shard` if it has them (true), or
    /// leaves the buckets as they are (false). A record larger than a full bucket goes
    /// when the bucket is full, leaving it in debt.
    pub fn try_take(&mut self, shard: usize, bytes: usize, now: Instant) -> bool {
        let cap_b = self.burst_bytes() as f64;
        let Some(b) = self.refill(shard, now) else {
            return true;
        };
        let need = (bytes as f64).min(cap_b);
        if b.records >= 1.0 && b.bytes >= need {
            b.records -= 1.0;
            b.bytes -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// How long until `shard` has the tokens for a record of `bytes`.
    pub fn wait(&mut self, shard: usize, bytes: usize, now: Instant) -> Duration {
        let cap_b = self.burst_bytes() as f64;
        let (rb, rr) = (self.bytes_per_sec, self.records_per_sec);
        let Some(b) = self.refill(shard, now) else {
            return Duration::ZERO;
        };
        let need = (bytes as f64).min(cap_b);
        let secs = ((need - b.bytes) / rb).max((1.0 - b.records) / rr).max(0.0);
        Duration::from_secs_f64(secs)
    }
}

/// One open shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// Shard id.
    pub id: String,
    /// Starting hash key (inclusive).
    pub start: u128,
    /// Ending hash key (inclusive).
    pub end: u128,
}

/// Open shards sorted by starting hash key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<ShardRange>,
}

impl ShardMap {
    /// A map of `shards` (sorted here).
    pub fn new(mut shards: Vec<ShardRange>) -> Self {
        shards.sort_by_key(|s| s.start);
        Self { shards }
    }

    /// From `ListShards` entries: `(id, starting key, ending key, closed)`; closed shards
    /// and unparseable keys are left out.
    pub fn from_listing<'a>(
        items: impl IntoIterator<Item = (&'a str, &'a str, &'a str, bool)>,
    ) -> Self {
        Self::new(
            items
                .into_iter()
                .filter(|(_, _, _, closed)| !closed)
                .filter_map(|(id, s, e, _)| {
                    Some(ShardRange {
                        id: id.to_owned(),
                        start: parse_hash_key(s)?,
                        end: parse_hash_key(e)?,
                    })
                })
                .collect(),
        )
    }

    /// Number of open shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there is no open shard.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The shard at `i`.
    pub fn get(&self, i: usize) -> Option<&ShardRange> {
        self.shards.get(i)
    }

    /// Index of the open shard whose range holds `hash`.
    pub fn lookup(&self, hash: u128) -> Option<usize> {
        let i = self
            .shards
            .partition_point(|s| s.start <= hash)
            .checked_sub(1)?;
        self.shards.get(i).filter(|s| hash <= s.end).map(|_| i)
    }

    /// Index of the shard with id `id`.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_offered_no_more_than_its_rates_plus_the_burst() {
        let map = ShardMap::new(vec![
            ShardRange {
                id: "a".into(),
                start: 0,
                end: 10,
            },
            ShardRange {
                id: "b".into(),
                start: 11,
                end: 20,
            },
        ]);
        let t0 = Instant::now();
        let mut p = Pacer::new(10_000, 5);
        p.remap(&map, t0);
        // A full bucket: 5 records (the record limit binds first).
        let took = (0..20).filter(|_| p.try_take(0, 100, t0)).count();
        assert_eq!(took, 5);
        assert!(p.try_take(1, 100, t0), "shards have their own buckets");
        let w = p.wait(0, 100, t0);
        assert!(
            w > Duration::from_millis(150) && w <= Duration::from_millis(200),
            "{w:?}"
        );
        // Bytes bind: 4,000-byte records, 10,000 B/s.
        let t1 = t0 + Duration::from_secs(10);
        let took = (0..20).filter(|_| p.try_take(0, 4_000, t1)).count();
        assert_eq!(took, 2, "10,000 B full bucket holds two 4,000 B records");
        // Over 10 s of simulated time, at most rate * (10 + burst) bytes.
        let mut q = Pacer::new(10_000, 1_000);
        q.remap(&map, t1);
        let mut sent = 0usize;
        for ms in 0..10_000u64 {
            let now = t1 + Duration::from_millis(ms);
            while q.try_take(0, 1_000, now) {
                sent += 1_000;
            }
        }
        assert!(sent <= 10_000 * 11, "{sent}");
        assert!(sent >= 10_000 * 10, "paced, not starved: {sent}");
        // A refresh keeps known shards' buckets (empty now) and fills new ones.
        let later = t1 + Duration::from_millis(10_000);
        let map2 = ShardMap::new(vec![
            ShardRange {
                id: "a".into(),
                start: 0,
                end: 10,
            },
            ShardRange {
                id: "c".into(),
                start: 11,
                end: 20,
            },
        ]);
        q.remap(&map2, later);
        assert!(!q.try_take(0, 5_000, later), "no new burst on a refresh");
        assert!(q.try_take(1, 5_000, later), "a new shard starts full");
    }

    #[test]
    fn closed_parents_are_skipped_and_keys_map_to_their_range() {
        let max = u128::MAX.to_string();
        let mid = (u128::MAX / 2).to_string();
        let mid1 = (u128::MAX / 2 + 1).to_string();
        let m = ShardMap::from_listing([
            ("shardId-000000000000", "0", max.as_str(), true),
            ("shardId-000000000002", mid1.as_str(), max.as_str(), false),
            ("shardId-000000000001", "0", mid.as_str(), false),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m.get(0).map(|s| s.id.as_str()),
            Some("shardId-000000000001")
        );
        assert_eq!(m.lookup(0), Some(0));
        assert_eq!(m.lookup(u128::MAX / 2), Some(0));
        assert_eq!(m.lookup(u128::MAX / 2 + 1), Some(1));
        assert_eq!(m.lookup(u128::MAX), Some(1));
        let gap = ShardMap::new(vec![ShardRange {
            id: "a".into(),
            start: 10,
            end: 20,
        }]);
        assert_eq!(gap.lookup(5), None);
        assert_eq!(gap.lookup(21), None);
        assert_eq!(gap.position("a"), Some(0));
    }
}
