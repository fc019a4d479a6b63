//! NDJSON file sink: one Datadog v1 series object per line, appended.
//!
//! Statsd batches are written series by series; a v1 series payload from the HTTP intake is
//! written as its series (other intake endpoints are counted `unsupported`). The file and its
//! parent directories are created at start. Writes go through a reused encode buffer and
//! `write_all`, so a short write can never lose half a line.

use super::{Chunk, ParseScratch};
use crate::SinkError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use switchyard_core::encode::datadog_series;

/// Appends NDJSON to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
    pub(crate) buf: Vec<u8>,
    pub(crate) scratch: ParseScratch,
}

impl FileSink {
    /// Opens (creates) `path` for appending.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when the file or its directory cannot be created.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| SinkError::Fatal(format!("creating {}: {e}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SinkError::Fatal(format!("opening {}: {e}", path.display())))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            buf: Vec::with_capacity(1 << 20),
            scratch: ParseScratch::default(),
        })
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

    /// Appends the encoded buffer; returns the bytes written.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] on an I/O error (disk full, for example).
    pub fn write_buf(&mut self) -> Result<u64, SinkError> {
        self.file
            .write_all(&self.buf)
            .map_err(|e| SinkError::Retryable(format!("writing {}: {e}", self.path.display())))?;
        Ok(self.buf.len() as u64)
    }

    /// Nothing is buffered in user space; kept for the common sink interface.
    ///
    /// # Errors
    /// Never.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
