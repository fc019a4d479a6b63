//! Keep-alive HTTP/1.1 connections that post pool payloads as the pacer hands them out.
//!
//! Each [`worker`] owns one connection (hyper's `client::conn::http1` over a tokio
//! `TcpStream`), takes payload sequence numbers from a shared queue and posts
//! `pool[seq % pool.len()]`. A transport error or timeout counts the payload as not answered
//! and reconnects for the next one; payloads are never retried. Latency is measured from
//! sending the request to having read the whole response.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Mutex};

use super::payload::Payload;

/// Longest a request may take, from connecting to the end of the response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read.
const MAX_RESPONSE: usize = 1 << 20;

/// Where and how to post.
#[derive(Debug)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: HeaderValue,
    /// Request path.
    pub path: String,
    /// `DD-API-KEY` header.
    pub api_key: HeaderValue,
    /// `Content-Encoding` header, if any.
    pub encoding: Option<HeaderValue>,
}

/// Counters shared with the progress bar.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests answered with any status.
    pub answered: AtomicU64,
    /// Requests answered 2xx.
    pub accepted: AtomicU64,
}

/// What one worker did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Payloads taken from the queue (attempted).
    pub sent: u64,
    /// Answers by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Payloads that got no answer (connect, I/O or timeout).
    pub transport_errors: u64,
    /// Points attempted.
    pub points_sent: u64,
    /// Points in 2xx-answered payloads.
    pub points_accepted: u64,
    /// Value sum of 2xx-answered payloads.
    pub value_sum_accepted: f64,
    /// Count-series value sum of 2xx-answered payloads.
    pub count_value_sum_accepted: f64,
    /// Uncompressed bytes attempted.
    pub raw_bytes: u64,
    /// Wire bytes attempted.
    pub wire_bytes: u64,
    /// Latency of each answered request, microseconds.
    pub latencies_us: Vec<u32>,
    /// The last transport error, for the summary.
    pub last_error: Option<String>,
}

impl Outcome {
    /// Adds another worker's outcome.
    pub fn merge(&mut self, other: Outcome) {
        self.sent += other.sent;
        for (status, n) in other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.points_sent += other.points_sent;
        self.points_accepted += other.points_accepted;
        self.value_sum_accepted += other.value_sum_accepted;
        self.count_value_sum_accepted += other.count_value_sum_accepted;
        self.raw_bytes += other.raw_bytes;
        self.wire_bytes += other.wire_bytes;
        self.latencies_us.extend(other.latencies_us);
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

/// Why one request got no answer.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Build(#[from] hyper::http::Error),
    #[error("reading the response: {0}")]
    Body(String),
    #[error("timed out after {REQUEST_TIMEOUT:?}")]
    Timeout,
}

/// Opens one keep-alive connection.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, RequestError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(RequestError::Connect)?;
    stream.set_nodelay(true).map_err(RequestError::Connect)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The error, if any, also fails the pending request, which is where it is counted.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Posts one payload on `sender` (connecting first if needed); returns the status.
async fn post(
    target: &Target,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    payload: &Payload,
) -> Result<u16, RequestError> {
    let mut conn = match sender.take() {
        Some(conn) if !conn.is_closed() => conn,
        _ => connect(target.addr).await?,
    };
    conn.ready().await?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(HOST, target.host.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("DD-API-KEY", target.api_key.clone());
    if let Some(encoding) = &target.encoding {
        request = request.header(CONTENT_ENCODING, encoding.clone());
    }
    let response = conn
        .send_request(request.body(Full::new(payload.body.clone()))?)
        .await?;
    let status = response.status().as_u16();
    Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| RequestError::Body(e.to_string()))?;
    *sender = Some(conn);
    Ok(status)
}

/// Posts payloads from `queue` until it is closed and empty.
pub async fn worker(
    target: Arc<Target>,
    pool: Arc<Vec<Payload>>,
    queue: Arc<Mutex<mpsc::Receiver<u64>>>,
    live: Arc<Live>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut sender = None;
    loop {
        let next = queue.lock().await.recv().await;
        let Some(seq) = next else {
            return out;
        };
        let Some(payload) = pool.get((seq % pool.len().max(1) as u64) as usize) else {
            return out;
        };
        out.sent += 1;
        out.points_sent += payload.points;
        out.raw_bytes += payload.raw_len;
        out.wire_bytes += payload.body.len() as u64;
        let start = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, post(&target, &mut sender, payload))
            .await
            .unwrap_or(Err(RequestError::Timeout));
        match result {
            Ok(status) => {
                let micros = start.elapsed().as_micros();
                out.latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                *out.by_status.entry(status).or_default() += 1;
                live.answered.fetch_add(1, Ordering::Relaxed);
                if (200..300).contains(&status) {
                    live.accepted.fetch_add(1, Ordering::Relaxed);
                    out.points_accepted += payload.points;
                    out.value_sum_accepted += payload.value_sum;
                    out.count_value_sum_accepted += payload.count_value_sum;
                }
            }
            Err(e) => {
                sender = None;
                out.transport_errors += 1;
                out.last_error = Some(e.to_string());
            }
        }
    }
}
