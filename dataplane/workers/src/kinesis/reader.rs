//! One shard's reader (KCL's `ShardConsumer`): an OS thread that owns a [`Delivery`] and
//! reads its shard while the worker holds the shard's lease.
//!
//! 1. Blocks until every parent lease is at `ShardEnd` or gone (`can_start`), polling every
//!    [`PARENT_POLL`].
//! 2. Starts where the lease's checkpoint says: `TrimHorizon`, `Latest`, `AtTimestamp`, or
//!    `AT_SEQUENCE_NUMBER` of the checkpointed record, skipping the user records at or
//!    before its (sequence, sub-sequence).
//! 3. `GetRecords` (at most `max_records`), KPL de-aggregation, delivery of each user record
//!    (one envelope) to every `to` sink, then a checkpoint at the last delivered (sequence,
//!    sub-sequence), fenced by the lease counter. Before delivering a batch it checks that
//!    the lease is still held (not lost, stolen, released or expired locally); a delivery
//!    stops at once when the worker raises the shard's halt flag. Calls are at least
//!    [`MIN_CALL_GAP`] apart (Kinesis allows 5 `GetRecords` per shard and second).
//! 4. At the end of a closed shard (`NextShardIterator` absent) it finds the children
//!    (`ChildShards`, or `ListShards` when the server does not send them), creates their
//!    leases and checkpoints `ShardEnd` (retried while a merge is deferred).
//!
//! An expired iterator is fetched again from the last delivered position; throttling and
//! other errors back off ([`ERROR_BASE`] doubling to [`ERROR_CAP`]) and are counted.
//!
//! Metrics: [`WorkerStats`] `records_read` (Kinesis records, before de-aggregation) and
//! `read_errors`; deliveries as in [`crate::deliver`].

use super::SharedCoordinator;
use crate::deliver::{add, pause, Delivery, Outcome};
use crate::WorkerStats;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_lease::{
    Checkpoint, ChildShard, HashRange, LeaseError, SequenceNumber, ShardEndOutcome,
};
use switchyard_sinks::sink::kinesis::sdk_err;
use switchyard_stream::kpl;

/// How often a child polls its parents' leases.
pub const PARENT_POLL: Duration = Duration::from_millis(500);
/// Pause after an empty `GetRecords`.
pub const IDLE: Duration = Duration::from_millis(250);
/// Least time between two `GetRecords` calls on one shard.
pub const MIN_CALL_GAP: Duration = Duration::from_millis(200);
/// First and largest backoff after a failed call.
pub const ERROR_BASE: Duration = Duration::from_millis(200);
/// Largest backoff after a failed call.
pub const ERROR_CAP: Duration = Duration::from_secs(10);

/// Why a reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shard is finished (`ShardEnd` checkpointed; children may start).
    ShardEnded,
    /// The lease is no longer held, or the worker halted the shard.
    Halted,
    /// The worker is stopping and the shard is caught up.
    Stopped,
}

/// Where reading resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp(u64),
    /// After this user record (inclusive of it).
    After(SequenceNumber, u64),
}

impl Position {
    /// True if the user record `(seq, sub)` was already delivered.
    fn covers(&self, seq: &SequenceNumber, sub: u64) -> bool {
        match self {
            Position::After(s, n) => seq < s || (seq == s && sub <= *n),
            _ => false,
        }
    }
}

/// A user record's place, for logs.
struct At<'a>(&'a str, &'a SequenceNumber, u64);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} seq {} sub {}", self.0, self.1, self.2)
    }
}

/// One shard's reader.
pub struct ShardReader {
    /// The worker's id.
    pub worker: String,
    /// Stream name.
    pub stream: String,
    /// Shard id (= lease key).
    pub shard: String,
    /// Kinesis client.
    pub client: aws_sdk_kinesis::Client,
    /// The worker's runtime (the client's calls and the coordinator run on it).
    pub handle: tokio::runtime::Handle,
    /// The worker's coordinator.
    pub coord: SharedCoordinator,
    /// The shard's sinks.
    pub delivery: Delivery,
    /// The worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Records per `GetRecords`.
    pub max_records: i32,
    /// Raised by the worker when the lease is lost or at the abort deadline.
    pub halt: Arc<AtomicBool>,
    /// Raised at shutdown: stop once caught up.
    pub stop: Arc<AtomicBool>,
}

impl ShardReader {
    fn halted(&self) -> bool {
        self.halt.load(Ordering::Relaxed)
    }

    fn holds(&self) -> Option<Checkpoint> {
        let c = self.handle.block_on(self.coord.lock());
        c.holds(&self.shard).map(|l| l.checkpoint.clone())
    }

