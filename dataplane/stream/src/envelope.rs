//! The versioned envelope around one batch on a stream (one Kinesis user record, one Kafka
//! message, one local-log record).
//!
//! Layout (all integers little-endian; `docs/STREAM_FORMAT.md` has the full table):
//!
//! ```text
//! 0      4        5         6            7      8                 12            16
//! | SYSB | version | encoding | compression | flags | uncompressed len | body len | body ...
//! ```
//!
//! - `version` is [`VERSION`]; `flags` is reserved and must be 0.
//! - `encoding`: [`Encoding::Rkyv`] (a [`StreamBatch`](crate::batch::StreamBatch) archive)
//!   or [`Encoding::Json`] (SignalFx `/v2/datapoint` JSON).
//! - `compression`: none, `deflate` (a zlib stream, RFC 1950, as HTTP's `deflate`) or `gzip`
//!   (RFC 1952), both with libdeflate.
//! - The uncompressed length is stored so a decoder allocates exactly that much, and only
//!   after checking it against its cap: a decompression bomb gets
//!   [`EnvelopeError::TooLarge`] from the 16 header bytes, never an allocation of its size.
//!
//! The 16-byte header keeps the body at the same 16-byte alignment as the record, so an
//! uncompressed rkyv body in an aligned buffer is read in place. [`PayloadBuffer`] copies
//! (or decompresses) into aligned memory otherwise.
//!
//! Pure code: no I/O, no threads, no metrics (callers count [`EnvelopeError::code`]).

use libdeflater::{CompressionLvl, Compressor, DecompressionError, Decompressor};
use rkyv::util::AlignedVec;

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"SYSB";
/// The envelope version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Header size in bytes; the body starts here.
pub const HEADER_LEN: usize = 16;
/// Alignment of the body [`PayloadBuffer`] hands out (what rkyv archives need).
pub const PAYLOAD_ALIGN: usize = 16;
/// Default cap on a payload's uncompressed size (64 MiB, well above Kinesis' 10 MiB records).
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;

/// How the payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// An rkyv archive of a [`StreamBatch`](crate::batch::StreamBatch), read in place.
    Rkyv,
    /// SignalFx `/v2/datapoint` JSON (`{"gauge":[...],"counter":[...]}`), for third parties.
    Json,
}

impl Encoding {
    /// The header byte.
    pub const fn byte(self) -> u8 {
        match self {
            Encoding::Rkyv => 1,
            Encoding::Json => 2,
        }
    }
    /// The encoding for a header byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Encoding::Rkyv),
            2 => Some(Encoding::Json),
            _ => None,
        }
    }
}

/// How the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Stored as is.
    #[default]
    None,
    /// A zlib stream (RFC 1950), HTTP's `deflate`.
    Deflate,
    /// A gzip member (RFC 1952).
    Gzip,
}

impl Compression {
    /// The header byte.
    pub const fn byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Deflate => 1,
            Compression::Gzip => 2,
        }
    }
    /// The compression for a header byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Deflate),
            2 => Some(Compression::Gzip),
            _ => None,
        }
    }
}

/// Why an envelope could not be written or read. Small and `Copy`: counted, not logged per
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The first four bytes are not [`MAGIC`].
    #[error("not a stream envelope (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// An unknown encoding byte.
    #[error("unknown envelope encoding {0}")]
    UnknownEncoding(u8),
    /// An unknown compression byte.
    #[error("unknown envelope compression {0}")]
    UnknownCompression(u8),
    /// Reserved flag bits are set.
    #[error("reserved envelope flags set ({0:#04x})")]
    ReservedFlags(u8),
    /// Fewer bytes than the header says.
    #[error("truncated envelope: {need} bytes needed, {have} present")]
    Truncated {
        /// Bytes the header (or the header itself) needs.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// More bytes than the header says.
    #[error("{0} trailing bytes after the envelope body")]
    TrailingBytes(usize),
    /// The (declared) uncompressed size is over the cap.
    #[error("payload of {len} bytes is over the {cap}-byte cap")]
    TooLarge {
        /// Declared or actual size.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// The body does not decompress to exactly the declared size, or is corrupt.
    #[error("corrupt {0:?} body")]
    Corrupt(Compression),
    /// An uncompressed body whose two lengths disagree.
    #[error("uncompressed body of {body} bytes declares {declared}")]
    LengthMismatch {
        /// Declared uncompressed length.
        declared: usize,
        /// Body length.
        body: usize,
    },
    /// The compression level is not one libdeflate accepts (0..=12).
    #[error("invalid compression level {0}")]
    InvalidLevel(i32),
}

impl EnvelopeError {
    /// A bounded label for counters.
    pub const fn code(self) -> &'static str {
        match self {
            EnvelopeError::BadMagic => "bad_magic",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::UnknownEncoding(_) => "unknown_encoding",
            EnvelopeError::UnknownCompression(_) => "unknown_compression",
            EnvelopeError::ReservedFlags(_) => "reserved_flags",
            EnvelopeError::Truncated { .. } => "truncated",
            EnvelopeError::TrailingBytes(_) => "trailing_bytes",
            EnvelopeError::TooLarge { .. } => "too_large",
            EnvelopeError::Corrupt(_) => "corrupt",
            EnvelopeError::LengthMismatch { .. } => "length_mismatch",
            EnvelopeError::InvalidLevel(_) => "invalid_level",
        }
    }
}

