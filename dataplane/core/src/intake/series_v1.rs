//! `POST /api/v1/series`: `{"series":[{"metric","points":[[ts,value],...],"type","interval",
//! "host","tags","device","source_type_name"}]}` parsed in place with simd-json.
//!
//! Accepts every variant real clients send (`formats.md` §1.3): integer or float timestamps,
//! `null` host/device/interval, missing `type`, bare tags. Unknown fields are ignored. Each
//! series is handed to a callback as a borrowed [`DdSeries`] and never copied. Errors name
//! the field at fault, as the vendor's 400 does (`series[3].points[0]: ...`).
//!
//! Parsed in place into a simd-json tape (see [`json`](super::json)), like
//! [`series_v2`](super::series_v2): one tape allocation per request and two scratch `Vec`s
//! (tags, points) reused for every series, so no allocation per series and no DOM (the
//! borrowed DOM built one map per object and ran at half serde_json's rate). Each series
//! object is walked once, its fields picked by name; a key given twice keeps its first
//! value, as the DOM's lookups (and the other tape parsers' `get`) did.

use super::json::{invalid, opt_num, opt_str, parse_tape, root_array, tags_into};
use super::BodyError;
use crate::translate::DdSeries;
use simd_json::prelude::*;
use simd_json::tape::Value;

/// The fields of one series the intake reads (the first occurrence of each key).
#[derive(Default)]
struct Fields<'t, 'i> {
    metric: Option<Value<'t, 'i>>,
    points: Option<Value<'t, 'i>>,
    tags: Option<Value<'t, 'i>>,
    kind: Option<Value<'t, 'i>>,
    interval: Option<Value<'t, 'i>>,
    host: Option<Value<'t, 'i>>,
    device: Option<Value<'t, 'i>>,
}

fn keep_first<'t, 'i>(slot: &mut Option<Value<'t, 'i>>, v: Value<'t, 'i>) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

/// Parses a v1 series payload in place and calls `f` for each series. Returns the number of
/// series.
///
/// # Errors
/// [`BodyError::Invalid`] naming the first field at fault, or for a body nested deeper than
/// [`DEFAULT_MAX_DEPTH`](super::json::DEFAULT_MAX_DEPTH).
pub fn for_each_series(
    body: &mut [u8],
    buffers: &mut simd_json::Buffers,
    mut f: impl FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError> {
    let tape = parse_tape(body, buffers)?;
    let series = root_array(tape.as_value(), "series")?;
    let mut tags: Vec<&str> = Vec::with_capacity(16);
    let mut points: Vec<[Option<f64>; 2]> = Vec::with_capacity(8);
    for (i, s) in series.iter().enumerate() {
        let Some(obj) = s.as_object() else {
            return Err(invalid(&|| format!("series[{i}]"), "expected an object"));
        };
        let mut fl = Fields::default();
        for (k, v) in obj.iter() {
            match k {
                "metric" => keep_first(&mut fl.metric, v),
                "points" => keep_first(&mut fl.points, v),
                "tags" => keep_first(&mut fl.tags, v),
                "type" => keep_first(&mut fl.kind, v),
                "interval" => keep_first(&mut fl.interval, v),
                "host" => keep_first(&mut fl.host, v),
                "device" => keep_first(&mut fl.device, v),
                _ => {}
            }
        }
        let Some(metric) = fl.metric.and_then(|m| m.into_string()) else {
            return Err(invalid(
                &|| format!("series[{i}].metric"),
                "required string",
            ));
        };
        points.clear();
        let Some(ps) = fl.points.and_then(|p| p.as_array()) else {
            return Err(invalid(&|| format!("series[{i}].points"), "required array"));
        };
        for (j, p) in ps.iter().enumerate() {
            let at = || format!("series[{i}].points[{j}]");
            match p.as_array() {
                Some(pair) if pair.len() == 2 => {
                    let mut it = pair.iter();
                    points.push([opt_num(it.next(), &at)?, opt_num(it.next(), &at)?]);
                }
                _ => return Err(invalid(&at, "expected [timestamp, value]")),
            }
        }
        tags.clear();
        tags_into(fl.tags, &mut tags, &|| format!("series[{i}].tags"))?;
        let kind = opt_str(fl.kind, &|| format!("series[{i}].type"))?;
        let interval = opt_num(fl.interval, &|| format!("series[{i}].interval"))?;
        let host = opt_str(fl.host, &|| format!("series[{i}].host"))?;
        let device = opt_str(fl.device, &|| format!("series[{i}].device"))?;
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

    use crate::translate::OwnedDdSeries as Seen;

    fn parse(json: &str) -> Result<Vec<Seen>, BodyError> {
        let mut body = json.as_bytes().to_vec();
        let mut buffers = simd_json::Buffers::default();
        let mut seen = Vec::new();
        for_each_series(&mut body, &mut buffers, |s| seen.push(Seen::from(s)))?;
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
    fn a_repeated_key_keeps_its_first_value() {
        let got = parse(
            r#"{"series":[{"metric":"a","points":[[1,2]],"metric":"b","points":"x","host":null,"host":"h"}],
                "series":1}"#,
        )
        .unwrap();
        assert_eq!((got[0].metric.as_str(), got[0].points.len()), ("a", 1));
        assert_eq!(got[0].host, None);
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
