//! Arbitrary bytes as a Switchyard forwarder's request body, through
//! `forward::ForwardDecoder` with small caps, three ways: as the whole body; framed with a
//! valid header around the bytes zlib-compressed (so bytecheck sees arbitrary archives); and
//! as a valid body whose archive was mutated by the input. Every decoded batch is fed into an
//! `IntervalAggregator` with small caps, drained, merged, flushed.
//!
//! Beyond "no panic", it checks: every error has status 400 or 413 (415 is only for the
//! content type, not checked here); `feed` accounts for every series (applied or rejected)
//! and holds the caps; a decoded batch re-encodes to a body that decodes to the same series;
//! the flush emits each distinct series once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::aggregate::{IntervalAggregator, OwnerStore};
use switchyard_core::forward::{
    feed, ForwardBatch, ForwardDecoder, ForwardEncoder, ForwardLimits, ForwardView, HEADER_LEN,
    MAGIC, VERSION,
};
use switchyard_core::model::SeriesBatch;

const CAP: usize = 1 << 16;
const MAX_SERIES: usize = 64;
const AGG_SERIES: usize = 16;
const AGG_TIMER_VALUES: usize = 64;

fuzz_target!(|data: &[u8]| run(data));

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::fastest());
    let mut out = vec![0; c.zlib_compress_bound(data.len())];
    match c.zlib_compress(data, &mut out) {
        Ok(n) => out.truncate(n),
        Err(e) => panic!("libdeflate could not compress within its bound: {e:?}"),
    }
    out
}

fn framed(archive: &[u8]) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&[VERSION, 0, 0, 0]);
    b.extend_from_slice(&(archive.len() as u32).to_le_bytes());
    b.extend_from_slice(&zlib(archive));
    b
}

fn limits() -> ForwardLimits {
    ForwardLimits {
        max_body_bytes: CAP,
        max_decoded_bytes: CAP,
        max_series: MAX_SERIES,
    }
}

fn series_of(v: &ForwardView<'_>) -> Vec<String> {
    let (mut vals, mut members) = (Vec::new(), Vec::new());
    v.series()
        .map(|s| {
            let val = s.value_into(&mut vals, &mut members);
            // Debug formatting prints NaN alike, so NaN values compare equal.
            format!("{}|{}|{}|{val:?}", s.name, s.tags, s.host)
        })
        .collect()
}

fn check(body: &[u8]) {
    let mut dec = ForwardDecoder::new(limits());
    let view = match dec.decode(body) {
        Ok(v) => v,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413), "{e}");
            return;
        }
    };
    assert!(view.len() <= MAX_SERIES);
    // Round trip through our own encoder.
    let owned: ForwardBatch = view.to_owned_batch();
    let mut enc = ForwardEncoder::new(view.forwarder(), view.interval_ms(), &[] as &[&str]);
    let mut again = Vec::new();
    if let Err(e) = enc.encode_batch(&owned, &mut again) {
        panic!("a decoded batch does not re-encode: {e}");
    }
    let mut dec2 = ForwardDecoder::new(ForwardLimits {
        max_decoded_bytes: CAP * 4,
        ..limits()
    });
    match dec2.decode(&again) {
        Ok(v2) => {
            assert_eq!(series_of(&v2), series_of(&view), "round trip");
            assert_eq!(v2.forwarder(), view.forwarder());
        }
        Err(e) => panic!("our own body does not decode: {e}"),
    }

    let mut agg = IntervalAggregator::new(3, 8, AGG_SERIES, AGG_TIMER_VALUES);
    let out = feed(&view, &mut agg, 1, 0);
    assert_eq!(out.ok + out.rejected_total(), view.len() as u64);
    let distinct = agg.series();
    assert!(distinct <= AGG_SERIES && distinct as u64 <= out.ok);
    let mut parts = agg.drain_by_owner(2).into_iter();
    let mut all = parts.next().unwrap_or_default();
    for p in parts {
        all.absorb(p);
    }
    assert_eq!(all.len(), distinct);
    let mut store = OwnerStore::new(&[90.0, -10.0], 0);
    store.merge(all, 1);
    let mut batch = SeriesBatch::new(1_700_000_000, 10.0);
    let st = store.flush(&mut batch, 1);
    assert_eq!(st.series_emitted, distinct as u64);
}

fn run(data: &[u8]) {
    check(data);
    if data.len() <= CAP {
        check(&framed(data));
    }
    // A small valid batch, its archive mutated by the input.
    let mut b = ForwardBatch::new("fuzz", 1000);
    let _ = b.push(
        "c",
        "a:1,b",
        "h",
        switchyard_core::forward::SeriesValue::Counter(2.0),
    );
    let _ = b.push(
        "t",
        "",
        "h",
        switchyard_core::forward::SeriesValue::Timer {
            values: &[1.0, 2.0],
            sampled_count: 2.0,
        },
    );
    let _ = b.push(
        "s",
        "x",
        "",
        switchyard_core::forward::SeriesValue::Set(&[1, 2]),
    );
    let mut enc = ForwardEncoder::new("fuzz", 1000, &[] as &[&str]);
    let mut body = Vec::new();
    if enc.encode_batch(&b, &mut body).is_err() {
        panic!("a small batch does not encode");
    }
    let mut dec = ForwardDecoder::new(limits());
    if dec.decode(&body).is_err() {
        panic!("a small batch does not decode");
    }
    let mut archive =
        vec![0u8; u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize];
    if libdeflater::Decompressor::new()
        .zlib_decompress(&body[HEADER_LEN..], &mut archive)
        .is_err()
    {
        panic!("our own zlib stream does not inflate");
    }
    for pair in data.chunks_exact(2) {
        let i = pair[0] as usize % archive.len();
        archive[i] ^= pair[1];
    }
    check(&framed(&archive));
}
