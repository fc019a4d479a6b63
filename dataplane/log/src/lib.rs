//! Switchyard's local log: an append-only segment log on local disk, written with glommio
//! DMA (O_DIRECT) file I/O. It is the embedded default stream: with no Kinesis or Kafka
//! configured, batches are appended here and the built-in workers read them back.
//!
//! # Model
//!
//! A log is a directory. Records are opaque byte strings; each gets the next **offset**
//! (0, 1, 2, ... never reused, Kafka-like). Records live in **segments**, files named by the
//! offset of their first record ([`segment`] has the byte layout), each record framed with its
//! length, offset and a CRC-32C ([`frame`]). Consumers store the offset of the next record
//! they want in per-name offset files ([`consumer`]).
//!
//! ```text
//! <dir>/LOCK                          flock'd by the one writer
//! <dir>/00000000000000000000.log      sealed segment, records 0..n
//! <dir>/0000000000000000nnnn.log      active segment (the only one written to)
//! <dir>/consumers/<name>.offset       committed offset of consumer <name>
//! ```
//!
//! # Threads
//!
//! [`Log`] (the writer) lives on one glommio executor: it is `!Send`, all its methods must
//! be called there, and it may be cloned to share between tasks of that executor. Readers
//! ([`LogReader`]) and [`ConsumerOffsets`] may run on **any** glommio executor: get a
//! [`LogHandle`] (`Send + Sync`, cheap to clone) from [`Log::handle`], move it to the other
//! executor and build them there. The writer publishes what is durable through the handle
//! (a mutex held for a few instructions, never across an await).
//!
//! # Guarantees
//!
//! - [`Log::append`] copies the record into a write buffer (or to the file when the buffer
//!   is full) and returns its offset. The record is **not durable** yet: a crash may lose it.
//! - [`Log::sync`] writes out what is buffered and calls `fdatasync` on the active segment;
//!   when it returns `Ok(d)`, every record with an offset below `d` survives a process
//!   crash (kill -9) and, on storage that honours flushes, a power loss. Concurrent callers
//!   share syncs (group commit): a caller waits for the sync in flight and starts at most
//!   one more, which covers every record appended before it started.
//!   [`Log::wait_durable`] waits until one given record is durable the same way.
//! - Rolling a segment syncs it, truncates it to its exact length and creates the next
//!   segment with its header synced and the directory synced, so sealed segments are
//!   complete on disk before anything is written after them.
//! - Readers only ever see durable records (offset below the durable offset): a record a
//!   consumer has seen cannot vanish in a crash and be replaced by another at the same
//!   offset.
//! - If a write or `fdatasync` fails, the log is **poisoned**: every later append or sync
//!   returns [`LogError::Poisoned`] (after a failed fsync the kernel may have dropped the
//!   dirty data; retrying could report data durable that is not). Reopen the log to
//!   recover what is on disk.
//! - At open, the last segment is scanned and every frame checked (CRC, length, offset
//!   sequence); the first bad frame ends the log: what follows (a torn write, a partial
//!   frame, zeroed or padded space, garbage) is truncated and the number of bytes cut is
//!   logged. A last segment whose header is torn (crash while rolling) is removed. Older
//!   segments are trusted by size; a read that meets a bad frame in them returns
//!   [`LogError::Corrupt`], never the bytes.
//! - The last, partially filled 4 KiB block is rewritten by each sync (O_DIRECT writes
//!   whole blocks). Its durable prefix is rewritten with the same bytes, so a torn block
//!   write cannot damage it on storage with atomic sector writes (all current disks).
//! - Retention deletes whole sealed segments, oldest first, while the log is over
//!   `retention_bytes` or the segment's newest record is older than `retention_age`
//!   (bounded by the creation time of the next segment); never the active segment. It does
//!   not wait for consumers: a consumer behind the new start gets
//!   [`LogError::OffsetOutOfRange`] and must skip to [`LogHandle::start_offset`].
//! - One writer per directory, enforced with `flock` on `<dir>/LOCK`.
//!
//! # Memory
//!
//! The writer holds one write buffer (`write_buffer_bytes`) and per segment a sparse index
//! of at most [`segment::INDEX_MAX_ENTRIES`] entries. A reader holds one read window
//! (`read_chunk_bytes`, or one record if larger) and the batch it was asked for (limited by
//! [`ReadLimits`], plus at most one record).
//!
//! Metrics: none yet; the owner counts appends and syncs from the returned values.

