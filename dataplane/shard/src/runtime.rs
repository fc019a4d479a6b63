//! Starting and stopping the shards.
//!
//! [`start`] spawns one pinned glommio executor per shard. Each binds its sockets, reports
//! the result, then runs its receive loops (ingest task queue) and its flush loop (flush task
//! queue, lower share) until shutdown. `start` returns only when every shard has bound every
//! listener, so the caller can tell systemd it is ready; a bind failure on any shard stops
//! the start with that error.

use crate::flush::{self, FlushConfig, FlushIo, Mesh};
use crate::http::{self, service::HttpContext, service::HttpSettings, service::KeyPolicy};
use crate::ingest::{self, ListenSocket, Listener, ShardState};
use crate::plan::Plan;
use crate::socket;
use glommio::{executor, ExecutorJoinHandle, LocalExecutorBuilder, Placement, Shares};
use std::cell::{Cell, RefCell};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::aggregate::IntervalAggregator;
use switchyard_core::config::{Config, ListenAddress, Listener as ListenerConfig};
use switchyard_core::forward::{ForwardDecoder, ForwardLimits};
use switchyard_core::intake::gostatsd::RawDecoder;
use switchyard_core::route::RoutesCell;
use switchyard_core::telemetry::Telemetry;
use switchyard_sinks::SinkSlots;

/// Why the dataplane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A shard could not bind a listener.
    #[error("shard {shard}: {message}")]
    Bind {
        /// Shard index.
        shard: usize,
        /// What failed.
        message: String,
    },
    /// The configuration cannot be used as it is (a missing environment variable).
    #[error("{0}")]
    Config(String),
    /// An executor could not be created.
    #[error("shard {shard}: starting the executor failed: {message}")]
    Executor {
        /// Shard index.
        shard: usize,
        /// What failed.
        message: String,
    },
}

/// The running shards.
#[derive(Debug)]
pub struct Dataplane {
    handles: Vec<ExecutorJoinHandle<()>>,
    http_tls: Option<switchyard_tls::ServerTls>,
}

impl Dataplane {
    /// The HTTP intake's TLS setup, when `[http] tls` is configured (reload it on SIGHUP).
    pub fn http_tls(&self) -> Option<&switchyard_tls::ServerTls> {
        self.http_tls.as_ref()
    }

    /// Waits for every shard to finish (after the shutdown flag was set).
    pub fn join(self) {
        for h in self.handles {
            if let Err(e) = h.join() {
                tracing::error!(error = %e, "shard ended with an error");
            }
        }
    }
}

/// How long a stopping shard waits for open HTTP connections to finish their request.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

struct ShardSetup {
    shard: usize,
    listeners: Vec<ListenerConfig>,
    http: Option<(std::net::SocketAddr, HttpSettings, KeyPolicy)>,
    http_tls: Option<Arc<futures_rustls::rustls::ServerConfig>>,
    rcvbuf: usize,
    batch: usize,
    slot: usize,
    seed: u64,
    max_tags: usize,
    max_series: usize,
    max_timer_values: usize,
    ignore_host: bool,
    epoch: Instant,
    flush: FlushConfig,
    io: FlushIo,
    slots: Arc<SinkSlots>,
    mesh: Option<Mesh>,
    routes: Arc<RoutesCell>,
    http_listener_name: String,
    ready: mpsc::Sender<Result<(), String>>,
}

