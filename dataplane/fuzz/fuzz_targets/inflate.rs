//! Arbitrary bytes as a request body, through `BodyDecoder` for every `Content-Encoding`
//! (identity, gzip, deflate = zlib with raw-deflate fallback, zstd) with a small cap.
//!
//! Beyond "no panic", it checks what must hold for any input: the output never exceeds the
//! cap; every error is a documented variant (`TooLarge` naming the cap, `Corrupt` naming the
//! encoding, nothing else); identity hands the body back unchanged; a larger cap decodes to
//! the same bytes whatever the small cap accepted; and the input compressed by libdeflate
//! (gzip, zlib, raw deflate) and ruzstd decodes back to itself, or is `TooLarge` when it does
//! not fit the cap.
#![no_main]

use libdeflater::{CompressionLvl, Compressor};
use libfuzzer_sys::fuzz_target;
use switchyard_core::intake::decompress::{BodyDecoder, Encoding};
use switchyard_core::intake::BodyError;

/// A small cap, so inputs (and bombs) reach it; libFuzzer's default `-max_len` is 4096.
const CAP: usize = 1024;
/// A cap past anything a 4 KiB input inflates to in practice, for the monotonicity check.
const LARGE_CAP: usize = 1 << 20;

const ENCODINGS: [Encoding; 4] = [
    Encoding::Identity,
    Encoding::Gzip,
    Encoding::Deflate,
    Encoding::Zstd,
];

fuzz_target!(|data: &[u8]| run(data));

fn name(enc: Encoding) -> &'static str {
    match enc {
        Encoding::Identity => "identity",
        Encoding::Gzip => "gzip",
        Encoding::Deflate => "deflate",
        Encoding::Zstd => "zstd",
    }
}

/// Decodes `body` with `dec` and checks the result's shape; returns the output, if any.
fn decode(dec: &mut BodyDecoder, enc: Encoding, body: &[u8]) -> Option<Vec<u8>> {
    let mut copy = body.to_vec();
    let r = dec.decode(enc, &mut copy).map(|b| b.to_vec());
    match &r {
        Ok(out) => {
            assert!(
                out.len() <= dec.limit,
                "{enc:?}: {} > {}",
                out.len(),
                dec.limit
            );
            if enc == Encoding::Identity {
                assert_eq!(out, body);
            }
        }
        Err(BodyError::TooLarge { limit }) => {
            assert_eq!(*limit, dec.limit);
            if enc == Encoding::Identity {
                assert!(body.len() > dec.limit);
            }
        }
        Err(BodyError::Corrupt { encoding, .. }) => {
            assert_ne!(enc, Encoding::Identity);
            assert_eq!(*encoding, name(enc));
        }
        Err(e) => panic!("{enc:?}: undocumented error {e:?}"),
    }
    // Decoding never writes to the caller's body.
    assert_eq!(copy, body, "{enc:?}");
    r.ok()
}

type Compress =
    fn(&mut Compressor, &[u8], &mut [u8]) -> Result<usize, libdeflater::CompressionError>;

fn compress(
    c: &mut Compressor,
    data: &[u8],
    bound: fn(&mut Compressor, usize) -> usize,
    run: Compress,
) -> Vec<u8> {
    let mut out = vec![0; bound(c, data.len())];
    match run(c, data, &mut out) {
        Ok(n) => out.truncate(n),
        Err(e) => panic!("libdeflate could not compress within its bound: {e:?}"),
    }
    out
}

fn run(data: &[u8]) {
    let mut small = BodyDecoder::new(CAP);
    let mut large = BodyDecoder::new(LARGE_CAP);
    for enc in ENCODINGS {
        if let Some(out) = decode(&mut small, enc, data) {
            let again = decode(&mut large, enc, data);
            assert_eq!(again.as_deref(), Some(&out[..]), "{enc:?}");
        }
    }

    let mut c = Compressor::new(CompressionLvl::fastest());
    let framed = [
        (
            Encoding::Gzip,
            compress(
                &mut c,
                data,
                Compressor::gzip_compress_bound,
                Compressor::gzip_compress,
            ),
        ),
        (
            Encoding::Deflate,
            compress(
                &mut c,
                data,
                Compressor::zlib_compress_bound,
                Compressor::zlib_compress,
            ),
        ),
        (
            Encoding::Deflate,
            compress(
                &mut c,
                data,
                Compressor::deflate_compress_bound,
                Compressor::deflate_compress,
            ),
        ),
        (
            Encoding::Zstd,
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest),
        ),
    ];
    for (enc, body) in framed {
        let got = decode(&mut small, enc, &body);
        if data.len() <= CAP {
            assert_eq!(got.as_deref(), Some(data), "{enc:?} round trip");
        } else {
            let mut copy = body.clone();
            assert_eq!(
                small.decode(enc, &mut copy),
                Err(BodyError::TooLarge { limit: CAP }),
                "{enc:?}"
            );
        }
    }
}
