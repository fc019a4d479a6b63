//! Record framing: how one record is laid out inside a segment file.
//!
//! Pure code (no I/O): encoding a frame header, checking a frame read back.
//!
//! # On-disk format of one frame
//!
//! All integers are little-endian. A frame is a 16-byte header followed by the payload:
//!
//! | bytes          | field    | meaning                                                   |
//! |----------------|----------|-----------------------------------------------------------|
//! | `0..4`         | `crc`    | CRC-32C (Castagnoli) of bytes `4..16 + len`               |
//! | `4..8`         | `len`    | payload length in bytes (`u32`, may be 0)                  |
//! | `8..16`        | `offset` | the record's offset in the log (`u64`)                    |
//! | `16..16 + len` | payload  | the record's bytes, opaque to the log                      |
//!
//! The next frame starts right after the payload: frames are not padded or aligned. The
//! CRC covers the length and the offset as well as the payload, so a torn length, a frame
//! left over from an earlier incarnation of the same file region (wrong offset), or zeroed
//! pre-allocated space (all-zero header: the CRC-32C of twelve zero bytes is not zero) are
//! all rejected. A frame is valid only if its CRC matches, its length is within the log's
//! `max_record_bytes`, the whole frame lies inside the readable part of the file, and its
//! offset is the one the reader expects next.
//!
//! Metrics: none.

/// Size of a frame header in bytes.
pub const FRAME_HEADER: usize = 16;

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFault {
    /// The header or the payload extends past the readable end of the file.
    Partial,
    /// The header is all zeros (pre-allocated or padding space, never written).
    Zeroed,
    /// The length field exceeds the log's maximum record size.
    TooLarge,
    /// The CRC does not match the bytes.
    BadCrc,
    /// The CRC matches but the frame carries another offset than the expected one.
    WrongOffset,
}

impl FrameFault {
    /// A short name for logs and errors.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partial => "partial frame",
            Self::Zeroed => "zeroed space",
            Self::TooLarge => "length over max_record_bytes",
            Self::BadCrc => "bad crc",
            Self::WrongOffset => "unexpected offset",
        }
    }
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded (not yet verified) frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The stored CRC.
    pub crc: u32,
    /// The payload length.
    pub len: u32,
    /// The record offset.
    pub offset: u64,
}

impl FrameHeader {
    /// Total frame size (header and payload).
    #[must_use]
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER as u64 + u64::from(self.len)
    }
}

/// Encodes the header of a frame holding `payload` at `offset`.
#[must_use]
pub fn encode_header(offset: u64, payload: &[u8]) -> [u8; FRAME_HEADER] {
    let mut h = [0u8; FRAME_HEADER];
    // Callers check the length against max_record_bytes (at most u32::MAX) first.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[4..16]), payload);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a header and checks what can be checked without the payload: not zeroed, the
/// length within `max_len`.
///
/// # Errors
/// [`FrameFault::Zeroed`] or [`FrameFault::TooLarge`].
pub fn decode_header(h: &[u8; FRAME_HEADER], max_len: u32) -> Result<FrameHeader, FrameFault> {
    if h.iter().all(|b| *b == 0) {
        return Err(FrameFault::Zeroed);
    }
    let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let offset = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    if len > max_len {
        return Err(FrameFault::TooLarge);
    }
    Ok(FrameHeader { crc, len, offset })
}

/// Verifies a whole frame: the CRC over header fields and payload, then the offset.
///
/// # Errors
/// [`FrameFault::BadCrc`] or [`FrameFault::WrongOffset`].
pub fn verify(
    h: &[u8; FRAME_HEADER],
    header: &FrameHeader,
    payload: &[u8],
    expected_offset: u64,
) -> Result<(), FrameFault> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[4..16]), payload);
    if crc != header.crc || payload.len() as u64 != u64::from(header.len) {
        return Err(FrameFault::BadCrc);
    }
    if header.offset != expected_offset {
        return Err(FrameFault::WrongOffset);
    }
    Ok(())
}

/// Decodes and verifies one frame at the start of `buf` (a test and fuzzing helper: the
/// log itself reads headers and payloads separately).
///
/// # Errors
/// Why the bytes are not a valid frame for `expected_offset`.
pub fn decode_frame(buf: &[u8], max_len: u32, expected_offset: u64) -> Result<&[u8], FrameFault> {
    let h: &[u8; FRAME_HEADER] = buf
        .get(..FRAME_HEADER)
        .and_then(|s| s.try_into().ok())
        .ok_or(FrameFault::Partial)?;
    let header = decode_header(h, max_len)?;
    let end = FRAME_HEADER + header.len as usize;
    let payload = buf.get(FRAME_HEADER..end).ok_or(FrameFault::Partial)?;
    verify(h, &header, payload, expected_offset)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(offset: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = encode_header(offset, payload).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn zeroed_header_is_rejected() {
        assert_eq!(decode_frame(&[0u8; 64], 1024, 0), Err(FrameFault::Zeroed));
    }

    #[test]
    fn empty_payload_round_trips() {
        let f = frame(0, b"");
        assert_eq!(f.len(), FRAME_HEADER);
        assert_eq!(decode_frame(&f, 1024, 0), Ok(&b""[..]));
    }

    proptest! {
        #[test]
        fn round_trip(offset in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let f = frame(offset, &payload);
            prop_assert_eq!(decode_frame(&f, 4096, offset), Ok(&payload[..]));
            // Another expected offset is refused even though the CRC matches.
            prop_assert_eq!(decode_frame(&f, 4096, offset.wrapping_add(1)), Err(FrameFault::WrongOffset));
        }

        #[test]
        fn any_single_bit_flip_is_detected(
            offset in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 1..512),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut f = frame(offset, &payload);
            let i = bit.index(f.len() * 8);
            f[i / 8] ^= 1 << (i % 8);
            prop_assert!(decode_frame(&f, 4096, offset).is_err());
        }

        #[test]
        fn truncated_frames_are_partial(
            payload in proptest::collection::vec(any::<u8>(), 1..512),
            cut in any::<prop::sample::Index>(),
        ) {
            let f = frame(7, &payload);
            let n = cut.index(f.len());
            prop_assert_eq!(decode_frame(&f[..n], 4096, 7), Err(FrameFault::Partial));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), exp in any::<u64>()) {
            let _ = decode_frame(&bytes, 128, exp);
        }
    }
}