/// A decoded envelope header with its (still compressed) body, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Format version (always [`VERSION`] today).
    pub version: u8,
    /// Payload encoding.
    pub encoding: Encoding,
    /// Body compression.
    pub compression: Compression,
    /// Payload size once decompressed (checked against the cap).
    pub uncompressed_len: usize,
    /// The stored body.
    pub body: &'a [u8],
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

/// Reads an envelope header with the [`DEFAULT_MAX_PAYLOAD`] cap. See [`decode_capped`].
///
/// # Errors
/// As [`decode_capped`].
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    decode_capped(bytes, DEFAULT_MAX_PAYLOAD)
}

/// Reads an envelope header and borrows its body. Nothing is decompressed or allocated; the
/// declared uncompressed size is checked against `max_payload` here.
///
/// # Errors
/// [`EnvelopeError`] for a bad magic, unknown version, encoding, compression or flags, a
/// truncated or over-long record, a declared size over `max_payload`, or an uncompressed body
/// whose length disagrees with the header.
pub fn decode_capped(bytes: &[u8], max_payload: usize) -> Result<Envelope<'_>, EnvelopeError> {
    if bytes.len() >= 4 && bytes[..4] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(EnvelopeError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    };
    if header[..4] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(EnvelopeError::UnsupportedVersion(header[4]));
    }
    let encoding =
        Encoding::from_byte(header[5]).ok_or(EnvelopeError::UnknownEncoding(header[5]))?;
    let compression =
        Compression::from_byte(header[6]).ok_or(EnvelopeError::UnknownCompression(header[6]))?;
    if header[7] != 0 {
        return Err(EnvelopeError::ReservedFlags(header[7]));
    }
    let uncompressed_len = u32_at(header, 8) as usize;
    let body_len = u32_at(header, 12) as usize;
    if uncompressed_len > max_payload {
        return Err(EnvelopeError::TooLarge {
            len: uncompressed_len,
            cap: max_payload,
        });
    }
    let rest = &bytes[HEADER_LEN..];
    if rest.len() < body_len {
        return Err(EnvelopeError::Truncated {
            need: HEADER_LEN + body_len,
            have: bytes.len(),
        });
    }
    if rest.len() > body_len {
        return Err(EnvelopeError::TrailingBytes(rest.len() - body_len));
    }
    if compression == Compression::None && body_len != uncompressed_len {
        return Err(EnvelopeError::LengthMismatch {
            declared: uncompressed_len,
            body: body_len,
        });
    }
    Ok(Envelope {
        version: header[4],
        encoding,
        compression,
        uncompressed_len,
        body: rest,
    })
}

impl<'a> Envelope<'a> {
    /// The payload, 16-byte aligned: the body itself when it is stored uncompressed at an
    /// aligned address, otherwise copied or decompressed into `scratch` (reused across
    /// records; it grows to the largest payload seen, never past the cap checked by
    /// [`decode_capped`]).
    ///
    /// # Errors
    /// [`EnvelopeError::Corrupt`] when the body does not decompress to exactly
    /// [`Envelope::uncompressed_len`] bytes.
    pub fn payload<'s>(&self, scratch: &'s mut PayloadBuffer) -> Result<&'s [u8], EnvelopeError>
    where
        'a: 's,
    {
        let n = self.uncompressed_len;
        match self.compression {
            Compression::None => {
                if (self.body.as_ptr() as usize) % PAYLOAD_ALIGN == 0 {
                    return Ok(self.body);
                }
                scratch.buf.clear();
                scratch.buf.extend_from_slice(self.body);
                Ok(&scratch.buf[..])
            }
            Compression::Deflate | Compression::Gzip => {
                scratch.buf.clear();
                scratch.buf.resize(n, 0);
                let out = &mut scratch.buf[..];
                let got = match self.compression {
                    Compression::Gzip => scratch.inflater.gzip_decompress(self.body, out),
                    _ => scratch.inflater.zlib_decompress(self.body, out),
                };
                match got {
                    Ok(len) if len == n => Ok(&scratch.buf[..]),
                    Ok(_)
                    | Err(DecompressionError::BadData | DecompressionError::InsufficientSpace) => {
                        Err(EnvelopeError::Corrupt(self.compression))
                    }
                }
            }
        }
    }
}

