//! Arbitrary bytes as a Kinesis record through `kpl::deaggregate`.
//!
//! Beyond "no panic": a record that is not an aggregate comes back unchanged as one
//! pass-through record; an aggregate yields sub-sequence numbers 0..n with keys from its
//! tables; and the user records of an aggregate re-aggregated by our `Aggregator` read back
//! the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_stream::kpl::{deaggregate, Aggregator};

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let d = deaggregate(data);
    if !d.is_aggregated() {
        let v: Vec<_> = d.collect();
        assert!(v.len() <= 1);
        if let Some(r) = v.first() {
            assert_eq!(&r.data[..], data);
            assert_eq!(r.sub_sequence_number, None);
        }
        return;
    }
    let recs: Vec<_> = d.collect();
    let mut agg = Aggregator::new(1 << 20);
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.sub_sequence_number, Some(i as u64));
        let pk = r.partition_key().unwrap();
        // Keys our aggregator refuses (empty, over 256 chars, non-decimal hash keys) are
        // the reference's business, not a round trip.
        if let Ok(done) = agg.add(pk, r.explicit_hash_key(), &r.data) {
            out.extend(done);
            kept.push(r);
        }
    }
    out.extend(agg.finish());
    let back: Vec<_> = out.iter().flat_map(|k| deaggregate(&k.data)).collect();
    assert_eq!(back.len(), kept.len());
    for (b, k) in back.iter().zip(&kept) {
        assert_eq!(b.partition_key(), k.partition_key());
        assert_eq!(b.explicit_hash_key(), k.explicit_hash_key());
        assert_eq!(b.data, k.data);
    }
}
