//! The flush loop of one shard.
//!
//! Every `flush_interval` (deadlines from one process-wide epoch, or aligned to wall-clock
//! multiples) each shard drains its interval partials split by owner, sends every other
//! shard its part over the glommio channel mesh, merges its own part and the parts it
//! receives into its [`OwnerStore`], and emits what it owns, once, into one batch. The
//! shard's [`Router`](switchyard_core::route::Router) decides each series (cached per
//! series) and the batch goes, whole when every series has the same destinations and no
//! rewrite, else split into one batch per distinct sink set, to the routed sinks' queues
//! with `try_send` (a full queue is counted, never waited on).
//! This is gostatsd's `MetricMap.Split`, done once per flush, never per line.
//!
//! Forwarder mode (`[forwarder]`, every `[forwarder] interval`): the owner consolidates its
//! own part and its peers' with `Partials::absorb` instead of merging them into the store,
//! and offers the result, as one `Egress::Forward`, to the `forwarder` sink, after reserving
//! its estimated heap bytes against the sink's `queue_max_bytes` (counted `queue_full` when
//! refused). Routes do not apply to it.
//!
//! Shutdown: when the shutdown flag is seen, the shard stops its receive loops, drains what
//! the kernel already queued, and runs final rounds until every shard has sent a final part,
//! so nothing accepted is left behind in a partial.
//!
//! Metrics (via [`FlushCounters`](switchyard_core::telemetry::FlushCounters)):
//! `switchyard_flush_total`, `switchyard_flush_duration_seconds`, `switchyard_flush_series_total`,
//! `switchyard_flush_values_total`, `switchyard_series_expired_total`, `switchyard_series_active`,
//! per sink `switchyard_sink_enqueued_*` and `switchyard_sink_dropped_values_total` with
//! reasons `queue_full`, `route_dropped` and `sampled_out`, per route
//! `switchyard_route_points_total` / `switchyard_route_series_total`, and per sink the
//! distinct series it was sent over the last hour (`switchyard_sink_distinct_series`: each
//! series' routing hash inserted into the shard's [`Distinct`] for every sink that took its
//! batch, once per series per flush; published with the counters).

use crate::ingest::{self, Listener, ShardState};
use crossbeam_channel::TrySendError;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_core::aggregate::{FlushStats, OwnerStore, Partials};
use switchyard_core::distinct::Distinct;
use switchyard_core::egress::{Egress, ForwardItem};
use switchyard_core::model::SeriesBatch;
use switchyard_core::route::SinkSet;
use switchyard_core::telemetry::Telemetry;
use switchyard_core::telemetry::{FlushCounters, SinkEnqueueCounters};
use switchyard_sinks::SinkHandle;

/// One shard's partials for one owner, for one round.
#[derive(Debug)]
pub struct Exchange {
    /// The partial aggregates.
    pub partials: Partials,
    /// The sender will not send again (shutdown).
    pub last: bool,
}

/// The channel mesh the shards exchange partials over.
pub type Mesh = MeshBuilder<Exchange, Full>;

/// What the flush loop needs.
#[derive(Debug)]
pub struct FlushConfig {
    /// This shard.
    pub shard: usize,
    /// All shards.
    pub shards: usize,
    /// Flush interval.
    pub interval: Duration,
    /// Align to wall-clock multiples of the interval.
    pub align: bool,
    /// Series idle longer than this stop being reported (0: report only updated series).
    pub expiry: Duration,
    /// Timer percentiles.
    pub percentiles: Vec<f64>,
    /// Forwarder mode: each owner consolidates its part of the interval and hands it to
    /// the `forward` sink instead of emitting series through the routes.
    pub forward: bool,
}

/// Everything shared with the outside world.
#[derive(Debug)]
pub struct FlushIo {
    /// The telemetry board.
    pub telemetry: Arc<Telemetry>,
    /// Set by the process on SIGTERM/SIGINT.
    pub shutdown: Arc<AtomicBool>,
}

const TICK: Duration = Duration::from_millis(50);
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

fn next_deadline(cfg: &FlushConfig, epoch: Instant, round: u64) -> Instant {
    if cfg.align {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let iv = cfg.interval.as_nanos().max(1);
        let rem = now.as_nanos() % iv;
        let wait = iv - rem;
        Instant::now() + Duration::from_nanos(wait as u64)
    } else {
        epoch + cfg.interval.saturating_mul(round as u32 + 1)
    }
}