/// Starts an uncompressed envelope in `out` whose body the caller appends itself; returns
/// where it starts, for [`finish_uncompressed`].
pub(crate) fn begin_uncompressed(out: &mut Vec<u8>, encoding: Encoding) -> usize {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, encoding.byte(), Compression::None.byte(), 0]);
    out.extend_from_slice(&[0; 8]);
    start
}

/// Fills in the lengths of an envelope begun by [`begin_uncompressed`]; on error the envelope
/// is removed from `out`.
pub(crate) fn finish_uncompressed(out: &mut Vec<u8>, start: usize) -> Result<(), EnvelopeError> {
    let len = out.len() - start - HEADER_LEN;
    let Ok(n) = u32::try_from(len) else {
        out.truncate(start);
        return Err(EnvelopeError::TooLarge {
            len,
            cap: u32::MAX as usize,
        });
    };
    out[start + 8..start + 12].copy_from_slice(&n.to_le_bytes());
    out[start + 12..start + 16].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

/// Reusable, aligned space for payloads that must be copied or decompressed, with the
/// libdeflate decompressor.
pub struct PayloadBuffer {
    buf: AlignedVec<PAYLOAD_ALIGN>,
    inflater: Decompressor,
}

impl Default for PayloadBuffer {
    fn default() -> Self {
        Self {
            buf: AlignedVec::new(),
            inflater: Decompressor::new(),
        }
    }
}

impl std::fmt::Debug for PayloadBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadBuffer")
            .field("capacity", &self.buf.capacity())
            .finish_non_exhaustive()
    }
}

/// Writes envelopes, reusing one libdeflate compressor.
pub struct EnvelopeEncoder {
    deflater: Compressor,
}

impl Default for EnvelopeEncoder {
    fn default() -> Self {
        Self {
            deflater: Compressor::new(CompressionLvl::default()),
        }
    }
}

impl std::fmt::Debug for EnvelopeEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeEncoder").finish_non_exhaustive()
    }
}

impl EnvelopeEncoder {
    /// An encoder compressing at libdeflate `level` (0..=12; 6 is the default).
    ///
    /// # Errors
    /// [`EnvelopeError::InvalidLevel`] outside 0..=12.
    pub fn with_level(level: i32) -> Result<Self, EnvelopeError> {
        let lvl = CompressionLvl::new(level).map_err(|_| EnvelopeError::InvalidLevel(level))?;
        Ok(Self {
            deflater: Compressor::new(lvl),
        })
    }

