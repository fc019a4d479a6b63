//! `loadgen`: load generator for Switchyard.
//!
//! `loadgen statsd` offers paced, deterministic statsd/DogStatsD traffic over UDP and prints a
//! one-line JSON summary of what the kernel accepted, so a benchmark can compare it with what
//! the dataplane flushed. The subcommand enum leaves room for other protocols (HTTP) later.

mod pace;
mod progress;
mod statsd;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Statsd(args) => {
            let summary = statsd::run(&args).context("statsd load run failed")?;
            let mut json = serde_json::to_string(&summary).context("encoding the summary")?;
            json.push('\n');
            if let Some(path) = &args.summary_file {
                std::fs::write(path, &json)
                    .with_context(|| format!("writing the summary to {}", path.display()))?;
            }
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(json.as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing the summary to stdout")?;
        }
    }
    Ok(())
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
        let Command::Statsd(args) = cli.command;
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
        let Command::Statsd(args) = cli.command;
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
