//! The writer: [`Log`] appends records, syncs them (group commit), rolls segments and
//! applies retention.
//!
//! Runs on one glommio executor (`!Send`); clone the [`Log`] to share it between that
//! executor's tasks. See the crate doc for the guarantees and [`crate::segment`] /
//! [`crate::frame`] for the bytes on disk.
//!
//! # How the bytes get to disk
//!
//! The active segment is written with O_DIRECT in whole 4 KiB blocks from a staging buffer
//! (`write_buffer_bytes`) that always starts at a block boundary of the file. Appends copy
//! frames into it; when it is full it is written as is. A sync writes what is staged,
//! padded with zeros to the next block boundary, calls `fdatasync`, then keeps only the
//! last partial block in the buffer (it is written again, with more records, by the next
//! sync or flush). Appends may run while an `fdatasync` is in flight; they wait only for
//! block writes.
//!
//! Metrics: none.

mod recover;

use crate::frame::{encode_header, FRAME_HEADER};
use crate::io::{align_down, align_up, write_block_rc, write_padded, ALIGN};
use crate::segment::{self, SegmentHeader, SparseIndex, SEGMENT_HEADER};
use crate::shared::{SegView, Shared};
use crate::{LogConfig, LogError, LogHandle};
use glommio::io::{Directory, DmaBuffer, DmaFile, OpenOptions};
use glommio::sync::{RwLock, Semaphore};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

/// The wall clock the log reads for segment ages and retention (injectable for tests).
pub type Clock = Rc<dyn Fn() -> SystemTime>;

/// A sealed segment, as retention sees it.
#[derive(Debug, Clone, Copy)]
struct Sealed {
    base: u64,
    bytes: u64,
    /// When the next segment was created: no record in this one is newer.
    sealed_at: SystemTime,
}

/// The active segment and the staging buffer. Only touched under the writer lock.
struct Writer {
    file: Rc<DmaFile>,
    path: PathBuf,
    base: u64,
    created: SystemTime,
    /// Staging buffer (a whole number of blocks); holds file bytes
    /// `[stage_pos, stage_pos + stage_len)`, not yet written in full.
    stage: Rc<DmaBuffer>,
    stage_pos: u64,
    stage_len: usize,
    /// Logical end of the active segment: one past the last appended frame.
    end: u64,
    /// Records appended to the active segment.
    records: u64,
    /// Sealed segments, oldest first.
    sealed: VecDeque<Sealed>,
}

struct Inner {
    cfg: LogConfig,
    shared: Arc<Shared>,
    clock: Clock,
    dir: Directory,
    writer: RwLock<Writer>,
    /// Serialises syncs; callers queue here, which is what makes group commit.
    sync_gate: Semaphore,
    /// Offset the next append gets.
    next: Cell<u64>,
    /// Every record below is durable.
    durable: Cell<u64>,
    /// `fdatasync` calls made by [`Log::sync`] (group commits).
    syncs: Cell<u64>,
    poison: RefCell<Option<String>>,
    /// Holds the directory's `flock` while the log is open.
    _lock: std::fs::File,
}

/// An open log: the single writer of a log directory. Cheap to clone (shared within one
/// executor); must be used on the glommio executor that opened it.
#[derive(Clone)]
pub struct Log {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.shared.dir)
            .field("next", &self.inner.next.get())
            .field("durable", &self.inner.durable.get())
            .finish()
    }
}

fn system_clock() -> Clock {
    Rc::new(SystemTime::now)
}

