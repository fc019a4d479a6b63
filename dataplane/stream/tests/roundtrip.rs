//! Property tests: envelope + batch and KPL round trips, and arbitrary or corrupted bytes give
//! errors (or pass-through), never panics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use switchyard_stream::batch::{access, BatchWriter, Kind, Point, StreamBatch};
use switchyard_stream::codec::{Decoded, StreamDecoder, StreamEncoder};
use switchyard_stream::envelope::{self, Compression, Encoding, EnvelopeEncoder, PayloadBuffer};
use switchyard_stream::kpl::{deaggregate, Aggregator};

#[derive(Debug, Clone)]
struct S {
    name: String,
    kind: Kind,
    interval: Option<f64>,
    host: Option<String>,
    device: Option<String>,
    tags: Vec<String>,
    points: Vec<(f64, f64)>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Unspecified),
        Just(Kind::Gauge),
        Just(Kind::Count),
        Just(Kind::Rate),
        Just(Kind::Unknown)
    ]
}

fn series() -> impl Strategy<Value = S> {
    (
        "\\PC{0,20}",
        kind(),
        proptest::option::of(any::<f64>()),
        proptest::option::of("\\PC{1,10}"),
        proptest::option::of("[a-z]{1,5}"),
        proptest::collection::vec("\\PC{0,12}", 0..5),
        proptest::collection::vec((any::<f64>(), any::<f64>()), 0..5),
    )
        .prop_map(|(name, kind, interval, host, device, tags, points)| S {
            name,
            kind,
            interval,
            host,
            device,
            tags,
            points,
        })
}

fn build(ss: &[S]) -> StreamBatch {
    let mut b = StreamBatch::new();
    for s in ss {
        b.push_series(
            &s.name,
            s.kind,
            s.interval,
            s.host.as_deref(),
            s.device.as_deref(),
            s.tags.iter().map(String::as_str),
            s.points
                .iter()
                .map(|&(timestamp, value)| Point { timestamp, value }),
        );
    }
    b
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Deflate),
        Just(Compression::Gzip)
    ]
}

fn same_f64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

proptest! {
    #[test]
    fn rkyv_batch_round_trips_through_the_envelope(
        ss in proptest::collection::vec(series(), 0..20),
        c in compression(),
    ) {
        let b = build(&ss);
        let mut enc = StreamEncoder::default();
        let mut out = Vec::new();
        enc.encode(&b, Encoding::Rkyv, c, &mut out).unwrap();
        let mut dec = StreamDecoder::default();
        let Decoded::Rkyv(a) = dec.decode(&out).unwrap() else { panic!("not rkyv") };
        prop_assert_eq!(a.len(), ss.len());
        for (got, want) in a.series().zip(&ss) {
            prop_assert_eq!(got.name(), want.name.as_str());
            prop_assert_eq!(got.kind(), want.kind);
            prop_assert_eq!(got.interval().map(f64::to_bits), want.interval.map(f64::to_bits));
            prop_assert_eq!(got.host(), want.host.as_deref().filter(|h| !h.is_empty()));
            prop_assert_eq!(got.device(), want.device.as_deref());
            prop_assert_eq!(got.tags().collect::<Vec<_>>(), want.tags.iter().map(String::as_str).collect::<Vec<_>>());
            let pts: Vec<_> = got.points().collect();
            prop_assert_eq!(pts.len(), want.points.len());
            for (g, w) in pts.iter().zip(&want.points) {
                prop_assert!(same_f64(g.0, w.0) && same_f64(g.1, w.1));
            }
        }
    }

    #[test]
    fn envelope_round_trips_any_payload(
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
        c in compression(),
        json in any::<bool>(),
    ) {
        let e = if json { Encoding::Json } else { Encoding::Rkyv };
        let mut out = Vec::new();
        EnvelopeEncoder::default().encode(e, c, &payload, &mut out).unwrap();
        let env = envelope::decode(&out).unwrap();
        prop_assert_eq!(env.encoding, e);
        prop_assert_eq!(env.compression, c);
        let mut scratch = PayloadBuffer::default();
        prop_assert_eq!(env.payload(&mut scratch).unwrap(), &payload[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = StreamDecoder::new(1 << 16);
        let _ = dec.decode(&bytes);
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        if let Ok(a) = access(&aligned) {
            for s in a.series() {
                let _ = (s.name(), s.tags().count(), s.points().count());
            }
        }
        // Pass-through or records, never a panic; pass-through returns the bytes unchanged.
        let d = deaggregate(&bytes);
        if !d.is_aggregated() {
            let v: Vec<_> = d.collect();
            prop_assert!(v.len() <= 1);
            if let Some(r) = v.first() {
                prop_assert_eq!(&r.data[..], &bytes[..]);
            }
        }
    }

    #[test]
    fn corrupted_records_are_errors_not_panics(
        ss in proptest::collection::vec(series(), 1..6),
        c in compression(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let b = build(&ss);
        let mut out = Vec::new();
        StreamEncoder::default().encode(&b, Encoding::Rkyv, c, &mut out).unwrap();
        let mut bad = out.clone();
        for (i, x) in &flips {
            let i = i.index(bad.len());
            bad[i] ^= x;
        }
        let mut dec = StreamDecoder::default();
        if let Ok(Decoded::Rkyv(a)) = dec.decode(&bad) {
            for s in a.series() {
                let _ = (s.name(), s.host(), s.tags().count(), s.points().count());
            }
        }
        let truncated = &out[..cut.index(out.len())];
        prop_assert!(dec.decode(truncated).is_err());
        // The raw archive too.
        let mut w = BatchWriter::default();
        let mut arch = rkyv::util::AlignedVec::<16>::new();
        arch.extend_from_slice(w.write(&b).unwrap());
        let n = arch.len();
        let (i, x) = flips[0];
        let i = i.index(n);
        arch[i] ^= x;
        let _ = access(&arch).map(|a| a.series().map(|s| s.tags().count()).sum::<usize>());
    }

    #[test]
    fn kpl_round_trips_and_respects_the_limit(
        recs in proptest::collection::vec(
            ("[a-z0-9]{1,20}", proptest::option::of(any::<u128>()), proptest::collection::vec(any::<u8>(), 0..300)),
            1..60,
        ),
        max in 400usize..4000,
    ) {
        let mut a = Aggregator::new(max);
        let mut out = Vec::new();
        for (pk, ehk, data) in &recs {
            let ehk = ehk.map(|k| k.to_string());
            if let Some(r) = a.add(pk, ehk.as_deref(), data).unwrap() {
                out.push(r);
            }
        }
        out.extend(a.finish());
        let mut got = Vec::new();
        for r in &out {
            prop_assert!(r.size() <= max);
            let d = deaggregate(&r.data);
            prop_assert!(d.is_aggregated());
            for (i, u) in d.enumerate() {
                prop_assert_eq!(u.sub_sequence_number, Some(i as u64));
                got.push((
                    u.partition_key().unwrap_or_default().to_string(),
                    u.explicit_hash_key().map(str::to_string),
                    u.data.to_vec(),
                ));
            }
        }
        let want: Vec<_> = recs
            .iter()
            .map(|(pk, ehk, d)| (pk.clone(), ehk.map(|k| k.to_string()), d.clone()))
            .collect();
        prop_assert_eq!(got, want);
    }
}
