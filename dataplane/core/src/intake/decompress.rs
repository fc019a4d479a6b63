//! Request-body decompression into a reused buffer capped at a limit.
//!
//! libdeflate decompresses whole buffers and needs an output size: the buffer starts at a
//! guess (the gzip trailer's size, or 4x the input) and doubles on `InsufficientSpace` up to
//! the limit, past which the body is [`BodyError::TooLarge`]. zstd streams through
//! `Read::take(limit + 1)`.

use super::BodyError;
use libdeflater::{DecompressionError, Decompressor};
use std::io::Read;

/// A supported `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No encoding.
    Identity,
    /// gzip.
    Gzip,
    /// `deflate`: a zlib stream (what Datadog clients send), raw deflate accepted too.
    Deflate,
    /// `zstd` or `zstd1` (datadog-api-client's name).
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value (case-insensitive; empty = identity).
    ///
    /// # Errors
    /// [`BodyError::UnsupportedEncoding`].
    pub fn from_header(v: &str) -> Result<Self, BodyError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            "zstd" | "zstd1" => Ok(Encoding::Zstd),
            other => Err(BodyError::UnsupportedEncoding(other.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Zstd => "zstd",
        }
    }
}

/// Decodes bodies into a reused buffer.
pub struct BodyDecoder {
    inflater: Decompressor,
    out: Vec<u8>,
    /// Largest decompressed body accepted.
    pub limit: usize,
}

impl std::fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyDecoder")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

const MIN_GUESS: usize = 64 * 1024;

impl BodyDecoder {
    /// A decoder accepting at most `limit` decompressed bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inflater: Decompressor::new(),
            out: Vec::new(),
            limit,
        }
    }

    /// Decodes `body` and returns the plain bytes (borrowed from the decoder's buffer, or
    /// `body` itself for identity). The result is mutable so JSON can be parsed in place.
    ///
    /// # Errors
    /// [`BodyError::TooLarge`] past the limit, [`BodyError::Corrupt`] for a bad stream.
    pub fn decode<'a>(
        &'a mut self,
        enc: Encoding,
        body: &'a mut [u8],
    ) -> Result<&'a mut [u8], BodyError> {
        let limit = self.limit;
        match enc {
            Encoding::Identity => {
                if body.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                Ok(body)
            }
            Encoding::Gzip => {
                // ISIZE (the last 4 bytes) is the size mod 2^32: only a first guess.
                let hint = body
                    .len()
                    .checked_sub(4)
                    .and_then(|i| body.get(i..))
                    .and_then(|b| b.try_into().ok())
                    .map(|b: [u8; 4]| u32::from_le_bytes(b) as usize)
                    .unwrap_or(0);
                let n = inflate(
                    &mut self.inflater,
                    &mut self.out,
                    body,
                    hint,
                    limit,
                    "gzip",
                    Decompressor::gzip_decompress,
                )?;
                Ok(&mut self.out[..n])
            }
            Encoding::Deflate => {
                let n = match inflate(
                    &mut self.inflater,
                    &mut self.out,
                    body,
                    0,
                    limit,
                    "deflate",
                    Decompressor::zlib_decompress,
                ) {
                    Err(BodyError::Corrupt { .. }) => inflate(
                        &mut self.inflater,
                        &mut self.out,
                        body,
                        0,
                        limit,
                        "deflate",
                        Decompressor::deflate_decompress,
                    )?,
                    r => r?,
                };
                Ok(&mut self.out[..n])
            }
            Encoding::Zstd => {
                let corrupt = |e: &dyn std::fmt::Display| BodyError::Corrupt {
                    encoding: Encoding::Zstd.name(),
                    detail: e.to_string(),
                };
                let src: &[u8] = body;
                let dec = ruzstd::decoding::StreamingDecoder::new(src).map_err(|e| corrupt(&e))?;
                let mut capped = dec.take(limit as u64 + 1);
                self.out.clear();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    let n = capped.read(&mut chunk).map_err(|e| corrupt(&e))?;
                    if n == 0 {
                        break;
                    }
                    self.out.extend_from_slice(&chunk[..n]);
                    if self.out.len() > limit {
                        return Err(BodyError::TooLarge { limit });
                    }
                }
                Ok(&mut self.out[..])
            }
        }
    }
}

type Inflate = fn(&mut Decompressor, &[u8], &mut [u8]) -> Result<usize, DecompressionError>;

