//! The spool of a sink with `spill = true`, and the circuit breaker that decides when to
//! stop trying its vendor.
//!
//! The spool is a local log (`switchyard-log`, the same service and record format as the
//! `local_log` sink) in `<state_dir>/spool/<sink>`. A sink worker writes to it what its
//! vendor did not take: values whose retries ran out, every item while the circuit is open,
//! and what is still queued or being retried at the shutdown deadline. The binary's stream
//! workers replay it into the sink (a hidden `local_log` worker per spilling sink, see
//! `Config::with_spool_replays`), in order, committing only what the vendor took, so the
//! spool outlives restarts and `kill -9` (a write is acknowledged once durable).
//!
//! Accounting: spilled values are counted `dropped{reason="spilled"}` by the sink (they
//! leave its memory path) and `received` again when the replay hands them back, so every
//! ledger identity holds; `spool_full` counts values neither the vendor nor the spool took.
//! HTTP payloads other than series (check runs, events, distribution points) cannot be
//! spooled and keep their original drop reason.
//!
//! [`Breaker`]: after [`FAILURES_TO_OPEN`] items in a row whose values all failed
//! retryably, the circuit opens for [`OPEN_BASE`] (doubling on each failed probe up to
//! [`OPEN_CAP`], each period jittered into its upper half so probes do not lock onto a vendor
//! that fails periodically); while open, items go straight to the spool without a request; when the
//! period ends one item is let through as a probe, and its success closes the circuit.
//!
//! Metrics (via [`SinkStats`]): `switchyard_sink_circuit_open` (gauge, 0 or 1),
//! `switchyard_sink_circuit_opens_total`, `switchyard_sink_spool_bytes` (gauge).

use crate::driver::{Ctx, RetryPolicy};
use crate::sink::local_log::LocalLogSink;
use crate::stats::{DropReason, SinkStats};
use crate::SinkError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_core::config::{SinkConfig, SinkKind};
use switchyard_core::egress::{Egress, Endpoint};

/// Items in a row whose values all failed retryably before the circuit opens.
pub const FAILURES_TO_OPEN: u32 = 5;
/// First open period.
pub const OPEN_BASE: Duration = Duration::from_secs(1);
/// Longest open period. A probe is one item, so probing a vendor that is down every 5 to
/// 10 s costs it nothing, and a vendor that comes back is used again within 10 s (with a
/// 60 s cap, a vendor flapping every 30 s was never seen healthy: the soak in RESULTS.md).
pub const OPEN_CAP: Duration = Duration::from_secs(10);

/// How long a spool writer refuses items after a failed write ([`Spool::has_room`]).
pub const FAILED_WRITE_PAUSE: Duration = Duration::from_secs(5);

/// Why the spool did not take an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolRefusal {
    /// The kind of payload cannot be spooled (not a series payload).
    Unsupported,
    /// The spool holds `spill_max_bytes` already.
    Full,
    /// The write failed.
    Failed(String),
}

/// One sink worker's writer of the sink's spool (the log service is shared per directory).
pub struct Spool {
    log: LocalLogSink,
    dir: PathBuf,
    max_bytes: u64,
    stats: SinkStats,
    abort: AtomicBool,
    /// When a write last failed.
    failed_at: Option<Instant>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (or joins) the spool of sink `name` under `state_dir`.
    ///
    /// # Errors
    /// The log cannot be opened (see [`LocalLogSink::new`]).
    pub fn open(state_dir: &Path, name: &str, sc: &SinkConfig) -> Result<Self, SinkError> {
        let mut log = SinkConfig::spool();
        let dir = state_dir.join("spool").join(name);
        log.dir = Some(dir.clone());
        let SinkKind::LocalLog(settings) = log.kind() else {
            return Err(SinkError::Fatal("spool settings".into()));
        };
        Ok(Self {
            log: LocalLogSink::new(&settings)?,
            dir,
            max_bytes: sc.spill_max_bytes,
            stats: SinkStats::default(),
            abort: AtomicBool::new(false),
            failed_at: None,
        })
    }

