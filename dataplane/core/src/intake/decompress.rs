//! Request-body decompression into a reused buffer capped at a limit.
//!
//! libdeflate decompresses whole buffers and needs an output size. The buffer is reused and
//! keeps its length between requests (its bytes stay initialised), so the first attempt
//! offers the larger of what the buffer already holds and a guess: the gzip trailer's size,
//! else the input times the compression ratio of the last body decoded (4x at first). Only
//! growth is zero-filled. On `InsufficientSpace` the size doubles up to the limit, past
//! which the body is [`BodyError::TooLarge`]: libdeflate never writes past the slice it is
//! given, and that slice is never longer than the limit. zstd streams through
//! `Read::take(limit + 1)`.
//!
//! [`BodyDecoder::decode_framed`] also says whether the body as received is exactly one gzip
//! member or one zlib stream (nothing after its trailer, which libdeflate would ignore), so
//! the sinks may forward those bytes without compressing again;
//! [`BodyDecoder::inflate_stored`] decodes such a stored body again for a sink.

use super::BodyError;
use crate::egress::BodyFormat;
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
    /// Output; its length is the high-water mark of what was zero-filled (at most the
    /// largest limit used), not the last body's size.
    out: Vec<u8>,
    /// Decoded/compressed ratio of the last gzip or deflate body (rounded up, plus one),
    /// the next guess for a body without a size hint.
    ratio: usize,
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
/// The first ratio guessed, before any body was seen.
const FIRST_RATIO: usize = 4;
/// Most a learnt ratio may raise the next guess (metrics JSON compresses 8-15x; a tiny body
/// that compresses 500x must not make the next guess hundreds of megabytes).
const MAX_RATIO: usize = 32;

impl Default for BodyDecoder {
    /// A decoder with a limit of 0: set [`BodyDecoder::limit`] before [`BodyDecoder::decode`]
    /// ([`BodyDecoder::inflate_stored`] takes its size as an argument).
    fn default() -> Self {
        Self::new(0)
    }
}