/// Runs the flush loop until the final round; returns when this shard is done.
pub async fn run(
    cfg: FlushConfig,
    io: FlushIo,
    st: Rc<RefCell<ShardState>>,
    listeners: Vec<Rc<Listener>>,
    stop: Rc<Cell<bool>>,
    mesh: Option<Mesh>,
) {
    let peers: Option<(Senders<Exchange>, Receivers<Exchange>)> = match mesh {
        Some(m) => match m.join().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, shard = cfg.shard, "joining the shard mesh failed; flushing alone");
                None
            }
        },
        None => None,
    };
    let mut store = OwnerStore::new(&cfg.percentiles, cfg.expiry.as_nanos() as u64);
    let epoch = st.borrow().epoch;
    let mut last_publish = Instant::now();
    let mut round: u64 = 0;
    let mut aligned_deadline = next_deadline(&cfg, epoch, round);
    loop {
        // Wait for the deadline, publishing counters and watching for shutdown.
        while !io.shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= aligned_deadline {
                break;
            }
            if now.duration_since(last_publish) >= PUBLISH_EVERY {
                publish(&io, &cfg, &st);
                last_publish = now;
            }
            glommio::timer::sleep(TICK.min(aligned_deadline - now)).await;
        }
        let last = io.shutdown.load(Ordering::Relaxed);
        if last && !stop.get() {
            stop.set(true);
            let mut s = st.borrow_mut();
            for l in &listeners {
                ingest::drain(l, &mut s);
            }
        }
        let everyone_done = flush_round(&cfg, &st, &mut store, peers.as_ref(), last).await;
        publish(&io, &cfg, &st);
        last_publish = Instant::now();
        if last && everyone_done {
            return;
        }
        if !last {
            round += 1;
            aligned_deadline = next_deadline(&cfg, epoch, round);
        }
    }
}

fn publish(io: &FlushIo, cfg: &FlushConfig, st: &Rc<RefCell<ShardState>>) {
    let mut s = st.borrow_mut();
    s.refresh_routes();
    s.counters.interval_series = s.agg.series() as u64;
    let ShardState {
        counters, router, ..
    } = &mut *s;
    router.drain_route_counts(&mut counters.routes);
    io.telemetry.publish(cfg.shard, &s.counters);
    io.telemetry.publish_top(cfg.shard, &s.top);
    io.telemetry.publish_distinct(cfg.shard, &s.distinct);
}

/// One exchange-merge-emit round. Returns whether every shard (this one included) marked its
/// part as the last.
async fn flush_round(
    cfg: &FlushConfig,
    st: &Rc<RefCell<ShardState>>,
    store: &mut OwnerStore,
    peers: Option<&(Senders<Exchange>, Receivers<Exchange>)>,
    last: bool,
) -> bool {
    let started = Instant::now();
    let (mut parts, now_ns) = {
        let mut s = st.borrow_mut();
        let now_ns = s.now_ns();
        let ShardState { agg, top, .. } = &mut *s;
        let now = switchyard_core::telemetry::top_clock();
        agg.for_each_series(|name, lines| top.observe(now, name, lines));
        (s.agg.drain_by_owner(cfg.shards), now_ns)
    };
    let mine = parts
        .get_mut(cfg.shard)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut all_last = last;
    if let Some((tx, _)) = peers {
        for (peer, partials) in parts.into_iter().enumerate() {
            if peer != cfg.shard && tx.send_to(peer, Exchange { partials, last }).await.is_err() {
                tracing::debug!(shard = cfg.shard, peer, "peer already stopped");
            }
        }
    }
    // Forwarder mode: the parts are consolidated, not merged into the store.
    let mut consolidated = cfg.forward.then(Partials::default);
    match consolidated.as_mut() {
        Some(c) => c.absorb(mine),
        None => store.merge(mine, now_ns),
    }
    if let Some((_, rx)) = peers {
        for peer in 0..cfg.shards {
            if peer == cfg.shard {
                continue;
            }
            // A peer that has stopped sends no more (None or an error): it is done.
            if let Ok(Some(x)) = rx.recv_from(peer).await {
                all_last &= x.last;
                match consolidated.as_mut() {
                    Some(c) => c.absorb(x.partials),
                    None => store.merge(x.partials, now_ns),
                }
            }
            glommio::yield_if_needed().await;
        }
    }
    if let Some(c) = consolidated {
        forward(cfg, st, c, started);
        return all_last;
    }
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut batch = SeriesBatch::new(wall, cfg.interval.as_secs_f64());
    let fs = store.flush(&mut batch, now_ns);
    let mut s = st.borrow_mut();
    s.refresh_routes();
    let ShardState {
        counters: c,
        router,
        sinks,
        distinct,
        ..
    } = &mut *s;
    if !batch.is_empty() {
        let routed = router.route_batch(Arc::new(batch), &mut c.sinks);
        // (group's sink set, sink) pairs whose queue refused the batch: rare, so a Vec
        // that allocates only then.
        let mut refused: Vec<(SinkSet, usize)> = Vec::new();
        for (set, part) in routed.groups {
            let values = part.len() as u64;
            for i in set.iter() {
                let (Some(Some(sink)), Some(sc)) = (sinks.get(i), c.sinks.get_mut(i)) else {
                    continue;
                };
                if !offer(sink, sc, Egress::Series(part.clone()), values) {
                    refused.push((set, i));
                }
            }
        }
        count_distinct(router.batch_series(), distinct, &refused);
    }
    count_flush(&mut c.flush, started, fs);
    all_last
}

