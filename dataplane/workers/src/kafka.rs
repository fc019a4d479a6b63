//! The Kafka worker (`from` a `type = "kafka"` sink; cargo feature `kafka`): one OS thread
//! per `[[workers]]` entry, a member of the consumer group `group` (default
//! `switchyard-<from>`; `client.id` = the consumer name) subscribed to the sink's topic, with
//! its own [`Delivery`]. The group shares the topic's partitions among its members (on any
//! number of hosts); a member silent for `failover` (the worker's `failover`, used as
//! `session.timeout.ms`) loses its partitions to the others.
//!
//! Records are polled one at a time, each record's value (one envelope) is delivered, and
//! only then is its offset confirmed ([`GroupConsumer::confirm`]: per partition, the offset
//! after the last delivered record). Confirmed offsets are committed every `max_records`
//! records or [`COMMIT_EVERY`], before a rebalance takes partitions away (the consumer's
//! `CommitOnRevoke`), and at shutdown; a crash redelivers at most the uncommitted tail.
//!
//! Rebalances are served only inside `poll`, between records, and librdkafka refuses to
//! store an offset for a partition no longer assigned (and resets stored offsets at a new
//! assignment), so a record whose partition was revoked while it was being delivered is not
//! committed by this member (its next owner reads it again); a member that fell out of the
//! group is fenced by the coordinator (its commits carry a stale generation).
//!
//! Shutdown: `stop` ends the loop after the record in hand was delivered; the confirmed
//! offsets are committed and the member leaves the group (on a helper thread, so a broker
//! that does not answer cannot hold the worker past its deadline); `abort` (the deadline)
//! abandons the record in hand uncommitted.
//!
//! Metrics: [`WorkerStats`] (`records_read`; `lag`: high watermark − position summed over
//! the assigned partitions, refreshed every [`LAG_EVERY`]; `committed`: the sum of the
//! offsets this member last committed for the partitions it holds).

use crate::deliver::{add, Delivery, Outcome};
use crate::{WorkerError, WorkerStats};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::{KafkaSettings, WorkerConfig};
use switchyard_kafka::{ConsumerConfig, GroupConsumer, Record};

/// Longest wait in one poll (the stop flag is checked between polls).
pub const POLL: Duration = Duration::from_millis(100);
/// Confirmed offsets are committed at least this often.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How often the lag is measured.
pub const LAG_EVERY: Duration = Duration::from_secs(5);
/// Timeout of one partition's watermark request.
const LAG_TIMEOUT: Duration = Duration::from_secs(1);
/// Repeated consumer errors are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// The default consumer group of a worker reading sink `from`.
pub fn default_group(from: &str) -> String {
    format!("switchyard-{from}")
}

/// One Kafka worker.
pub struct KafkaWorker {
    /// Consumer name (also its `client.id`).
    pub name: String,
    /// The group member.
    pub consumer: GroupConsumer,
    /// Its sinks.
    pub delivery: Delivery,
    /// Its counters.
    pub stats: Arc<WorkerStats>,
    /// Records delivered between two commits at most.
    pub max_records: usize,
    /// Raised at shutdown: finish the record in hand, commit, leave the group.
    pub stop: Arc<AtomicBool>,
    /// Raised at the deadline: exit now.
    pub abort: Arc<AtomicBool>,
}

/// Names a record in logs.
struct At<'a>(&'a Record);

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.0.topic, self.0.partition, self.0.offset)
    }
}

impl KafkaWorker {
    /// The worker `name` (config `w`) reading the Kafka sink `sink`; joins the group
    /// (asynchronously: partitions arrive over the first polls).
    ///
    /// # Errors
    /// librdkafka refused the consumer's configuration.
    pub fn new(
        name: &str,
        sink: &KafkaSettings,
        w: &WorkerConfig,
        delivery: Delivery,
        stats: Arc<WorkerStats>,
        stop: Arc<AtomicBool>,
        abort: Arc<AtomicBool>,
    ) -> Result<Self, WorkerError> {
        let group = w.group.clone().unwrap_or_else(|| default_group(&w.from));
        let mut cfg = ConsumerConfig::new(sink.brokers.clone(), group);
        cfg.client_id = name.to_owned();
        cfg.session_timeout = w.failover;
        let consumer = GroupConsumer::new(&cfg, &[sink.topic.as_str()]).map_err(|e| {
            WorkerError::Config(
                name.to_owned(),
                format!("kafka consumer of topic `{}`: {e}", sink.topic),
            )
        })?;
        Ok(Self {
            name: name.to_owned(),
            consumer,
            delivery,
            stats,
            max_records: w.max_records.max(1),
            stop,
            abort,
        })
    }

