//! DMA file helpers: block alignment, whole-block writes, and a read window that serves
//! frame headers and payloads from aligned reads.
//!
//! Must run on a glommio executor. Metrics: none.

use crate::frame::{self, FrameFault, FrameHeader, FRAME_HEADER};
use crate::LogError;
use glommio::io::{DmaBuffer, DmaFile, ReadResult};
use std::path::Path;
use std::rc::Rc;

/// The block size the log writes and reads in. A multiple of every logical block size
/// O_DIRECT needs on current devices (512 or 4096 bytes).
pub(crate) const ALIGN: u64 = 4096;

pub(crate) fn align_down(v: u64) -> u64 {
    v & !(ALIGN - 1)
}

pub(crate) fn align_up(v: u64) -> u64 {
    align_down(v.saturating_add(ALIGN - 1))
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Writes all of `buf` (a whole number of blocks) at `pos`; a short write is an error.
pub(crate) async fn write_block_rc(
    file: &DmaFile,
    path: &Path,
    buf: Rc<DmaBuffer>,
    pos: u64,
) -> Result<(), LogError> {
    let want = buf.len();
    let n = file
        .write_rc_at(buf, pos)
        .await
        .map_err(|e| LogError::io("writing", path, e))?;
    if n != want {
        return Err(LogError::io(
            "writing",
            path,
            std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {n} of {want} bytes at {pos}"),
            ),
        ));
    }
    Ok(())
}

/// Writes `data` at the block-aligned `pos`, padding the last block with zeros.
pub(crate) async fn write_padded(
    file: &DmaFile,
    path: &Path,
    data: &[u8],
    pos: u64,
) -> Result<(), LogError> {
    let len = to_usize(align_up(data.len() as u64));
    let mut b = file.alloc_dma_buffer(len);
    let bytes = b.as_bytes_mut();
    let (head, tail) = bytes.split_at_mut(data.len());
    head.copy_from_slice(data);
    tail.fill(0);
    write_block_rc(file, path, Rc::new(b), pos).await
}

/// A read window over one file: the last aligned read, reused while requests fall in it.
#[derive(Default)]
pub(crate) struct Window {
    data: Option<ReadResult>,
    pos: u64,
    /// The window's bytes are valid below this file position: the readable limit when it
    /// was read (the active segment grows after the read; bytes past the limit were not
    /// written yet then).
    valid_end: u64,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("pos", &self.pos)
            .field("valid_end", &self.valid_end)
            .field("len", &self.data.as_ref().map(|d| d.len()))
            .finish()
    }
}

impl Window {
    /// Forgets the window (the file changed).
    pub fn reset(&mut self) {
        self.data = None;
    }

    /// Bytes `[pos, pos + len)` of `file`, or `None` if the file ends before. The caller
    /// guarantees `pos + len <= limit` and that bytes below `limit` no longer change.
    #[allow(clippy::too_many_arguments)]
    pub async fn get(
        &mut self,
        file: &DmaFile,
        path: &Path,
        pos: u64,
        len: usize,
        chunk: usize,
        limit: u64,
    ) -> Result<Option<&[u8]>, LogError> {
        let end = pos.saturating_add(len as u64);
        let covered = self.data.is_some() && pos >= self.pos && end <= self.valid_end;
        if !covered {
            let start = align_down(pos);
            let size = align_up((end - start).max(chunk as u64));
            let r = file
                .read_at_aligned(start, to_usize(size))
                .await
                .map_err(|e| LogError::io("reading", path, e))?;
            self.pos = start;
            self.valid_end = (start + r.len() as u64).min(limit);
            self.data = Some(r);
        }
        let Some(d) = self.data.as_ref() else {
            return Ok(None);
        };
        let from = to_usize(pos - self.pos);
        Ok(d.get(from..from + len))
    }

    /// Reads and checks the frame at `pos`, which must end by `limit`. Returns the header
    /// and the payload.
    #[allow(clippy::too_many_arguments)]
    pub async fn frame(
        &mut self,
        file: &DmaFile,
        path: &Path,
        pos: u64,
        limit: u64,
        expected: u64,
        max_len: u32,
        chunk: usize,
    ) -> Result<Result<(FrameHeader, &[u8]), FrameFault>, LogError> {
        if pos.saturating_add(FRAME_HEADER as u64) > limit {
            return Ok(Err(FrameFault::Partial));
        }
        let Some(h) = self
            .get(file, path, pos, FRAME_HEADER, chunk, limit)
            .await?
        else {
            return Ok(Err(FrameFault::Partial));
        };
        let mut hb = [0u8; FRAME_HEADER];
        hb.copy_from_slice(h);
        let header = match frame::decode_header(&hb, max_len) {
            Ok(h) => h,
            Err(f) => return Ok(Err(f)),
        };
        if pos.saturating_add(header.frame_len()) > limit {
            return Ok(Err(FrameFault::Partial));
        }
        let Some(payload) = self
            .get(
                file,
                path,
                pos + FRAME_HEADER as u64,
                header.len as usize,
                chunk,
                limit,
            )
            .await?
        else {
            return Ok(Err(FrameFault::Partial));
        };
        Ok(frame::verify(&hb, &header, payload, expected).map(|()| (header, payload)))
    }
}

/// Name of the lock file in the log directory; also the probe file (see [`probe_device`]).
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Size of the lock file's contents.
pub(crate) const LOCK_FILE_BYTES: usize = 4096;

thread_local! {
    static PROBED: std::cell::RefCell<Vec<std::path::PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes glommio decide correctly whether the log's device supports polled I/O, once per
/// executor thread and directory, before any other DMA file of the log is opened there.
///
/// glommio 0.9 probes IOPOLL support on the first DMA file opened per device and thread,
/// with an O_DIRECT read at offset 0 through its poll ring, and caches the answer. If that
/// file is empty (a new segment, a consumer offset's temporary file) the read ends at EOF
/// before reaching the device and "succeeds", the device is taken for pollable, and every
/// later read on it fails with EOPNOTSUPP (os error 95) on devices without poll queues
/// (virtio, most SATA). Opening the lock file first, which holds 4 KiB of written data,
/// makes the probe reach the device.
pub(crate) async fn probe_device(dir: &Path) {
    if PROBED.with(|p| p.borrow().iter().any(|d| d == dir)) {
        return;
    }
    if let Ok(f) = DmaFile::open(dir.join(LOCK_FILE)).await {
        let _ = f.close().await;
    }
    PROBED.with(|p| p.borrow_mut().push(dir.to_path_buf()));
}
