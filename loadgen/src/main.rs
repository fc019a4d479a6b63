//! `loadgen`: load generator for Switchyard, and a fake metrics vendor for its tests.
//!
//! - `loadgen statsd` offers paced, deterministic statsd/DogStatsD traffic over UDP and prints a
//!   one-line JSON summary of what the kernel accepted, so a benchmark can compare it with what
//!   the dataplane flushed.
//! - `loadgen http` posts paced Datadog series payloads (v1 or v2 JSON, gzip/deflate/zstd/
//!   identity) from a pre-generated pool over keep-alive HTTP/1.1 connections, and prints a
//!   summary (`--json` for one JSON line): payloads by status, points and value sums accepted,
//!   bytes, achieved rate and latency percentiles.
//! - `loadgen vendor --kind datadog|signalfx` stands in for the metrics vendor in end-to-end
//!   tests: an HTTP server that prints `listening on ADDR`, decodes and counts every request,
//!   reports it at `GET /stats` (`POST /reset` clears it) and injects failures and delays on
//!   request (`--fail-status`/`--fail-count`/`--retry-after`/`--delay-ms`, or `POST /control`).

mod http;
mod pace;
mod progress;
mod statsd;
mod vendor;

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for Switchyard.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    /// What kind of load to generate.
    #[command(subcommand)]
    command: Command,
}

/// Load kinds.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send paced statsd/DogStatsD lines over UDP and print a JSON summary.
    Statsd(statsd::StatsdArgs),
    /// Post paced Datadog series payloads over HTTP and print a summary.
    ///
    /// A deterministic pool of payloads is generated and compressed before timing starts;
    /// `rate * duration` payloads are then offered evenly over keep-alive connections. The
    /// summary (`--json`: one JSON line) counts payloads by status, points and value sums of
    /// accepted (2xx) payloads, bytes before and after compression, the achieved rate and
    /// latency percentiles.
    Http(http::HttpArgs),
    /// Serve a fake Datadog or SignalFx intake that counts what it receives (GET /stats).
    ///
    /// Prints `listening on ADDR` on stdout once bound. Bodies may be identity, gzip,
    /// deflate (zlib or raw) or zstd/zstd1. Besides the vendor's endpoints it serves
    /// `GET /stats` (JSON counters, per-metric points, sums, tags or dimensions, and the API
    /// keys or tokens seen), `POST /reset` (clears the counters) and `GET|POST /control`
    /// (`{"fail_status":503,"fail_count":3,"retry_after":1,"delay_ms":0}`, fields optional)
    /// to inject failures and delays at run time. Stops on SIGINT or SIGTERM.
    Vendor(vendor::VendorArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Statsd(args) => {
            let summary = statsd::run(&args).context("statsd load run failed")?;
            let json = serde_json::to_string(&summary).context("encoding the summary")?;
            report(&json, &json, args.summary_file.as_deref())
        }
        Command::Http(args) => {
            let summary = http::run(&args).context("http load run failed")?;
            let json = serde_json::to_string(&summary).context("encoding the summary")?;
            let text = if args.json {
                json.clone()
            } else {
                summary.text()
            };
            report(&text, &json, args.summary_file.as_deref())
        }
        Command::Vendor(args) => vendor::run(&args),
    }
}

/// Prints `text` to stdout and, if asked, writes `json` to `summary_file` (each newline-ended).
fn report(text: &str, json: &str, summary_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(path) = summary_file {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    stdout
        .write_all(format!("{text}{newline}").as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the summary to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn statsd_defaults() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "statsd",
            "--target",
            "127.0.0.1:8125",
            "--rate",
            "1000",
            "--duration",
            "2.5",
            "--series",
            "10",
        ])
        .unwrap();
        let Command::Statsd(args) = cli.command else {
            panic!("not statsd")
        };
        assert_eq!(args.target, "127.0.0.1:8125");
        assert_eq!(args.rate, 1000.0);
        assert_eq!(args.duration, 2.5);
        assert_eq!(args.series, 10);
        assert!(!args.tags);
        assert_eq!(
            args.types,
            [
                statsd::MetricType::Counter,
                statsd::MetricType::Gauge,
                statsd::MetricType::Timer,
                statsd::MetricType::Set
            ]
        );
        assert_eq!(args.datagram_bytes, 1400);
        assert!(!args.no_progress);
        assert_eq!(args.summary_file, None);
    }

    #[test]
    fn statsd_options() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "statsd",
            "--target",
            "[::1]:9",
            "--rate",
            "1e6",
            "--duration",
            "1",
            "--series",
            "3",
            "--tags",
            "--types",
            "ms,c",
            "--datagram-bytes",
            "512",
            "--seed",
            "42",
            "--no-progress",
            "--summary-file",
            "/tmp/x.json",
        ])
        .unwrap();
        let Command::Statsd(args) = cli.command else {
            panic!("not statsd")
        };
        assert!(args.tags && args.no_progress);
        assert_eq!(
            args.types,
            [statsd::MetricType::Timer, statsd::MetricType::Counter]
        );
        assert_eq!((args.datagram_bytes, args.seed), (512, 42));
    }

    #[test]
    fn statsd_rejects_bad_numbers() {
        let base = [
            ("--target", "127.0.0.1:9"),
            ("--rate", "10"),
            ("--duration", "1"),
            ("--series", "1"),
        ];
        let argv = |bad: (&'static str, &'static str)| {
            let mut argv = vec!["loadgen", "statsd"];
            for (flag, value) in base {
                argv.extend([flag, if flag == bad.0 { bad.1 } else { value }]);
            }
            if !base.iter().any(|(flag, _)| *flag == bad.0) {
                argv.extend([bad.0, bad.1]);
            }
            argv
        };
        assert!(Cli::try_parse_from(argv(("--seed", "7"))).is_ok());
        for bad in [
            ("--rate", "0"),
            ("--rate", "-5"),
            ("--rate", "inf"),
            ("--duration", "0"),
            ("--duration", "nan"),
            ("--duration", "1e12"),
            ("--series", "0"),
            ("--datagram-bytes", "0"),
            ("--datagram-bytes", "70000"),
            ("--types", "c,x"),
        ] {
            assert!(Cli::try_parse_from(argv(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
