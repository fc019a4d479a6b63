//! `POST /api/v1/series`: `{"series":[{"metric","points":[[ts,value],...],"type","interval",
//! "host","tags","device","source_type_name"}]}` parsed in place with simd-json.
//!
//! Accepts every variant real clients send (`formats.md` §1.3): integer or float timestamps,
//! `null` host/device/interval, missing `type`, bare tags. Unknown fields are ignored. Each
//! series is handed to a callback as a borrowed [`DdSeries`] and never copied. Errors name
//! the field at fault, as the vendor's 400 does (`series[3].points[0]: ...`).

use super::BodyError;
use crate::translate::DdSeries;
use simd_json::prelude::*;
use simd_json::{BorrowedValue, StaticNode};

fn invalid(msg: String) -> BodyError {
    BodyError::Invalid(msg)
}

fn opt_str<'v>(
    v: Option<&'v BorrowedValue<'v>>,
    what: &dyn Fn() -> String,
) -> Result<Option<&'v str>, BodyError> {
    match v {
        None | Some(BorrowedValue::Static(StaticNode::Null)) => Ok(None),
        Some(BorrowedValue::String(s)) => Ok(Some(s.as_ref())),
        Some(_) => Err(invalid(format!("{}: expected a string or null", what()))),
    }
}

fn opt_num(
    v: Option<&BorrowedValue<'_>>,
    what: &dyn Fn() -> String,
) -> Result<Option<f64>, BodyError> {
    match v {
        None | Some(BorrowedValue::Static(StaticNode::Null)) => Ok(None),
        Some(BorrowedValue::Static(n)) => n
            .cast_f64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{}: expected a number or null", what()))),
        Some(_) => Err(invalid(format!("{}: expected a number or null", what()))),
    }
}

