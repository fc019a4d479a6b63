//! The receive loop: read a batch of datagrams, parse every line, fold it into the shard's
//! interval aggregates, repeat; park on socket readiness only when the queue is empty.
//!
//! Nothing here allocates per line or per datagram: lines borrow from the receive buffer,
//! series keys are built in scratch space, and the sender's address is formatted only when
//! it differs from the previous datagram's.
//!
//! Metrics (via `StatsdCounters`): `switchyard_statsd_datagrams_total`,
//! `switchyard_statsd_bytes_total`, `switchyard_statsd_truncated_datagrams_total`,
//! `switchyard_statsd_lines_total{result,reason}`, `switchyard_statsd_events_total`,
//! `switchyard_statsd_service_checks_total`.

use crate::recv::{format_ip, ip_bytes, Datagram, RecvBuffers};
use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::aggregate::{GaugeDialect, HostSource, IntervalAggregator, LineContext};
use switchyard_core::distinct::Distinct;
use switchyard_core::route::{Router, RoutesCell};
use switchyard_core::statsd::{
    lines, lines_str, parse_message, parse_message_str, LineError, Message,
};
use switchyard_core::telemetry::{ShardCounters, StatsdCounters, TopNames};
use switchyard_sinks::{SinkHandle, SinkSlots};

/// A shard's socket for one listener.
#[derive(Debug)]
pub enum ListenSocket {
    /// A `SO_REUSEPORT` UDP socket.
    Udp(glommio::net::UdpSocket),
    /// A Unix datagram socket. glommio 0.9's `UnixDatagram` panics on datagrams from
    /// unnamed senders (every DogStatsD client) and exposes no descriptor, so this is a plain
    /// non-blocking socket read with `recvmmsg` and polled with a short timer when idle.
    Unix(std::os::unix::net::UnixDatagram),
}