    /// Appends one envelope holding `payload` to `out` (the caller clears `out` to reuse it).
    ///
    /// # Errors
    /// [`EnvelopeError::TooLarge`] when the payload or the compressed body does not fit the
    /// 32-bit length fields.
    pub fn encode(
        &mut self,
        encoding: Encoding,
        compression: Compression,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let cap = u32::MAX as usize;
        let too_large = |len| EnvelopeError::TooLarge { len, cap };
        let ulen = u32::try_from(payload.len()).map_err(|_| too_large(payload.len()))?;
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, encoding.byte(), compression.byte(), 0]);
        out.extend_from_slice(&ulen.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let body_at = out.len();
        match compression {
            Compression::None => out.extend_from_slice(payload),
            Compression::Deflate | Compression::Gzip => {
                let bound = match compression {
                    Compression::Gzip => self.deflater.gzip_compress_bound(payload.len()),
                    _ => self.deflater.zlib_compress_bound(payload.len()),
                };
                out.resize(body_at + bound, 0);
                let dst = &mut out[body_at..];
                let n = match compression {
                    Compression::Gzip => self.deflater.gzip_compress(payload, dst),
                    _ => self.deflater.zlib_compress(payload, dst),
                };
                // The bound is libdeflate's own worst case, so this cannot run short; if it
                // ever did, drop the partial envelope rather than write a corrupt one.
                let Ok(n) = n else {
                    out.truncate(start);
                    return Err(too_large(bound));
                };
                out.truncate(body_at + n);
            }
        }
        let body_len = out.len() - body_at;
        let Ok(blen) = u32::try_from(body_len) else {
            out.truncate(start);
            return Err(too_large(body_len));
        };
        out[start + 12..start + 16].copy_from_slice(&blen.to_le_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: Compression, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        EnvelopeEncoder::default()
            .encode(Encoding::Json, c, payload, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn header_layout_is_as_documented() {
        let out = enc(Compression::None, b"abc");
        assert_eq!(
            out,
            b"SYSB\x01\x02\x00\x00\x03\x00\x00\x00\x03\x00\x00\x00abc".to_vec()
        );
    }

    #[test]
    fn round_trips_every_compression() {
        let payload: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut scratch = PayloadBuffer::default();
        for c in [Compression::None, Compression::Deflate, Compression::Gzip] {
            let out = enc(c, &payload);
            let env = decode(&out).unwrap();
            assert_eq!(env.compression, c);
            assert_eq!(env.encoding, Encoding::Json);
            assert_eq!(env.uncompressed_len, payload.len());
            let got = env.payload(&mut scratch).unwrap();
            assert_eq!(got, &payload[..]);
            assert_eq!(got.as_ptr() as usize % PAYLOAD_ALIGN, 0);
        }
        // Compression actually happened.
        assert!(enc(Compression::Gzip, &payload).len() < payload.len() / 2);
    }

    #[test]
    fn header_errors() {
        let good = enc(Compression::Deflate, b"hello hello hello");
        assert_eq!(decode(b"NOPE"), Err(EnvelopeError::BadMagic));
        assert_eq!(
            decode(b"SYS"),
            Err(EnvelopeError::Truncated { need: 16, have: 3 })
        );
        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(decode(&b), Err(EnvelopeError::UnsupportedVersion(2)));
        let mut b = good.clone();
        b[5] = 9;
        assert_eq!(decode(&b), Err(EnvelopeError::UnknownEncoding(9)));
        let mut b = good.clone();
        b[6] = 7;
        assert_eq!(decode(&b), Err(EnvelopeError::UnknownCompression(7)));
        let mut b = good.clone();
        b[7] = 1;
        assert_eq!(decode(&b), Err(EnvelopeError::ReservedFlags(1)));
        let b = &good[..good.len() - 1];
        assert!(matches!(decode(b), Err(EnvelopeError::Truncated { .. })));
        let mut b = good.clone();
        b.push(0);
        assert_eq!(decode(&b), Err(EnvelopeError::TrailingBytes(1)));
        let mut b = enc(Compression::None, b"abc");
        b[8] = 4;
        assert_eq!(
            decode(&b),
            Err(EnvelopeError::LengthMismatch {
                declared: 4,
                body: 3
            })
        );
    }

    #[test]
    fn declared_size_over_the_cap_is_refused_before_allocating() {
        // A 4 GiB claim in 16 bytes: refused from the header alone.
        let mut b = enc(Compression::Gzip, b"x");
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&b),
            Err(EnvelopeError::TooLarge {
                len: u32::MAX as usize,
                cap: DEFAULT_MAX_PAYLOAD
            })
        );
        // A real bomb: 1 MiB of zeros, cap 64 KiB.
        let bomb = enc(Compression::Deflate, &vec![0u8; 1 << 20]);
        assert!(bomb.len() < 4096);
        assert_eq!(
            decode_capped(&bomb, 64 << 10),
            Err(EnvelopeError::TooLarge {
                len: 1 << 20,
                cap: 64 << 10
            })
        );
        // A lie about the size (smaller than the real output) is corrupt, and the scratch
        // buffer never grows past the declared size.
        let mut lie = bomb.clone();
        lie[8..12].copy_from_slice(&(1000u32).to_le_bytes());
        let env = decode_capped(&lie, 64 << 10).unwrap();
        let mut scratch = PayloadBuffer::default();
        assert_eq!(
            env.payload(&mut scratch),
            Err(EnvelopeError::Corrupt(Compression::Deflate))
        );
        assert!(scratch.buf.capacity() < 64 << 10);
    }

    #[test]
    fn corrupt_body_is_an_error() {
        let mut b = enc(Compression::Gzip, b"some payload some payload");
        let n = b.len();
        b[n - 6] ^= 0xff; // the gzip CRC/size trailer
        let env = decode(&b).unwrap();
        assert_eq!(
            env.payload(&mut PayloadBuffer::default()),
            Err(EnvelopeError::Corrupt(Compression::Gzip))
        );
    }

    #[test]
    fn misaligned_uncompressed_body_is_copied_aligned() {
        let out = enc(Compression::None, b"0123456789abcdef");
        let mut shifted = AlignedVec::<16>::new();
        shifted.extend_from_slice(&[0]);
        shifted.extend_from_slice(&out);
        let env = decode(&shifted[1..]).unwrap();
        let mut scratch = PayloadBuffer::default();
        let p = env.payload(&mut scratch).unwrap();
        assert_eq!(p, b"0123456789abcdef");
        assert_eq!(p.as_ptr() as usize % PAYLOAD_ALIGN, 0);
    }

    #[test]
    fn invalid_level() {
        assert!(matches!(
            EnvelopeEncoder::with_level(13),
            Err(EnvelopeError::InvalidLevel(13))
        ));
    }
}