/// Inflates `body` into `out` (resized as needed, never past `limit`); returns the length.
fn inflate(
    inflater: &mut Decompressor,
    out: &mut Vec<u8>,
    body: &[u8],
    hint: usize,
    limit: usize,
    encoding: &'static str,
    run: Inflate,
) -> Result<usize, BodyError> {
    let mut size = if hint > 0 && hint <= limit {
        hint
    } else {
        body.len().saturating_mul(4).max(MIN_GUESS)
    };
    size = size.min(limit).max(1);
    loop {
        out.clear();
        out.resize(size, 0);
        match run(inflater, body, &mut out[..]) {
            Ok(n) => {
                out.truncate(n);
                return Ok(n);
            }
            Err(DecompressionError::InsufficientSpace) => {
                if size >= limit {
                    return Err(BodyError::TooLarge { limit });
                }
                size = size.saturating_mul(2).min(limit);
            }
            Err(DecompressionError::BadData) => {
                return Err(BodyError::Corrupt {
                    encoding,
                    detail: "bad or truncated data".into(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libdeflater::{CompressionLvl, Compressor};

    type Compress =
        fn(&mut Compressor, &[u8], &mut [u8]) -> Result<usize, libdeflater::CompressionError>;

    fn compress(data: &[u8], bound: fn(&mut Compressor, usize) -> usize, run: Compress) -> Vec<u8> {
        let mut c = Compressor::new(CompressionLvl::default());
        let mut out = vec![0; bound(&mut c, data.len())];
        let n = run(&mut c, data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        compress(
            data,
            Compressor::gzip_compress_bound,
            Compressor::gzip_compress,
        )
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        compress(
            data,
            Compressor::zlib_compress_bound,
            Compressor::zlib_compress,
        )
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        compress(
            data,
            Compressor::deflate_compress_bound,
            Compressor::deflate_compress,
        )
    }

    // Copies of shared/reference/captures (produced by real clients), kept with the tests.
    const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/captures");

    fn capture(name: &str) -> Option<Vec<u8>> {
        std::fs::read(format!("{CAPTURES}/{name}")).ok()
    }

    #[test]
    fn round_trips_every_encoding() {
        let data = br#"{"series":[{"metric":"m","points":[[1,2]]}]}"#.repeat(100);
        let mut d = BodyDecoder::new(1 << 20);
        for (enc, mut body) in [
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Deflate, zlib(&data)),
            (Encoding::Deflate, raw_deflate(&data)),
            (Encoding::Identity, data.clone()),
        ] {
            assert_eq!(d.decode(enc, &mut body).unwrap(), &data[..], "{enc:?}");
        }
    }

    #[test]
    fn decodes_real_client_captures() {
        // Captured from datadog-api-client (gzip, zstd1) and datadogpy (deflate = zlib).
        let mut d = BodyDecoder::new(1 << 20);
        for (file, enc) in [
            ("apiclient_v1-series_gzip.raw-body.gz", Encoding::Gzip),
            (
                "ddpy-api_v1-series_deflate.raw-body.zlib",
                Encoding::Deflate,
            ),
            ("apiclient_v2-series_zstd1.raw-body.zst", Encoding::Zstd),
        ] {
            let mut body = capture(file).unwrap_or_else(|| panic!("capture {file} missing"));
            let plain = d.decode(enc, &mut body).unwrap();
            let v: serde_json::Value = serde_json::from_slice(plain).unwrap();
            assert!(v.get("series").is_some(), "{file}");
        }
    }

    #[test]
    fn bombs_are_rejected_without_allocating_their_size() {
        let zeros = vec![0u8; 8 << 20];
        let mut d = BodyDecoder::new(1 << 20);
        let mut gz = gzip(&zeros);
        assert_eq!(
            d.decode(Encoding::Gzip, &mut gz),
            Err(BodyError::TooLarge { limit: 1 << 20 })
        );
        let mut z = zlib(&zeros);
        assert_eq!(
            d.decode(Encoding::Deflate, &mut z),
            Err(BodyError::TooLarge { limit: 1 << 20 })
        );
        assert!(d.out.capacity() <= 1 << 20);
    }

    #[test]
    fn truncated_and_garbage_bodies_are_corrupt() {
        let data = b"{\"series\":[]}".repeat(50);
        let mut d = BodyDecoder::new(1 << 20);
        let gz = gzip(&data);
        let mut cut = gz[..gz.len() / 2].to_vec();
        assert_eq!(
            d.decode(Encoding::Gzip, &mut cut).unwrap_err().status(),
            400
        );
        let mut junk = b"not compressed at all".to_vec();
        assert_eq!(
            d.decode(Encoding::Zstd, &mut junk).unwrap_err().status(),
            400
        );
        assert_eq!(
            d.decode(Encoding::Deflate, &mut junk).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn encodings_by_header() {
        assert_eq!(Encoding::from_header("GZIP"), Ok(Encoding::Gzip));
        assert_eq!(Encoding::from_header("zstd1"), Ok(Encoding::Zstd));
        assert_eq!(Encoding::from_header(""), Ok(Encoding::Identity));
        assert_eq!(Encoding::from_header("br").unwrap_err().status(), 415);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut d = BodyDecoder::new(1 << 16);
            for enc in [Encoding::Gzip, Encoding::Deflate, Encoding::Zstd, Encoding::Identity] {
                let mut body = bytes.clone();
                let _ = d.decode(enc, &mut body);
            }
        }
    }
}