/// Offers `item` (`values` values) to a sink's queue without waiting: counted enqueued, or
/// dropped `queue_full` (logged). Returns whether the queue took it.
fn offer(sink: &SinkHandle, sc: &mut SinkEnqueueCounters, item: Egress, values: u64) -> bool {
    match sink.tx.try_send(item) {
        Ok(()) => {
            sc.batches_enqueued += 1;
            sc.values_enqueued += values;
            true
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            sc.batches_dropped_full += 1;
            sc.values_dropped_full += values;
            tracing::warn!(sink = %sink.name, values, "sink queue full: batch dropped");
            false
        }
    }
}

/// Counts one flush round that took since `started` and did `fs`.
fn count_flush(f: &mut FlushCounters, started: Instant, fs: FlushStats) {
    f.flushes += 1;
    let d = started.elapsed().as_nanos() as u64;
    f.last_duration_ns = d;
    f.total_duration_ns += d;
    f.series_emitted += fs.series_emitted;
    f.values_emitted += fs.values_emitted;
    f.series_expired += fs.series_expired;
    f.series_active = fs.series_active;
}

/// Forwarder mode: hands the owner's consolidated part of the interval to the `forward`
/// sink (a full queue is counted `queue_full`, never waited on) and counts the flush.
fn forward(cfg: &FlushConfig, st: &Rc<RefCell<ShardState>>, part: Partials, started: Instant) {
    let n = part.len() as u64;
    let mut s = st.borrow_mut();
    s.refresh_routes();
    let ShardState {
        counters: c, sinks, ..
    } = &mut *s;
    if n > 0 {
        let slot = sinks.iter().position(|h| {
            h.as_ref()
                .is_some_and(|h| h.name == switchyard_core::config::FORWARDER_SINK)
        });
        let item = ForwardItem::new(part, cfg.interval);
        let bytes = item.heap_bytes;
        match slot.and_then(|i| Some((sinks.get(i)?.as_ref()?, c.sinks.get_mut(i)?))) {
            // Held in memory while the aggregators are down: bounded in bytes as well as
            // in items (`queue_max_bytes`), the worker releases the reservation.
            Some((sink, sc)) => {
                if !sink.reserve(bytes) {
                    sc.batches_dropped_full += 1;
                    sc.values_dropped_full += n;
                    tracing::warn!(sink = %sink.name, values = n, bytes, "forwarder queue full: interval dropped");
                } else if !offer(sink, sc, Egress::Forward(Arc::new(item)), n) {
                    sink.release(bytes);
                }
            }
            // Not expected: the config adds the sink whenever it sets forwarder mode.
            None => tracing::error!(
                values = n,
                "forwarder mode without its forward sink: interval dropped"
            ),
        }
    }
    let fs = FlushStats {
        series_emitted: n,
        values_emitted: n,
        ..FlushStats::default()
    };
    count_flush(&mut c.flush, started, fs);
}

/// Inserts each routed series' hash into the distinct counter of every sink that took the
/// batch carrying it (a series is in the group of its own sink set, so `refused` is matched
/// on that set).
fn count_distinct(
    series: impl Iterator<Item = (u64, SinkSet)>,
    distinct: &mut [Distinct],
    refused: &[(SinkSet, usize)],
) {
    let now = switchyard_core::telemetry::top_clock();
    for (hash, set) in series {
        for i in set.iter() {
            if !refused.is_empty() && refused.contains(&(set, i)) {
                continue;
            }
            if let Some(d) = distinct.get_mut(i) {
                d.insert(hash, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counts_only_the_sinks_that_took_the_series() {
        let mut d = vec![Distinct::new(); 3];
        let series = [
            (1u64, SinkSet(0b011)),
            (2, SinkSet(0b011)),
            (3, SinkSet(0b110)),
            (4, SinkSet::EMPTY),
        ];
        // Sink 1's queue refused the 0b110 group only.
        count_distinct(series.into_iter(), &mut d, &[(SinkSet(0b110), 1)]);
        let now = switchyard_core::telemetry::top_clock();
        let got: Vec<u64> = d.iter().map(|x| x.estimate(now)).collect();
        assert_eq!(got, vec![2, 2, 1]);
    }
}
