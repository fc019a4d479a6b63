//! The stream's open shards and their hash-key ranges, for routing series to shards.
//!
//! Built from `ListShards`: shards with an ending sequence number are closed (parents of a
//! split or merge) and left out, so only open shards receive records.

use switchyard_stream::kpl::parse_hash_key;

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