    /// Bytes the spool's files take on disk.
    pub fn bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Whether the spool holds less than `spill_max_bytes` (updates the sink's
    /// `spool_bytes` gauge).
    ///
    /// After a failed write (a full disk) it says no for [`FAILED_WRITE_PAUSE`], so the
    /// callers stop taking items they could not keep: the queue fills and the intake pushes
    /// back.
    pub fn has_room(&self, sink: &SinkStats) -> bool {
        if self
            .failed_at
            .is_some_and(|t| t.elapsed() < FAILED_WRITE_PAUSE)
        {
            return false;
        }
        let bytes = self.bytes();
        sink.spool_bytes.store(bytes, Ordering::Relaxed);
        bytes < self.max_bytes
    }

    /// Writes `item` durably.
    ///
    /// # Errors
    /// [`SpoolRefusal`]: nothing of the item was written (or, for a statsd batch written
    /// in several records, a later record failed: the earlier ones replay).
    pub fn write(&mut self, item: &Egress, sink: &SinkStats) -> Result<(), SpoolRefusal> {
        match item {
            Egress::Payload(p)
                if !matches!(p.endpoint, Endpoint::SeriesV1 | Endpoint::SeriesV2) =>
            {
                return Err(SpoolRefusal::Unsupported);
            }
            Egress::Forward(_) => return Err(SpoolRefusal::Unsupported),
            _ => {}
        }
        let bytes = self.bytes();
        sink.spool_bytes.store(bytes, Ordering::Relaxed);
        if bytes >= self.max_bytes {
            return Err(SpoolRefusal::Full);
        }
        let policy = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        let ctx = Ctx::new("spool", &self.stats, &self.abort, policy);
        ctx.begin_item();
        self.log.handle(item, &ctx);
        let t = ctx.item_tally();
        if t.dropped > 0 {
            self.failed_at = Some(Instant::now());
            return Err(SpoolRefusal::Failed(format!(
                "{} of {} values not written",
                t.dropped,
                t.dropped + t.delivered
            )));
        }
        Ok(())
    }
}

/// Spills `n` values of `item` (the values the vendor did not take) and accounts them:
/// `spilled` when the spool took the item, else `spool_full`, or the original
/// `retries_exhausted` for a payload the spool cannot carry.
pub fn spill(spool: &mut Spool, item: &Egress, n: u64, ctx: &Ctx<'_>) {
    if n == 0 {
        return;
    }
    match spool.write(item, ctx.stats) {
        Ok(()) => ctx.drop_values(DropReason::Spilled, n),
        Err(SpoolRefusal::Unsupported) => {
            ctx.drop_final(DropReason::RetriesExhausted, n);
            if ctx.stats.first_time(DropReason::RetriesExhausted) {
                tracing::error!(
                    sink = ctx.name,
                    "only series payloads and statsd batches can be spooled: dropped (logged once)"
                );
            }
        }
        Err(SpoolRefusal::Full) => ctx.drop_once_logged(
            DropReason::SpoolFull,
            n,
            &format!(
                "the spool {} holds spill_max_bytes ({} bytes)",
                spool.dir.display(),
                spool.max_bytes
            ),
        ),
        Err(SpoolRefusal::Failed(e)) => ctx.drop_once_logged(
            DropReason::SpoolFull,
            n,
            &format!("spool write failed: {e}"),
        ),
    }
}

/// What the circuit lets a worker do with its next item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Try the vendor.
    Closed,
    /// Try the vendor once: the result decides whether the circuit closes.
    Probe,
    /// Do not try: spill.
    Open,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    opens: u32,
    probing: bool,
}

