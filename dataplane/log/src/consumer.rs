//! Consumer offsets: the offset of the next record each named consumer wants, persisted so
//! a worker resumes where it left off after a restart.
//!
//! Usable on any glommio executor (from [`crate::LogHandle::consumers`]). A commit writes a
//! temporary file, `fdatasync`s it, renames it over the consumer's file and syncs the
//! directory: after [`ConsumerOffsets::commit`] returns, a crash leaves either the new
//! offset or (if it failed) the previous one, never a torn file. Two commits for the same
//! consumer may race (last rename wins); give each worker its own name.
//!
//! # On-disk format
//!
//! `<log dir>/consumers/<name>.offset`, one 4096-byte block (written with O_DIRECT),
//! integers little-endian:
//!
//! | bytes      | field   | meaning                                        |
//! |------------|---------|------------------------------------------------|
//! | `0..8`     | magic   | ASCII `SYLOGOFF`                               |
//! | `8..12`    | version | `u32`, currently 1                             |
//! | `12..20`   | offset  | `u64`, the next offset the consumer will read  |
//! | `20..24`   | CRC     | CRC-32C of bytes `0..20`                        |
//! | `24..4096` | zeros   |                                                |
//!
//! Temporary files are `<name>.offset.tmp-<pid>-<n>`; leftovers are removed when the log is
//! opened.
//!
//! Metrics: none.

use crate::io::write_padded;
use crate::shared::Shared;
use crate::LogError;
use glommio::io::{Directory, DmaFile, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SYLOGOFF";
const VERSION: u32 = 1;
const RECORD: usize = 24;
const TMP_MARK: &str = ".offset.tmp-";

/// Distinguishes temporary files of concurrent commits within this process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) fn consumers_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("consumers")
}

/// Removes temporary files left by commits interrupted by a crash.
pub(crate) fn remove_tmp_files(log_dir: &Path) -> Result<(), LogError> {
    let dir = consumers_dir(log_dir);
    for e in std::fs::read_dir(&dir).map_err(|e| LogError::io("listing", &dir, e))? {
        let e = e.map_err(|e| LogError::io("listing", &dir, e))?;
        if e.file_name().to_str().is_some_and(|n| n.contains(TMP_MARK)) {
            let p = e.path();
            std::fs::remove_file(&p).map_err(|e| LogError::io("deleting", &p, e))?;
        }
    }
    Ok(())
}

fn encode(offset: u64) -> [u8; RECORD] {
    let mut b = [0u8; RECORD];
    b[0..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..20].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..20]);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<u64> {
    let b = b.get(..RECORD)?;
    if &b[0..8] != MAGIC || b[8..12] != VERSION.to_le_bytes() {
        return None;
    }
    let crc = u32::from_le_bytes(b[20..24].try_into().ok()?);
    if crc != crc32c::crc32c(&b[0..20]) {
        return None;
    }
    Some(u64::from_le_bytes(b[12..20].try_into().ok()?))
}

fn check_name(name: &str) -> Result<(), LogError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LogError::ConsumerName(name.to_string()))
    }
}

/// The committed offsets of a log's consumers. Cheap to clone; use on any glommio
/// executor.
#[derive(Debug, Clone)]
pub struct ConsumerOffsets {
    shared: Arc<Shared>,
}

impl ConsumerOffsets {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn path(&self, consumer: &str) -> PathBuf {
        consumers_dir(&self.shared.dir).join(format!("{consumer}.offset"))
    }

    /// Durably records that `consumer` will next read `offset` (one past the last record
    /// it has finished with).
    ///
    /// # Errors
    /// [`LogError::ConsumerName`]; [`LogError::OffsetOutOfRange`] if `offset` is beyond the
    /// durable end; an I/O error (the previous committed offset then stays).
    pub async fn commit(&self, consumer: &str, offset: u64) -> Result<(), LogError> {
        check_name(consumer)?;
        let (start, end) = self.shared.start_and_end();
        if offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        crate::io::probe_device(&self.shared.dir).await;
        let dir = consumers_dir(&self.shared.dir);
        let path = self.path(consumer);
        let tmp = dir.join(format!(
            "{consumer}{TMP_MARK}{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .dma_open(&tmp)
            .await
            .map_err(|e| LogError::io("creating", &tmp, e))?;
        let written = async {
            write_padded(&file, &tmp, &encode(offset), 0).await?;
            file.fdatasync()
                .await
                .map_err(|e| LogError::io("fdatasync", &tmp, e))?;
            file.rename(&path)
                .await
                .map_err(|e| LogError::io("renaming", &tmp, e))
        }
        .await;
        let _ = file.close().await;
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let d = Directory::open(&dir)
            .await
            .map_err(|e| LogError::io("opening directory", &dir, e))?;
        let synced = d.sync().await;
        let _ = d.close().await;
        synced.map_err(|e| LogError::io("syncing directory", &dir, e))
    }

    /// The offset `consumer` committed last, `None` if it never did.
    ///
    /// # Errors
    /// [`LogError::ConsumerName`]; [`LogError::Corrupt`] if the file does not hold a valid
    /// offset; an I/O error.
    pub async fn committed(&self, consumer: &str) -> Result<Option<u64>, LogError> {
        check_name(consumer)?;
        crate::io::probe_device(&self.shared.dir).await;
        let path = self.path(consumer);
        let file = match DmaFile::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let e = std::io::Error::from(e);
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(LogError::io("opening", &path, e));
            }
        };
        let r = file.read_at(0, RECORD).await;
        let _ = file.close().await;
        let r = r.map_err(|e| LogError::io("reading", &path, e))?;
        match decode(&r) {
            Some(o) => Ok(Some(o)),
            None => Err(LogError::Corrupt {
                path,
                pos: 0,
                reason: "not a valid consumer offset record".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_crc() {
        let mut b = encode(123_456);
        assert_eq!(decode(&b), Some(123_456));
        b[15] ^= 0x40;
        assert_eq!(decode(&b), None);
        assert_eq!(decode(&[0u8; 4096]), None);
    }

    #[test]
    fn names() {
        assert!(check_name("worker-a_1.new").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
