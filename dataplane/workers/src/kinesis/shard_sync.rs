//! Shard discovery (KCL's shard syncer): which leases to create for the shards `ListShards`
//! reports.
//!
//! Every shard without a lease gets one at `TrimHorizon` (so nothing written to the stream is
//! skipped), with its parents and hash range, unless the shard was already processed: a
//! lease of one of its descendants exists, or a lease names it as a parent (its own lease
//! was deleted by cleanup after its children started). Creating is `create_if_absent`, so
//! workers syncing at the same time agree. Children also get their leases from the parent's
//! reader at shard end ([`switchyard_lease::Coordinator::mark_shard_end`]); both paths
//! write the same lease.
//!
//! Metrics: none.

use std::collections::{HashMap, HashSet};
use switchyard_lease::{Checkpoint, HashRange, Lease};

/// One shard as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Shard id.
    pub id: String,
    /// `ParentShardId` and `AdjacentParentShardId`, when set.
    pub parents: Vec<String>,
    /// Hash-key range.
    pub range: Option<HashRange>,
}

/// The leases to create for `shards`, given the leases that exist.
pub fn leases_to_create(shards: &[ShardInfo], leases: &[Lease]) -> Vec<Lease> {
    let have: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
    let named_as_parent: HashSet<&str> = leases
        .iter()
        .flat_map(|l| l.parents.iter().map(String::as_str))
        .collect();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in shards {
        for p in &s.parents {
            children.entry(p.as_str()).or_default().push(s.id.as_str());
        }
    }
    // True if a descendant of `id` (in the listing) has a lease or is named as a parent.
    let processed = |id: &str| {
        let mut stack = vec![id];
        let mut seen = HashSet::new();
        while let Some(cur) = stack.pop() {
            if !seen.insert(cur) {
                continue;
            }
            if named_as_parent.contains(cur) || (cur != id && have.contains(cur)) {
                return true;
            }
            if let Some(kids) = children.get(cur) {
                stack.extend(kids.iter().copied());
            }
        }
        false
    };
    shards
        .iter()
        .filter(|s| !have.contains(s.id.as_str()) && !processed(&s.id))
        .map(|s| {
            let mut lease =
                Lease::new(s.id.clone(), Checkpoint::TrimHorizon).with_parents(s.parents.clone());
            lease.hash_range = s.range;
            lease
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| (*p).into()).collect(),
            range: Some(HashRange { start: 0, end: 9 }),
        }
    }

    fn keys(l: &[Lease]) -> Vec<&str> {
        l.iter().map(|l| l.key.as_str()).collect()
    }

    #[test]
    fn a_new_stream_gets_a_lease_per_shard_at_trim_horizon() {
        let out = leases_to_create(&[shard("s0", &[]), shard("s1", &[])], &[]);
        assert_eq!(keys(&out), ["s0", "s1"]);
        assert!(out.iter().all(|l| l.checkpoint == Checkpoint::TrimHorizon));
        assert_eq!(out[0].hash_range, Some(HashRange { start: 0, end: 9 }));
    }

    #[test]
    fn a_resharded_stream_gets_parents_and_children_with_lineage() {
        // s0 split into s2 and s3; s2 and s1 merged into s4.
        let shards = [
            shard("s0", &[]),
            shard("s1", &[]),
            shard("s2", &["s0"]),
            shard("s3", &["s0"]),
            shard("s4", &["s2", "s1"]),
        ];
        let out = leases_to_create(&shards, &[]);
        assert_eq!(keys(&out), ["s0", "s1", "s2", "s3", "s4"]);
        assert_eq!(out[4].parents, ["s2", "s1"]);
    }

    #[test]
    fn processed_shards_are_not_created_again() {
        let shards = [shard("s0", &[]), shard("s2", &["s0"]), shard("s3", &["s0"])];
        // s0 was finished and deleted by cleanup; its children have leases.
        let existing = vec![
            Lease::new("s2", Checkpoint::seq(5u128, 0)).with_parents(["s0"]),
            Lease::new("s3", Checkpoint::TrimHorizon).with_parents(["s0"]),
        ];
        assert!(leases_to_create(&shards, &existing).is_empty());
        // Grandchild leases only (s2 and s3 were deleted too): s0 is still not recreated.
        let shards = [
            shard("s0", &[]),
            shard("s2", &["s0"]),
            shard("s5", &["s2"]),
            shard("s3", &["s0"]),
        ];
        let existing = vec![Lease::new("s5", Checkpoint::TrimHorizon).with_parents(["s2"])];
        assert_eq!(keys(&leases_to_create(&shards, &existing)), ["s3"]);
    }

    #[test]
    fn existing_leases_are_left_alone() {
        let existing = vec![Lease::new("s0", Checkpoint::seq(7u128, 2))];
        let out = leases_to_create(&[shard("s0", &[]), shard("s1", &[])], &existing);
        assert_eq!(keys(&out), ["s1"]);
    }
}
