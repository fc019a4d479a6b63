//! `POST /api/v2/series` (JSON, as API clients send it; `formats.md` §1.4):
//! `{"series":[{"metric","type":0..3,"points":[{"timestamp","value"}],"resources":[{"type",
//! "name"}],"tags","unit","interval","source_type_name","metadata"}]}`.
//!
//! Each series is handed to a callback as the same borrowed [`DdSeries`] view
//! [`series_v1`](super::series_v1) produces, so one translator serves both versions:
//! - `type` 1/2/3 -> `"count"`/`"rate"`/`"gauge"`; 0, null or missing -> `None` (unspecified,
//!   which the translator treats like v1's missing type). Any other value is a 400.
//! - `resources[type=host].name` -> `host`, `resources[type=device].name` -> `device` (the
//!   first of each wins); other resource types are ignored, as OTel's datadogreceiver does
//!   with the host.
//! - `points[j]` -> `[Some(timestamp), Some(value)]`; a missing or null field becomes `None`
//!   and is counted as a drop by the translator.
//! - `unit`, `source_type_name`, `metadata` and unknown fields are ignored.
//!
//! Parsed in place into a simd-json tape (see [`json`](super::json)): one tape allocation
//! per request, tags and points go into two scratch `Vec`s reused for every series, so there
//! is no allocation per series. The Agent's protobuf `MetricPayload` is not handled here.

use super::json::{invalid, object, opt_num, parse_tape, req_str, root_array, tags_into};
use super::BodyError;
use crate::translate::DdSeries;
use simd_json::prelude::*;

/// The v2 `MetricIntakeType` codes, for the error.
const BAD_TYPE: &str = "expected 0 (unspecified), 1 (count), 2 (rate) or 3 (gauge)";

