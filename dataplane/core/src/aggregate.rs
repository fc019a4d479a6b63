//! gostatsd-compatible aggregation, split into the two halves of a thread-per-core flush.
//!
//! - [`IntervalAggregator`] (one per shard) folds every line the shard receives into partial
//!   aggregates for the current interval. Looking up an existing series costs one hash of the
//!   canonical key built in scratch space; nothing is allocated per line.
//! - At a flush the shard drains its partials, split by owner (`hash % shards`), and sends each
//!   part to its owner shard. The [`OwnerStore`] of each owner merges the parts it receives,
//!   keeps the state that outlives an interval (gauge values, idle-series expiry), computes the
//!   timer statistics and emits every series exactly once into a
//!   [`SeriesBatch`](crate::model::SeriesBatch) with gostatsd's Datadog naming.
//!
//! See `docs/COMPATIBILITY.md` for where this deliberately differs from gostatsd.

pub mod interval;
pub mod key;
pub mod store;
pub mod timer;

pub use interval::{
    Consolidated, FeedOutcome, GaugeDialect, GaugePartial, IntervalAggregator, LineContext,
    Partials,
};
pub use key::{member_hash, HostSource, KeyBuilder, SeriesId, SeriesKey};
pub use store::{FlushStats, OwnerStore, Percentile};

/// One series in a table: its cached hash, its key and its value.
#[derive(Debug, Clone)]
pub struct Entry<V> {
    /// Low half of the series id (from [`KeyBuilder`]): the bucket and the owner shard.
    pub hash: u64,
    /// High half of the series id: equality without reading the key.
    pub check: u64,
    /// Series identity.
    pub key: SeriesKey,
    /// Lines folded in this interval (for the top-names statistics).
    pub samples: u32,
    /// Aggregate.
    pub val: V,
}

/// The owner shard of a series hash.
pub fn owner_of(hash: u64, shards: usize) -> usize {
    // The high bits decide, so the owner is independent of the table's bucket choice.
    (((hash >> 32) as usize) * shards.max(1)) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_in_range_and_spreads() {
        let mut counts = [0usize; 3];
        for i in 0..30_000u64 {
            let h = foldhash::fast::FixedState::with_seed(1);
            let o = owner_of(std::hash::BuildHasher::hash_one(&h, i), 3);
            counts[o] += 1;
        }
        for c in counts {
            assert!(c > 9_000 && c < 11_000, "{counts:?}");
        }
        assert_eq!(owner_of(u64::MAX, 1), 0);
    }
}
