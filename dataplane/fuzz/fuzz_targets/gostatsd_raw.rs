//! Arbitrary bytes as a gostatsd forwarder's `/v2/raw` and `/v2/event` body, through
//! `intake::gostatsd::RawDecoder` for each `Content-Encoding` it accepts (none, `deflate` =
//! strict zlib, `lz4` frames) with a small cap, and every decoded message through `feed`
//! into an `IntervalAggregator` with small caps, a drain, a merge and a flush.
//!
//! Beyond "no panic", it checks: errors are only `TooLarge` naming the cap, `Decompress`
//! (never for identity) or `Unmarshal`, each with status 400 or 413; a decoded message
//! re-encodes to bytes that decode to the same encoding (canonical form is stable); the
//! input wrapped in zlib and in an LZ4 frame decodes to what identity decoded (or is
//! `TooLarge` past the cap); `feed` accounts for every series (applied or rejected for a
//! reason), holds the caps, and the flush emits each distinct series once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use switchyard_core::aggregate::{IntervalAggregator, OwnerStore};
use switchyard_core::intake::gostatsd::{feed, RawDecoder, RawError, RawMessageV2};
use switchyard_core::model::SeriesBatch;

/// A small cap, so inputs (and bombs) reach it; libFuzzer's default `-max_len` is 4096.
const CAP: usize = 2048;
const MAX_SERIES: usize = 16;
const MAX_TIMER_VALUES: usize = 64;

fuzz_target!(|data: &[u8]| run(data));

fn check_err(e: &RawError, enc: Option<&str>) {
    match e {
        RawError::TooLarge { limit } => assert_eq!(*limit, CAP),
        RawError::Decompress { encoding, .. } => {
            assert!(enc.is_some_and(|e| e != "identity"), "{enc:?}: {e}");
            assert!(*encoding == "zlib" || *encoding == "lz4");
        }
        RawError::Unmarshal(_) => {}
        RawError::Encoding(_) => panic!("{enc:?} refused as an encoding"),
    }
    assert!(e.status() == 400 || e.status() == 413);
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::fastest());
    let mut out = vec![0; c.zlib_compress_bound(data.len())];
    match c.zlib_compress(data, &mut out) {
        Ok(n) => out.truncate(n),
        Err(e) => panic!("libdeflate could not compress within its bound: {e:?}"),
    }
    out
}

fn lz4(data: &[u8]) -> Vec<u8> {
    let mut w = lz4_flex::frame::FrameEncoder::new(Vec::new());
    if let Err(e) = std::io::Write::write_all(&mut w, data) {
        panic!("lz4 frame encoding failed: {e}");
    }
    match w.finish() {
        Ok(v) => v,
        Err(e) => panic!("lz4 frame encoding failed: {e}"),
    }
}

fn aggregate(msg: &RawMessageV2) {
    let mut agg = IntervalAggregator::new(3, 8, MAX_SERIES, MAX_TIMER_VALUES);
    let out = feed(msg, &mut agg, 1, 0);
    assert_eq!(
        out.ok + out.rejected_total(),
        msg.series_count() as u64,
        "every series is applied or rejected"
    );
    let distinct = agg.series();
    assert!(distinct <= MAX_SERIES);
    assert!(distinct as u64 <= out.ok);
    let mut store = OwnerStore::new(&[90.0, -10.0], 0);
    for p in agg.drain_by_owner(2) {
        store.merge(p, 1);
    }
    assert_eq!(store.len(), distinct);
    let mut batch = SeriesBatch::new(1_700_000_000, 10.0);
    let st = store.flush(&mut batch, 1);
    assert_eq!(st.series_emitted, distinct as u64);
}

fn run(data: &[u8]) {
    let mut d = RawDecoder::new(CAP);
    let mut identity = None;
    for enc in [None, Some("deflate"), Some("lz4")] {
        match d.decode_raw(enc, data) {
            Ok(msg) => {
                let bytes = msg.encode_to_vec();
                match RawMessageV2::decode(&bytes[..]) {
                    Ok(again) => assert_eq!(again.encode_to_vec(), bytes, "canonical form"),
                    Err(e) => panic!("{enc:?}: our own encoding does not decode: {e}"),
                }
                aggregate(&msg);
                if enc.is_none() {
                    identity = Some(bytes);
                }
            }
            Err(e) => check_err(&e, enc),
        }
        match d.decode_event(enc, data) {
            Ok(ev) => {
                let bytes = ev.encode_to_vec();
                match switchyard_core::intake::gostatsd::EventV2::decode(&bytes[..]) {
                    Ok(again) => assert_eq!(again, ev, "event round trip"),
                    Err(e) => panic!("{enc:?}: our own event encoding does not decode: {e}"),
                }
            }
            Err(e) => check_err(&e, enc),
        }
    }

    // The same bytes compressed decode as identity did.
    for (enc, body) in [("deflate", zlib(data)), ("lz4", lz4(data))] {
        let got = d.decode_raw(Some(enc), &body);
        if data.len() > CAP {
            assert_eq!(got, Err(RawError::TooLarge { limit: CAP }), "{enc}");
            continue;
        }
        match (&identity, got) {
            (Some(want), Ok(m)) => assert_eq!(&m.encode_to_vec(), want, "{enc}"),
            (None, Err(RawError::Unmarshal(_))) => {}
            (want, got) => panic!("{enc}: identity {want:?}, compressed {got:?}"),
        }
    }
}
