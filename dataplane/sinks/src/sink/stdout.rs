//! NDJSON on standard output, for debugging (`switchyard run | jq`): the file sink's format.

use super::{Chunk, ParseScratch};
use crate::SinkError;
use std::io::Write;
use switchyard_core::encode::datadog_series;

/// Writes NDJSON to stdout.
#[derive(Debug, Default)]
pub struct StdoutSink {
    pub(crate) buf: Vec<u8>,
    pub(crate) scratch: ParseScratch,
}

impl StdoutSink {
    /// A stdout sink.
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(1 << 16),
            scratch: ParseScratch::default(),
        }
    }

    /// Encodes a chunk into the reused buffer; returns its length.
    pub fn encode(&mut self, chunk: Chunk<'_>) -> u64 {
        self.buf.clear();
        let b = chunk.batch;
        for s in b.iter().skip(chunk.start).take(chunk.len()) {
            datadog_series::write_series(&mut self.buf, s, b.timestamp, b.interval);
        }
        self.buf.len() as u64
    }

    /// Writes the encoded buffer; returns the bytes written.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] when stdout cannot be written.
    pub fn write_buf(&mut self) -> Result<u64, SinkError> {
        std::io::stdout()
            .lock()
            .write_all(&self.buf)
            .map_err(|e| SinkError::Retryable(format!("writing stdout: {e}")))?;
        Ok(self.buf.len() as u64)
    }

    /// Flushes stdout.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] when stdout cannot be flushed.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        std::io::stdout()
            .flush()
            .map_err(|e| SinkError::Retryable(format!("flushing stdout: {e}")))
    }
}
