//! The Datadog-compatible HTTP intake on one shard: a `SO_REUSEPORT` TCP listener, one
//! hyper HTTP/1.1 connection task per client (keep-alive, chunked bodies,
//! `Expect: 100-continue` and pipelining are hyper's), and the request handling in
//! [`service`].
//!
//! Bounds: at most `max_connections` connections per shard (more are closed at once and
//! counted), request heads capped at `max_header_bytes` (hyper answers 431 and closes), a
//! header read deadline (`read_timeout`: the connection is closed) and a body read deadline
//! (the same `read_timeout`, answered 408), idle keep-alive connections closed after
//! `idle_timeout` (or `read_timeout`, whichever is shorter: hyper's head deadline also runs
//! while waiting for the next request), and request bodies held at once capped at
//! `max_inflight_bytes` (429). A connection hyper ends with an error is counted by reason:
//! `header_timeout` (a head had started), `idle`, `header_too_large`, `malformed`, `io`.
//! hyper closes on a head it cannot parse without answering: the connection task then
//! answers 431 (head over `max_header_bytes`) or 400 (malformed) with a JSON error itself.
//! Except after a slow or idle client, closing lingers (bounded: 2 s, 1 MiB, at most
//! `max_connections` lingering at once, outside the open-connection cap): the server
//! half-closes and discards what the client still sends, so an answer written just before
//! the close (431, 400, an early 413) is not lost to a TCP reset.
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
//! `switchyard_http_connections_total{result}` (`accepted`, `rejected`, `tls_failed`),
//! `switchyard_http_connections_open`, `switchyard_http_connection_errors_total{reason}`,
//! `switchyard_http_inflight_bytes`, `switchyard_http_request_duration_seconds`; for the
//! gostatsd aggregator routes (see [`service`]) the per-endpoint families with
//! `endpoint="gostatsd_raw"` / `"gostatsd_event"`, `switchyard_aggregator_errors_total{endpoint,
//! reason}`, `switchyard_aggregator_series_total{result,reason}` and
//! `switchyard_gostatsd_health_checks_total`.

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
use switchyard_core::telemetry::HttpConnectionError;

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
    let lingering = Rc::new(Cell::new(0usize));
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
        let lingering = lingering.clone();
        match &tls {
            None => {
                glommio::spawn_local(connection(stream, ctx, st, stop, open, lingering)).detach()
            }
            Some(acceptor) => {
                let task = tls_connection(stream, acceptor.clone(), ctx, st, stop, open, lingering);
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

/// Most bytes read and discarded when lingering on a closed connection.
const LINGER_BYTES: usize = 1 << 20;
/// Longest linger on a closed connection.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Lingering close: half-closes the connection and reads (and discards) what the client
/// still sends, until it closes too, up to [`LINGER_BYTES`] or [`LINGER_TIME`]. Closing a
/// socket with unread bytes sends a reset, and a reset makes the client's kernel drop an
/// answer it has not read yet: the 431 hyper writes for an oversized head, its 400 for a
/// malformed one, or a 413 answered from `Content-Length` before the body was read.
async fn linger<S: HalfClose>(stream: &mut S) {
    use futures_lite::AsyncReadExt;
    stream.half_close().await;
    let mut buf = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let _ = glommio::timer::timeout(LINGER_TIME, async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        Ok(())
    })
    .await;
}

/// A connection stream whose write side can be closed while its read side drains (a
/// lingering close).
pub trait HalfClose: AsyncRead + AsyncWrite + Unpin {
    /// Shuts the write side down (the client reads EOF after what was written).
    fn half_close(&mut self) -> impl std::future::Future<Output = ()>;
}

impl HalfClose for TcpStream {
    async fn half_close(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write).await;
    }
}

impl HalfClose for futures_rustls::server::TlsStream<TcpStream> {
    /// Flushes what TLS holds, then shuts the TCP write side (no `close_notify`: the client
    /// sees the end of the stream after the last answer).
    async fn half_close(&mut self) {
        use futures_lite::AsyncWriteExt;
        let _ = self.flush().await;
        let _ = self.get_mut().0.shutdown(std::net::Shutdown::Write).await;
    }
}

