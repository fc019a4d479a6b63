//! The lease record (KCL's `Lease`), its checkpoint, and the pure state transitions that
//! every store applies under its compare-and-set.
//!
//! Stores differ only in how they make "read, check `counter`, write" atomic; what a renew,
//! take, release, checkpoint or shard end does to a record is defined once here
//! ([`Mutation::apply`]), so the memory and file stores share it and the DynamoDB store
//! mirrors it in update expressions.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LeaseError;

/// A sequence number: an unsigned decimal of any length (Kinesis uses up to 56 digits, more
/// than `u128` holds), ordered numerically.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Parses a decimal string (leading zeros are dropped).
    ///
    /// # Errors
    /// Returns the input back if it is empty or not all ASCII digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(text.to_owned());
        }
        let trimmed = text.trim_start_matches('0');
        Ok(SequenceNumber(if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        }))
    }

    /// The canonical decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u128> for SequenceNumber {
    fn from(n: u128) -> Self {
        SequenceNumber(n.to_string())
    }
}

impl TryFrom<String> for SequenceNumber {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SequenceNumber::parse(&s).map_err(|bad| format!("not a decimal sequence number: {bad:?}"))
    }
}

impl From<SequenceNumber> for String {
    fn from(s: SequenceNumber) -> String {
        s.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Canonical (no leading zeros): a longer number is larger.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where processing of a shard resumes (KCL's extended sequence number or a sentinel).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Checkpoint {
    /// From the oldest record still retained (also where child shards start).
    TrimHorizon,
    /// From the next record written after the reader starts.
    Latest,
    /// From the first record at or after this wall-clock time (Unix milliseconds).
    AtTimestamp {
        /// Unix time in milliseconds.
        millis: u64,
    },
    /// After this record: sequence number plus sub-sequence (index inside a KPL aggregate).
    Seq {
        /// The record's sequence number.
        seq: SequenceNumber,
        /// The user record's index inside an aggregated record (0 when not aggregated).
        sub: u64,
    },
    /// The shard is closed and fully processed; its children may start.
    ShardEnd,
}

impl Checkpoint {
    /// A sequence checkpoint.
    pub fn seq(seq: impl Into<SequenceNumber>, sub: u64) -> Self {
        Checkpoint::Seq {
            seq: seq.into(),
            sub,
        }
    }

    /// True for [`Checkpoint::ShardEnd`].
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }

    /// True once a reader has made progress past the shard's start (a sequence or shard end):
    /// the test for "a child has started" before its finished parent may be deleted.
    pub fn has_progress(&self) -> bool {
        matches!(self, Checkpoint::Seq { .. } | Checkpoint::ShardEnd)
    }
}

/// A shard's inclusive hash-key range (`startingHashKey`..=`endingHashKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HashRange {
    /// First hash key of the shard.
    pub start: u128,
    /// Last hash key of the shard (inclusive).
    pub end: u128,
}

/// One lease: the right of one worker to process one shard (or partition, or log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Lease key: the shard id, or `stream:shard` when one store serves several streams.
    pub key: String,
    /// Worker holding the lease; `None` = unassigned.
    pub owner: Option<String>,
    /// Fencing counter: every mutation is a compare-and-set on it and increments it.
    pub counter: u64,
    /// Where processing resumes.
    pub checkpoint: Checkpoint,
    /// A prepared (two-phase) checkpoint, cleared by the next real checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_checkpoint: Option<Checkpoint>,
    /// Owner changes since the last checkpoint (a shard bouncing without progress).
    #[serde(default)]
    pub owner_switches: u64,
    /// Parent shards (0 normally, 1 after a split, 2 after a merge).
    #[serde(default)]
    pub parents: Vec<String>,
    /// Child shards, recorded at shard end.
    #[serde(default)]
    pub children: Vec<String>,
    /// The shard's hash-key range, for Kinesis shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_range: Option<HashRange>,
}

impl Lease {
    /// A new unowned lease with counter 0 starting at `checkpoint`.
    pub fn new(key: impl Into<String>, checkpoint: Checkpoint) -> Self {
        Lease {
            key: key.into(),
            owner: None,
            counter: 0,
            checkpoint,
            pending_checkpoint: None,
            owner_switches: 0,
            parents: Vec::new(),
            children: Vec::new(),
            hash_range: None,
        }
    }