    /// Runs the worker on the calling thread until it stops.
    pub fn run(self) {
        let KafkaWorker {
            name,
            consumer,
            mut delivery,
            stats,
            max_records,
            stop,
            abort,
        } = self;
        tracing::info!(worker = %name, "kafka worker started");
        let mut commits = Commits::new(&name, stats.clone());
        let mut errors = ErrorLog::default();
        let mut lag_at = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed) {
                break;
            }
            match consumer.poll(POLL) {
                Ok(Some(rec)) => {
                    add(&stats.records_read, 1);
                    match delivery.deliver(&At(&rec), &rec.payload, &abort) {
                        Outcome::Done => commits.confirm(&consumer, &rec),
                        Outcome::Aborted => break,
                    }
                }
                Ok(None) => {}
                Err(e) => errors.log(&name, &e),
            }
            if commits.due(max_records) {
                commits.commit(&consumer);
            }
            if lag_at.elapsed() >= LAG_EVERY {
                lag_at = Instant::now();
                match consumer.lag(LAG_TIMEOUT) {
                    Ok(l) => stats.lag.store(l, Ordering::Relaxed),
                    Err(e) => {
                        tracing::debug!(worker = %name, error = %e, "measuring the lag failed")
                    }
                }
            }
        }
        leave(consumer, commits, &abort);
        tracing::info!(worker = %name, "kafka worker stopped");
    }
}

/// Confirmed offsets and when they were committed.
struct Commits {
    worker: String,
    stats: Arc<WorkerStats>,
    /// Next offset to read, per partition, as confirmed.
    confirmed: BTreeMap<i32, i64>,
    /// Records confirmed since the last successful commit.
    uncommitted: usize,
    last_attempt: Instant,
    failing: bool,
}

impl Commits {
    fn new(worker: &str, stats: Arc<WorkerStats>) -> Self {
        Self {
            worker: worker.to_owned(),
            stats,
            confirmed: BTreeMap::new(),
            uncommitted: 0,
            last_attempt: Instant::now(),
            failing: false,
        }
    }

    /// Marks a delivered record; a partition revoked meanwhile is not this member's any more.
    fn confirm(&mut self, c: &GroupConsumer, rec: &Record) {
        match c.confirm(rec) {
            Ok(()) => {
                self.confirmed.insert(rec.partition, rec.offset + 1);
                self.uncommitted += 1;
            }
            Err(e) => {
                tracing::info!(worker = %self.worker, at = %At(rec), error = %e,
                    "the partition was revoked while its record was delivered: not committed here (its next owner reads it again)");
            }
        }
    }

    fn due(&self, max_records: usize) -> bool {
        let every = if self.failing {
            COMMIT_EVERY
        } else if self.uncommitted >= max_records {
            Duration::ZERO
        } else {
            COMMIT_EVERY
        };
        self.uncommitted > 0 && self.last_attempt.elapsed() >= every
    }

    fn commit(&mut self, c: &GroupConsumer) {
        self.last_attempt = Instant::now();
        match c.commit() {
            Ok(()) => {
                self.failing = false;
                self.uncommitted = 0;
                if let Ok(held) = c.assignment() {
                    self.confirmed
                        .retain(|p, _| held.iter().any(|(_, h)| h == p));
                }
                self.publish();
            }
            Err(e) => {
                self.failing = true;
                tracing::warn!(worker = %self.worker, error = %e,
                    "committing offsets failed (retrying; after a rebalance the records are delivered again)");
            }
        }
    }

    fn publish(&self) {
        let sum: i64 = self.confirmed.values().sum();
        self.stats
            .committed
            .store(u64::try_from(sum).unwrap_or(0), Ordering::Relaxed);
    }
}

/// Logs consumer errors, repeated ones at most every [`ERROR_LOG_EVERY`].
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn log(&mut self, worker: &str, e: &switchyard_kafka::Error) {
        if self.last.is_some_and(|t| t.elapsed() < ERROR_LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(worker = %worker, error = %e, suppressed = self.suppressed,
            "kafka consumer error (librdkafka retries by itself)");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// Commits the confirmed offsets and leaves the group, on a helper thread; returns when it
/// is done or `abort` is raised (the helper then finishes, or not, on its own).
fn leave(consumer: GroupConsumer, mut commits: Commits, abort: &AtomicBool) {
    let worker = commits.worker.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("kafka-leave".into())
        .spawn(move || {
            if commits.uncommitted > 0 {
                commits.commit(&consumer);
            }
            // Dropping the consumer closes it: it leaves the group (the revoke commits
            // again, a no-op when nothing changed).
            drop(consumer);
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        tracing::error!(worker = %worker, error = %e,
            "cannot spawn the thread leaving the group (it left from the worker's thread)");
        return;
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if abort.load(Ordering::Relaxed) {
                    tracing::warn!(worker = %worker,
                        "leaving the consumer group did not finish before the deadline");
                    return;
                }
            }
        }
    }
}
