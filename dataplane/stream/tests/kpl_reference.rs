//! KPL cross-check against the awslabs reference implementation (`aws-kinesis-agg` 1.2.3 from
//! PyPI): its aggregates in `fixtures/kpl/ref-*.bin` must de-aggregate here to exactly what its
//! own de-aggregator read back (`fixtures/kpl/reference.json`), and our aggregator must write
//! the same bytes for the same inputs. `fixtures/kpl/ours-*.bin` are our aggregates, checked
//! once by hand with the reference de-aggregator (see `fixtures/kpl/README.md`); this test
//! keeps them byte-identical to what the aggregator writes today. No Python is needed here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard_stream::kpl::{deaggregate, Aggregator, KinesisRecord};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kpl")
}

fn manifest() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(dir().join("reference.json")).unwrap();
    match serde_json::from_str(&text).unwrap() {
        Value::Object(m) => m,
        _ => panic!("reference.json is not an object"),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

#[test]
fn reference_aggregates_deaggregate_like_the_reference() {
    let m = manifest();
    let mut files = 0;
    for (name, expected) in m.iter().filter(|(k, _)| k.starts_with("ref-")) {
        files += 1;
        let bytes = std::fs::read(dir().join(name)).unwrap();
        let d = deaggregate(&bytes);
        assert!(d.is_aggregated(), "{name}");
        let got: Vec<_> = d.collect();
        let want = expected["user_records"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.partition_key(), opt_str(&w["partition_key"]), "{name}");
            assert_eq!(
                g.explicit_hash_key(),
                opt_str(&w["explicit_hash_key"]),
                "{name}"
            );
            assert_eq!(
                g.sub_sequence_number,
                w["sub_sequence_number"].as_u64(),
                "{name}"
            );
            assert_eq!(
                &g.data[..],
                &unhex(w["data_hex"].as_str().unwrap())[..],
                "{name}"
            );
        }
    }
    assert_eq!(files, 7);
}

fn aggregate(case: &Value, max: usize) -> Vec<KinesisRecord> {
    let mut a = Aggregator::new(max);
    let mut out = Vec::new();
    for r in case["records"].as_array().unwrap() {
        let data = unhex(r["data_hex"].as_str().unwrap());
        let pk = r["partition_key"].as_str().unwrap();
        if let Some(done) = a.add(pk, opt_str(&r["explicit_hash_key"]), &data).unwrap() {
            out.push(done);
        }
    }
    out.extend(a.finish());
    out
}

#[test]
fn our_aggregates_equal_the_reference_bytes() {
    let m = manifest();
    // Cases that fit one record: the reference does not count the outer partition key in its
    // limit (Kinesis does, and so do we), so only split points could differ.
    for case in ["simple", "ehk", "single"] {
        let ours = aggregate(&m[&format!("inputs:{case}")], 1 << 20);
        assert_eq!(ours.len(), 1, "{case}");
        let name = format!("ref-{case}-0.bin");
        let theirs = std::fs::read(dir().join(&name)).unwrap();
        assert_eq!(ours[0].data, theirs, "{case}");
        assert_eq!(
            Some(ours[0].partition_key.as_str()),
            opt_str(&m[&name]["partition_key"])
        );
        assert_eq!(
            ours[0].explicit_hash_key.as_deref(),
            opt_str(&m[&name]["explicit_hash_key"])
        );
    }
}

#[test]
fn split_case_round_trips_and_stays_under_the_limit() {
    let m = manifest();
    let case = &m["inputs:split"];
    let max = case["max_size"].as_u64().unwrap() as usize;
    let ours = aggregate(case, max);
    let inputs = case["records"].as_array().unwrap();
    let mut i = 0;
    for r in &ours {
        assert!(r.size() <= max);
        for u in deaggregate(&r.data) {
            let w = &inputs[i];
            assert_eq!(u.partition_key(), w["partition_key"].as_str());
            assert_eq!(&u.data[..], &unhex(w["data_hex"].as_str().unwrap())[..]);
            i += 1;
        }
    }
    assert_eq!(i, inputs.len());
}

/// Our aggregates for the `split` and `ehk` inputs, as committed and cross-checked with the
/// reference de-aggregator (`check_ours.py`). Set `SWITCHYARD_UPDATE_FIXTURES=1` to rewrite
/// them after an intended change, then rerun `check_ours.py`.
#[test]
fn our_aggregates_match_the_hand_checked_fixtures() {
    let m = manifest();
    let update = std::env::var_os("SWITCHYARD_UPDATE_FIXTURES").is_some();
    let mut n = 0;
    for (case, max) in [("split", 2048), ("ehk", 1 << 20)] {
        for (i, r) in aggregate(&m[&format!("inputs:{case}")], max)
            .iter()
            .enumerate()
        {
            let path = dir().join(format!("ours-{case}-{i}.bin"));
            if update {
                std::fs::write(&path, &r.data).unwrap();
            }
            assert_eq!(std::fs::read(&path).unwrap(), r.data, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 3);
}