fn locked<T>(_: T) -> LogError {
    LogError::Poisoned("the writer lock was closed".into())
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering its tail (see the crate
    /// doc). Must be called on a glommio executor; the log then belongs to it.
    ///
    /// # Errors
    /// An invalid config, the directory in use by another writer, an I/O error, or a
    /// corrupt sealed segment header.
    pub async fn open(dir: impl AsRef<Path>, cfg: LogConfig) -> Result<Self, LogError> {
        Self::open_with_clock(dir, cfg, system_clock()).await
    }

    /// [`Log::open`] with an injected clock.
    ///
    /// # Errors
    /// As [`Log::open`].
    pub async fn open_with_clock(
        dir: impl AsRef<Path>,
        cfg: LogConfig,
        clock: Clock,
    ) -> Result<Self, LogError> {
        cfg.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let r = recover::open_dir(&dir, &cfg, &clock).await?;
        let shared = Arc::new(Shared::new(
            dir,
            cfg.max_record_bytes,
            usize::try_from(align_up(cfg.read_chunk_bytes as u64)).unwrap_or(usize::MAX),
            r.view,
        ));
        Ok(Self {
            inner: Rc::new(Inner {
                cfg,
                shared,
                clock,
                dir: r.dir,
                next: Cell::new(r.next),
                durable: Cell::new(r.next),
                syncs: Cell::new(0),
                writer: RwLock::new(r.writer),
                sync_gate: Semaphore::new(1),
                poison: RefCell::new(None),
                _lock: r.lock,
            }),
        })
    }

    /// A `Send + Sync` handle for readers and consumer offsets on any executor.
    #[must_use]
    pub fn handle(&self) -> LogHandle {
        LogHandle {
            shared: self.inner.shared.clone(),
        }
    }

    /// The offset the next append gets.
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.inner.next.get()
    }

    /// One past the last durable record.
    #[must_use]
    pub fn durable_offset(&self) -> u64 {
        self.inner.durable.get()
    }

    /// How many syncs ([`Log::sync`] / [`Log::wait_durable`] rounds that reached the
    /// disk) this log made since it was opened; with group commit, fewer than the callers.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.get()
    }

    /// The first offset still in the log.
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.handle().start_offset()
    }

    fn check_poison(&self) -> Result<(), LogError> {
        match &*self.inner.poison.borrow() {
            Some(m) => Err(LogError::Poisoned(m.clone())),
            None => Ok(()),
        }
    }

    fn poisoned(&self, e: LogError) -> LogError {
        let mut p = self.inner.poison.borrow_mut();
        if p.is_none() {
            tracing::error!(dir = %self.inner.shared.dir.display(), error = %e, "local log write failed; the log accepts no more writes");
            *p = Some(e.to_string());
        }
        e
    }

    /// Appends one record and returns its offset. The record is buffered, not durable:
    /// call [`Log::sync`] or [`Log::wait_durable`]. May roll the segment first (when the
    /// record would take it past `segment_bytes`, or it is older than `segment_age`),
    /// which syncs it and may delete old segments by retention.
    ///
    /// # Errors
    /// [`LogError::RecordTooLarge`]; [`LogError::Poisoned`] after an earlier failure; an
    /// I/O error (which poisons the log).
    pub async fn append(&self, payload: &[u8]) -> Result<u64, LogError> {
        if payload.len() > self.inner.cfg.max_record_bytes as usize {
            return Err(LogError::RecordTooLarge {
                len: payload.len(),
                max: self.inner.cfg.max_record_bytes,
            });
        }
        self.check_poison()?;
        let mut w = self.inner.writer.write().await.map_err(locked)?;
        self.check_poison()?;
        let r = self.append_locked(&mut w, payload).await;
        r.map_err(|e| self.poisoned(e))
    }

    async fn append_locked(&self, w: &mut Writer, payload: &[u8]) -> Result<u64, LogError> {
        let frame_len = (FRAME_HEADER + payload.len()) as u64;
        let now = (self.inner.clock)();
        if w.records > 0
            && (w.end + frame_len > self.inner.cfg.segment_bytes || self.too_old(w, now))
        {
            self.roll(w, now).await?;
        }
        let offset = self.inner.next.get();
        self.inner.shared.note_index(w.base, offset, w.end);
        self.put(w, &encode_header(offset, payload)).await?;
        self.put(w, payload).await?;
        w.end += frame_len;
        w.records += 1;
        self.inner.next.set(offset + 1);
        Ok(offset)
    }

    fn too_old(&self, w: &Writer, now: SystemTime) -> bool {
        now.duration_since(w.created)
            .is_ok_and(|age| age >= self.inner.cfg.segment_age)
    }

    /// Copies `data` into the staging buffer, writing it out each time it fills.
    async fn put(&self, w: &mut Writer, mut data: &[u8]) -> Result<(), LogError> {
        while !data.is_empty() {
            let at = w.stage_len;
            let stage = stage_mut(w)?;
            let cap = stage.len();
            let n = (cap - at).min(data.len());
            let (now, rest) = data.split_at(n);
            if let Some(dst) = stage.as_bytes_mut().get_mut(at..at + n) {
                dst.copy_from_slice(now);
            }
            w.stage_len += n;
            data = rest;
            if w.stage_len == cap {
                write_block_rc(&w.file, &w.path, w.stage.clone(), w.stage_pos).await?;
                w.stage_pos += cap as u64;
                w.stage_len = 0;
            }
        }
        Ok(())
    }

    /// Writes the staged bytes (last block padded with zeros) and keeps the last partial
    /// block staged.
    async fn write_tail(w: &mut Writer) -> Result<(), LogError> {
        if w.stage_len == 0 {
            return Ok(());
        }
        let staged = w.stage.as_bytes().get(..w.stage_len).unwrap_or_default();
        write_padded(&w.file, &w.path, staged, w.stage_pos).await?;
        let keep_from = usize::try_from(align_down(w.stage_len as u64)).unwrap_or(0);
        if keep_from > 0 {
            let len = w.stage_len;
            stage_mut(w)?.as_bytes_mut().copy_within(keep_from..len, 0);
            w.stage_pos += keep_from as u64;
            w.stage_len -= keep_from;
        }
        Ok(())
    }

    /// Makes every record appended so far durable and returns the durable offset (one
    /// past the last durable record). Concurrent callers share syncs (group commit).
    ///
    /// # Errors
    /// [`LogError::Poisoned`] after an earlier failure; an I/O error (which poisons the
    /// log).
    pub async fn sync(&self) -> Result<u64, LogError> {
        self.sync_to(self.inner.next.get()).await
    }

    /// Waits until record `offset` is durable (syncing if no sync in flight covers it) and
    /// returns the durable offset, which is then above `offset`.
    ///
    /// # Errors
    /// [`LogError::OffsetOutOfRange`] if `offset` was not appended yet; otherwise as
    /// [`Log::sync`].
    pub async fn wait_durable(&self, offset: u64) -> Result<u64, LogError> {
        let next = self.inner.next.get();
        if offset >= next {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.start_offset(),
                end: next,
            });
        }
        self.sync_to(offset + 1).await
    }

    async fn sync_to(&self, target: u64) -> Result<u64, LogError> {
        self.check_poison()?;
        if self.inner.durable.get() >= target {
            return Ok(self.inner.durable.get());
        }
        let _gate = self
            .inner
            .sync_gate
            .acquire_permit(1)
            .await
            .map_err(locked)?;
        // The sync before ours may have covered us.
        if self.inner.durable.get() >= target {
            return Ok(self.inner.durable.get());
        }
        self.check_poison()?;
        let (file, path, base, end, next) = {
            let mut w = self.inner.writer.write().await.map_err(locked)?;
            if let Err(e) = Self::write_tail(&mut w).await {
                return Err(self.poisoned(e));
            }
            (
                w.file.clone(),
                w.path.clone(),
                w.base,
                w.end,
                self.inner.next.get(),
            )
        };
        // Appends go on while the disk flushes; what they write is covered by a later sync.
        if let Err(e) = file.fdatasync().await {
            return Err(self.poisoned(LogError::io("fdatasync", path, e)));
        }
        self.inner.syncs.set(self.inner.syncs.get() + 1);
        self.mark_durable(base, end, next);
        Ok(self.inner.durable.get())
    }

    fn mark_durable(&self, base: u64, end: u64, next: u64) {
        self.inner.durable.set(self.inner.durable.get().max(next));
        self.inner.shared.publish_durable(base, end, next);
    }

    /// Seals the active segment (durably, truncated to its exact length) and starts the
    /// next one at the next offset, then applies retention.
    async fn roll(&self, w: &mut Writer, now: SystemTime) -> Result<(), LogError> {
        Self::write_tail(w).await?;
        w.file
            .truncate(w.end)
            .await
            .map_err(|e| LogError::io("truncating", &w.path, e))?;
        w.file
            .fdatasync()
            .await
            .map_err(|e| LogError::io("fdatasync", &w.path, e))?;
        let next = self.inner.next.get();
        self.mark_durable(w.base, w.end, next);
        let (file, path, stage) = create_segment(
            &self.inner.shared.dir,
            &self.inner.dir,
            next,
            now,
            self.inner.cfg.write_buffer_bytes,
        )
        .await?;
        let old = std::mem::replace(&mut w.file, file);
        let _ = old.close_rc().await;
        tracing::debug!(dir = %self.inner.shared.dir.display(), sealed = w.base, bytes = w.end, next, "local log rolled a segment");
        w.sealed.push_back(Sealed {
            base: w.base,
            bytes: w.end,
            sealed_at: now,
        });
        w.path = path;
        w.base = next;
        w.created = now;
        w.stage = stage;
        w.stage_pos = 0;
        w.stage_len = SEGMENT_HEADER;
        w.end = SEGMENT_HEADER as u64;
        w.records = 0;
        self.inner.shared.push_segment(SegView {
            base: next,
            readable: SEGMENT_HEADER as u64,
            index: SparseIndex::new(self.inner.cfg.index_interval_bytes),
        });
        self.retention(w, now).await
    }

    /// Deletes sealed segments, oldest first, while over `retention_bytes` or older than
    /// `retention_age`.
    async fn retention(&self, w: &mut Writer, now: SystemTime) -> Result<(), LogError> {
        let cfg = &self.inner.cfg;
        let mut total: u64 = w.sealed.iter().map(|s| s.bytes).sum::<u64>() + w.end;
        let mut deleted = 0usize;
        while let Some(oldest) = w.sealed.front().copied() {
            let over = cfg.retention_bytes.is_some_and(|max| total > max);
            let old = cfg.retention_age.is_some_and(|max| {
                now.duration_since(oldest.sealed_at)
                    .is_ok_and(|age| age > max)
            });
            if !over && !old {
                break;
            }
            // Readers stop seeing it first, then it goes.
            self.inner.shared.remove_oldest(oldest.base);
            let path = self.inner.shared.segment_path(oldest.base);
            let p = path.clone();
            let r = glommio::executor()
                .spawn_blocking(move || std::fs::remove_file(p))
                .await;
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("deleting", path, e)),
            }
            tracing::info!(dir = %self.inner.shared.dir.display(), base = oldest.base, bytes = oldest.bytes, by_size = over, "local log retention deleted a segment");
            total -= oldest.bytes;
            w.sealed.pop_front();
            deleted += 1;
        }
        if deleted > 0 {
            self.inner
                .dir
                .sync()
                .await
                .map_err(|e| LogError::io("syncing directory", &self.inner.shared.dir, e))?;
        }
        Ok(())
    }

    /// Time-driven housekeeping for an idle log: rolls the active segment if it holds
    /// records and is older than `segment_age`, and applies retention. Call it
    /// periodically (for example every minute); appends do the same on their way.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub async fn maintain(&self) -> Result<(), LogError> {
        self.check_poison()?;
        let mut w = self.inner.writer.write().await.map_err(locked)?;
        let now = (self.inner.clock)();
        let r = if w.records > 0 && self.too_old(&w, now) {
            self.roll(&mut w, now).await
        } else {
            self.retention(&mut w, now).await
        };
        r.map_err(|e| self.poisoned(e))
    }

    /// Syncs the log and trims the active segment's zero padding, so a clean reopen has
    /// nothing to cut. Other clones of this [`Log`] stay usable.
    ///
    /// # Errors
    /// As [`Log::sync`].
    pub async fn close(self) -> Result<u64, LogError> {
        let d = self.sync().await?;
        let w = self.inner.writer.write().await.map_err(locked)?;
        let r = async {
            w.file
                .truncate(w.end)
                .await
                .map_err(|e| LogError::io("truncating", &w.path, e))?;
            w.file
                .fdatasync()
                .await
                .map_err(|e| LogError::io("fdatasync", &w.path, e))
        }
        .await;
        r.map_err(|e| self.poisoned(e))?;
        Ok(d)
    }
}

