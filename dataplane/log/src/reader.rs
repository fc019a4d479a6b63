//! Reading records back: [`LogReader`] returns bounded batches of durable records from an
//! offset.
//!
//! A reader runs on any glommio executor (build it there from a [`crate::LogHandle`]); it
//! opens segment files itself, read-only, and never blocks the writer. It remembers where
//! the last batch ended, so a worker loop reading on from there does not seek; any other
//! offset is found through the segment's sparse index and a short scan. Every frame is
//! checked (CRC, length, offset sequence); a bad one is an error ([`LogError::Corrupt`]),
//! never returned bytes.
//!
//! There is no wake-up on new records: a worker loop that got an empty batch sleeps (or
//! waits for its own signal from the writer's executor) and reads again.
//!
//! Metrics: none.

use crate::frame::FrameFault;
use crate::io::Window;
use crate::shared::Shared;
use crate::LogError;
use glommio::io::DmaFile;
use std::path::PathBuf;
use std::sync::Arc;

/// How much one read may return. At least one record is returned whenever one is
/// available, even if it alone exceeds `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most records in a batch.
    pub max_records: usize,
    /// Stop adding records once the batch holds this many payload bytes.
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_records: 1024,
            max_bytes: 4 << 20,
        }
    }
}

/// One record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's offset.
    pub offset: u64,
    /// The record's bytes.
    pub payload: &'a [u8],
}

/// A batch of consecutive records, reused across reads.
#[derive(Debug, Default, Clone)]
pub struct ReadBatch {
    data: Vec<u8>,
    /// (offset, start in `data`, length)
    entries: Vec<(u64, usize, usize)>,
}

impl ReadBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    fn push(&mut self, offset: u64, payload: &[u8]) {
        self.entries.push((offset, self.data.len(), payload.len()));
        self.data.extend_from_slice(payload);
    }

    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes in the batch.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The offset after the last record (where the next read starts), `None` if empty.
    #[must_use]
    pub fn next_offset(&self) -> Option<u64> {
        self.entries.last().map(|e| e.0 + 1)
    }

    /// The records, in offset order.
    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        self.entries.iter().map(|&(offset, start, len)| Record {
            offset,
            payload: self.data.get(start..start + len).unwrap_or_default(),
        })
    }
}

/// Where the previous read stopped.
struct Cursor {
    base: u64,
    file: DmaFile,
    path: PathBuf,
    /// The next frame's offset and position.
    offset: u64,
    pos: u64,
}

/// Reads durable records of one log. Not `Send`: build one per executor from a
/// [`crate::LogHandle`].
pub struct LogReader {
    shared: Arc<Shared>,
    cursor: Option<Cursor>,
    window: Window,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.shared.dir)
            .field("at", &self.cursor.as_ref().map(|c| (c.offset, c.pos)))
            .finish()
    }
}

impl LogReader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            cursor: None,
            window: Window::default(),
        }
    }

    /// Fills `out` with durable records from offset `from` on, within `limits`. An empty
    /// batch means `from` is the durable end (nothing new yet).
    ///
    /// # Errors
    /// [`LogError::OffsetOutOfRange`] if `from` was deleted by retention or is beyond the
    /// durable end; [`LogError::Corrupt`] on a bad frame; an I/O error.
    pub async fn read(
        &mut self,
        from: u64,
        limits: ReadLimits,
        out: &mut ReadBatch,
    ) -> Result<(), LogError> {
        out.clear();
        let max_records = limits.max_records.max(1);
        let full = |out: &ReadBatch| {
            out.len() >= max_records || (!out.is_empty() && out.bytes() >= limits.max_bytes)
        };
        // The next offset wanted.
        let mut offset = from;
        // The segment just read to its end, if any: the next must start at `offset`.
        let mut exhausted: Option<u64> = None;
        while !full(out) {
            let Some(loc) = self.shared.locate(offset)? else {
                break;
            };
            if let Some(prev) = exhausted {
                if loc.base != offset {
                    let path = self.shared.segment_path(prev);
                    return Err(LogError::Corrupt {
                        path,
                        pos: 0,
                        reason: format!(
                            "segment ends before offset {offset}, which the next segment does not start with"
                        ),
                    });
                }
            }
            self.position(loc.base, offset, loc.seek).await?;
            let Some(c) = self.cursor.as_mut() else {
                break;
            };
            let chunk = self.shared.read_chunk_bytes;
            let max_len = self.shared.max_record_bytes;
            loop {
                if c.offset >= loc.durable_next || full(out) {
                    return Ok(());
                }
                if c.pos >= loc.readable {
                    break;
                }
                let got = self
                    .window
                    .frame(
                        &c.file,
                        &c.path,
                        c.pos,
                        loc.readable,
                        c.offset,
                        max_len,
                        chunk,
                    )
                    .await?;
                let (h, payload) = got.map_err(|fault| corrupt(c, fault))?;
                if c.offset >= offset {
                    out.push(c.offset, payload);
                    offset = c.offset + 1;
                }
                c.pos += h.frame_len();
                c.offset += 1;
                glommio::yield_if_needed().await;
            }
            if c.offset < offset {
                return Err(LogError::Corrupt {
                    path: c.path.clone(),
                    pos: c.pos,
                    reason: format!("segment ends at offset {} before offset {offset}", c.offset),
                });
            }
            exhausted = Some(c.base);
        }
        Ok(())
    }

    /// Puts the cursor on segment `base` at a frame at or before `offset`: where it is if
    /// that works, else at the index entry `seek`.
    async fn position(&mut self, base: u64, offset: u64, seek: (u64, u64)) -> Result<(), LogError> {
        if let Some(c) = self.cursor.as_mut().filter(|c| c.base == base) {
            if !(c.offset <= offset && c.offset >= seek.0) {
                c.offset = seek.0;
                c.pos = seek.1;
            }
            return Ok(());
        }
        crate::io::probe_device(&self.shared.dir).await;
        let path = self.shared.segment_path(base);
        let file = match DmaFile::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let e = LogError::io("opening", &path, e);
                if e.is_not_found() {
                    // Deleted by retention since it was located.
                    let (start, end) = self.shared.start_and_end();
                    return Err(LogError::OffsetOutOfRange { offset, start, end });
                }
                return Err(e);
            }
        };
        if let Some(old) = self.cursor.take() {
            let _ = old.file.close().await;
        }
        self.window.reset();
        self.cursor = Some(Cursor {
            base,
            file,
            path,
            offset: seek.0,
            pos: seek.1,
        });
        Ok(())
    }
}

fn corrupt(c: &Cursor, fault: FrameFault) -> LogError {
    LogError::Corrupt {
        path: c.path.clone(),
        pos: c.pos,
        reason: format!("{fault} (expected offset {})", c.offset),
    }
}
