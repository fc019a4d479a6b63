//! The closed set of sinks, dispatched by `match`.

pub mod blackhole;
pub mod file;
pub mod signalfx;
pub mod stdout;

use crate::SinkError;
use switchyard_core::config::{SinkConfig, SinkKind};
use switchyard_core::model::SeriesBatch;

/// What a sink accepts per delivery call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    /// Most series per call.
    pub max_series: usize,
}

/// A contiguous slice of a batch handed to one delivery call.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// The batch.
    pub batch: &'a SeriesBatch,
    /// First series index.
    pub start: usize,
    /// One past the last series index.
    pub end: usize,
}

impl Chunk<'_> {
    /// Number of series in the chunk.
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Every sink kind.
#[derive(Debug)]
pub enum AnySink {
    /// NDJSON to a file.
    File(file::FileSink),
    /// NDJSON to standard output.
    Stdout(stdout::StdoutSink),
    /// Discards.
    Blackhole(blackhole::BlackholeSink),
    /// SignalFx `/v2/datapoint`.
    Signalfx(Box<signalfx::SignalfxSink>),
}

impl AnySink {
    /// Builds a sink from its validated config (opens files).
    ///
    /// # Errors
    /// Why the sink could not be opened.
    pub fn build(cfg: &SinkConfig) -> Result<Self, SinkError> {
        Ok(match cfg.kind() {
            SinkKind::File { path } => AnySink::File(file::FileSink::open(&path)?),
            SinkKind::Stdout => AnySink::Stdout(stdout::StdoutSink::new()),
            SinkKind::Blackhole => AnySink::Blackhole(blackhole::BlackholeSink),
            SinkKind::Signalfx(s) => AnySink::Signalfx(Box::new(signalfx::SignalfxSink::new(&s)?)),
        })
    }

    /// The sink's per-call limits.
    pub fn limits(&self) -> SinkLimits {
        match self {
            AnySink::File(_) | AnySink::Stdout(_) => SinkLimits { max_series: 10_000 },
            AnySink::Signalfx(s) => SinkLimits {
                max_series: s.max_series,
            },
            AnySink::Blackhole(_) => SinkLimits {
                max_series: usize::MAX,
            },
        }
    }

    /// Delivers one chunk; returns the bytes written.
    ///
    /// # Errors
    /// A [`SinkError`] saying whether a retry can help.
    pub fn deliver(&mut self, chunk: Chunk<'_>) -> Result<u64, SinkError> {
        match self {
            AnySink::File(s) => s.deliver(chunk),
            AnySink::Stdout(s) => s.deliver(chunk),
            AnySink::Signalfx(s) => s.deliver(chunk),
            AnySink::Blackhole(_) => Ok(0),
        }
    }

    /// Values of the last delivered chunk that were dropped while encoding (translation).
    pub fn last_encode_drops(&mut self) -> u64 {
        match self {
            AnySink::Signalfx(s) => std::mem::take(&mut s.last_translation_drops),
            _ => 0,
        }
    }

    /// Flushes buffered output (called when the queue runs dry and at shutdown).
    ///
    /// # Errors
    /// A retryable error when the flush failed.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            AnySink::File(s) => s.flush(),
            AnySink::Stdout(s) => s.flush(),
            AnySink::Signalfx(_) | AnySink::Blackhole(_) => Ok(()),
        }
    }
}
