//! `loadgen statsd`: paced, deterministic statsd/DogStatsD traffic over UDP.
//!
//! [`generate`] turns the arguments into a reproducible line sequence packed into datagrams,
//! [`send`] hands batches of datagrams to the kernel with `sendmmsg`, and
//! [`crate::pace::Pacer`] spreads the offered lines evenly over the run. [`run`] ties them
//! together and returns a [`Summary`] that counts only what the kernel accepted.

pub mod generate;
pub mod send;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::pace::{Batching, Pacer, Step};
use crate::progress::Progress;
use generate::{Generator, Spec, SpecError};
use send::{Sender, Totals};

/// Datagrams handed to the kernel per `sendmmsg` batch.
const BATCH: usize = 64;
/// Longest pause between two sends while lines are due (keeps low rates smooth).
const TICK: Duration = Duration::from_millis(5);
/// How long past the deadline a refused batch may still be retried before it is dropped.
const GRACE: Duration = Duration::from_millis(500);
/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: u32 = 65_507;
/// Longest run accepted, in seconds (a week; keeps every duration computation finite).
const MAX_DURATION_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// A statsd metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum MetricType {
    /// Counter (`c`); always sent with value 1.
    #[value(name = "c")]
    Counter,
    /// Gauge (`g`).
    #[value(name = "g")]
    Gauge,
    /// Timer (`ms`).
    #[value(name = "ms")]
    Timer,
    /// Set (`s`).
    #[value(name = "s")]
    Set,
}

impl MetricType {
    /// The type's code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Self::Counter => "c",
            Self::Gauge => "g",
            Self::Timer => "ms",
            Self::Set => "s",
        }
    }
}

/// Arguments of `loadgen statsd`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsdArgs {
    /// Where to send the datagrams.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: String,
    /// Lines per second to offer, spread evenly over the run.
    #[arg(long, value_name = "LINES_PER_S", value_parser = positive_finite)]
    pub rate: f64,
    /// Length of the run in seconds; it ends then even if the rate was not reached.
    #[arg(long, value_name = "SECS", value_parser = run_seconds)]
    pub duration: f64,
    /// Number of distinct series (`lg.m0` .. `lg.m{N-1}`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub series: u32,
    /// Append DogStatsD tags (`|#env:prod,svc:s{i%50},az:z{i%3}`) to every line.
    #[arg(long)]
    pub tags: bool,
    /// Metric types, assigned to series round-robin.
    #[arg(long, value_delimiter = ',', default_value = "c,g,ms,s")]
    pub types: Vec<MetricType>,
    /// Largest datagram payload; each datagram holds as many whole lines as fit.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 1400,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DATAGRAM))
    )]
    pub datagram_bytes: u32,
    /// Seed of the line sequence; the same arguments always offer the same lines.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not show a progress bar on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// Also write the JSON summary to this file.
    #[arg(long, value_name = "PATH")]
    pub summary_file: Option<PathBuf>,
}

/// Parses a positive, finite number.
pub(crate) fn positive_finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a positive, finite number".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a run length in seconds.
pub(crate) fn run_seconds(text: &str) -> Result<f64, String> {
    let v = positive_finite(text)?;
    if v > MAX_DURATION_SECS {
        return Err(format!("at most {MAX_DURATION_SECS} seconds"));
    }
    Ok(v)
}

