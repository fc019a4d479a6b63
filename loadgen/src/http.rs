//! `loadgen http`: paced Datadog series payloads over keep-alive HTTP/1.1.
//!
//! Before timing starts, [`payload::build`] generates and compresses a deterministic pool of
//! bodies (see that module for names, tags and values), so generation is never the
//! bottleneck. [`crate::pace::Pacer`] then offers `rate * duration` payloads evenly over the
//! run through a short queue to `--connections` [`client::worker`]s, each on its own
//! keep-alive connection. When every connection is busy the queue fills and the run falls
//! behind instead of piling up requests; it never sends more than the offered total. The
//! [`Summary`] counts what was sent, what answered with which status, and the points and
//! values in accepted (2xx) payloads, which a test compares with what the receiver counted.

pub mod client;
pub mod payload;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use serde::Serialize;
use tokio::sync::{mpsc, Mutex};

use crate::pace::{Batching, Pacer, Step};
use crate::progress::Progress;
use crate::statsd::{positive_finite, run_seconds};
use payload::{Compression, Endpoint, PoolSpec};

/// Pool payloads built at least (when the run sends that many), so that consecutive payloads
/// differ even with few series.
const MIN_POOL: u64 = 64;
/// Most points the pool may hold in total (bounds its memory).
const MAX_POOL_POINTS: u64 = 20_000_000;
/// Longest pause between two pacer checks while payloads are due.
const TICK: Duration = Duration::from_millis(1);
/// How long past the run's end the queue may still take payloads (a run that kept up only
/// waits for its last few); a run that fell behind stops offering then.
const GRACE: Duration = Duration::from_millis(100);

/// Arguments of `loadgen http`.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Base URL of the intake, `http://HOST:PORT[/PREFIX]`; the series path is appended.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Payloads per second to offer, spread evenly over the run.
    #[arg(long, value_name = "PAYLOADS_PER_S", value_parser = positive_finite)]
    pub rate: f64,
    /// Length of the run in seconds; it ends then even if the rate was not reached.
    #[arg(long, value_name = "SECS", value_parser = run_seconds)]
    pub duration: f64,
    /// Series entries (one point each) per payload.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub points_per_payload: u64,
    /// Distinct series, spread across the payloads of the pool.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub series: u64,
    /// Body compression (`deflate` is a zlib stream, as Datadog clients send it).
    #[arg(long, value_enum)]
    pub encoding: Compression,
    /// Datadog series API: `/api/v1/series` or `/api/v2/series` (JSON).
    #[arg(long, value_enum, default_value = "v1")]
    pub endpoint: Endpoint,
    /// Sent as `DD-API-KEY`.
    #[arg(long, value_name = "KEY", default_value = "loadgen-api-key")]
    pub api_key: String,
    /// Keep-alive connections (requests in flight at most).
    #[arg(long, value_name = "C", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Payloads in the pre-generated pool (default: enough to cover every series, at least
    /// 64, at most the payloads the run sends).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pool: Option<u64>,
    /// Seed of the values; the same arguments always build the same pool.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the summary as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Do not show a progress bar on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// Also write the JSON summary to this file.
    #[arg(long, value_name = "PATH")]
    pub summary_file: Option<PathBuf>,
}

/// Latency of answered requests, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `v1` or `v2`.
    pub endpoint: Endpoint,
    /// Body compression.
    pub encoding: Compression,
    /// Payloads the run offered: `round(rate * duration)`.
    pub payloads_offered: u64,
    /// Payloads sent (answered or not).
    pub payloads_sent: u64,
    /// Payloads answered 2xx.
    pub payloads_accepted: u64,
    /// Answers by HTTP status.
    pub payloads_by_status: BTreeMap<u16, u64>,
    /// Payloads that got no answer (connection error or timeout).
    pub transport_errors: u64,
    /// Points in sent payloads.
    pub points_sent: u64,
    /// Points in accepted payloads.
    pub points_accepted: u64,
    /// Sum of the values in accepted payloads.
    pub value_sum_accepted: f64,
    /// Sum of the values of `count` series in accepted payloads.
    pub count_value_sum_accepted: f64,
    /// JSON bytes of sent payloads before compression.
    pub uncompressed_bytes: u64,
    /// Body bytes of sent payloads on the wire.
    pub compressed_bytes: u64,
    /// Wall-clock length of the run, until the last answer.
    pub seconds: f64,
    /// The requested rate, payloads per second.
    pub offered_rate: f64,
    /// `payloads_sent / seconds`.
    pub achieved_rate: f64,
    /// Uncompressed JSON megabytes (10^6) per second.
    pub uncompressed_mb_per_s: f64,
    /// Latency of answered requests.
    pub latency_ms: Latency,
    /// Payloads in the pool.
    pub pool_payloads: u64,
    /// Distinct series in the pool.
    pub series: u64,
    /// Points per payload.
    pub points_per_payload: u64,
    /// Connections used.
    pub connections: u32,
    /// The last transport error, if any.
    pub last_error: Option<String>,
}

