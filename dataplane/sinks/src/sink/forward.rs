//! Forward sink: a forwarder's consolidated statsd aggregates to its aggregators (forwarder
//! mode, `[forwarder]`), in the Switchyard forward format (`switchyard_core::forward`: rkyv
//! archive, zlib by libdeflate), `POST <aggregator>/switchyard/v1/forward`.
//!
//! Each series goes to one aggregator, chosen by rendezvous hashing on its stable hash
//! ([`AggregatorRing`]), so every forwarder sends a series to the same aggregator and its
//! percentiles and set unions stay exact there. An aggregator whose request failed
//! retryably (transport error, timeout, 408, 429, 5xx) is left out for `down_for`, and the
//! series it was to get go at once to their next choice among the others (failover). When
//! every aggregator is down the sink keeps trying each series' first choice with capped
//! backoff, holding the item: the queue behind it (`queue_batches` intervals) is the
//! forwarder's buffer, and a flush that finds it full is counted `queue_full` by the shard.
//! Nothing is persisted: a forwarder's buffer is memory.
//!
//! Accounting (the ledger of every sink): values are series; delivered when an aggregator
//! answered 2xx; `rejected` on another 4xx (the body cannot succeed anywhere), `fatal` when
//! a batch cannot be encoded, `shutdown` when the runtime aborts while they wait. Requests,
//! retries and bytes (`bytes` as sent, `bytes_uncompressed` the archive) are counted as for
//! the other HTTP sinks.

use crate::driver::Ctx;
use crate::http::HttpClient;
use crate::stats::{DropReason, SinkStats};
use crate::SinkError;
use std::time::{Duration, Instant};
use switchyard_core::aggregate::{Partials, SeriesKey};
use switchyard_core::config::{Compression, ForwarderConfig, HttpSinkSettings};
use switchyard_core::egress::ForwardItem;
use switchyard_core::forward::{AggregatorRing, ForwardEncoder, CONTENT_TYPE};

/// The path appended to an aggregator's base URL.
pub const FORWARD_PATH: &str = "/switchyard/v1/forward";

/// First wait when every aggregator is down.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest wait when every aggregator is down.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Sends forwarder flushes to the aggregators.
pub struct ForwardSink {
    urls: Vec<String>,
    ring: AggregatorRing,
    down_until: Vec<Option<Instant>>,
    down_for: Duration,
    http: HttpClient,
    encoder: ForwardEncoder,
    body: Vec<u8>,
    /// Per series of the current item (in `Partials` order): its stable hash, and the
    /// aggregator it goes to this round (`None`: done).
    hashes: Vec<u64>,
    assigned: Vec<Option<usize>>,
}

impl std::fmt::Debug for ForwardSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardSink")
            .field("aggregators", &self.urls)
            .finish_non_exhaustive()
    }
}

/// The keys of `p` in the order the encoder visits them: counters, gauges, timers, sets.
fn keys(p: &Partials) -> impl Iterator<Item = &SeriesKey> {
    p.counters
        .iter()
        .map(|e| &e.key)
        .chain(p.gauges.iter().map(|e| &e.key))
        .chain(p.timers.iter().map(|e| &e.key))
        .chain(p.sets.iter().map(|e| &e.key))
}

impl ForwardSink {
    /// Builds the sink.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when `ca_file` is unusable.
    pub fn new(f: &ForwarderConfig) -> Result<Self, SinkError> {
        let http = HttpClient::new(&HttpSinkSettings {
            endpoint: String::new(),
            compression: Compression::None,
            compression_level: 6,
            request_timeout: f.request_timeout,
            max_series_per_request: usize::MAX,
            max_in_flight: 1,
            max_retries: 0,
            ca_file: f.ca_file.clone(),
        })?;
        let bases: Vec<&str> = f
            .aggregators
            .iter()
            .map(|u| u.trim_end_matches('/'))
            .collect();
        Ok(Self {
            urls: bases.iter().map(|b| format!("{b}{FORWARD_PATH}")).collect(),
            ring: AggregatorRing::from_names(&bases),
            down_until: vec![None; bases.len()],
            down_for: f.down_for,
            http,
            encoder: ForwardEncoder::new(
                &f.reported_name(),
                f.interval.as_millis() as u64,
                &f.tags,
            ),
            body: Vec::new(),
            hashes: Vec::new(),
            assigned: Vec::new(),
        })
    }

    fn is_up(&self, i: usize, now: Instant) -> bool {
        self.down_until
            .get(i)
            .copied()
            .flatten()
            .is_none_or(|t| now >= t)
    }