/// Parses a v1 series payload in place and calls `f` for each series. Returns the number of
/// series.
///
/// # Errors
/// [`BodyError::Invalid`] naming the first field at fault.
pub fn for_each_series(
    body: &mut [u8],
    buffers: &mut simd_json::Buffers,
    mut f: impl FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError> {
    let root = simd_json::borrowed::to_value_with_buffers(body, buffers)
        .map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let series = match root.get("series") {
        Some(BorrowedValue::Array(a)) => a,
        Some(_) => return Err(invalid("series: expected an array".into())),
        None if root.as_object().is_some() => {
            return Err(invalid("missing required field `series`".into()))
        }
        None => return Err(invalid("expected a JSON object".into())),
    };
    let mut tags: Vec<&str> = Vec::with_capacity(16);
    let mut points: Vec<[Option<f64>; 2]> = Vec::with_capacity(8);
    for (i, s) in series.iter().enumerate() {
        if s.as_object().is_none() {
            return Err(invalid(format!("series[{i}]: expected an object")));
        }
        let metric = match s.get("metric") {
            Some(BorrowedValue::String(m)) => m.as_ref(),
            _ => return Err(invalid(format!("series[{i}].metric: required string"))),
        };
        points.clear();
        match s.get("points") {
            Some(BorrowedValue::Array(ps)) => {
                for (j, p) in ps.iter().enumerate() {
                    let at = || format!("series[{i}].points[{j}]");
                    match p {
                        BorrowedValue::Array(pair) if pair.len() == 2 => {
                            points.push([opt_num(pair.first(), &at)?, opt_num(pair.get(1), &at)?]);
                        }
                        _ => return Err(invalid(format!("{}: expected [timestamp, value]", at()))),
                    }
                }
            }
            _ => return Err(invalid(format!("series[{i}].points: required array"))),
        }
        tags.clear();
        match s.get("tags") {
            None | Some(BorrowedValue::Static(StaticNode::Null)) => {}
            Some(BorrowedValue::Array(ts)) => {
                for (j, t) in ts.iter().enumerate() {
                    match t {
                        BorrowedValue::String(t) => tags.push(t.as_ref()),
                        _ => {
                            return Err(invalid(format!(
                                "series[{i}].tags[{j}]: expected a string"
                            )))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(invalid(format!(
                    "series[{i}].tags: expected an array of strings"
                )))
            }
        }
        let kind = opt_str(s.get("type"), &|| format!("series[{i}].type"))?;
        let interval = opt_num(s.get("interval"), &|| format!("series[{i}].interval"))?;
        let host = opt_str(s.get("host"), &|| format!("series[{i}].host"))?;
        let device = opt_str(s.get("device"), &|| format!("series[{i}].device"))?;
        f(&DdSeries {
            metric,
            kind,
            interval,
            host,
            device,
            tags: &tags,
            points: &points,
        });
    }
    Ok(series.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Seen {
        metric: String,
        kind: Option<String>,
        interval: Option<f64>,
        host: Option<String>,
        device: Option<String>,
        tags: Vec<String>,
        points: Vec<[Option<f64>; 2]>,
    }

    fn parse(json: &str) -> Result<Vec<Seen>, BodyError> {
        let mut body = json.as_bytes().to_vec();
        let mut buffers = simd_json::Buffers::default();
        let mut seen = Vec::new();
        for_each_series(&mut body, &mut buffers, |s| {
            seen.push(Seen {
                metric: s.metric.into(),
                kind: s.kind.map(Into::into),
                interval: s.interval,
                host: s.host.map(Into::into),
                device: s.device.map(Into::into),
                tags: s.tags.iter().map(|t| t.to_string()).collect(),
                points: s.points.to_vec(),
            })
        })?;
        Ok(seen)
    }

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/captures");

    #[test]
    fn parses_every_real_client_capture() {
        for (file, series) in [
            ("ddpy-api_v1-series_plain.json", 1),
            ("ddpy-threadstats_v1-series.json", 10),
            ("apiclient_v1-series_gzip.json", 1),
            ("ddpy-api_v1-series_deflate.json", 3),
        ] {
            let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
            let got = parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(got.len(), series, "{file}");
            assert!(
                got.iter()
                    .all(|s| !s.metric.is_empty() && !s.points.is_empty()),
                "{file}"
            );
        }
    }

    #[test]
    fn accepts_float_timestamps_nulls_and_missing_fields() {
        let got = parse(r#"{"series":[{"metric":"a","points":[[1795720296.0379677, 0.3],[1700000000, null]],
            "host":null,"device":null,"interval":null,"tags":["env:prod","canary"],"source_type_name":"x"},
            {"metric":"b","points":[[1,2]]}]}"#).unwrap();
        assert_eq!(
            got[0].points,
            vec![
                [Some(1_795_720_296.0379677), Some(0.3)],
                [Some(1.7e9), None]
            ]
        );
        assert_eq!(
            (
                got[0].host.as_deref(),
                got[0].device.as_deref(),
                got[0].interval
            ),
            (None, None, None)
        );
        assert_eq!(got[0].tags, vec!["env:prod", "canary"]);
        assert_eq!(got[1].kind, None);
        assert!(got[1].tags.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let e = |j: &str| parse(j).unwrap_err().to_string();
        assert_eq!(e(r#"{"serie":[]}"#), "missing required field `series`");
        assert_eq!(
            e(r#"{"series":[{"points":[]}]}"#),
            "series[0].metric: required string"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[[1]]}]}"#),
            "series[0].points[0]: expected [timestamp, value]"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[["x",1]]}]}"#),
            "series[0].points[0]: expected a number or null"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"tags":[1]}]}"#),
            "series[0].tags[0]: expected a string"
        );
        assert!(e("{not json").starts_with("invalid JSON"));
        assert_eq!(e("[]"), "expected a JSON object");
    }

    #[test]
    fn parsed_series_translate_like_the_formats_md_example() {
        let text =
            std::fs::read_to_string(format!("{FIXTURES}/ddpy-api_v1-series_plain.json")).unwrap();
        let mut body = text.into_bytes();
        let mut buffers = simd_json::Buffers::default();
        let mut t = crate::translate::Translator::new(Default::default());
        for_each_series(&mut body, &mut buffers, |s| t.push(s)).unwrap();
        let mut out = Vec::new();
        t.finish(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["counter"][1]["value"], 3);
        assert_eq!(v["counter"][1]["dimensions"]["unnamed_canary"], "canary");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut body = bytes;
            let mut buffers = simd_json::Buffers::default();
            let _ = for_each_series(&mut body, &mut buffers, |_| {});
        }
    }
}