pub mod consumer;
pub mod frame;
mod io;
pub mod reader;
pub mod segment;
mod shared;
pub mod writer;

pub use consumer::ConsumerOffsets;
pub use reader::{LogReader, ReadBatch, ReadLimits, Record};
pub use shared::LogHandle;
pub use writer::{Clock, Log};

use std::path::PathBuf;
use std::time::Duration;

/// Settings of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before a record would take the active one past this size.
    pub segment_bytes: u64,
    /// Roll to a new segment when the active one is older than this (checked on append and
    /// by [`Log::maintain`]).
    pub segment_age: Duration,
    /// Delete the oldest sealed segments while the log is larger than this; `None`: no size
    /// limit.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this; `None`: no age limit.
    pub retention_age: Option<Duration>,
    /// Largest record accepted (payload bytes); also the most a reader allocates for one
    /// record, so a corrupt length cannot make it allocate more.
    pub max_record_bytes: u32,
    /// Size of the writer's buffer (rounded up to 4 KiB); full buffers are written at once.
    pub write_buffer_bytes: usize,
    /// Distance in bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// Size of a reader's read window (rounded up to 4 KiB).
    pub read_chunk_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 128 << 20,
            segment_age: Duration::from_secs(3600),
            retention_bytes: Some(10 << 30),
            retention_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_record_bytes: 8 << 20,
            write_buffer_bytes: 1 << 20,
            index_interval_bytes: 256 << 10,
            read_chunk_bytes: 256 << 10,
        }
    }
}

impl LogConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`LogError::Config`] naming the setting that cannot work.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes < 4096 {
            return Err(LogError::Config(
                "segment_bytes must be at least 4096".into(),
            ));
        }
        if self.segment_age.is_zero() {
            return Err(LogError::Config("segment_age must be positive".into()));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > (1 << 30) {
            return Err(LogError::Config(
                "max_record_bytes must be between 1 and 1 GiB".into(),
            ));
        }
        if self.write_buffer_bytes < 4096 || self.write_buffer_bytes > (1 << 30) {
            return Err(LogError::Config(
                "write_buffer_bytes must be between 4 KiB and 1 GiB".into(),
            ));
        }
        if self.read_chunk_bytes < 4096 || self.read_chunk_bytes > (1 << 30) {
            return Err(LogError::Config(
                "read_chunk_bytes must be between 4 KiB and 1 GiB".into(),
            ));
        }
        Ok(())
    }
}

/// What went wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record larger than `max_record_bytes` was appended.
    #[error("record of {len} bytes exceeds max_record_bytes ({max})")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// An offset outside the readable log (deleted by retention, or not durable yet).
    #[error("offset {offset} is outside the log's readable range [{start}, {end})")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The first offset still in the log.
        start: u64,
        /// The durable end: one past the last durable record.
        end: u64,
    },
    /// A bad frame where a valid one must be.
    #[error("corrupt segment {path} at byte {pos}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position in the file.
        pos: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or sync failed; the log accepts no more writes until reopened.
    #[error("the log is unusable after an earlier failure: {0}")]
    Poisoned(String),
    /// A setting cannot work.
    #[error("invalid log config: {0}")]
    Config(String),
    /// A consumer name that is not `[A-Za-z0-9_.-]{1,128}` or starts with a dot.
    #[error("invalid consumer name {0:?}: use 1 to 128 of [A-Za-z0-9_.-], not starting with '.'")]
    ConsumerName(String),
    /// Another writer holds the log directory.
    #[error("log directory {0} is in use by another writer")]
    Locked(PathBuf),
}

impl LogError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        e: impl Into<std::io::Error>,
    ) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source: e.into(),
        }
    }

    /// Whether this is an I/O error of kind `NotFound`.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}
