//! Opening a log directory: the writer lock, the segment list, and tail recovery.
//!
//! The last segment is scanned frame by frame from its header (CRC, length and offset
//! sequence checked); the first frame that fails ends the log and the file is truncated
//! there (`fdatasync`ed), with a warning giving the bytes cut and why (partial frame, bad
//! CRC, zeroed space, unexpected offset, oversized length). A last segment whose header is
//! missing or bad was being created when the process died (the header is synced before
//! any record is written to it), so it holds no durable record: it is deleted and the
//! segment before it recovered instead. Older segments only have their header checked
//! (a bad one fails the open) and are trusted by size.
//!
//! Runs on the glommio executor opening the log. Metrics: none.

use super::{create_segment, new_stage, Clock, Sealed, Writer};
use crate::io::{align_down, probe_device, Window, ALIGN, LOCK_FILE, LOCK_FILE_BYTES};
use crate::segment::{self, SegmentHeader, SparseIndex, SEGMENT_HEADER};
use crate::shared::{SegView, View};
use crate::{consumer, LogConfig, LogError};
use glommio::io::{Directory, DmaFile, OpenOptions};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::time::SystemTime;

pub(super) struct Opened {
    pub view: View,
    pub writer: Writer,
    pub next: u64,
    pub dir: Directory,
    pub lock: std::fs::File,
}

/// The recovered last segment.
struct Tail {
    file: DmaFile,
    path: std::path::PathBuf,
    header: SegmentHeader,
    end: u64,
    next: u64,
    index: SparseIndex,
}