/// The staging buffer, mutable: after a write completes the write no longer holds it; if
/// it somehow still does, stage into a fresh copy.
fn stage_mut(w: &mut Writer) -> Result<&mut DmaBuffer, LogError> {
    if Rc::get_mut(&mut w.stage).is_none() {
        let mut fresh = w.file.alloc_dma_buffer(w.stage.len());
        fresh.as_bytes_mut().copy_from_slice(w.stage.as_bytes());
        w.stage = Rc::new(fresh);
    }
    Rc::get_mut(&mut w.stage).ok_or_else(|| LogError::Poisoned("staging buffer shared".into()))
}

/// Creates segment `base`: header written and synced, directory synced. Returns the file,
/// its path and a staging buffer holding the header.
async fn create_segment(
    dir_path: &Path,
    dir: &Directory,
    base: u64,
    now: SystemTime,
    write_buffer_bytes: usize,
) -> Result<(Rc<DmaFile>, PathBuf, Rc<DmaBuffer>), LogError> {
    let path = dir_path.join(segment::file_name(base));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(|e| LogError::io("creating", &path, e))?;
    let header = SegmentHeader {
        base,
        created_ms: segment::unix_ms(now),
    }
    .encode();
    write_padded(&file, &path, &header, 0).await?;
    file.fdatasync()
        .await
        .map_err(|e| LogError::io("fdatasync", &path, e))?;
    dir.sync()
        .await
        .map_err(|e| LogError::io("syncing directory", dir_path, e))?;
    let mut stage = new_stage(&file, write_buffer_bytes);
    if let Some(dst) = stage.as_bytes_mut().get_mut(..SEGMENT_HEADER) {
        dst.copy_from_slice(&header);
    }
    Ok((Rc::new(file), path, Rc::new(stage)))
}

fn new_stage(file: &DmaFile, write_buffer_bytes: usize) -> DmaBuffer {
    let cap = usize::try_from(align_up(write_buffer_bytes as u64).max(ALIGN)).unwrap_or(1 << 20);
    file.alloc_dma_buffer(cap)
}
