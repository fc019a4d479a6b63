//! Request body decoding by `Content-Encoding`, with a cap on the decoded size.
//!
//! Accepts `identity` (or no header), `gzip`, `deflate` (a zlib stream as Datadog clients send
//! it, falling back to raw deflate), and `zstd`/`zstd1`. The whole body is in memory, so
//! gzip/zlib go through libdeflate with a growing output buffer, zstd through ruzstd's
//! streaming decoder read in chunks.

use std::io::Read as _;

use libdeflater::{DecompressionError, Decompressor};

/// Largest decoded body accepted (Datadog's v1 series limit is 62 MB).
pub const MAX_DECODED: usize = 64 << 20;
/// Smallest first guess for an inflated body.
const MIN_GUESS: usize = 4096;

/// A `Content-Encoding` the vendor understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// zlib (RFC 1950), or raw deflate (RFC 1951) as a fallback.
    Deflate,
    /// Zstandard (`zstd` or `zstd1`).
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value (case-insensitive); `None` if unsupported.
    pub fn parse(header: Option<&str>) -> Option<Self> {
        let Some(value) = header.map(str::trim) else {
            return Some(Self::Identity);
        };
        match value.to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Self::Identity),
            "gzip" | "x-gzip" => Some(Self::Gzip),
            "deflate" => Some(Self::Deflate),
            "zstd" | "zstd1" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// Name used as a label in `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Zstd => "zstd",
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The compressed data is corrupt or truncated.
    #[error("cannot decode {encoding} body: {detail}")]
    Corrupt {
        /// The encoding that failed.
        encoding: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The body decodes to more than [`MAX_DECODED`] bytes.
    #[error("decoded body is larger than {MAX_DECODED} bytes")]
    TooLarge,
}

/// Decodes `body` sent with `encoding`.
///
/// # Errors
///
/// [`DecodeError`] when the data is corrupt or decodes to more than [`MAX_DECODED`] bytes.
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    match encoding {
        Encoding::Identity => {
            if body.len() > MAX_DECODED {
                return Err(DecodeError::TooLarge);
            }
            Ok(body.to_vec())
        }
        Encoding::Gzip => {
            // The trailer's ISIZE is the decoded size modulo 2^32: a good first guess.
            let hint = body
                .len()
                .checked_sub(4)
                .and_then(|at| body.get(at..))
                .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
                .map_or(0, |b| u32::from_le_bytes(b) as usize);
            inflate(body, hint, "gzip", Decompressor::gzip_decompress)
        }
        Encoding::Deflate => match inflate(body, 0, "deflate", Decompressor::zlib_decompress) {
            Err(DecodeError::Corrupt { .. }) => {
                inflate(body, 0, "deflate", Decompressor::deflate_decompress)
            }
            other => other,
        },
        Encoding::Zstd => unzstd(body),
    }
}

/// One libdeflate entry point.
type Inflate = fn(&mut Decompressor, &[u8], &mut [u8]) -> Result<usize, DecompressionError>;

/// Inflates `body`, doubling the output buffer until it fits or passes the cap.
fn inflate(
    body: &[u8],
    hint: usize,
    encoding: &'static str,
    run: Inflate,
) -> Result<Vec<u8>, DecodeError> {
    let mut inflater = Decompressor::new();
    let mut size = if hint > 0 && hint <= MAX_DECODED {
        hint
    } else {
        body.len().saturating_mul(4).max(MIN_GUESS)
    };
    size = size.clamp(1, MAX_DECODED);
    let mut out = Vec::new();
    loop {
        out.clear();
        out.resize(size, 0);
        match run(&mut inflater, body, &mut out) {
            Ok(n) => {
                out.truncate(n);
                return Ok(out);
            }
            Err(DecompressionError::InsufficientSpace) if size < MAX_DECODED => {
                size = size.saturating_mul(2).min(MAX_DECODED);
            }
            Err(DecompressionError::InsufficientSpace) => return Err(DecodeError::TooLarge),
            Err(DecompressionError::BadData) => {
                return Err(DecodeError::Corrupt {
                    encoding,
                    detail: "bad or truncated data".to_owned(),
                })
            }
        }
    }
}

/// Decodes a zstd body (one or more frames).
fn unzstd(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let corrupt = |e: &dyn std::fmt::Display| DecodeError::Corrupt {
        encoding: "zstd",
        detail: e.to_string(),
    };
    let mut out = Vec::new();
    let mut rest = body;
    // ruzstd's streaming decoder reads one frame; concatenated frames are legal zstd.
    while !rest.is_empty() {
        let decoder =
            ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| corrupt(&e))?;
        let mut capped = decoder.take((MAX_DECODED - out.len()) as u64 + 1);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = capped.read(&mut chunk).map_err(|e| corrupt(&e))?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > MAX_DECODED {
                return Err(DecodeError::TooLarge);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = br#"{"series":[{"metric":"a.b","points":[[1700000000,1.5]]}]}"#;

    #[test]
    fn parses_header_values() {
        assert_eq!(Encoding::parse(None), Some(Encoding::Identity));
        assert_eq!(Encoding::parse(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::parse(Some("zstd1")), Some(Encoding::Zstd));
        assert_eq!(Encoding::parse(Some(" deflate ")), Some(Encoding::Deflate));
        assert_eq!(Encoding::parse(Some("br")), None);
    }

    #[test]
    fn round_trips_every_encoding() {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut buf = vec![0; c.gzip_compress_bound(TEXT.len())];
        let n = c.gzip_compress(TEXT, &mut buf).unwrap();
        assert_eq!(decode(Encoding::Gzip, &buf[..n]).unwrap(), TEXT);
        let n = c.zlib_compress(TEXT, &mut buf).unwrap();
        assert_eq!(decode(Encoding::Deflate, &buf[..n]).unwrap(), TEXT);
        let n = c.deflate_compress(TEXT, &mut buf).unwrap();
        assert_eq!(decode(Encoding::Deflate, &buf[..n]).unwrap(), TEXT);
        let z =
            ruzstd::encoding::compress_to_vec(TEXT, ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(decode(Encoding::Zstd, &z).unwrap(), TEXT);
        assert_eq!(decode(Encoding::Identity, TEXT).unwrap(), TEXT);
    }

    #[test]
    fn grows_past_a_wrong_size_hint_and_rejects_garbage() {
        let big = TEXT.repeat(2000);
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut buf = vec![0; c.zlib_compress_bound(big.len())];
        let n = c.zlib_compress(&big, &mut buf).unwrap();
        assert_eq!(decode(Encoding::Deflate, &buf[..n]).unwrap(), big);
        assert!(matches!(
            decode(Encoding::Gzip, b"not gzip at all"),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(Encoding::Zstd, b"not zstd"),
            Err(DecodeError::Corrupt { .. })
        ));
    }
}