fn lock_dir(dir: &Path) -> Result<std::fs::File, LogError> {
    let path = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io("opening", &path, e))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(LogError::Locked(dir.to_path_buf()));
        }
        return Err(LogError::io("locking", &path, e));
    }
    // The lock file doubles as glommio's IOPOLL probe: it must hold written data.
    let len = f
        .metadata()
        .map_err(|e| LogError::io("stat", &path, e))?
        .len();
    if len < LOCK_FILE_BYTES as u64 {
        use std::io::Write as _;
        let mut content = b"switchyard local log: flock'd by its writer\n".to_vec();
        content.resize(LOCK_FILE_BYTES, b'\n');
        f.write_all(&content)
            .and_then(|()| f.sync_all())
            .map_err(|e| LogError::io("writing", &path, e))?;
    }
    Ok(f)
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| LogError::io("listing", dir, e))? {
        let e = e.map_err(|e| LogError::io("listing", dir, e))?;
        if let Some(base) = e.file_name().to_str().and_then(segment::parse_file_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

async fn read_header(file: &DmaFile, path: &Path) -> Result<Option<SegmentHeader>, LogError> {
    let r = file
        .read_at(0, SEGMENT_HEADER)
        .await
        .map_err(|e| LogError::io("reading", path, e))?;
    Ok(SegmentHeader::decode(&r))
}

/// Scans segment `base` as the last one; `None` if its header is torn.
async fn scan_last(dir: &Path, base: u64, cfg: &LogConfig) -> Result<Option<Tail>, LogError> {
    let path = dir.join(segment::file_name(base));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&path)
        .await
        .map_err(|e| LogError::io("opening", &path, e))?;
    let size = file
        .file_size()
        .await
        .map_err(|e| LogError::io("stat", &path, e))?;
    let header = match read_header(&file, &path).await? {
        Some(h) if h.base == base => h,
        _ => {
            let _ = file.close().await;
            return Ok(None);
        }
    };
    let chunk = cfg.read_chunk_bytes;
    let mut window = Window::default();
    let mut index = SparseIndex::new(cfg.index_interval_bytes);
    let mut pos = SEGMENT_HEADER as u64;
    let mut next = base;
    let fault = loop {
        match window
            .frame(&file, &path, pos, size, next, cfg.max_record_bytes, chunk)
            .await?
        {
            Ok((h, _)) => {
                index.note(next, pos);
                pos += h.frame_len();
                next += 1;
            }
            Err(f) => break f,
        }
        glommio::yield_if_needed().await;
    };
    if size > pos {
        tracing::warn!(
            segment = %path.display(),
            cut_bytes = size - pos,
            at = pos,
            reason = %fault,
            records = next - base,
            "local log: truncating the torn tail of the last segment"
        );
        file.truncate(pos)
            .await
            .map_err(|e| LogError::io("truncating", &path, e))?;
    }
    // What was found is what readers will be told is durable: make it so (the process
    // that wrote it may have died before its sync).
    file.fdatasync()
        .await
        .map_err(|e| LogError::io("fdatasync", &path, e))?;
    Ok(Some(Tail {
        file,
        path,
        header,
        end: pos,
        next,
        index,
    }))
}

pub(super) async fn open_dir(
    dir: &Path,
    cfg: &LogConfig,
    clock: &Clock,
) -> Result<Opened, LogError> {
    std::fs::create_dir_all(consumer::consumers_dir(dir))
        .map_err(|e| LogError::io("creating", dir, e))?;
    let lock = lock_dir(dir)?;
    consumer::remove_tmp_files(dir)?;
    probe_device(dir).await;
    let gdir = Directory::open(dir)
        .await
        .map_err(|e| LogError::io("opening directory", dir, e))?;
    let mut bases = list_segments(dir)?;

    let mut fresh_base = 0;
    let mut tail = None;
    while let Some(&base) = bases.last() {
        if let Some(t) = scan_last(dir, base, cfg).await? {
            tail = Some(t);
            break;
        }
        let path = dir.join(segment::file_name(base));
        tracing::warn!(segment = %path.display(), "local log: removing a last segment with a torn header (crash while rolling)");
        std::fs::remove_file(&path).map_err(|e| LogError::io("deleting", &path, e))?;
        gdir.sync()
            .await
            .map_err(|e| LogError::io("syncing directory", dir, e))?;
        bases.pop();
        fresh_base = base;
    }

    // Sealed segments: header checked, size trusted.
    let mut sealed_info = Vec::with_capacity(bases.len());
    for &base in bases.iter().take(bases.len().saturating_sub(1)) {
        let path = dir.join(segment::file_name(base));
        let file = DmaFile::open(&path)
            .await
            .map_err(|e| LogError::io("opening", &path, e))?;
        let header = read_header(&file, &path).await?;
        let size = file
            .file_size()
            .await
            .map_err(|e| LogError::io("stat", &path, e))?;
        let _ = file.close().await;
        match header {
            Some(h) if h.base == base => sealed_info.push((h, size)),
            _ => {
                return Err(LogError::Corrupt {
                    path,
                    pos: 0,
                    reason: "bad segment header in a sealed segment".into(),
                })
            }
        }
    }

    let now = clock();
    let (writer, next, tail_index) = match tail {
        Some(t) => {
            let mut stage = new_stage(&t.file, cfg.write_buffer_bytes);
            let stage_pos = align_down(t.end);
            let stage_len = usize::try_from(t.end - stage_pos).unwrap_or(0);
            if stage_len > 0 {
                let r = t
                    .file
                    .read_at_aligned(stage_pos, ALIGN as usize)
                    .await
                    .map_err(|e| LogError::io("reading", &t.path, e))?;
                match (
                    r.get(..stage_len),
                    stage.as_bytes_mut().get_mut(..stage_len),
                ) {
                    (Some(src), Some(dst)) => dst.copy_from_slice(src),
                    _ => {
                        return Err(LogError::Corrupt {
                            path: t.path,
                            pos: stage_pos,
                            reason: "the last block shrank while opening".into(),
                        })
                    }
                }
            }
            let w = Writer {
                file: Rc::new(t.file),
                path: t.path,
                base: t.header.base,
                created: t.header.created(),
                stage: Rc::new(stage),
                stage_pos,
                stage_len,
                end: t.end,
                records: t.next - t.header.base,
                sealed: VecDeque::new(),
            };
            (w, t.next, t.index)
        }
        None => {
            let (file, path, stage) =
                create_segment(dir, &gdir, fresh_base, now, cfg.write_buffer_bytes).await?;
            let w = Writer {
                file,
                path,
                base: fresh_base,
                created: now,
                stage,
                stage_pos: 0,
                stage_len: SEGMENT_HEADER,
                end: SEGMENT_HEADER as u64,
                records: 0,
                sealed: VecDeque::new(),
            };
            (w, fresh_base, SparseIndex::new(cfg.index_interval_bytes))
        }
    };

    let mut writer = writer;
    let mut segs = VecDeque::with_capacity(sealed_info.len() + 1);
    for (i, (h, size)) in sealed_info.iter().enumerate() {
        // No record in a sealed segment is newer than the next segment's creation.
        let sealed_at: SystemTime = sealed_info
            .get(i + 1)
            .map_or(writer.created, |(n, _)| n.created());
        writer.sealed.push_back(Sealed {
            base: h.base,
            bytes: *size,
            sealed_at,
        });
        segs.push_back(SegView {
            base: h.base,
            readable: *size,
            index: SparseIndex::new(cfg.index_interval_bytes),
        });
    }
    segs.push_back(SegView {
        base: writer.base,
        readable: writer.end,
        index: tail_index,
    });
    tracing::info!(dir = %dir.display(), segments = segs.len(), next, "local log opened");
    Ok(Opened {
        view: View {
            segs,
            durable_next: next,
        },
        writer,
        next,
        dir: gdir,
        lock,
    })
}