    /// Sets the parents (at most two are kept, as in Kinesis).
    #[must_use]
    pub fn with_parents<I, S>(mut self, parents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.parents = parents.into_iter().take(2).map(Into::into).collect();
        self
    }

    /// Sets the hash-key range.
    #[must_use]
    pub fn with_hash_range(mut self, start: u128, end: u128) -> Self {
        self.hash_range = Some(HashRange { start, end });
        self
    }

    /// True if `worker` is the recorded owner.
    pub fn is_owned_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }
}

/// A change to a lease, applied as a compare-and-set on its counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Extend the holder's lease (counter + 1).
    Renew,
    /// Become the owner (counter + 1, owner switches + 1 if the owner changes).
    Take,
    /// Give the lease up (owner cleared).
    Release,
    /// Record progress: sets the checkpoint, clears the pending one, resets owner switches.
    Checkpoint(Checkpoint),
    /// Record a prepared (pending) checkpoint.
    PrepareCheckpoint(Checkpoint),
    /// The shard is finished: checkpoint `ShardEnd` and record the children.
    ShardEnd {
        /// Child shard keys to record.
        children: Vec<String>,
    },
}

impl Mutation {
    /// Operation name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Mutation::Renew => "renew",
            Mutation::Take => "take",
            Mutation::Release => "release",
            Mutation::Checkpoint(_) => "checkpoint",
            Mutation::PrepareCheckpoint(_) => "prepare_checkpoint",
            Mutation::ShardEnd { .. } => "shard_end",
        }
    }

    /// True for operations only the current owner may do (all but `Take`).
    pub fn needs_owner(&self) -> bool {
        !matches!(self, Mutation::Take)
    }

    /// Applies the mutation to `lease` on behalf of `worker`, who last saw `expected`.
    ///
    /// # Errors
    /// `Lost` (holder operations) or `Conflict` (take) when the counter is not `expected` or
    /// the owner is not `worker`; `InvalidCheckpoint` for a checkpoint that moves backwards,
    /// reopens a finished shard, or is `ShardEnd` (use [`Mutation::ShardEnd`]).
    pub fn apply(&self, lease: &Lease, worker: &str, expected: u64) -> Result<Lease, LeaseError> {
        if lease.counter != expected || (self.needs_owner() && !lease.is_owned_by(worker)) {
            let key = lease.key.clone();
            return Err(if self.needs_owner() {
                LeaseError::Lost { key }
            } else {
                LeaseError::Conflict { key }
            });
        }
        let mut next = lease.clone();
        next.counter = lease.counter + 1;
        match self {
            Mutation::Renew => {}
            Mutation::Take => {
                if !lease.is_owned_by(worker) {
                    next.owner_switches += 1;
                    next.owner = Some(worker.to_owned());
                }
            }
            Mutation::Release => next.owner = None,
            Mutation::Checkpoint(cp) | Mutation::PrepareCheckpoint(cp) => {
                check_checkpoint(lease, cp)?;
                if let Mutation::Checkpoint(_) = self {
                    next.checkpoint = cp.clone();
                    next.pending_checkpoint = None;
                    next.owner_switches = 0;
                } else {
                    next.pending_checkpoint = Some(cp.clone());
                }
            }
            Mutation::ShardEnd { children } => {
                next.checkpoint = Checkpoint::ShardEnd;
                next.pending_checkpoint = None;
                next.owner_switches = 0;
                for child in children {
                    if !next.children.contains(child) {
                        next.children.push(child.clone());
                    }
                }
            }
        }
        Ok(next)
    }
}