impl BodyDecoder {
    /// A decoder accepting at most `limit` decompressed bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inflater: Decompressor::new(),
            out: Vec::new(),
            ratio: FIRST_RATIO,
            limit,
        }
    }

    /// Like [`BodyDecoder::decode`], and also says how the body as received may be stored
    /// for the sinks: `Some(Json)` for identity, `Some(Gzip)` / `Some(Zlib)` when `body` is
    /// exactly one gzip member / zlib stream (its trailer is the last bytes and matches the
    /// output, so no bytes follow it that the decoder skipped), `None` otherwise (zstd, raw
    /// deflate, trailing bytes): then only the decoded bytes are reusable.
    ///
    /// # Errors
    /// As [`BodyDecoder::decode`].
    pub fn decode_framed<'a>(
        &'a mut self,
        enc: Encoding,
        body: &'a mut [u8],
    ) -> Result<(&'a mut [u8], Option<BodyFormat>), BodyError> {
        let (n, framing) = match enc {
            Encoding::Identity => {
                let plain = self.decode(enc, body)?;
                return Ok((plain, Some(BodyFormat::Json)));
            }
            Encoding::Gzip | Encoding::Deflate => self.inflate_body(enc, body)?,
            Encoding::Zstd => {
                let plain = self.decode(enc, body)?;
                return Ok((plain, None));
            }
        };
        let plain = &mut self.out[..n];
        let exact = match framing {
            Some(BodyFormat::Gzip) => gzip_trailer_is_last(body, plain),
            Some(BodyFormat::Zlib) => zlib_trailer_is_last(body, plain),
            _ => false,
        };
        Ok((plain, framing.filter(|_| exact)))
    }

    /// Decodes a body stored by the intake (`format`, `size` bytes once decoded, as the
    /// intake measured) into `out`, replacing its contents. The body is shared, so it is
    /// never decoded in place. `size` is the cap: a body that decodes to anything else is
    /// [`BodyError::Corrupt`].
    ///
    /// # Errors
    /// [`BodyError::Corrupt`] for a stream that does not decode to exactly `size` bytes.
    pub fn inflate_stored(
        &mut self,
        format: BodyFormat,
        body: &[u8],
        size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        let (name, run): (&'static str, Inflate) = match format {
            BodyFormat::Json => {
                out.clear();
                out.extend_from_slice(body);
                return Ok(());
            }
            BodyFormat::Gzip => ("gzip", Decompressor::gzip_decompress),
            BodyFormat::Zlib => ("deflate", Decompressor::zlib_decompress),
        };
        // Only growth is zero-filled; the bytes kept are overwritten by the decoder.
        if out.len() < size {
            out.resize(size, 0);
        } else {
            out.truncate(size);
        }
        match run(&mut self.inflater, body, out) {
            Ok(n) if n == size => Ok(()),
            _ => {
                out.clear();
                Err(BodyError::Corrupt {
                    encoding: name,
                    detail: format!("stored body does not decode to its {size} bytes"),
                })
            }
        }
    }

    /// gzip or deflate (zlib, else raw) into `self.out`: the length, and the framing found
    /// (`Some(Gzip)`, `Some(Zlib)`, or `None` for raw deflate).
    fn inflate_body(
        &mut self,
        enc: Encoding,
        body: &[u8],
    ) -> Result<(usize, Option<BodyFormat>), BodyError> {
        let limit = self.limit;
        let guess = body.len().saturating_mul(self.ratio).max(MIN_GUESS);
        let r = if enc == Encoding::Gzip {
            // ISIZE (the last 4 bytes) is the size mod 2^32: only a first guess.
            let hint = body
                .len()
                .checked_sub(4)
                .and_then(|i| body.get(i..))
                .and_then(|b| b.try_into().ok())
                .map(|b: [u8; 4]| u32::from_le_bytes(b) as usize)
                .filter(|&h| h > 0 && h <= limit)
                .unwrap_or(guess);
            let inflater = &mut self.inflater;
            inflate(
                inflater,
                &mut self.out,
                body,
                hint,
                limit,
                "gzip",
                Decompressor::gzip_decompress,
            )
            .map(|n| (n, Some(BodyFormat::Gzip)))
        } else {
            let zlib = inflate(
                &mut self.inflater,
                &mut self.out,
                body,
                guess,
                limit,
                "deflate",
                Decompressor::zlib_decompress,
            );
            match zlib {
                Ok(n) => Ok((n, Some(BodyFormat::Zlib))),
                Err(BodyError::Corrupt { .. }) => inflate(
                    &mut self.inflater,
                    &mut self.out,
                    body,
                    guess,
                    limit,
                    "deflate",
                    Decompressor::deflate_decompress,
                )
                .map(|n| (n, None)),
                Err(e) => Err(e),
            }
        };
        if let Ok((n, _)) = r {
            self.ratio = (n.div_ceil(body.len().max(1)) + 1).clamp(FIRST_RATIO, MAX_RATIO);
        }
        r
    }

    /// Decodes `body` as exactly one zlib stream (RFC 1950), with no raw-deflate fallback:
    /// what gostatsd's receiver accepts as `Content-Encoding: deflate` (an empty body or
    /// raw deflate is [`BodyError::Corrupt`]). Bytes after the stream's trailer are ignored,
    /// as Go's `compress/zlib` reader does.
    ///
    /// # Errors
    /// [`BodyError::TooLarge`] past the limit, [`BodyError::Corrupt`] for a bad stream.
    pub fn decode_zlib(&mut self, body: &[u8]) -> Result<&mut [u8], BodyError> {
        let guess = body.len().saturating_mul(self.ratio).max(MIN_GUESS);
        let n = inflate(
            &mut self.inflater,
            &mut self.out,
            body,
            guess,
            self.limit,
            "deflate",
            Decompressor::zlib_decompress,
        )?;
        self.ratio = (n.div_ceil(body.len().max(1)) + 1).clamp(FIRST_RATIO, MAX_RATIO);
        Ok(&mut self.out[..n])
    }

    /// Decodes `body` as LZ4 frames (magic `04 22 4d 18`; gostatsd's `Content-Encoding:
    /// lz4`), streamed through `Read::take(limit + 1)` like zstd. `lz4_flex` allocates and
    /// zero-fills the frame's block buffer (up to the 4 MiB block size gostatsd's writer
    /// declares) on every call; it is not reused across bodies.
    ///
    /// # Errors
    /// [`BodyError::TooLarge`] past the limit, [`BodyError::Corrupt`] (encoding `lz4`) for a
    /// bad or truncated frame.
    pub fn decode_lz4_frame(&mut self, body: &[u8]) -> Result<&mut [u8], BodyError> {
        self.read_capped(lz4_flex::frame::FrameDecoder::new(body), "lz4")
    }

    /// Reads a streaming decoder into the output buffer through `Read::take(limit + 1)`:
    /// [`BodyError::TooLarge`] once it passes the limit, [`BodyError::Corrupt`] (as
    /// `encoding`) when the stream fails.
    fn read_capped(
        &mut self,
        dec: impl Read,
        encoding: &'static str,
    ) -> Result<&mut [u8], BodyError> {
        let limit = self.limit;
        let mut capped = dec.take(limit as u64 + 1);
        self.out.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = capped.read(&mut chunk).map_err(|e| BodyError::Corrupt {
                encoding,
                detail: e.to_string(),
            })?;
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
            Encoding::Gzip | Encoding::Deflate => {
                let (n, _) = self.inflate_body(enc, body)?;
                Ok(&mut self.out[..n])
            }
            Encoding::Zstd => {
                let corrupt = |e: &dyn std::fmt::Display| BodyError::Corrupt {
                    encoding: Encoding::Zstd.name(),
                    detail: e.to_string(),
                };
                let src: &[u8] = body;
                let dec = ruzstd::decoding::StreamingDecoder::new(src).map_err(|e| corrupt(&e))?;
                self.read_capped(dec, Encoding::Zstd.name())
            }
        }
    }
}

type Inflate = fn(&mut Decompressor, &[u8], &mut [u8]) -> Result<usize, DecompressionError>;

