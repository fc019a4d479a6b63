//! The local-log worker (`from` a `type = "local_log"` sink): one thread with a small glommio
//! executor (the log's reader needs one; [`IO_MEMORY`] of I/O memory) that reads records
//! from the consumer offset it committed last (consumer name `<from>.<worker_id or index>`,
//! stable across restarts) and hands each to its [`Delivery`].
//!
//! The consumer offset is committed only after every record read was delivered, so a crash
//! redelivers at most one read batch (`max_records`). Records deleted by retention before
//! they were read are logged with their count. At shutdown the worker delivers what is
//! durable in the log, commits and exits; at the deadline the in-flight record is abandoned
//! uncommitted. With `share` below 1 it pauses after each record in proportion to the time
//! spent sending it (not the time spent waiting for a vendor to come back), so it spends at
//! most that share of its sending time delivering (a spilling
//! sink's spool replay runs this way with the sink's `replay_share`).
//!
//! Metrics: [`WorkerStats`] (`records_read`, `lag`, `committed`).

use crate::deliver::{add, pause, Delivery, Outcome, REDELIVER_BASE, REDELIVER_CAP};
use crate::WorkerStats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_log::{LogError, LogHandle, ReadBatch, ReadLimits};
use switchyard_sinks::sink::local_log::LogService;

/// I/O memory of a worker's glommio executor.
pub const IO_MEMORY: usize = 512 << 10;
/// Pause when the log has nothing new.
const IDLE: Duration = Duration::from_millis(50);
/// Payload bytes per read at most.
const READ_MAX_BYTES: usize = 4 << 20;

/// One local-log worker.
pub struct LogWorker {
    /// Consumer name.
    pub name: String,
    /// The log.
    pub service: Arc<LogService>,
    /// Its sinks.
    pub delivery: Delivery,
    /// Its counters.
    pub stats: Arc<WorkerStats>,
    /// Records per read at most.
    pub max_records: usize,
    /// Share of its time spent delivering (`share`; a spool replay: the sink's
    /// `replay_share`): after each record it pauses `sent * (1 - share) / share`, `sent`
    /// being the time spent sending it (not waiting).
    pub share: f64,
    /// Raised at shutdown: deliver what is durable, then exit.
    pub stop: Arc<AtomicBool>,
    /// Raised at the deadline: exit now.
    pub abort: Arc<AtomicBool>,
}

impl LogWorker {
    /// Runs the worker on the calling thread until it stops.
    pub fn run(self) {
        let ex = match glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(IO_MEMORY)
            .name("switchyard-worker")
            .make()
        {
            Ok(ex) => ex,
            Err(e) => {
                tracing::error!(worker = %self.name, error = %e, "cannot start the worker's executor");
                return;
            }
        };
        let name = self.name.clone();
        ex.run(async move {
            let mut w = self;
            w.work().await;
        });
        tracing::info!(worker = %name, "worker stopped");
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    async fn start_offset(&self, log: &LogHandle) -> Option<u64> {
        let consumers = log.consumers();
        let mut wait = REDELIVER_BASE;
        loop {
            match consumers.committed(&self.name).await {
                Ok(Some(o)) => return Some(o),
                Ok(None) => return Some(log.start_offset()),
                Err(e) => {
                    tracing::error!(worker = %self.name, error = %e, "reading the committed offset failed; retrying");
                }
            }
            if self.aborted() || self.stopping() {
                return None;
            }
            pause(wait, &self.abort);
            wait = (wait * 2).min(REDELIVER_CAP);
        }
    }

    async fn work(&mut self) {
        let log = self.service.handle();
        let Some(mut next) = self.start_offset(&log).await else {
            return;
        };
        tracing::info!(worker = %self.name, from = next, durable = log.durable_offset(), "worker started");
        self.stats.committed.store(next, Ordering::Relaxed);
        let consumers = log.consumers();
        let mut reader = log.reader();
        let mut batch = ReadBatch::new();
        let limits = ReadLimits {
            max_records: self.max_records.max(1),
            max_bytes: READ_MAX_BYTES,
        };
        let mut read_wait = REDELIVER_BASE;
        loop {
            let durable = log.durable_offset();
            self.stats
                .lag
                .store(durable.saturating_sub(next), Ordering::Relaxed);
            if self.aborted() || (self.stopping() && next >= durable) {
                break;
            }
            if let Err(e) = reader.read(next, limits, &mut batch).await {
                match e {
                    LogError::OffsetOutOfRange { start, .. } if next < start => {
                        tracing::error!(worker = %self.name, lost = start - next, from = next, to = start,
                            "records were deleted by retention before this worker read them");
                        next = start;
                    }
                    e => {
                        tracing::error!(worker = %self.name, offset = next, error = %e, "reading the log failed; retrying");
                        pause(read_wait, &self.abort);
                        read_wait = (read_wait * 2).min(REDELIVER_CAP);
                    }
                }
                continue;
            }
            read_wait = REDELIVER_BASE;
            if batch.is_empty() {
                glommio::timer::sleep(IDLE).await;
                continue;
            }
            add(&self.stats.records_read, batch.len() as u64);
            let mut done_to = next;
            for rec in batch.iter() {
                match self.delivery.deliver(&rec.offset, rec.payload, &self.abort) {
                    Outcome::Done => done_to = rec.offset + 1,
                    Outcome::Aborted => break,
                }
                // Paced by the time spent sending, not the time spent waiting for the
                // vendor to come back.
                let sent = self.delivery.take_busy();
                if self.share < 1.0 {
                    let rest = sent.mul_f64((1.0 - self.share) / self.share);
                    pause(rest.min(REDELIVER_CAP), &self.abort);
                }
            }
            if done_to > next {
                match consumers.commit(&self.name, done_to).await {
                    Ok(()) => self.stats.committed.store(done_to, Ordering::Relaxed),
                    Err(e) => {
                        tracing::error!(worker = %self.name, offset = done_to, error = %e,
                            "committing the offset failed (the records will be delivered again after a restart)")
                    }
                }
                next = done_to;
            }
        }
    }
}
