//! The Datadog-compatible HTTP intake on one shard: a `SO_REUSEPORT` TCP listener, one
//! hyper HTTP/1.1 connection task per client (keep-alive, chunked bodies,
//! `Expect: 100-continue` and pipelining are hyper's), and the request handling in
//! [`service`].
//!
//! Bounds: at most `max_connections` connections per shard (more are closed at once and
//! counted), request heads capped at `max_header_bytes` (the connection is closed), a
//! header read deadline and a
//! body read deadline (`read_timeout`, 408), idle keep-alive connections closed after
//! `idle_timeout`, and request bodies held at once capped at `max_inflight_bytes` (429).
//!
//! TLS (`[http] tls`): the same server behind a rustls handshake ([`futures_rustls`]), which
//! must finish within `read_timeout`; a failed or slow handshake closes the connection and
//! is counted. The accept loop branches once per connection; the plain path's read and write
//! code is unchanged (the hyper shim is generic over the stream). The certificate in force
//! is the shared [`switchyard_tls::ServerTls`], swapped on SIGHUP for new handshakes.
//!
//! Shutdown: when the shard stops, the listener stops accepting, each connection finishes
//! the request it is serving and closes, and the shard waits (bounded) for them.
//!
//! Metrics (via [`HttpCounters`](switchyard_core::telemetry::HttpCounters)):
//! `switchyard_http_requests_total{endpoint}`, `switchyard_http_payloads_total{endpoint}`,
//! `switchyard_http_series_total{endpoint}`, `switchyard_http_points_total{endpoint}`,
//! `switchyard_http_bytes_total{endpoint,stage}`, `switchyard_http_errors_total{reason}`,
//! `switchyard_http_empty_bodies_total`, `switchyard_http_validate_total`,
//! `switchyard_http_connections_total{result}` (`accepted`, `rejected`, `tls_failed`), `switchyard_http_connections_open`,
//! `switchyard_http_inflight_bytes`, `switchyard_http_request_duration_seconds`.

pub mod hyper_glommio;
pub mod service;

use crate::ingest::ShardState;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::TlsAcceptor;
use glommio::net::{TcpListener, TcpStream};
use hyper::server::conn::http1;
use hyper_glommio::{HyperStream, HyperTimer};
use service::HttpContext;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How often each connection looks at the stop flag (many connections: less often).
const CONNECTION_STOP_POLL: Duration = Duration::from_millis(250);

/// Binds the shard's HTTP listener (`SO_REUSEPORT`, so every shard binds the same port).
///
/// # Errors
/// The bind error, with the address.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let fail = |e: std::io::Error| format!("binding http://{addr}: {e}");
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(fail)?;
    sock.set_reuse_address(true).map_err(fail)?;
    sock.set_reuse_port(true).map_err(fail)?;
    sock.set_nonblocking(true).map_err(fail)?;
    sock.bind(&addr.into()).map_err(fail)?;
    sock.listen(1024).map_err(fail)?;
    // SAFETY: the descriptor was just taken out of an owned, listening socket.
    Ok(unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) })
}

/// Accepts connections until `stop` is set, then waits (up to `drain`) for open
/// connections to finish their current request. With `tls`, every connection starts with a
/// TLS handshake.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Rc<HttpContext>,
    st: Rc<RefCell<ShardState>>,
    stop: Rc<Cell<bool>>,
    drain: Duration,
) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !stop.get() {
                glommio::timer::sleep(STOP_POLL).await;
            }
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        {
            let mut s = st.borrow_mut();
            if open.get() >= ctx.settings.max_connections {
                s.counters.http.connections_rejected += 1;
                drop(stream);
                continue;
            }
            s.counters.http.connections_accepted += 1;
        }
        open.set(open.get() + 1);
        st.borrow_mut().counters.http.connections_open = open.get() as u64;
        let _ = stream.set_nodelay(true);
        // An idle keep-alive connection (and a stalled read) ends after idle_timeout.
        let _ = stream.set_read_timeout(Some(ctx.settings.idle_timeout));
        let (ctx, st, stop, open) = (ctx.clone(), st.clone(), stop.clone(), open.clone());
        match &tls {
            None => glommio::spawn_local(connection(stream, ctx, st, stop, open)).detach(),
            Some(acceptor) => {
                let task = tls_connection(stream, acceptor.clone(), ctx, st, stop, open);
                glommio::spawn_local(task).detach()
            }
        };
    }
    drop(listener);
    let until = Instant::now() + drain;
    while open.get() > 0 && Instant::now() < until {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if open.get() > 0 {
        tracing::warn!(
            connections = open.get(),
            "HTTP connections still open at shutdown: closing them unanswered"
        );
    }
    // Connections still open hold the shard state: the shard closes its sinks once the
    // flush loop has finished too (the final flush shares them), so those connections never
    // keep a sink queue open.
}

/// A TLS handshake bounded by `read_timeout` (a slowloris guard for the handshake too),
/// then the connection as over plain TCP.
async fn tls_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    ctx: Rc<HttpContext>,
    st: Rc<RefCell<ShardState>>,
    stop: Rc<Cell<bool>>,
    open: Rc<Cell<usize>>,
) {
    let deadline = ctx.settings.read_timeout;
    let handshake =
        futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
            glommio::timer::sleep(deadline).await;
            None
        })
        .await;
    match handshake {
        Some(Ok(tls)) => connection(tls, ctx, st, stop, open).await,
        failed => {
            match failed {
                Some(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                _ => tracing::debug!("TLS handshake did not finish within read_timeout"),
            }
            open.set(open.get().saturating_sub(1));
            let mut s = st.borrow_mut();
            s.counters.http.connections_tls_failed += 1;
            s.counters.http.connections_open = open.get() as u64;
        }
    }
}

async fn connection<S>(
    stream: S,
    ctx: Rc<HttpContext>,
    st: Rc<RefCell<ShardState>>,
    stop: Rc<Cell<bool>>,
    open: Rc<Cell<usize>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let buf = Rc::new(RefCell::new(Vec::new()));
    let svc = {
        let (ctx, st) = (ctx.clone(), st.clone());
        hyper::service::service_fn(move |req| {
            service::handle(ctx.clone(), st.clone(), buf.clone(), req)
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .pipeline_flush(true)
        .timer(HyperTimer)
        .header_read_timeout(ctx.settings.read_timeout)
        .max_header_size(ctx.settings.max_header_bytes);
    let conn = builder.serve_connection(HyperStream(stream), svc);
    futures_lite::pin!(conn);
    let stopped = futures_lite::future::or(async { Some((&mut conn).await) }, async {
        while !stop.get() {
            glommio::timer::sleep(CONNECTION_STOP_POLL).await;
        }
        None
    })
    .await;
    let result = match stopped {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
    open.set(open.get().saturating_sub(1));
    st.borrow_mut().counters.http.connections_open = open.get() as u64;
}