/// Inflates `body` into `out` and returns the length. `out` keeps its length across calls
/// (its bytes are initialised), so the first attempt offers `max(first, out.len())`, never
/// more than `limit`; only growth is zero-filled, and `out` never grows past `limit`.
fn inflate(
    inflater: &mut Decompressor,
    out: &mut Vec<u8>,
    body: &[u8],
    first: usize,
    limit: usize,
    encoding: &'static str,
    run: Inflate,
) -> Result<usize, BodyError> {
    let mut size = first.max(out.len()).min(limit);
    loop {
        if out.len() < size {
            out.reserve_exact(size - out.len());
            out.resize(size, 0);
        }
        match run(inflater, body, &mut out[..size]) {
            Ok(n) => return Ok(n),
            Err(DecompressionError::InsufficientSpace) => {
                if size >= limit {
                    return Err(BodyError::TooLarge { limit });
                }
                size = size.saturating_mul(2).max(MIN_GUESS).min(limit);
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

/// Whether the last 8 bytes of `gz` are the gzip trailer of `plain` (CRC32, then ISIZE, both
/// little-endian), i.e. nothing follows the member libdeflate decoded (it ignores what
/// does). Only a deliberately crafted tail could match by other means; the vendor then
/// decodes the tail too, and would reject the request.
fn gzip_trailer_is_last(gz: &[u8], plain: &[u8]) -> bool {
    let Some(trailer) = gz.len().checked_sub(8).and_then(|i| gz.get(i..)) else {
        return false;
    };
    let mut want = [0u8; 8];
    want[..4].copy_from_slice(&libdeflater::crc32(plain).to_le_bytes());
    want[4..].copy_from_slice(&(plain.len() as u32).to_le_bytes());
    trailer == want
}

/// Whether the last 4 bytes of `z` are the zlib trailer of `plain` (Adler-32, big-endian).
fn zlib_trailer_is_last(z: &[u8], plain: &[u8]) -> bool {
    z.len() >= 6 && z.get(z.len() - 4..) == Some(&libdeflater::adler32(plain).to_be_bytes()[..])
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
    fn a_reused_buffer_never_lets_a_body_past_the_current_limit() {
        // Bodies of 50 KB, 2 MB and 1.5 MB of JSON that compresses far past the first ratio.
        let small = br#"{"series":[{"metric":"m","points":[[1,2]]}]}"#.repeat(1_000);
        let big = small.repeat(40);
        let mid = &big[..1_500_000];
        let mut d = BodyDecoder::new(4 << 20);
        for (data, enc) in [
            (&small[..], Encoding::Deflate),
            (&big[..], Encoding::Deflate),
            (mid, Encoding::Deflate),
            (&small[..], Encoding::Gzip),
            (mid, Encoding::Gzip),
        ] {
            let mut body = if enc == Encoding::Gzip {
                gzip(data)
            } else {
                zlib(data)
            };
            assert_eq!(
                d.decode(enc, &mut body).unwrap(),
                data,
                "{enc:?} {}",
                data.len()
            );
        }
        // The buffer now holds 2 MB: a lower limit still caps the output.
        d.limit = 1 << 20;
        for (enc, mut body) in [(Encoding::Deflate, zlib(mid)), (Encoding::Gzip, gzip(mid))] {
            assert_eq!(
                d.decode(enc, &mut body),
                Err(BodyError::TooLarge { limit: 1 << 20 }),
                "{enc:?}"
            );
        }
        // A body of exactly the limit fits.
        d.limit = mid.len();
        let mut body = zlib(mid);
        assert_eq!(d.decode(Encoding::Deflate, &mut body).unwrap(), mid);
    }

    #[test]
    fn framing_says_when_the_wire_bytes_are_one_exact_stream() {
        let data = br#"{"series":[]}"#.repeat(100);
        let mut d = BodyDecoder::new(1 << 20);
        let framed = |d: &mut BodyDecoder, enc, mut body: Vec<u8>| {
            let (plain, f) = d.decode_framed(enc, &mut body).unwrap();
            assert_eq!(plain, &data[..]);
            f
        };
        assert_eq!(
            framed(&mut d, Encoding::Gzip, gzip(&data)),
            Some(BodyFormat::Gzip)
        );
        assert_eq!(
            framed(&mut d, Encoding::Deflate, zlib(&data)),
            Some(BodyFormat::Zlib)
        );
        assert_eq!(
            framed(&mut d, Encoding::Identity, data.clone()),
            Some(BodyFormat::Json)
        );
        assert_eq!(framed(&mut d, Encoding::Deflate, raw_deflate(&data)), None);
        // A second gzip member, or any tail, is skipped by the decoder: not forwardable.
        let mut two = gzip(&data);
        two.extend_from_slice(&gzip(b"{}"));
        assert_eq!(framed(&mut d, Encoding::Gzip, two), None);
        let mut tail = zlib(&data);
        tail.push(b'\n');
        assert_eq!(framed(&mut d, Encoding::Deflate, tail), None);
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
