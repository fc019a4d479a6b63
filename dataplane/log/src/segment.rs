//! Segment files: naming, the segment header, and the in-memory sparse index.
//!
//! Pure code (no I/O).
//!
//! # On-disk format of a segment file
//!
//! A segment is one file in the log directory named `{base_offset:020}.log` (the offset of
//! its first record, zero-padded to 20 decimal digits so names sort like offsets). It
//! starts with a 32-byte header, all integers little-endian:
//!
//! | bytes    | field        | meaning                                             |
//! |----------|--------------|-----------------------------------------------------|
//! | `0..8`   | magic        | ASCII `SYLOGSEG`                                    |
//! | `8..12`  | version      | `u32`, currently 1                                  |
//! | `12..20` | base offset  | `u64`, equal to the number in the file name         |
//! | `20..28` | created      | `u64`, creation time, milliseconds since the Unix epoch |
//! | `28..32` | header CRC   | CRC-32C of bytes `0..28`                             |
//!
//! Frames (see [`crate::frame`]) follow from byte 32, back to back; the first carries the
//! base offset and each next one the previous offset plus one. A sealed segment's file
//! ends exactly after its last frame. The active segment may end in zero bytes: the log
//! writes with O_DIRECT in 4 KiB blocks, so a sync pads the last block with zeros (they
//! are overwritten by the next appends); recovery treats them as the end of the data.
//!
//! Metrics: none.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Size of the segment header in bytes; the first frame starts here.
pub const SEGMENT_HEADER: usize = 32;
/// The segment magic.
pub const MAGIC: &[u8; 8] = b"SYLOGSEG";
/// The current segment format version.
pub const VERSION: u32 = 1;
/// File name suffix of segments.
pub const SUFFIX: &str = ".log";

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Offset of the segment's first record.
    pub base: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl SegmentHeader {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut h = [0u8; SEGMENT_HEADER];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..20].copy_from_slice(&self.base.to_le_bytes());
        h[20..28].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes a header; `None` if the magic, version or CRC is wrong (or the slice short).
    #[must_use]
    pub fn decode(b: &[u8]) -> Option<Self> {
        let h = b.get(..SEGMENT_HEADER)?;
        if &h[0..8] != MAGIC || h[8..12] != VERSION.to_le_bytes() {
            return None;
        }
        let crc = u32::from_le_bytes(h[28..32].try_into().ok()?);
        if crc != crc32c::crc32c(&h[0..28]) {
            return None;
        }
        Some(Self {
            base: u64::from_le_bytes(h[12..20].try_into().ok()?),
            created_ms: u64::from_le_bytes(h[20..28].try_into().ok()?),
        })
    }

    /// The creation time.
    #[must_use]
    pub fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_ms)
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
#[must_use]
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The file name of the segment starting at `base`.
#[must_use]
pub fn file_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

/// The base offset named by a segment file name, if it is one.
#[must_use]
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Maximum entries of one segment's sparse index (16 bytes each).
pub const INDEX_MAX_ENTRIES: usize = 1024;

/// A sparse in-memory index of one segment: (record offset, file position) pairs, at least
/// `interval` bytes apart, at most [`INDEX_MAX_ENTRIES`] (when full, every other entry is
/// dropped and the interval doubles), so a seek scans a bounded stretch of the file.
#[derive(Debug, Clone, Default)]
pub struct SparseIndex {
    entries: Vec<(u64, u64)>,
    interval: u64,
}

impl SparseIndex {
    /// An empty index with entries every `interval` bytes.
    #[must_use]
    pub fn new(interval: u64) -> Self {
        Self {
            entries: Vec::new(),
            interval: interval.max(1),
        }
    }

    /// Notes that the frame of record `offset` starts at file position `pos`; kept if it
    /// is far enough from the previous entry. Offsets and positions must grow.
    pub fn note(&mut self, offset: u64, pos: u64) {
        let far = match self.entries.last() {
            None => true,
            Some(&(_, p)) => pos >= p.saturating_add(self.interval),
        };
        if !far {
            return;
        }
        if self.entries.len() >= INDEX_MAX_ENTRIES {
            let mut i = 0;
            self.entries.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.interval = self.interval.saturating_mul(2);
        }
        self.entries.push((offset, pos));
    }

    /// The last entry at or before `offset`.
    #[must_use]
    pub fn floor(&self, offset: u64) -> Option<(u64, u64)> {
        let i = self.entries.partition_point(|&(o, _)| o <= offset);
        i.checked_sub(1).and_then(|i| self.entries.get(i).copied())
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_crc() {
        let h = SegmentHeader {
            base: 42,
            created_ms: 1_700_000_000_000,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Some(h));
        b[13] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), None);
        assert_eq!(SegmentHeader::decode(&[0u8; 32]), None);
        assert_eq!(SegmentHeader::decode(&h.encode()[..31]), None);
    }

    #[test]
    fn names() {
        assert_eq!(file_name(7), "00000000000000000007.log");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("7.log"), None);
        assert_eq!(parse_file_name("00000000000000000007.log.tmp"), None);
    }

    #[test]
    fn index_stays_bounded_and_floors() {
        let mut ix = SparseIndex::new(100);
        for i in 0..100_000u64 {
            ix.note(i, 32 + i * 50);
        }
        assert!(ix.len() <= INDEX_MAX_ENTRIES);
        assert_eq!(ix.floor(0), Some((0, 32)));
        let (o, p) = ix.floor(77_777).unwrap();
        assert!(o <= 77_777);
        assert_eq!(p, 32 + o * 50);
        // The gap to scan stays a small fraction of the segment.
        assert!(77_777 - o < 1000);
    }
}