/// Starts the shards and waits until all have bound their listeners. `routes` holds the
/// route table (compiled against `sinks`' route names); the shards pick up every table later
/// stored in it, with the sink slots published before it.
///
/// # Errors
/// The first shard that failed to bind or to start.
pub fn start(
    cfg: &Config,
    plan: &Plan,
    sinks: Arc<SinkSlots>,
    telemetry: Arc<Telemetry>,
    shutdown: Arc<AtomicBool>,
    seed: u64,
    routes: Arc<RoutesCell>,
) -> Result<Dataplane, StartError> {
    let shards = plan.shards();
    let mesh = (shards > 1).then(|| Mesh::full(shards, 2));
    let epoch = Instant::now();
    let mut handles = Vec::new();
    let mut readies = Vec::new();
    let sc = &cfg.statsd;
    let keys = match &cfg.http.api_keys_env {
        None => KeyPolicy::Any,
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => KeyPolicy::allow_list(&v),
            _ => {
                return Err(StartError::Config(format!(
                    "http.api_keys_env names {var}, which is not set (or empty): set it to the accepted API keys, separated by commas"
                )))
            }
        },
    };
    // The routes are compiled against the sink slots' route names, so bit `i` of a
    // decision is slot `i`.
    let names = sinks.route_names();
    if routes.load().0.sinks() != names.as_slice() {
        return Err(StartError::Config(format!(
            "the route table addresses sinks {:?}, not the sink slots {names:?}",
            routes.load().0.sinks()
        )));
    }
    let http = cfg
        .http_addr()
        .map(|a| (a, HttpSettings::from(&cfg.http), keys));
    // Loaded once for every shard: they share the certificate a SIGHUP swaps.
    let http_tls = match (&http, &cfg.http.tls) {
        (Some(_), Some(t)) => Some(
            switchyard_tls::ServerTls::load(&t.cert, &t.key, &[b"http/1.1"])
                .map_err(|e| StartError::Config(format!("http.tls: {e}")))?,
        ),
        _ => None,
    };
    for (shard, cpu) in plan.cpus.iter().copied().enumerate() {
        let (ready, ready_rx) = mpsc::channel();
        let setup = ShardSetup {
            shard,
            listeners: cfg.listeners(),
            http: http.clone(),
            http_tls: http_tls.as_ref().map(switchyard_tls::ServerTls::config),
            rcvbuf: sc.receive_buffer_bytes,
            batch: sc.recv_batch,
            slot: sc.max_datagram_bytes,
            seed,
            max_tags: sc.max_tags_per_line,
            max_series: sc.max_series_per_shard,
            max_timer_values: sc.max_timer_values_per_shard,
            ignore_host: sc.ignore_host,
            epoch,
            flush: FlushConfig {
                shard,
                shards,
                // A forwarder sends on its own interval.
                interval: cfg
                    .forwarder
                    .as_ref()
                    .map_or(sc.flush_interval, |f| f.interval),
                align: sc.flush_align,
                expiry: sc.expiry_interval,
                percentiles: sc.percentiles.clone(),
                forward: cfg.forwarder.is_some(),
            },
            slots: sinks.clone(),
            io: FlushIo {
                telemetry: telemetry.clone(),
                shutdown: shutdown.clone(),
            },
            mesh: mesh.clone(),
            routes: routes.clone(),
            http_listener_name: cfg.http.listen.clone(),
            ready,
        };
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{shard}"))
            .io_memory(plan.io_memory)
            .spawn(move || shard_main(setup))
            .map_err(|e| StartError::Executor {
                shard,
                message: e.to_string(),
            })?;
        handles.push(h);
        readies.push(ready_rx);
    }
    for (shard, r) in readies.into_iter().enumerate() {
        match r.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(StartError::Bind { shard, message }),
            Err(_) => {
                return Err(StartError::Executor {
                    shard,
                    message: "the executor exited before binding (see the log above)".into(),
                })
            }
        }
    }
    Ok(Dataplane { handles, http_tls })
}

