//! Progress bar on stderr for a timed run.
//!
//! The bar tracks elapsed time against the run's duration and shows what was sent so far. It is
//! redrawn at most four times a second, and is off entirely when disabled or when stderr is not
//! a terminal, so piped or CI runs print nothing but their summary.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Time between two updates of the bar.
const INTERVAL: Duration = Duration::from_millis(250);

/// A progress bar that may be disabled; every method is cheap when it is.
pub struct Progress {
    bar: Option<ProgressBar>,
    next_update: Duration,
}

impl Progress {
    /// A bar for a run of `duration`, shown only if `enabled` and stderr is a terminal.
    pub fn new(enabled: bool, duration: Duration) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(duration.as_millis().max(1) as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            if let Ok(style) =
                ProgressStyle::with_template("[{elapsed_precise}] [{wide_bar}] {percent:>3}% {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            bar,
            next_update: Duration::ZERO,
        }
    }

    /// Reports a statsd run's state at `elapsed`; redraws only every [`INTERVAL`].
    pub fn update(&mut self, elapsed: Duration, lines: u64, datagrams: u64, retries: u64) {
        self.update_with(elapsed, |secs| {
            let rate = lines as f64 / secs;
            format!("{lines} lines, {datagrams} datagrams, {rate:.0} lines/s, {retries} retries")
        });
    }

    /// Reports the state at `elapsed` with a message built (only when redrawing) from the
    /// elapsed seconds (never zero); redraws only every [`INTERVAL`].
    pub fn update_with(&mut self, elapsed: Duration, message: impl FnOnce(f64) -> String) {
        let Some(bar) = &self.bar else {
            return;
        };
        if elapsed < self.next_update {
            return;
        }
        self.next_update = elapsed + INTERVAL;
        bar.set_position(elapsed.as_millis() as u64);
        bar.set_message(message(elapsed.as_secs_f64().max(1e-9)));
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