/// The one-line JSON result of a run. Every `sent_*` field counts only datagrams the kernel
/// accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Lines in accepted datagrams.
    pub sent_lines: u64,
    /// Accepted datagrams.
    pub sent_datagrams: u64,
    /// Wall-clock length of the run.
    pub seconds: f64,
    /// Counter lines in accepted datagrams.
    pub sent_counter_lines: u64,
    /// Sum of the counter values in accepted datagrams.
    pub sent_counter_value_sum: u64,
    /// The requested rate, lines per second.
    pub offered_rate: f64,
    /// `sent_lines / seconds`.
    pub achieved_rate: f64,
    /// Sends the kernel refused transiently and that were retried.
    pub send_retries: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments describe no valid line sequence.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The duration is not a usable length of time.
    #[error("invalid --duration {0}")]
    Duration(f64),
    /// The target could not be resolved.
    #[error("cannot resolve --target {target}: {source}")]
    Resolve {
        /// The target as given.
        target: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The target resolved to no address.
    #[error("--target {0} resolves to no address")]
    NoAddress(String),
    /// The socket could not be set up.
    #[error("cannot open a UDP socket to {target}: {source}")]
    Socket {
        /// The resolved target.
        target: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Sending failed with an error that retrying would not fix.
    #[error("sending to {target} failed: {source}")]
    Send {
        /// The resolved target.
        target: SocketAddr,
        /// The send error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `loadgen statsd`: offers `rate * duration` lines evenly over `duration` and reports
/// what the kernel accepted.
pub fn run(args: &StatsdArgs) -> Result<Summary, Error> {
    let spec = Spec {
        series: args.series,
        types: args.types.clone(),
        tags: args.tags,
        seed: args.seed,
    };
    let datagram_bytes = args.datagram_bytes as usize;
    let mut generator = Generator::new(&spec)?;
    generator.check_datagram_bytes(datagram_bytes)?;
    let duration =
        Duration::try_from_secs_f64(args.duration).map_err(|_| Error::Duration(args.duration))?;
    let target = resolve(&args.target)?;
    let mut sender = Sender::connect(target, datagram_bytes, BATCH)
        .map_err(|source| Error::Socket { target, source })?;

    let chunk = generator.lines_per_datagram(datagram_bytes);
    let batching = Batching {
        chunk,
        batch: chunk * sender.batch() as u64,
        tick: TICK,
    };
    let mut pacer = Pacer::new(args.rate, duration, batching);
    let mut progress = Progress::new(!args.no_progress, duration);
    let mut totals = Totals::default();
    let start = Instant::now();
    let give_up_at = start + duration + GRACE;
    loop {
        let elapsed = start.elapsed();
        match pacer.step(elapsed, generator.taken()) {
            Step::Send(lines) => {
                sender.fill(&mut generator, lines);
                let accepted = sender
                    .flush(give_up_at)
                    .map_err(|source| Error::Send { target, source })?;
                totals.merge(&accepted);
            }
            Step::Wait(pause) => std::thread::sleep(pause),
            Step::Finished => break,
        }
        progress.update(elapsed, totals.lines, totals.datagrams, sender.retries());
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    Ok(Summary {
        sent_lines: totals.lines,
        sent_datagrams: totals.datagrams,
        seconds,
        sent_counter_lines: totals.counter_lines,
        sent_counter_value_sum: totals.counter_sum,
        offered_rate: args.rate,
        achieved_rate: if seconds > 0.0 {
            totals.lines as f64 / seconds
        } else {
            0.0
        },
        send_retries: sender.retries(),
    })
}

/// Resolves `HOST:PORT` to its first address.
fn resolve(target: &str) -> Result<SocketAddr, Error> {
    target
        .to_socket_addrs()
        .map_err(|source| Error::Resolve {
            target: target.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| Error::NoAddress(target.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn args(target: String, rate: f64, duration: f64) -> StatsdArgs {
        StatsdArgs {
            target,
            rate,
            duration,
            series: 50,
            tags: true,
            types: vec![
                MetricType::Counter,
                MetricType::Gauge,
                MetricType::Timer,
                MetricType::Set,
            ],
            datagram_bytes: 1400,
            seed: 9,
            no_progress: true,
            summary_file: None,
        }
    }

    #[test]
    fn summary_counts_what_was_generated_and_received() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let target = receiver.local_addr().unwrap().to_string();
        // 1000 lines: a few dozen datagrams, which the receive buffer holds even unread.
        let summary = run(&args(target, 5_000.0, 0.2)).unwrap();
        assert_eq!(summary.sent_lines, 1_000);
        assert_eq!(summary.offered_rate, 5_000.0);
        assert_eq!(summary.send_retries, 0);

        let mut buf = [0u8; 2048];
        let (mut datagrams, mut lines, mut counter_lines, mut counter_sum) = (0, 0, 0, 0);
        while let Ok(n) = receiver.recv(&mut buf) {
            datagrams += 1;
            for line in std::str::from_utf8(&buf[..n]).unwrap().split('\n') {
                lines += 1;
                let (_, rest) = line.split_once(':').unwrap();
                let mut fields = rest.split('|');
                let value = fields.next().unwrap();
                if fields.next() == Some("c") {
                    counter_lines += 1;
                    counter_sum += value.parse::<u64>().unwrap();
                }
            }
        }
        assert_eq!(datagrams, summary.sent_datagrams);
        assert_eq!(lines, summary.sent_lines);
        assert_eq!(counter_lines, summary.sent_counter_lines);
        assert_eq!(counter_sum, summary.sent_counter_value_sum);
        assert!(counter_lines > 0);

        // The same arguments offer the same lines: the generator alone reproduces the counts.
        let spec = Spec {
            series: 50,
            types: args(String::new(), 1.0, 1.0).types,
            tags: true,
            seed: 9,
        };
        let mut generator = Generator::new(&spec).unwrap();
        let mut scratch = vec![0u8; 1400];
        let (mut left, mut counters) = (1_000u64, 0u64);
        while left > 0 {
            let stats = generator.fill(&mut scratch, left);
            left -= stats.lines;
            counters += stats.counter_lines;
        }
        assert_eq!(counters, summary.sent_counter_lines);
    }

    #[test]
    fn summary_is_one_json_line_with_the_agreed_fields() {
        let summary = Summary {
            sent_lines: 10,
            sent_datagrams: 1,
            seconds: 1.5,
            sent_counter_lines: 3,
            sent_counter_value_sum: 3,
            offered_rate: 10.0,
            achieved_rate: 6.5,
            send_retries: 0,
        };
        let json = serde_json::to_string(&summary).unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(
            json,
            r#"{"sent_lines":10,"sent_datagrams":1,"seconds":1.5,"sent_counter_lines":3,"sent_counter_value_sum":3,"offered_rate":10.0,"achieved_rate":6.5,"send_retries":0}"#
        );
    }

    #[test]
    fn bad_targets_and_sizes_fail_cleanly() {
        let mut bad = args("not-an-address".to_owned(), 10.0, 0.1);
        assert!(matches!(run(&bad), Err(Error::Resolve { .. })));
        bad.target = "127.0.0.1:9".to_owned();
        bad.datagram_bytes = 10;
        assert!(matches!(run(&bad), Err(Error::Spec(_))));
    }
}