/// Why hyper ended a connection with an error. `pending`: bytes arrived since the last
/// answer was written (a started head, not an idle keep-alive connection).
fn connection_error(e: &hyper::Error, pending: bool) -> HttpConnectionError {
    let io_timeout = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if e.is_parse_too_large() {
        HttpConnectionError::HeaderTooLarge
    } else if e.is_parse() {
        HttpConnectionError::Malformed
    } else if (e.is_timeout() || io_timeout) && pending {
        HttpConnectionError::HeaderTimeout
    } else if e.is_timeout() || io_timeout {
        HttpConnectionError::Idle
    } else {
        HttpConnectionError::Io
    }
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
    lingering: Rc<Cell<usize>>,
) {
    let deadline = ctx.settings.read_timeout;
    let handshake =
        futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
            glommio::timer::sleep(deadline).await;
            None
        })
        .await;
    match handshake {
        Some(Ok(tls)) => connection(tls, ctx, st, stop, open, lingering).await,
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
    lingering: Rc<Cell<usize>>,
) where
    S: HalfClose + 'static,
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
    let pending = Rc::new(Cell::new(false));
    let stream = Rc::new(RefCell::new(stream));
    let result = {
        let conn = builder.serve_connection(HyperStream(stream.clone(), pending.clone()), svc);
        futures_lite::pin!(conn);
        let stopped = futures_lite::future::or(async { Some((&mut conn).await) }, async {
            while !stop.get() {
                glommio::timer::sleep(CONNECTION_STOP_POLL).await;
            }
            None
        })
        .await;
        match stopped {
            Some(r) => r,
            None => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    let reason = match &result {
        Ok(()) => None,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
            Some(connection_error(e, pending.get()))
        }
    };
    if let Some(r) = reason {
        st.borrow_mut().counters.http.connection_error(r);
    }
    let Ok(stream) = Rc::try_unwrap(stream) else {
        return closed(&st, &open);
    };
    let mut stream = stream.into_inner();
    // hyper closes on a head it cannot parse without answering: the client is told why
    // (unless something was written since its bytes arrived).
    let answer = match reason {
        Some(HttpConnectionError::HeaderTooLarge) if pending.get() => Some(head_answer(
            "431 Request Header Fields Too Large",
            &format!(
                "request head larger than {} bytes (http.max_header_bytes)",
                ctx.settings.max_header_bytes
            ),
        )),
        Some(HttpConnectionError::Malformed) if pending.get() => Some(head_answer(
            "400 Bad Request",
            "malformed HTTP/1.1 request line or header",
        )),
        _ => None,
    };
    if let Some(a) = answer {
        use futures_lite::AsyncWriteExt;
        let _ = glommio::timer::timeout(LINGER_TIME, async {
            let _ = stream.write_all(a.as_bytes()).await;
            Ok(())
        })
        .await;
    }
    // A slow or idle client gets nothing more; every other close lingers (bounded) so an
    // answer written just before it reaches the client.
    let slow = matches!(
        reason,
        Some(HttpConnectionError::HeaderTimeout | HttpConnectionError::Idle)
    );
    // The connection no longer counts against max_connections while it lingers: lingering
    // ones have their own cap (as many again), beyond which they are closed at once.
    closed(&st, &open);
    if !slow && !stop.get() && lingering.get() < ctx.settings.max_connections {
        lingering.set(lingering.get() + 1);
        linger(&mut stream).await;
        lingering.set(lingering.get().saturating_sub(1));
    }
}

/// Counts a connection as closed.
fn closed(st: &RefCell<ShardState>, open: &Cell<usize>) {
    open.set(open.get().saturating_sub(1));
    st.borrow_mut().counters.http.connections_open = open.get() as u64;
}

/// A complete answer (status line, JSON error body, `Connection: close`) for a request head
/// hyper refused.
fn head_answer(status: &str, msg: &str) -> String {
    let body = serde_json::json!({ "errors": [msg] }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
