//! Plain counter structs for self-telemetry.
//!
//! Each shard owns its counters as plain data (no atomics, no locks on the per-line path) and
//! publishes a copy about once a second and after every flush; the control plane sums the
//! shards' copies when scraped ([`Telemetry`]). The lock of a shard's slot is taken once per
//! publish and once per scrape, never per line. Names follow `switchyard_<component>_<what>_<unit>`.

use crate::statsd::LineError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// statsd ingest counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsdCounters {
    /// Datagrams received (`switchyard_statsd_datagrams_total`).
    pub datagrams: u64,
    /// Bytes received (`switchyard_statsd_bytes_total`).
    pub bytes: u64,
    /// Datagrams longer than the buffer, cut by the kernel (`switchyard_statsd_truncated_datagrams_total`).
    pub truncated_datagrams: u64,
    /// recvmmsg calls that returned data (`switchyard_statsd_recv_batches_total`).
    pub recv_batches: u64,
    /// Accepted metric lines (`switchyard_statsd_lines_total{result="ok"}`).
    pub lines_ok: u64,
    /// Rejected lines by reason (`switchyard_statsd_lines_total{result="error",reason}`).
    pub lines_error: [u64; LineError::COUNT],
    /// Events parsed (`switchyard_statsd_events_total`).
    pub events: u64,
    /// Service checks parsed (`switchyard_statsd_service_checks_total`).
    pub service_checks: u64,
}

impl StatsdCounters {
    /// Counts a rejected line.
    pub fn reject(&mut self, e: LineError) {
        if let Some(c) = self.lines_error.get_mut(e.index()) {
            *c += 1;
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &StatsdCounters) {
        self.datagrams += o.datagrams;
        self.bytes += o.bytes;
        self.truncated_datagrams += o.truncated_datagrams;
        self.recv_batches += o.recv_batches;
        self.lines_ok += o.lines_ok;
        for (a, b) in self.lines_error.iter_mut().zip(o.lines_error.iter()) {
            *a += b;
        }
        self.events += o.events;
        self.service_checks += o.service_checks;
    }
}

/// Flush counters of one shard (as an owner).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushCounters {
    /// Flushes completed (`switchyard_flush_total`).
    pub flushes: u64,
    /// Duration of the last flush, ns (`switchyard_flush_duration_seconds{stat="last"}`).
    pub last_duration_ns: u64,
    /// Total flush time, ns (`switchyard_flush_duration_seconds_total`).
    pub total_duration_ns: u64,
    /// Series emitted (`switchyard_flush_series_total`).
    pub series_emitted: u64,
    /// Values emitted after sub-metric expansion (`switchyard_flush_values_total`).
    pub values_emitted: u64,
    /// Series expired as idle (`switchyard_series_expired_total`).
    pub series_expired: u64,
    /// Series held by this owner after the last flush (`switchyard_series_active`).
    pub series_active: u64,
}

impl FlushCounters {
    /// Adds `other` into `self` (durations: the max of the last, the sum of totals).
    pub fn add(&mut self, o: &FlushCounters) {
        self.flushes += o.flushes;
        self.last_duration_ns = self.last_duration_ns.max(o.last_duration_ns);
        self.total_duration_ns += o.total_duration_ns;
        self.series_emitted += o.series_emitted;
        self.values_emitted += o.values_emitted;
        self.series_expired += o.series_expired;
        self.series_active += o.series_active;
    }
}

/// Per-sink enqueue counters kept by one shard (the shard is the producer side of the queue).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkEnqueueCounters {
    /// Batches handed to the sink's queue.
    pub batches_enqueued: u64,
    /// Values (series points) in those batches.
    pub values_enqueued: u64,
    /// Batches dropped because the queue was full.
    pub batches_dropped_full: u64,
    /// Values in the dropped batches.
    pub values_dropped_full: u64,
}

impl SinkEnqueueCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &SinkEnqueueCounters) {
        self.batches_enqueued += o.batches_enqueued;
        self.values_enqueued += o.values_enqueued;
        self.batches_dropped_full += o.batches_dropped_full;
        self.values_dropped_full += o.values_dropped_full;
    }
}

/// Everything one shard publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// statsd ingest.
    pub statsd: StatsdCounters,
    /// Flushes.
    pub flush: FlushCounters,
    /// Distinct series in the current interval's partials (`switchyard_statsd_interval_series`).
    pub interval_series: u64,
    /// Per sink, indexed like the runtime's sink list.
    pub sinks: Vec<SinkEnqueueCounters>,
}

impl ShardCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &ShardCounters) {
        self.statsd.add(&o.statsd);
        self.flush.add(&o.flush);
        self.interval_series += o.interval_series;
        if self.sinks.len() < o.sinks.len() {
            self.sinks
                .resize(o.sinks.len(), SinkEnqueueCounters::default());
        }
        for (a, b) in self.sinks.iter_mut().zip(o.sinks.iter()) {
            a.add(b);
        }
    }
}

/// Counters published by the shards.
#[derive(Debug)]
pub struct Telemetry {
    shards: Vec<Mutex<ShardCounters>>,
    inodes: Mutex<Vec<u64>>,
    granted_rcvbuf: AtomicU64,
    started: Instant,
}

impl Telemetry {
    /// A board for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(ShardCounters::default()))
                .collect(),
            inodes: Mutex::new(Vec::new()),
            granted_rcvbuf: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Replaces shard `i`'s published counters.
    pub fn publish(&self, i: usize, c: &ShardCounters) {
        if let Some(m) = self.shards.get(i) {
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            g.clone_from(c);
        }
    }

    /// Shard `i`'s last published counters.
    pub fn shard(&self, i: usize) -> ShardCounters {
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The sum over all shards.
    pub fn total(&self) -> ShardCounters {
        let mut t = ShardCounters::default();
        for i in 0..self.shards.len() {
            t.add(&self.shard(i));
        }
        t
    }

    /// Records a UDP socket so its kernel drop counter is exported.
    pub fn register_socket(&self, inode: u64, granted_rcvbuf: usize) {
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(inode);
        self.granted_rcvbuf
            .store(granted_rcvbuf as u64, Ordering::Relaxed);
    }

    /// Datagrams the kernel dropped on our UDP sockets (full receive buffers).
    pub fn kernel_drops(&self) -> u64 {
        let inodes = self
            .inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        kernel_udp_drops(&inodes)
    }

    /// The receive buffer the kernel granted to the last bound UDP socket.
    pub fn granted_rcvbuf(&self) -> u64 {
        self.granted_rcvbuf.load(Ordering::Relaxed)
    }

    /// Seconds since the dataplane started.
    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Sums the kernel's drop counters of the UDP sockets with the given inodes, read from
/// `/proc/net/udp` and `/proc/net/udp6` (the last column is `drops`).
pub fn kernel_udp_drops(inodes: &[u64]) -> u64 {
    let mut total = 0;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        total += drops_in(&text, inodes);
    }
    total
}

fn drops_in(text: &str, inodes: &[u64]) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let inode: u64 = f.get(9)?.parse().ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_udp_drops() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
 1234: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5551 2 0000000000000000 17\n\
 1235: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5552 2 0000000000000000 4\n";
        assert_eq!(drops_in(text, &[5551]), 17);
        assert_eq!(drops_in(text, &[5551, 5552]), 21);
        assert_eq!(drops_in(text, &[1]), 0);
    }
}
