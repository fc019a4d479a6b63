//! Translation golden files (one per rule of `formats.md` §5) and properties.

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use switchyard_core::intake::series_v1::for_each_series;
use switchyard_core::translate::{TranslateConfig, Translator};

/// Parses a v1 payload with the intake's own parser and translates it, as the HTTP path will.
fn translate(json: &[u8], cfg: TranslateConfig) -> Value {
    let mut body = json.to_vec();
    let mut buffers = simd_json::Buffers::default();
    let mut t = Translator::new(cfg);
    for_each_series(&mut body, &mut buffers, |s| t.push(s)).unwrap();
    let mut out = Vec::new();
    t.finish(&mut out);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn golden_translations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/translate");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10);
    for dir in cases {
        let input = std::fs::read(dir.join("input.json")).unwrap();
        let got = translate(&input, TranslateConfig::default());
        let path = dir.join("expected.json");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        }
        let want: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(got, want, "golden {} differs", dir.display());
    }
}

proptest! {
    /// Translation keeps every valid point and its value (scaled by the interval for rates).
    #[test]
    fn points_and_values_are_preserved(
        points in prop::collection::vec((1_000_000_000u32..2_000_000_000, -1.0e9f64..1.0e9), 1..50),
        kind in prop::sample::select(vec!["gauge", "count", "rate", ""]),
        interval in 1u32..60,
        tags in prop::collection::vec("[a-z]{1,6}(:[a-zA-Z0-9/._-]{1,10})?", 0..10),
    ) {
        let payload = serde_json::json!({"series": [{
            "metric": "p.m",
            "type": kind,
            "interval": interval,
            "host": "h",
            "tags": tags,
            "points": points.iter().map(|&(t, v)| serde_json::json!([t, v])).collect::<Vec<_>>(),
        }]});
        let out = translate(payload.to_string().as_bytes(), TranslateConfig::default());
        let arr = out.get("gauge").or_else(|| out.get("counter")).unwrap().as_array().unwrap();
        prop_assert_eq!(arr.len(), points.len());
        let scale = if kind == "rate" { f64::from(interval) } else { 1.0 };
        let mut want: Vec<f64> = points.iter().map(|p| p.1 * scale).collect();
        let mut got: Vec<f64> = arr.iter().map(|d| d["value"].as_f64().unwrap()).collect();
        want.sort_by(f64::total_cmp);
        got.sort_by(f64::total_cmp);
        for (g, w) in got.iter().zip(want.iter()) {
            prop_assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{} vs {}", g, w);
        }
        let ts: Vec<i64> = arr.iter().map(|d| d["timestamp"].as_i64().unwrap()).collect();
        prop_assert!(ts.windows(2).all(|w| w[0] <= w[1]), "points sorted per series");
    }
}
