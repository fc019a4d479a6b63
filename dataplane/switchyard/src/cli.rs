//! Command-line interface: `run` (the default), `validate` and `print-config`.

use crate::run;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchyard_core::config::{Config, DEFAULT_TOML};

/// Switchyard: a high-throughput metrics dataplane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance (the default). Without --config, runs the embedded default.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file without starting anything (exit 0 when valid).
    Validate {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the full default configuration, with comments.
    PrintConfig,
}

/// Reads and validates a config file, with every error naming the file.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::PrintConfig => {
            let mut out = std::io::stdout().lock();
            if out.write_all(DEFAULT_TOML.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Command::Validate { config } => match load(&config) {
            Ok(_) => {
                eprintln!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            run::init_logging();
            let cfg = match &config {
                Some(p) => load(p),
                None => Config::embedded_default().map_err(|e| format!("embedded default: {e}")),
            };
            match cfg
                .map_err(anyhow::Error::msg)
                .and_then(|c| run::run(&c, config.as_deref()))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