/// Waits until a datagram is queued (a one-byte `MSG_PEEK` through io_uring).
async fn readable(s: &glommio::net::UdpSocket) {
    let mut one = [0u8; 1];
    if let Err(e) = s.peek_from(&mut one).await {
        tracing::warn!(error = %e, "waiting for datagrams failed; retrying");
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// One listener on one shard: its socket, its receive buffers, its gauge dialect and its
/// index in the config's `[statsd] listen` list (routes may match it by name).
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: ListenSocket,
    bufs: RefCell<RecvBuffers>,
    dialect: GaugeDialect,
    index: usize,
}

impl Listener {
    /// Listener `index` reading `batch` datagrams of up to `slot` bytes per call.
    pub fn new(
        socket: ListenSocket,
        dialect: GaugeDialect,
        index: usize,
        batch: usize,
        slot: usize,
    ) -> Self {
        Self {
            socket,
            bufs: RefCell::new(RecvBuffers::new(batch, slot)),
            dialect,
            index,
        }
    }
}

/// The shard's ingest state: aggregates and counters, plain data owned by the shard.
#[derive(Debug)]
pub struct ShardState {
    /// Partial aggregates of the current interval.
    pub agg: IntervalAggregator,
    /// The shard's counters.
    pub counters: ShardCounters,
    /// Take the host from a `host:` tag instead of the sender.
    pub ignore_host: bool,
    /// Process-wide monotonic epoch (the same on every shard).
    pub epoch: Instant,
    /// The heaviest metric names seen by this shard (statsd at flush, HTTP per payload).
    pub top: TopNames,
    /// The routes: decision cache, per-route counts.
    pub router: Router,
    /// Per sink (indexed like `counters.sinks`): the distinct series this shard sent it
    /// over the last hour (statsd at flush, HTTP per accepted payload).
    pub distinct: Vec<Distinct>,
    /// The scope each statsd listener's series aggregate in under the table in force, by
    /// listener index (see [`switchyard_core::aggregate::SeriesKey::scope`]).
    listener_scopes: Vec<u8>,
    /// This shard's producer handles, by sink slot (bit `i` of a decision is `sinks[i]`;
    /// `None` for a removed sink). Taken with every route table; emptied at shutdown.
    pub sinks: Vec<Option<SinkHandle>>,
    sinks_closed: bool,
    /// Where new route tables and sink slots come from, this shard's index, and the
    /// generation the router runs.
    slots: Arc<SinkSlots>,
    routes_cell: Arc<RoutesCell>,
    shard: usize,
    routes_generation: u64,
    host: String,
    last_ip: [u8; 16],
}

impl ShardState {
    /// New state for shard `shard`. The tables in `routes` are compiled against `slots`'
    /// route names (bit `i` of a decision is slot `i`).
    pub fn new(
        agg: IntervalAggregator,
        slots: Arc<SinkSlots>,
        ignore_host: bool,
        epoch: Instant,
        routes: Arc<RoutesCell>,
        shard: usize,
    ) -> Self {
        let sinks = slots.handles();
        let (table, routes_generation) = routes.load();
        routes.report(shard, table.version());
        let listener_scopes = scopes(&table);
        let mut counters = ShardCounters::default();
        counters.sinks.resize(sinks.len(), Default::default());
        Self {
            agg,
            counters,
            ignore_host,
            epoch,
            top: TopNames::default(),
            router: Router::new(table),
            listener_scopes,
            distinct: vec![Distinct::new(); sinks.len()],
            sinks,
            sinks_closed: false,
            slots,
            routes_cell: routes,
            shard,
            routes_generation,
            host: String::new(),
            last_ip: [0xff; 16],
        }
    }

    /// Switches to the current route table if the control plane installed a new one (one
    /// atomic load when nothing changed), with the sink slots it addresses (published
    /// before the table). Counts of the old table are kept by rule name.
    pub fn refresh_routes(&mut self) {
        if self.routes_cell.generation() == self.routes_generation {
            return;
        }
        if !self.sinks_closed {
            self.sinks = self.slots.handles();
            if self.counters.sinks.len() < self.sinks.len() {
                self.counters
                    .sinks
                    .resize(self.sinks.len(), Default::default());
            }
            if self.distinct.len() < self.sinks.len() {
                self.distinct.resize(self.sinks.len(), Distinct::new());
            }
        }
        let (table, generation) = self.routes_cell.load();
        self.routes_cell.report(self.shard, table.version());
        tracing::info!(
            shard = self.shard,
            version = table.version(),
            "route table installed"
        );
        self.listener_scopes = scopes(&table);
        self.router.install(table, &mut self.counters.routes);
        self.routes_generation = generation;
    }

    /// Drops this shard's sink handles for good (shutdown), so the queues close once every
    /// shard has.
    pub fn close_sinks(&mut self) {
        self.sinks.clear();
        self.sinks_closed = true;
    }

    /// Whether [`Self::close_sinks`] ran.
    pub fn sinks_closed(&self) -> bool {
        self.sinks_closed
    }

    /// The scope series of input `index` aggregate in under the table in force (statsd
    /// listeners first, then the HTTP listener: the order of the config's route listeners).
    pub fn listener_scope(&self, index: usize) -> u8 {
        self.listener_scopes.get(index).copied().unwrap_or(0)
    }

    /// Nanoseconds since the process epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Listener scopes under `table`, for up to 255 statsd listeners (the config's order comes
/// first in the table's listener list).
fn scopes(table: &switchyard_core::route::CompiledRoutes) -> Vec<u8> {
    (0..usize::from(u8::MAX))
        .map(|i| table.listener_scope(i))
        .collect()
}

fn process_datagram(st: &mut ShardState, d: Datagram<'_>, l: &Listener, now_ns: u64) {
    let dialect = l.dialect;
    let ShardState {
        agg,
        counters,
        ignore_host,
        host,
        last_ip,
        listener_scopes,
        ..
    } = st;
    let c = &mut counters.statsd;
    c.datagrams += 1;
    c.bytes += d.data.len() as u64;
    let mut data = d.data;
    if d.truncated {
        c.truncated_datagrams += 1;
        // The last line was cut by the kernel: keep only complete lines, reject the tail.
        match memchr_last_newline(data) {
            Some(i) => data = &data[..i],
            None => data = &[],
        }
        c.reject(LineError::TooLong);
    }
    let source = if *ignore_host {
        HostSource::Tag
    } else {
        match d.sender {
            Some(addr) => {
                let ip = ip_bytes(addr);
                if ip != *last_ip {
                    format_ip(addr, host);
                    *last_ip = ip;
                }
                HostSource::Sender(host.as_str())
            }
            None => HostSource::Sender(""),
        }
    };
    let cx = LineContext {
        host: source,
        dialect,
        now_ns,
        scope: listener_scopes.get(l.index).copied().unwrap_or(0),
    };
    // Validate UTF-8 once per datagram (SIMD); only a datagram that fails is re-checked
    // line by line, so one bad line rejects only itself.
    match simdutf8::basic::from_utf8(data) {
        Ok(text) => {
            for line in lines_str(text) {
                apply(parse_message_str(line), agg, c, cx);
            }
        }
        Err(_) => {
            for line in lines(data) {
                apply(parse_message(line), agg, c, cx);
            }
        }
    }
}

#[inline]
fn apply(
    msg: Result<Message<'_>, LineError>,
    agg: &mut IntervalAggregator,
    c: &mut StatsdCounters,
    cx: LineContext<'_>,
) {
    match msg {
        Ok(Message::Metric(m)) => match agg.ingest(&m, cx) {
            Ok(()) => c.lines_ok += 1,
            Err(e) => c.reject(e),
        },
        Ok(Message::Event(_)) => c.events += 1,
        Ok(Message::ServiceCheck(_)) => c.service_checks += 1,
        Err(e) => c.reject(e),
    }
}

fn memchr_last_newline(b: &[u8]) -> Option<usize> {
    b.iter().rposition(|x| *x == b'\n')
}

/// Reads and processes one batch without blocking; returns the datagrams read.
pub fn read_batch(l: &Listener, st: &mut ShardState) -> usize {
    let fd = match &l.socket {
        ListenSocket::Udp(s) => s.as_raw_fd(),
        ListenSocket::Unix(s) => s.as_raw_fd(),
    };
    let mut bufs = l.bufs.borrow_mut();
    let n = match bufs.recv(fd) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "recvmmsg failed");
            0
        }
    };
    if n > 0 {
        st.counters.statsd.recv_batches += 1;
        let now_ns = st.now_ns();
        for d in bufs.datagrams() {
            process_datagram(st, d, l, now_ns);
        }
    }
    n
}

/// Reads everything already queued on the socket (used at shutdown, before the last flush).
pub fn drain(l: &Listener, st: &mut ShardState) {
    while read_batch(l, st) > 0 {}
}

/// How long an idle Unix datagram listener sleeps between polls.
const UNIX_IDLE_POLL: Duration = Duration::from_millis(1);

/// The receive loop of one listener; returns when `stop` is set.
pub async fn run(l: Rc<Listener>, st: Rc<RefCell<ShardState>>, stop: Rc<Cell<bool>>) {
    loop {
        if stop.get() {
            return;
        }
        let n = read_batch(&l, &mut st.borrow_mut());
        if n > 0 {
            glommio::yield_if_needed().await;
            continue;
        }
        match &l.socket {
            ListenSocket::Udp(sock) => readable(sock).await,
            ListenSocket::Unix(_) => glommio::timer::sleep(UNIX_IDLE_POLL).await,
        }
    }
}