/// Refuses checkpoints that would lose the lease's meaning: past shard end, or backwards.
pub(crate) fn check_checkpoint(lease: &Lease, cp: &Checkpoint) -> Result<(), LeaseError> {
    let refuse = |reason| {
        Err(LeaseError::InvalidCheckpoint {
            key: lease.key.clone(),
            reason,
        })
    };
    if cp.is_shard_end() {
        return refuse("ShardEnd is set by mark_shard_end");
    }
    if lease.checkpoint.is_shard_end() {
        return refuse("shard already at ShardEnd");
    }
    if let (
        Checkpoint::Seq {
            seq: old,
            sub: old_sub,
        },
        Checkpoint::Seq { seq, sub },
    ) = (&lease.checkpoint, cp)
    {
        if (seq, sub) < (old, old_sub) {
            return refuse("sequence moves backwards");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(owner: &str, counter: u64) -> Lease {
        let mut l = Lease::new("shard-0", Checkpoint::TrimHorizon);
        l.owner = Some(owner.into());
        l.counter = counter;
        l
    }

    #[test]
    fn sequence_numbers_order_numerically_beyond_u128() {
        let big = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
            .unwrap();
        let small = SequenceNumber::parse("0000999").unwrap();
        assert_eq!(small.as_str(), "999");
        assert!(small < big);
        assert!(SequenceNumber::from(10) > SequenceNumber::from(9));
        assert!(SequenceNumber::parse("12a").is_err());
        assert!(SequenceNumber::parse("").is_err());
        assert_eq!(SequenceNumber::parse("000").unwrap().as_str(), "0");
    }

    #[test]
    fn every_mutation_increments_the_counter() {
        let l = owned("a", 7);
        for m in [
            Mutation::Renew,
            Mutation::Take,
            Mutation::Release,
            Mutation::Checkpoint(Checkpoint::seq(5, 0)),
            Mutation::PrepareCheckpoint(Checkpoint::seq(5, 0)),
            Mutation::ShardEnd { children: vec![] },
        ] {
            assert_eq!(m.apply(&l, "a", 7).unwrap().counter, 8, "{}", m.name());
        }
    }

    #[test]
    fn stale_counter_is_lost_for_holders_and_conflict_for_takers() {
        let l = owned("a", 7);
        assert!(matches!(
            Mutation::Renew.apply(&l, "a", 6),
            Err(LeaseError::Lost { .. })
        ));
        assert!(matches!(
            Mutation::Take.apply(&l, "b", 6),
            Err(LeaseError::Conflict { .. })
        ));
        // Right counter, wrong owner: a holder operation is still refused.
        assert!(matches!(
            Mutation::Checkpoint(Checkpoint::seq(1, 0)).apply(&l, "b", 7),
            Err(LeaseError::Lost { .. })
        ));
    }

    #[test]
    fn take_counts_owner_switches_and_checkpoint_resets_them() {
        let l = owned("a", 1);
        let t = Mutation::Take.apply(&l, "b", 1).unwrap();
        assert_eq!(t.owner.as_deref(), Some("b"));
        assert_eq!(t.owner_switches, 1);
        let again = Mutation::Take.apply(&t, "b", 2).unwrap();
        assert_eq!(
            again.owner_switches, 1,
            "retaking my own lease is no switch"
        );
        let p = Mutation::PrepareCheckpoint(Checkpoint::seq(3, 1))
            .apply(&again, "b", 3)
            .unwrap();
        assert_eq!(p.pending_checkpoint, Some(Checkpoint::seq(3, 1)));
        let c = Mutation::Checkpoint(Checkpoint::seq(3, 1))
            .apply(&p, "b", 4)
            .unwrap();
        assert_eq!(c.owner_switches, 0);
        assert_eq!(c.pending_checkpoint, None);
        assert_eq!(c.checkpoint, Checkpoint::seq(3, 1));
    }

    #[test]
    fn checkpoints_never_move_backwards_or_past_shard_end() {
        let mut l = owned("a", 1);
        l.checkpoint = Checkpoint::seq(100, 3);
        let back = Mutation::Checkpoint(Checkpoint::seq(100, 2)).apply(&l, "a", 1);
        assert!(matches!(back, Err(LeaseError::InvalidCheckpoint { .. })));
        assert!(Mutation::Checkpoint(Checkpoint::seq(100, 3))
            .apply(&l, "a", 1)
            .is_ok());
        let end = Mutation::ShardEnd {
            children: vec!["c1".into(), "c1".into(), "c2".into()],
        }
        .apply(&l, "a", 1)
        .unwrap();
        assert_eq!(end.children, vec!["c1".to_owned(), "c2".to_owned()]);
        assert!(matches!(
            Mutation::Checkpoint(Checkpoint::seq(200, 0)).apply(&end, "a", 2),
            Err(LeaseError::InvalidCheckpoint { .. })
        ));
        assert!(matches!(
            Mutation::Checkpoint(Checkpoint::ShardEnd).apply(&l, "a", 1),
            Err(LeaseError::InvalidCheckpoint { .. })
        ));
    }

    #[test]
    fn release_clears_owner() {
        let r = Mutation::Release.apply(&owned("a", 0), "a", 0).unwrap();
        assert_eq!(r.owner, None);
    }
}