fn bind_listener(
    s: &ShardSetup,
    l: &ListenerConfig,
    index: usize,
    telemetry: &Telemetry,
) -> Result<Option<Listener>, String> {
    match &l.address {
        ListenAddress::Udp(addr) => {
            let (sock, granted) = socket::bind_udp(*addr, s.rcvbuf).map_err(|e| e.to_string())?;
            if let Some(inode) = socket::socket_inode(std::os::fd::AsRawFd::as_raw_fd(&sock)) {
                telemetry.register_socket(inode, granted);
            }
            if granted < s.rcvbuf && s.shard == 0 {
                tracing::warn!(
                    requested = s.rcvbuf,
                    granted,
                    "receive buffer capped by net.core.rmem_max; raise it to avoid kernel drops"
                );
            }
            // SAFETY: the fd was just taken out of an owned, bound socket.
            let g = unsafe { glommio::net::UdpSocket::from_raw_fd(sock.into_raw_fd()) };
            Ok(Some(Listener::new(
                ListenSocket::Udp(g),
                l.gauge_dialect,
                index,
                s.batch,
                s.slot,
            )))
        }
        // A Unix datagram path can be bound once: shard 0 serves it.
        ListenAddress::Unixgram(_) if s.shard != 0 => Ok(None),
        ListenAddress::Unixgram(path) => {
            socket::clear_stale_unix_socket(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let g = std::os::unix::net::UnixDatagram::bind(path)
                .map_err(|e| format!("binding unixgram://{}: {e}", path.display()))?;
            g.set_nonblocking(true)
                .map_err(|e| format!("unixgram://{}: {e}", path.display()))?;
            socket::set_rcvbuf(&socket2::SockRef::from(&g), s.rcvbuf);
            // Local services of any user may send metrics, as to the Agent's socket.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
            Ok(Some(Listener::new(
                ListenSocket::Unix(g),
                l.gauge_dialect,
                index,
                s.batch,
                s.slot,
            )))
        }
    }
}

async fn shard_main(s: ShardSetup) {
    let telemetry = s.io.telemetry.clone();
    let mut listeners = Vec::new();
    for (index, l) in s.listeners.iter().enumerate() {
        match bind_listener(&s, l, index, &telemetry) {
            Ok(Some(x)) => listeners.push(Rc::new(x)),
            Ok(None) => {}
            Err(e) => {
                let _ = s.ready.send(Err(e));
                return;
            }
        }
    }
    let http_listener = match &s.http {
        Some((addr, ..)) => match http::bind(*addr) {
            Ok(l) => Some(l),
            Err(e) => {
                let _ = s.ready.send(Err(e));
                return;
            }
        },
        None => None,
    };
    let agg = IntervalAggregator::new(s.seed, s.max_tags, s.max_series, s.max_timer_values);
    let st = Rc::new(RefCell::new(ShardState::new(
        agg,
        s.slots.clone(),
        s.ignore_host,
        s.epoch,
        s.routes.clone(),
        s.shard,
    )));
    let stop = Rc::new(Cell::new(false));
    let ex = executor();
    let ingest_tq = ex.create_task_queue(
        Shares::Static(800),
        glommio::Latency::NotImportant,
        "ingest",
    );
    let flush_tq =
        ex.create_task_queue(Shares::Static(200), glommio::Latency::NotImportant, "flush");
    for l in &listeners {
        let task = ingest::run(l.clone(), st.clone(), stop.clone());
        match glommio::spawn_local_into(task, ingest_tq) {
            Ok(t) => t.detach(),
            Err(e) => {
                let _ = s.ready.send(Err(format!("spawning the receive loop: {e}")));
                return;
            }
        };
    }
    let mut http_task = None;
    if let (Some(listener), Some((_, settings, keys))) = (http_listener, s.http.clone()) {
        let max_decompressed = settings.max_decompressed_bytes;
        let max_body = settings.max_body_bytes;
        let ctx = Rc::new(HttpContext {
            settings,
            keys,
            scratch: RefCell::new(Default::default()),
            inflight: Cell::new(0),
            stop: stop.clone(),
            listener: s.http_listener_name.clone(),
            listener_index: s.listeners.len(),
            gostatsd: RefCell::new(RawDecoder::new(max_decompressed)),
            forward: RefCell::new(ForwardDecoder::new(ForwardLimits {
                max_body_bytes: max_body,
                max_decoded_bytes: max_decompressed,
                ..ForwardLimits::default()
            })),
        });
        let tls = s.http_tls.clone().map(futures_rustls::TlsAcceptor::from);
        let task = http::serve(listener, tls, ctx, st.clone(), stop.clone(), HTTP_DRAIN);
        match glommio::spawn_local_into(task, ingest_tq) {
            Ok(t) => http_task = Some(t),
            Err(e) => {
                let _ = s.ready.send(Err(format!("spawning the HTTP server: {e}")));
                return;
            }
        }
    }
    let _ = s.ready.send(Ok(()));
    tracing::info!(shard = s.shard, listeners = listeners.len(), "shard ready");
    let flush = flush::run(s.flush, s.io, st.clone(), listeners, stop, s.mesh);
    match glommio::spawn_local_into(flush, flush_tq) {
        Ok(t) => t.await,
        Err(e) => tracing::error!(error = %e, "spawning the flush loop failed"),
    }
    // The flush loop set `stop`: the HTTP server finishes its requests and closes.
    if let Some(t) = http_task {
        t.await;
    }
    // The final flush is done and the HTTP drain is over: connections still open (stalled
    // clients) and receive loops that have not noticed the stop must not keep the queues
    // open.
    st.borrow_mut().close_sinks();
    tracing::info!(shard = s.shard, "shard stopped");
}
