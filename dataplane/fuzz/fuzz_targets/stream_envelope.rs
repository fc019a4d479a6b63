//! Arbitrary bytes as a stream record: `StreamDecoder` (envelope header, 64 KiB cap,
//! decompression into the reused aligned buffer, rkyv `access` with bytecheck and the span
//! check), and `batch::access` on the raw bytes.
//!
//! Beyond "no panic": a validated archive iterates without panicking and its owned copy
//! re-encodes to a record that decodes to the same batch; a JSON payload is never larger than
//! the cap; the same bytes re-wrapped in an envelope by our encoder (each compression)
//! decode back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkyv::util::AlignedVec;
use switchyard_stream::batch::access;
use switchyard_stream::codec::{Decoded, StreamDecoder, StreamEncoder};
use switchyard_stream::envelope::{self, Compression, Encoding, EnvelopeEncoder, PayloadBuffer};

const CAP: usize = 64 << 10;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut dec = StreamDecoder::new(CAP);
    match dec.decode(data) {
        Ok(Decoded::Rkyv(a)) => check_archive(a),
        Ok(Decoded::Json(j)) => assert!(j.len() <= CAP),
        Err(_) => {}
    }
    let mut aligned = AlignedVec::<16>::new();
    aligned.extend_from_slice(data);
    if let Ok(a) = access(&aligned) {
        check_archive(a);
    }
    let mut enc = EnvelopeEncoder::default();
    let mut scratch = PayloadBuffer::default();
    for c in [Compression::None, Compression::Deflate, Compression::Gzip] {
        let mut out = Vec::new();
        enc.encode(Encoding::Json, c, data, &mut out).unwrap();
        let env = envelope::decode(&out).unwrap();
        assert_eq!(env.payload(&mut scratch).unwrap(), data);
    }
}

fn check_archive(a: &switchyard_stream::ArchivedStreamBatch) {
    let mut points = 0;
    for s in a.series() {
        let _ = (s.name(), s.host(), s.device(), s.kind(), s.interval());
        let _ = s.tags().count();
        points += s.points().count();
    }
    let _ = points;
    let owned = a.to_owned_batch();
    assert_eq!(owned.len(), a.len());
    let mut out = Vec::new();
    StreamEncoder::default()
        .encode(&owned, Encoding::Rkyv, Compression::None, &mut out)
        .unwrap();
    let mut dec = StreamDecoder::default();
    match dec.decode(&out).unwrap() {
        Decoded::Rkyv(b) => assert_eq!(b.to_owned_batch(), owned),
        Decoded::Json(_) => panic!("re-encoded as rkyv"),
    }
}