/// A sink's circuit breaker, shared by its workers.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
    /// Items that reached the vendor ([`Breaker::success`] calls): a waiting redelivery
    /// retries at once when it moves.
    successes: std::sync::atomic::AtomicU64,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Items that reached the vendor so far.
    pub fn successes(&self) -> u64 {
        self.successes.load(Ordering::Relaxed)
    }

    /// Whether the circuit is open at `now` (the next item would be spilled, not sent),
    /// without asking for the probe.
    pub fn is_open(&self, now: Instant) -> bool {
        let s = self.lock();
        s.open_until.is_some_and(|until| now < until || s.probing)
    }

    /// The gate for the next item at `now`.
    pub fn gate(&self, now: Instant) -> Gate {
        let mut s = self.lock();
        match s.open_until {
            None => Gate::Closed,
            Some(until) if now < until || s.probing => Gate::Open,
            Some(_) => {
                s.probing = true;
                Gate::Probe
            }
        }
    }

    /// Records that an item reached the vendor (some value delivered, or nothing failed
    /// retryably): the circuit closes.
    pub fn success(&self, stats: &SinkStats) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        if s.open_until.is_some() {
            tracing::info!("the vendor takes data again: circuit closed");
        }
        *s = BreakerState::default();
        stats.circuit_open.store(0, Ordering::Relaxed);
    }

    /// Records an item whose values all failed retryably (`probe`: it was the probe).
    pub fn failure(&self, now: Instant, probe: bool, stats: &SinkStats) {
        let mut s = self.lock();
        if probe {
            // The next period is jittered (uniform in its upper half), so probes do not
            // lock onto a vendor that fails periodically.
            s.probing = false;
            s.opens = s.opens.saturating_add(1);
            let wait = OPEN_BASE
                .saturating_mul(1u32 << s.opens.min(16))
                .min(OPEN_CAP);
            let wait = wait.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0));
            s.open_until = Some(now + wait);
            return;
        }
        if s.open_until.is_some() {
            // An item sent before the circuit opened failed too: nothing new.
            return;
        }
        s.failures += 1;
        if s.failures >= FAILURES_TO_OPEN {
            s.open_until = Some(now + OPEN_BASE);
            s.opens = 0;
            SinkStats::add(&stats.circuit_opens, 1);
            stats.circuit_open.store(1, Ordering::Relaxed);
            tracing::warn!(
                failures = s.failures,
                open_for = ?OPEN_BASE,
                "the vendor failed every value of the last items: circuit open, spilling"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circuit_opens_after_failures_in_a_row_probes_and_closes_on_success() {
        let b = Breaker::default();
        let st = SinkStats::default();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert_eq!(b.gate(t0), Gate::Closed);
            b.failure(t0, false, &st);
        }
        // A success in between resets the count.
        b.success(&st);
        for _ in 0..FAILURES_TO_OPEN - 1 {
            b.failure(t0, false, &st);
        }
        assert_eq!(b.gate(t0), Gate::Closed);
        assert!(!b.is_open(t0));
        b.failure(t0, false, &st);
        assert!(b.is_open(t0));
        assert_eq!(b.gate(t0), Gate::Open);
        assert_eq!(SinkStats::get(&st.circuit_opens), 1);
        assert_eq!(st.circuit_open.load(Ordering::Relaxed), 1);
        // After the open period one probe goes; the others still spill.
        let later = t0 + OPEN_BASE;
        assert!(!b.is_open(later));
        assert_eq!(b.gate(later), Gate::Probe);
        // While the probe is out the circuit counts as open.
        assert!(b.is_open(later));
        assert_eq!(b.gate(later), Gate::Open);
        // An item sent before the circuit opened that fails now changes nothing.
        b.failure(later, false, &st);
        assert_eq!(b.gate(later), Gate::Open);
        // A failed probe opens it for longer: 10 s, jittered into 5 to 10 s.
        b.failure(later, true, &st);
        assert_eq!(
            b.gate(later + OPEN_BASE / 2 - Duration::from_millis(1)),
            Gate::Open
        );
        let probe_at = later + OPEN_BASE * 2;
        assert_eq!(b.gate(probe_at), Gate::Probe);
        b.success(&st);
        assert_eq!(b.gate(probe_at), Gate::Closed);
        assert_eq!(st.circuit_open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn open_periods_double_up_to_the_cap() {
        let b = Breaker::default();
        let st = SinkStats::default();
        let mut now = Instant::now();
        for _ in 0..FAILURES_TO_OPEN {
            b.failure(now, false, &st);
        }
        let mut waits = Vec::new();
        for _ in 0..6 {
            let mut wait = Duration::ZERO;
            while b.gate(now + wait) != Gate::Probe {
                wait += Duration::from_secs(1);
            }
            waits.push(wait.as_secs());
            now += wait;
            b.failure(now, true, &st);
        }
        // The first period is exact; after each failed probe it doubles up to the cap,
        // jittered into its upper half (whole seconds here: the first probe-able second).
        assert_eq!(waits[0], OPEN_BASE.as_secs());
        let full = (1..6).map(|n| (OPEN_BASE * (1 << n)).min(OPEN_CAP).as_secs());
        assert_eq!(full.clone().next_back(), Some(OPEN_CAP.as_secs()));
        for (got, full) in waits[1..].iter().zip(full) {
            assert!(
                (full / 2..=full).contains(got),
                "{got} s not in [{}, {full}]: {waits:?}",
                full / 2
            );
        }
    }
}