impl Summary {
    /// A short human-readable report.
    pub fn text(&self) -> String {
        let statuses: Vec<String> = self
            .payloads_by_status
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        format!(
            "payloads: {} offered, {} sent, {} accepted, statuses [{}], {} transport errors\n\
             points: {} sent, {} accepted (value sum {})\n\
             bytes: {} uncompressed, {} on the wire ({})\n\
             rate: {:.1} payloads/s achieved of {} offered, {:.2} MB/s uncompressed over {:.2} s\n\
             latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            self.payloads_offered,
            self.payloads_sent,
            self.payloads_accepted,
            statuses.join(" "),
            self.transport_errors,
            self.points_sent,
            self.points_accepted,
            self.value_sum_accepted,
            self.uncompressed_bytes,
            self.compressed_bytes,
            self.encoding.name(),
            self.achieved_rate,
            self.offered_rate,
            self.uncompressed_mb_per_s,
            self.seconds,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.max,
        )
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target is not an `http://` URL with a resolvable host.
    #[error("invalid --target {target}: {reason}")]
    Target {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The duration is not a usable length of time.
    #[error("invalid --duration {0}")]
    Duration(f64),
    /// The pool would be too large.
    #[error("the pool would hold {0} points (at most {MAX_POOL_POINTS}): lower --series or --pool, or raise --points-per-payload")]
    PoolTooLarge(u64),
    /// Building the pool failed.
    #[error(transparent)]
    Pool(#[from] payload::PoolError),
    /// The runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// A parsed `--target`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedTarget {
    authority: String,
    addr: SocketAddr,
    prefix: String,
}

/// Parses and resolves `http://HOST[:PORT][/PREFIX]`.
fn parse_target(target: &str) -> Result<ParsedTarget, Error> {
    let bad = |reason: &str| Error::Target {
        target: target.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = target
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address"))?;
    Ok(ParsedTarget {
        authority: authority.to_owned(),
        addr,
        prefix: prefix.trim_end_matches('/').to_owned(),
    })
}

/// Nearest-rank percentile of sorted `values` (microseconds), in milliseconds.
fn percentile_ms(sorted: &[u32], pct: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() * pct).div_ceil(100)).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// Runs `loadgen http`.
///
/// # Errors
///
/// [`Error`] for a bad target or duration, a pool too large, or a runtime that cannot start.
/// Failed requests are not errors: they are counted in the summary.
pub fn run(args: &HttpArgs) -> Result<Summary, Error> {
    let target = parse_target(&args.target)?;
    let duration =
        Duration::try_from_secs_f64(args.duration).map_err(|_| Error::Duration(args.duration))?;
    let total = (args.rate * args.duration).round() as u64;
    let pool_size = args
        .pool
        .unwrap_or_else(|| {
            args.series
                .div_ceil(args.points_per_payload)
                .max(MIN_POOL)
                .min(total)
        })
        .max(1);
    let pool_points = pool_size.saturating_mul(args.points_per_payload);
    if pool_points > MAX_POOL_POINTS {
        return Err(Error::PoolTooLarge(pool_points));
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let pool = payload::build(&PoolSpec {
        series: args.series,
        points_per_payload: args.points_per_payload,
        payloads: pool_size,
        endpoint: args.endpoint,
        compression: args.encoding,
        seed: args.seed,
        timestamp,
    })?;
    let header = |text: &str| {
        HeaderValue::from_str(text).map_err(|e| Error::Target {
            target: args.target.clone(),
            reason: format!("{text:?} is not a valid header value: {e}"),
        })
    };
    let client_target = client::Target {
        addr: target.addr,
        host: header(&target.authority)?,
        path: format!("{}{}", target.prefix, args.endpoint.path()),
        api_key: header(&args.api_key)?,
        encoding: args.encoding.header().map(HeaderValue::from_static),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let outcome = runtime.block_on(drive(args, duration, client_target, pool));
    let (outcome, seconds) = outcome;
    let mut latencies = outcome.latencies_us;
    latencies.sort_unstable();
    let seconds_nonzero = seconds.max(1e-9);
    Ok(Summary {
        endpoint: args.endpoint,
        encoding: args.encoding,
        payloads_offered: total,
        payloads_sent: outcome.sent,
        payloads_accepted: outcome
            .by_status
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum(),
        payloads_by_status: outcome.by_status,
        transport_errors: outcome.transport_errors,
        points_sent: outcome.points_sent,
        points_accepted: outcome.points_accepted,
        value_sum_accepted: outcome.value_sum_accepted,
        count_value_sum_accepted: outcome.count_value_sum_accepted,
        uncompressed_bytes: outcome.raw_bytes,
        compressed_bytes: outcome.wire_bytes,
        seconds,
        offered_rate: args.rate,
        achieved_rate: outcome.sent as f64 / seconds_nonzero,
        uncompressed_mb_per_s: outcome.raw_bytes as f64 / 1e6 / seconds_nonzero,
        latency_ms: Latency {
            p50: percentile_ms(&latencies, 50),
            p99: percentile_ms(&latencies, 99),
            max: latencies.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
        },
        pool_payloads: pool_size,
        series: args.series,
        points_per_payload: args.points_per_payload,
        connections: args.connections,
        last_error: outcome.last_error,
    })
}

/// Paces the payloads into the workers' queue and collects their outcomes; returns them with
/// the run's wall-clock seconds.
async fn drive(
    args: &HttpArgs,
    duration: Duration,
    target: client::Target,
    pool: Vec<payload::Payload>,
) -> (client::Outcome, f64) {
    let connections = args.connections as usize;
    let (queue, receiver) = mpsc::channel::<u64>(connections);
    let receiver = Arc::new(Mutex::new(receiver));
    let target = Arc::new(target);
    let pool = Arc::new(pool);
    let live = Arc::new(client::Live::default());
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(client::worker(
                Arc::clone(&target),
                Arc::clone(&pool),
                Arc::clone(&receiver),
                Arc::clone(&live),
            ))
        })
        .collect();

    let batch = (connections as u64 * 4).max((args.rate / 100.0).ceil() as u64);
    let mut pacer = Pacer::new(
        args.rate,
        duration,
        Batching {
            chunk: 1,
            batch,
            tick: TICK,
        },
    );
    let mut progress = Progress::new(!args.no_progress, duration);
    let start = Instant::now();
    let stop_queueing = tokio::time::Instant::from_std(start + duration + GRACE);
    let mut taken = 0u64;
    'run: loop {
        let elapsed = start.elapsed();
        match pacer.step(elapsed, taken) {
            Step::Send(n) => {
                for _ in 0..n {
                    match tokio::time::timeout_at(stop_queueing, queue.send(taken)).await {
                        Ok(Ok(())) => taken += 1,
                        _ => break 'run,
                    }
                }
            }
            Step::Wait(pause) => tokio::time::sleep(pause).await,
            Step::Finished => break,
        }
        progress.update_with(elapsed, |secs| {
            let answered = live.answered.load(Ordering::Relaxed);
            let accepted = live.accepted.load(Ordering::Relaxed);
            format!(
                "{taken} queued, {answered} answered, {accepted} accepted, {:.0} payloads/s",
                answered as f64 / secs
            )
        });
    }
    drop(queue);
    let mut total = client::Outcome::default();
    for worker in workers {
        if let Ok(outcome) = worker.await {
            total.merge(outcome);
        }
    }
    progress.finish();
    (total, start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = parse_target("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (t.authority.as_str(), t.prefix.as_str()),
            ("127.0.0.1:8080", "")
        );
        let t = parse_target("http://[::1]:9/intake/").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(t.prefix, "/intake");
        assert_eq!(parse_target("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(parse_target("https://127.0.0.1:1").is_err());
        assert!(parse_target("127.0.0.1:1").is_err());
        assert!(parse_target("http:///x").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50), 50.0);
        assert_eq!(percentile_ms(&v, 99), 99.0);
        assert_eq!(percentile_ms(&[7000], 99), 7.0);
        assert_eq!(percentile_ms(&[], 50), 0.0);
    }

    #[test]
    fn summary_json_has_the_agreed_fields() {
        let summary = Summary {
            endpoint: Endpoint::V1,
            encoding: Compression::Gzip,
            payloads_offered: 2,
            payloads_sent: 2,
            payloads_accepted: 1,
            payloads_by_status: [(202, 1), (503, 1)].into(),
            transport_errors: 0,
            points_sent: 20,
            points_accepted: 10,
            value_sum_accepted: 5.5,
            count_value_sum_accepted: 1.0,
            uncompressed_bytes: 100,
            compressed_bytes: 40,
            seconds: 1.0,
            offered_rate: 2.0,
            achieved_rate: 2.0,
            uncompressed_mb_per_s: 0.0001,
            latency_ms: Latency::default(),
            pool_payloads: 2,
            series: 20,
            points_per_payload: 10,
            connections: 1,
            last_error: None,
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["payloads_by_status"]["503"], 1);
        assert_eq!(json["endpoint"], "v1");
        assert_eq!(json["encoding"], "gzip");
        assert_eq!(json["latency_ms"]["p99"], 0.0);
        assert!(summary.text().contains("202:1 503:1"));
    }
}
