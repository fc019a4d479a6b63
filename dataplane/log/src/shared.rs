//! What the writer publishes to readers on any executor: the segments, how far each is
//! durable, their sparse indexes, and the durable offset.
//!
//! The state sits behind a `std::sync::Mutex` held for a few instructions (never across
//! an await): the writer takes it once per sync, roll, index entry and deletion; a reader
//! once per segment it reads from. Nothing here is on disk.
//!
//! Metrics: none.

use crate::consumer::ConsumerOffsets;
use crate::reader::LogReader;
use crate::segment::{self, SparseIndex};
use crate::LogError;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One segment as readers see it.
#[derive(Debug)]
pub(crate) struct SegView {
    pub base: u64,
    /// Readers may read frames in `[SEGMENT_HEADER, readable)`: durable bytes.
    pub readable: u64,
    pub index: SparseIndex,
}

#[derive(Debug)]
pub(crate) struct View {
    /// Oldest first; never empty once the log is open.
    pub segs: VecDeque<SegView>,
    /// One past the last durable record.
    pub durable_next: u64,
}

/// Where a reader finds an offset, from one consistent snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    pub base: u64,
    pub readable: u64,
    pub durable_next: u64,
    /// The index entry at or before the offset (or the segment's first frame).
    pub seek: (u64, u64),
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub max_record_bytes: u32,
    pub read_chunk_bytes: usize,
    view: Mutex<View>,
}

impl Shared {
    pub fn new(dir: PathBuf, max_record_bytes: u32, read_chunk_bytes: usize, view: View) -> Self {
        Self {
            dir,
            max_record_bytes,
            read_chunk_bytes,
            view: Mutex::new(view),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, View> {
        // The critical sections cannot panic halfway (no unwrap, no indexing), so a
        // poisoned lock still holds consistent data.
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn segment_path(&self, base: u64) -> PathBuf {
        self.dir.join(segment::file_name(base))
    }

    pub fn start_and_end(&self) -> (u64, u64) {
        let v = self.lock();
        let start = v.segs.front().map_or(v.durable_next, |s| s.base);
        (start, v.durable_next)
    }

    /// Finds `offset`: `Ok(None)` when it is the durable end (nothing to read yet).
    pub fn locate(&self, offset: u64) -> Result<Option<Located>, LogError> {
        let v = self.lock();
        let start = v.segs.front().map_or(v.durable_next, |s| s.base);
        if offset < start || offset > v.durable_next {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start,
                end: v.durable_next,
            });
        }
        if offset == v.durable_next {
            return Ok(None);
        }
        let i = v.segs.partition_point(|s| s.base <= offset);
        let Some(s) = i.checked_sub(1).and_then(|i| v.segs.get(i)) else {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start,
                end: v.durable_next,
            });
        };
        let seek = s
            .index
            .floor(offset)
            .unwrap_or((s.base, segment::SEGMENT_HEADER as u64));
        Ok(Some(Located {
            base: s.base,
            readable: s.readable,
            durable_next: v.durable_next,
            seek,
        }))
    }

    /// Publishes a sync: segment `base` is durable up to byte `end`, records below `next`.
    pub fn publish_durable(&self, base: u64, end: u64, next: u64) {
        let mut v = self.lock();
        if let Some(s) = v.segs.iter_mut().rev().find(|s| s.base == base) {
            s.readable = s.readable.max(end);
        }
        v.durable_next = v.durable_next.max(next);
    }

    pub fn note_index(&self, base: u64, offset: u64, pos: u64) {
        let mut v = self.lock();
        if let Some(s) = v.segs.back_mut().filter(|s| s.base == base) {
            s.index.note(offset, pos);
        }
    }

    pub fn push_segment(&self, seg: SegView) {
        self.lock().segs.push_back(seg);
    }

    pub fn remove_oldest(&self, base: u64) {
        let mut v = self.lock();
        if v.segs.len() > 1 && v.segs.front().is_some_and(|s| s.base == base) {
            v.segs.pop_front();
        }
    }
}

/// A `Send + Sync` handle on an open log, for readers and consumer offsets on any glommio
/// executor. Cheap to clone. It stays valid after the [`crate::Log`] is dropped (it then
/// sees no new records).
#[derive(Debug, Clone)]
pub struct LogHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LogHandle {
    /// The log directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The first offset still in the log (older ones were deleted by retention).
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.shared.start_and_end().0
    }

    /// The durable end: every record below it is durable and readable.
    #[must_use]
    pub fn durable_offset(&self) -> u64 {
        self.shared.start_and_end().1
    }

    /// A reader for the executor this is called on (it opens segment files lazily there).
    #[must_use]
    pub fn reader(&self) -> LogReader {
        LogReader::new(self.shared.clone())
    }

    /// The consumer offsets of this log.
    #[must_use]
    pub fn consumers(&self) -> ConsumerOffsets {
        ConsumerOffsets::new(self.shared.clone())
    }
}