    /// Runs until the shard ends, the lease goes or the worker stops.
    pub fn run(mut self) -> Exit {
        let exit = self.read();
        tracing::info!(worker = %self.worker, shard = %self.shard, exit = ?exit, "shard reader stopped");
        exit
    }

    fn wait_for_parents(&self) -> bool {
        loop {
            if self.halted() || self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let ready = self.handle.block_on(async {
                let c = self.coord.lock().await;
                c.can_start(&self.shard).await
            });
            match ready {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(worker = %self.worker, shard = %self.shard, error = %e, "reading the parent leases failed")
                }
            }
            pause(PARENT_POLL, &self.halt);
        }
    }

    fn read(&mut self) -> Exit {
        if !self.wait_for_parents() {
            return Exit::Halted;
        }
        let mut pos = match self.holds() {
            None | Some(Checkpoint::ShardEnd) => return Exit::Halted,
            Some(Checkpoint::TrimHorizon) => Position::TrimHorizon,
            Some(Checkpoint::Latest) => Position::Latest,
            Some(Checkpoint::AtTimestamp { millis }) => Position::AtTimestamp(millis),
            Some(Checkpoint::Seq { seq, sub }) => Position::After(seq, sub),
        };
        tracing::info!(worker = %self.worker, shard = %self.shard, from = ?pos, "shard reader started");
        let mut iterator: Option<String> = None;
        let mut wait = ERROR_BASE;
        let mut last_call: Option<Instant> = None;
        loop {
            if self.halted() {
                return Exit::Halted;
            }
            let it = match iterator.take() {
                Some(it) => it,
                None => match self.iterator(&pos) {
                    Ok(it) => it,
                    Err(e) => {
                        self.failed("GetShardIterator", &e, &mut wait);
                        continue;
                    }
                },
            };
            let gap =
                last_call.map_or(Duration::ZERO, |t| MIN_CALL_GAP.saturating_sub(t.elapsed()));
            if !gap.is_zero() {
                pause(gap, &self.halt);
            }
            last_call = Some(Instant::now());
            let call = self
                .client
                .get_records()
                .shard_iterator(&it)
                .limit(self.max_records);
            let out = match self.handle.block_on(call.send()) {
                Ok(out) => out,
                Err(e) => {
                    let expired = e.code() == Some("ExpiredIteratorException");
                    if !expired {
                        // Throttled or failed: the iterator stays valid for 5 minutes.
                        iterator = Some(it);
                    }
                    self.failed("GetRecords", &sdk_err(&e), &mut wait);
                    continue;
                }
            };
            wait = ERROR_BASE;
            let records = out.records();
            if !records.is_empty() {
                add(&self.stats.records_read, records.len() as u64);
                // Never act on data read after the lease went.
                if self.holds().is_none() {
                    return Exit::Halted;
                }
                let mut last: Option<(SequenceNumber, u64)> = None;
                for r in records {
                    let Ok(seq) = SequenceNumber::parse(r.sequence_number()) else {
                        tracing::error!(worker = %self.worker, shard = %self.shard, seq = r.sequence_number(),
                            "a record has no decimal sequence number: skipping it");
                        add(&self.stats.decode_errors, 1);
                        continue;
                    };
                    for user in kpl::deaggregate(r.data().as_ref()) {
                        let sub = user.sub_sequence_number.unwrap_or(0);
                        if pos.covers(&seq, sub) {
                            continue;
                        }
                        let at = At(&self.shard, &seq, sub);
                        match self.delivery.deliver(&at, &user.data, &self.halt) {
                            Outcome::Done => last = Some((seq.clone(), sub)),
                            Outcome::Aborted => {
                                self.checkpoint(last);
                                return Exit::Halted;
                            }
                        }
                    }
                }
                if let Some((seq, sub)) = last {
                    pos = Position::After(seq.clone(), sub);
                    if !self.checkpoint(Some((seq, sub))) {
                        return Exit::Halted;
                    }
                }
            }
            match out.next_shard_iterator() {
                None => return self.shard_end(out.child_shards()),
                Some(next) => iterator = Some(next.to_owned()),
            }
            if records.is_empty() {
                if self.stop.load(Ordering::Relaxed) {
                    return Exit::Stopped;
                }
                pause(IDLE, &self.halt);
            }
        }
    }

    /// Checkpoints `(seq, sub)`; false when the lease is lost.
    fn checkpoint(&self, last: Option<(SequenceNumber, u64)>) -> bool {
        let Some((seq, sub)) = last else {
            return true;
        };
        let cp = Checkpoint::Seq { seq, sub };
        let r = self.handle.block_on(async {
            let mut c = self.coord.lock().await;
            c.checkpoint(&self.shard, cp).await
        });
        match r {
            Ok(_) => true,
            Err(e) if e.is_race() || matches!(e, LeaseError::NotFound { .. }) => {
                tracing::warn!(worker = %self.worker, shard = %self.shard, error = %e,
                    "checkpoint refused: the lease is lost; stopping this shard");
                false
            }
            Err(e) => {
                // Delivered but not checkpointed: redelivered if the lease moves before the
                // next checkpoint succeeds.
                tracing::error!(worker = %self.worker, shard = %self.shard, error = %e, "checkpoint failed");
                true
            }
        }
    }

    fn iterator(&self, pos: &Position) -> Result<String, String> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard);
        req = match pos {
            Position::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            Position::AtTimestamp(ms) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(
                    i64::try_from(*ms).unwrap_or(i64::MAX),
                )),
            Position::After(seq, _) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq.as_str()),
        };
        let out = self.handle.block_on(req.send()).map_err(|e| sdk_err(&e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| "GetShardIterator returned no iterator".to_owned())
    }

    fn failed(&self, call: &str, error: &str, wait: &mut Duration) {
        add(&self.stats.read_errors, 1);
        tracing::warn!(worker = %self.worker, shard = %self.shard, call, error, wait_ms = wait.as_millis() as u64,
            "a Kinesis call failed; retrying after a pause");
        pause(*wait, &self.halt);
        *wait = (*wait * 2).min(ERROR_CAP);
    }

    /// The children of this shard: from `ChildShards`, else from `ListShards`.
    fn children(
        &self,
        reported: &[aws_sdk_kinesis::types::ChildShard],
    ) -> Result<Vec<ChildShard>, String> {
        if !reported.is_empty() {
            return Ok(reported
                .iter()
                .map(|c| ChildShard {
                    key: c.shard_id().to_owned(),
                    parents: c.parent_shards().to_vec(),
                    hash_range: c.hash_key_range().and_then(range),
                })
                .collect());
        }
        let shards = self
            .handle
            .block_on(super::list_shards(&self.client, &self.stream))?;
        Ok(shards
            .into_iter()
            .filter(|s| s.parents.iter().any(|p| p == &self.shard))
            .map(|s| ChildShard {
                key: s.id,
                parents: s.parents,
                hash_range: s.range,
            })
            .collect())
    }

    fn shard_end(&self, reported: &[aws_sdk_kinesis::types::ChildShard]) -> Exit {
        let mut wait = ERROR_BASE;
        loop {
            if self.halted() {
                return Exit::Halted;
            }
            let children = match self.children(reported) {
                Ok(c) => c,
                Err(e) => {
                    self.failed("ListShards", &e, &mut wait);
                    continue;
                }
            };
            let r = self.handle.block_on(async {
                let mut c = self.coord.lock().await;
                c.mark_shard_end(&self.shard, &children).await
            });
            match r {
                Ok(ShardEndOutcome::Done { created, .. }) => {
                    tracing::info!(worker = %self.worker, shard = %self.shard,
                        children = ?children.iter().map(|c| &c.key).collect::<Vec<_>>(), created = ?created,
                        "shard finished");
                    return Exit::ShardEnded;
                }
                Ok(ShardEndOutcome::Deferred { children }) => {
                    tracing::info!(worker = %self.worker, shard = %self.shard, children = ?children,
                        "shard end deferred: a merge parent's lease is missing");
                    pause(PARENT_POLL, &self.halt);
                }
                Err(e) if e.is_race() || matches!(e, LeaseError::NotFound { .. }) => {
                    return Exit::Halted;
                }
                Err(e) => self.failed("shard end", &e.to_string(), &mut wait),
            }
        }
    }
}

/// A Kinesis hash-key range.
pub(super) fn range(r: &aws_sdk_kinesis::types::HashKeyRange) -> Option<HashRange> {
    Some(HashRange {
        start: r.starting_hash_key().parse().ok()?,
        end: r.ending_hash_key().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[test]
    fn a_checkpoint_covers_the_user_records_at_or_before_it() {
        let cp = Position::After(
            seq("49590338271490256608559692538361571095921575989136588898"),
            2,
        );
        let s = seq("49590338271490256608559692538361571095921575989136588898");
        assert!(cp.covers(&s, 0));
        assert!(cp.covers(&s, 2));
        assert!(
            !cp.covers(&s, 3),
            "the next sub-record of the same aggregate"
        );
        assert!(cp.covers(
            &seq("49590338271490256608559692538361571095921575989136588897"),
            9
        ));
        assert!(!cp.covers(
            &seq("49590338271490256608559692538361571095921575989136588899"),
            0
        ));
        // A non-aggregated record checkpointed at sub 0 is not read again.
        assert!(Position::After(seq("7"), 0).covers(&seq("7"), 0));
        assert!(!Position::TrimHorizon.covers(&seq("1"), 0));
    }
}
