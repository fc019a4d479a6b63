//! Translation golden files (one per rule of `formats.md` §5) and properties.

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use switchyard_core::translate::{DdSeries, TranslateConfig, Translator};

/// Owned form of a parsed v1 payload, so the test can lend `DdSeries` views.
struct Owned {
    metric: String,
    kind: Option<String>,
    interval: Option<f64>,
    host: Option<String>,
    device: Option<String>,
    tags: Vec<String>,
    points: Vec<[Option<f64>; 2]>,
}

fn parse_payload(v: &Value) -> Vec<Owned> {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Owned {
            metric: s["metric"].as_str().unwrap().to_string(),
            kind: s.get("type").and_then(Value::as_str).map(str::to_string),
            interval: s.get("interval").and_then(Value::as_f64),
            host: s.get("host").and_then(Value::as_str).map(str::to_string),
            device: s.get("device").and_then(Value::as_str).map(str::to_string),
            tags: s
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                .unwrap_or_default(),
            points: s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_f64(), p[1].as_f64()])
                .collect(),
        })
        .collect()
}

fn translate(series: &[Owned], cfg: TranslateConfig) -> Value {
    let mut t = Translator::new(cfg);
    for o in series {
        let tags: Vec<&str> = o.tags.iter().map(String::as_str).collect();
        t.push(&DdSeries {
            metric: &o.metric,
            kind: o.kind.as_deref(),
            interval: o.interval,
            host: o.host.as_deref(),
            device: o.device.as_deref(),
            tags: &tags,
            points: &o.points,
        });
    }
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
        let input: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("input.json")).unwrap())
                .unwrap();
        let got = translate(&parse_payload(&input), TranslateConfig::default());
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
        let o = Owned {
            metric: "p.m".into(),
            kind: Some(kind.to_string()),
            interval: Some(f64::from(interval)),
            host: Some("h".into()),
            device: None,
            tags,
            points: points.iter().map(|&(t, v)| [Some(f64::from(t)), Some(v)]).collect(),
        };
        let out = translate(std::slice::from_ref(&o), TranslateConfig::default());
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