/// Parses a v2 JSON series payload in place and calls `f` for each series. Returns the number
/// of series.
///
/// # Errors
/// [`BodyError::Invalid`] naming the first field at fault (`series[1].type: ...`), or for a
/// body nested deeper than [`DEFAULT_MAX_DEPTH`](super::json::DEFAULT_MAX_DEPTH).
pub fn for_each_series(
    body: &mut [u8],
    buffers: &mut simd_json::Buffers,
    mut f: impl FnMut(&DdSeries<'_>),
) -> Result<usize, BodyError> {
    let tape = parse_tape(body, buffers)?;
    let series = root_array(tape.as_value(), "series")?;
    let mut tags: Vec<&str> = Vec::with_capacity(16);
    let mut points: Vec<[Option<f64>; 2]> = Vec::with_capacity(8);
    let mut n = 0;
    for (i, s) in series.iter().enumerate() {
        let s = object(s, &|| format!("series[{i}]"))?;
        let metric = req_str(s.get("metric"), &|| format!("series[{i}].metric"))?;
        let kind = match s.get("type") {
            None => None,
            Some(t) if t.as_null().is_some() => None,
            Some(t) => match t.as_i64() {
                Some(0) => None,
                Some(1) => Some("count"),
                Some(2) => Some("rate"),
                Some(3) => Some("gauge"),
                _ => return Err(invalid(&|| format!("series[{i}].type"), BAD_TYPE)),
            },
        };
        points.clear();
        let Some(ps) = s.get("points").and_then(|p| p.as_array()) else {
            return Err(invalid(&|| format!("series[{i}].points"), "required array"));
        };
        for (j, p) in ps.iter().enumerate() {
            let p = p.as_object().ok_or_else(|| {
                invalid(
                    &|| format!("series[{i}].points[{j}]"),
                    "expected {\"timestamp\", \"value\"}",
                )
            })?;
            let ts = opt_num(p.get("timestamp"), &|| {
                format!("series[{i}].points[{j}].timestamp")
            })?;
            let v = opt_num(p.get("value"), &|| format!("series[{i}].points[{j}].value"))?;
            points.push([ts, v]);
        }
        let (mut host, mut device) = (None, None);
        match s.get("resources") {
            None => {}
            Some(r) if r.as_null().is_some() => {}
            Some(r) => {
                let Some(rs) = r.as_array() else {
                    return Err(invalid(
                        &|| format!("series[{i}].resources"),
                        "expected an array",
                    ));
                };
                for (j, r) in rs.iter().enumerate() {
                    let r = object(r, &|| format!("series[{i}].resources[{j}]"))?;
                    let ty = req_str(r.get("type"), &|| {
                        format!("series[{i}].resources[{j}].type")
                    })?;
                    let name = req_str(r.get("name"), &|| {
                        format!("series[{i}].resources[{j}].name")
                    })?;
                    match ty {
                        "host" => host = host.or(Some(name)),
                        "device" => device = device.or(Some(name)),
                        _ => {}
                    }
                }
            }
        }
        tags.clear();
        tags_into(s.get("tags"), &mut tags, &|| format!("series[{i}].tags"))?;
        let interval = opt_num(s.get("interval"), &|| format!("series[{i}].interval"))?;
        f(&DdSeries {
            metric,
            kind,
            interval,
            host,
            device,
            tags: &tags,
            points: &points,
        });
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::translate::OwnedDdSeries as Seen;

    fn parse(json: &str) -> Result<Vec<Seen>, BodyError> {
        let mut body = json.as_bytes().to_vec();
        let mut buffers = simd_json::Buffers::default();
        let mut seen = Vec::new();
        let n = for_each_series(&mut body, &mut buffers, |s| seen.push(Seen::from(s)))?;
        assert_eq!(n, seen.len());
        Ok(seen)
    }

    #[test]
    fn maps_types_resources_and_points() {
        let got = parse(
            r#"{"series":[
            {"metric":"a","type":0,"points":[{"timestamp":1700000000,"value":1.5},{"value":2},{"timestamp":1700000010,"value":null}],
             "resources":[{"type":"database_instance","name":"db"},{"type":"host","name":"web-1"},
                          {"type":"device","name":"sda1"},{"type":"host","name":"ignored"}],
             "tags":["env:prod","canary"],"unit":"byte","metadata":{"origin":{"product":1}}},
            {"metric":"b","type":1,"points":[]},
            {"metric":"c","type":2,"interval":10,"points":[],"resources":null,"tags":null},
            {"metric":"d","type":3,"points":[]},
            {"metric":"e","type":null,"points":[]},
            {"metric":"f","points":[]}]}"#,
        )
        .unwrap();
        assert_eq!(
            got[0],
            Seen {
                metric: "a".into(),
                kind: None,
                interval: None,
                host: Some("web-1".into()),
                device: Some("sda1".into()),
                tags: vec!["env:prod".into(), "canary".into()],
                points: vec![
                    [Some(1.7e9), Some(1.5)],
                    [None, Some(2.0)],
                    [Some(1_700_000_010.0), None]
                ],
            }
        );
        let kinds: Vec<_> = got.iter().map(|s| s.kind.as_deref()).collect();
        assert_eq!(
            kinds,
            [None, Some("count"), Some("rate"), Some("gauge"), None, None]
        );
        assert_eq!(got[2].interval, Some(10.0));
        assert_eq!((got[2].host.as_deref(), got[2].tags.len()), (None, 0));
    }

    #[test]
    fn errors_name_the_field() {
        let e = |j: &str| parse(j).unwrap_err().to_string();
        assert_eq!(e(r#"{"serie":[]}"#), "missing required field `series`");
        assert_eq!(e(r#"{"series":{}}"#), "series: expected an array");
        assert_eq!(e("[]"), "expected a JSON object");
        assert_eq!(e(r#"{"series":[1]}"#), "series[0]: expected an object");
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[]},{"points":[]}]}"#),
            "series[1].metric: required string"
        );
        for bad in ["4", "-1", "3.0", "\"gauge\"", "true"] {
            assert_eq!(
                e(&format!(
                    r#"{{"series":[{{"metric":"m","type":{bad},"points":[]}}]}}"#
                )),
                format!("series[0].type: {BAD_TYPE}"),
                "{bad}"
            );
        }
        assert_eq!(
            e(r#"{"series":[{"metric":"m"}]}"#),
            "series[0].points: required array"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[[1,2]]}]}"#),
            r#"series[0].points[0]: expected {"timestamp", "value"}"#
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[{"timestamp":"x","value":1}]}]}"#),
            "series[0].points[0].timestamp: expected a number or null"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[{"timestamp":1,"value":[]}]}]}"#),
            "series[0].points[0].value: expected a number or null"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"resources":{}}]}"#),
            "series[0].resources: expected an array"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"resources":["web-1"]}]}"#),
            "series[0].resources[0]: expected an object"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"resources":[{"name":"web-1"}]}]}"#),
            "series[0].resources[0].type: required string"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"resources":[{"type":"host","name":1}]}]}"#),
            "series[0].resources[0].name: required string"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"tags":"env:prod"}]}"#),
            "series[0].tags: expected an array of strings"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"tags":["a",2]}]}"#),
            "series[0].tags[1]: expected a string"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"interval":"10"}]}"#),
            "series[0].interval: expected a number or null"
        );
        assert!(e("{not json").starts_with("invalid JSON"));
        let bomb = format!(
            r#"{{"series":[{{"metric":"m","points":[],"metadata":{}{}}}]}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(e(&bomb), "JSON nested deeper than 64 levels");
    }

    #[test]
    fn callback_sees_no_series_after_an_error() {
        // Errors abort the request; series before the fault were already handed out.
        let mut body =
            br#"{"series":[{"metric":"ok","points":[]},{"metric":"bad","type":9,"points":[]}]}"#
                .to_vec();
        let mut seen = Vec::new();
        let r = for_each_series(&mut body, &mut simd_json::Buffers::default(), |s| {
            seen.push(s.metric.to_string())
        });
        assert_eq!(r.unwrap_err().status(), 400);
        assert_eq!(seen, ["ok"]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut body = bytes;
            let mut buffers = simd_json::Buffers::default();
            let _ = for_each_series(&mut body, &mut buffers, |_| {});
        }

        #[test]
        fn never_panics_on_near_valid_payloads(
            fields in proptest::collection::vec(proptest::sample::select(vec![
                r#""metric":"m""#, r#""type":3"#, r#""type":7"#, r#""points":[{"timestamp":1,"value":2}]"#,
                r#""points":[{}]"#, r#""points":[[1,2]]"#, r#""resources":[{"type":"host","name":"h"}]"#,
                r#""resources":[{}]"#, r#""tags":["a"]"#, r#""tags":[null]"#, r#""interval":null"#,
                r#""metadata":{"origin":{}}"#,
            ]), 0..8)
        ) {
            let mut body = format!(r#"{{"series":[{{{}}}]}}"#, fields.join(",")).into_bytes();
            let mut buffers = simd_json::Buffers::default();
            let _ = for_each_series(&mut body, &mut buffers, |_| {});
        }
    }
}