    /// Delivers one forwarder flush: every series ends delivered or dropped by reason.
    pub fn handle(&mut self, f: &ForwardItem, ctx: &Ctx<'_>) {
        let p = &f.partials;
        self.hashes.clear();
        self.hashes.extend(keys(p).map(SeriesKey::stable_hash));
        self.assigned.clear();
        self.assigned.resize(self.hashes.len(), Some(0));
        let mut wait = BACKOFF_BASE;
        loop {
            let pending = self.assigned.iter().filter(|a| a.is_some()).count() as u64;
            if pending == 0 {
                return;
            }
            if ctx.aborting() {
                ctx.drop_values(DropReason::Shutdown, pending);
                return;
            }
            // This round's choice for every pending series: the first choice among the
            // aggregators that are up, or the first choice of all when none is.
            let now = Instant::now();
            let any_up = (0..self.urls.len()).any(|i| self.is_up(i, now));
            let down = &self.down_until;
            let up = |i: usize| !any_up || down.get(i).copied().flatten().is_none_or(|t| now >= t);
            for (a, h) in self.assigned.iter_mut().zip(&self.hashes) {
                if a.is_some() {
                    *a = self.ring.pick(*h, up);
                }
            }
            let mut failed = false;
            for agg in 0..self.urls.len() {
                if !self.assigned.contains(&Some(agg)) {
                    continue;
                }
                if !self.send_to(agg, p, ctx) {
                    failed = true;
                }
            }
            if failed && !(0..self.urls.len()).any(|i| self.is_up(i, Instant::now())) {
                // Every aggregator is down: wait before the next round.
                SinkStats::add(&ctx.stats.retries, 1);
                ctx.pause(wait);
                wait = (wait * 2).min(BACKOFF_CAP);
            } else if failed {
                SinkStats::add(&ctx.stats.retries, 1);
            }
        }
    }

    /// Sends the series assigned to `agg`; marks them done unless the failure is retryable
    /// (then `agg` is down for `down_for`). Returns whether they are done.
    fn send_to(&mut self, agg: usize, p: &Partials, ctx: &Ctx<'_>) -> bool {
        let assigned = &self.assigned;
        let encoded = self.encoder.encode(
            p,
            |j, _| assigned.get(j) == Some(&Some(agg)),
            &mut self.body,
        );
        let mine = |assigned: &mut Vec<Option<usize>>| {
            for a in assigned.iter_mut().filter(|a| **a == Some(agg)) {
                *a = None;
            }
        };
        let e = match encoded {
            Ok(e) => e,
            Err(err) => {
                let n = self.assigned.iter().filter(|a| **a == Some(agg)).count() as u64;
                ctx.drop_once_logged(DropReason::Fatal, n, &format!("forward batch: {err}"));
                mine(&mut self.assigned);
                return true;
            }
        };
        let n = e.series as u64;
        let Some(url) = self.urls.get(agg) else {
            return true;
        };
        let headers = [("Content-Type", CONTENT_TYPE)];
        match self.http.post(url, &headers, &self.body, ctx.stats) {
            Ok(sent) => {
                ctx.delivered(n);
                SinkStats::add(&ctx.stats.bytes, sent);
                SinkStats::add(&ctx.stats.bytes_uncompressed, e.archive_bytes as u64);
                if self
                    .down_until
                    .get_mut(agg)
                    .and_then(Option::take)
                    .is_some()
                {
                    tracing::info!(sink = ctx.name, aggregator = %url, "aggregator takes data again");
                }
                mine(&mut self.assigned);
                true
            }
            Err(SinkError::Rejected { status, reason, .. }) => {
                tracing::error!(sink = ctx.name, status, response = %reason, values = n,
                    "aggregator rejected a forward batch; dropping it (not retried)");
                ctx.drop_values(DropReason::Rejected, n);
                mine(&mut self.assigned);
                true
            }
            Err(SinkError::Fatal(msg)) => {
                tracing::error!(sink = ctx.name, error = %msg, values = n, "dropping a forward batch");
                ctx.drop_values(DropReason::Fatal, n);
                mine(&mut self.assigned);
                true
            }
            Err(err) => {
                if let Some(d) = self.down_until.get_mut(agg) {
                    if d.is_none() {
                        tracing::warn!(sink = ctx.name, aggregator = %url, error = %err, down_for = ?self.down_for,
                            "aggregator failed: its series go to the next aggregator meanwhile");
                    }
                    *d = Some(Instant::now() + self.down_for);
                }
                false
            }
        }
    }
}
