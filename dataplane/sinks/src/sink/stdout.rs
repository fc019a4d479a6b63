//! NDJSON on standard output, for debugging (`switchyard run | jq`).

use super::Chunk;
use crate::SinkError;
use std::io::Write;
use switchyard_core::encode::datadog_series;

/// Writes NDJSON to stdout.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    /// A stdout sink.
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Encodes and writes a chunk.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] when stdout cannot be written.
    pub fn deliver(&mut self, chunk: Chunk<'_>) -> Result<u64, SinkError> {
        self.buf.clear();
        let b = chunk.batch;
        for s in b.iter().skip(chunk.start).take(chunk.len()) {
            datadog_series::write_series(&mut self.buf, s, b.timestamp, b.interval);
        }
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
