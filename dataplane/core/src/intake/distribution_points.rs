//! `POST /api/v1/distribution_points` (`formats.md` §1.5):
//! `{"series":[{"metric","points":[[ts,[v1,v2,...]]],"host","tags","type":"distribution"}]}`.
//!
//! `metric` and `points` are required; a point is `[timestamp seconds, [raw values...]]`;
//! `type`, when present and not null, must be `"distribution"`; `host` and `tags` may be
//! missing or null. Unknown fields are ignored. The values are raw samples: aggregating them
//! (percentiles, count) is the caller's job (§5.3).
//!
//! Each series is handed to a callback as a borrowed [`DistributionSeries`] whose points are
//! a [`DistributionPoints`] view over three scratch `Vec`s (timestamps, a flat list of every
//! value, and where each point's values end) reused for every series. With the simd-json tape
//! (see [`json`](super::json)) that makes one tape allocation per request and none per series
//! once the scratch has grown to the largest series.

use super::json::{invalid, object, opt_str, parse_tape, req_str, root_array, tags_into};
use super::BodyError;
use simd_json::prelude::*;

/// The points of one distribution series: `(timestamp seconds, raw values)` per point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistributionPoints<'a> {
    timestamps: &'a [f64],
    ends: &'a [usize],
    values: &'a [f64],
}

impl<'a> DistributionPoints<'a> {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Every value of every point, in order.
    pub fn all_values(&self) -> &'a [f64] {
        self.values
    }

    /// The points in order, each as `(timestamp seconds, its values)`.
    pub fn iter(&self) -> impl Iterator<Item = (f64, &'a [f64])> + 'a {
        let values = self.values;
        self.timestamps
            .iter()
            .zip(self.ends.iter())
            .scan(0usize, move |start, (&ts, &end)| {
                let v = values.get(*start..end).unwrap_or(&[]);
                *start = end;
                Some((ts, v))
            })
    }
}

/// One distribution series, borrowed from the parsed body and the parser's scratch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistributionSeries<'a> {
    /// `metric`
    pub metric: &'a str,
    /// `host`
    pub host: Option<&'a str>,
    /// `tags`
    pub tags: &'a [&'a str],
    /// `points`
    pub points: DistributionPoints<'a>,
}

/// What a payload held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DistributionCounts {
    /// Series.
    pub series: usize,
    /// Points (timestamps) over all series.
    pub points: usize,
    /// Raw values over all points.
    pub values: usize,
}

/// Parses a distribution_points payload in place and calls `f` for each series.
///
/// # Errors
/// [`BodyError::Invalid`] naming the first field at fault (`series[0].points[2][1][0]: ...`),
/// or for a body nested deeper than [`DEFAULT_MAX_DEPTH`](super::json::DEFAULT_MAX_DEPTH).
pub fn for_each_series(
    body: &mut [u8],
    buffers: &mut simd_json::Buffers,
    mut f: impl FnMut(&DistributionSeries<'_>),
) -> Result<DistributionCounts, BodyError> {
    let tape = parse_tape(body, buffers)?;
    let series = root_array(tape.as_value(), "series")?;
    let mut tags: Vec<&str> = Vec::with_capacity(16);
    let mut timestamps: Vec<f64> = Vec::with_capacity(8);
    let mut ends: Vec<usize> = Vec::with_capacity(8);
    let mut values: Vec<f64> = Vec::with_capacity(64);
    let mut counts = DistributionCounts::default();
    for (i, s) in series.iter().enumerate() {
        let s = object(s, &|| format!("series[{i}]"))?;
        let metric = req_str(s.get("metric"), &|| format!("series[{i}].metric"))?;
        let at_type = || format!("series[{i}].type");
        if let Some(t) = opt_str(s.get("type"), &at_type)? {
            if t != "distribution" {
                return Err(invalid(&at_type, "expected \"distribution\""));
            }
        }
        let host = opt_str(s.get("host"), &|| format!("series[{i}].host"))?;
        tags.clear();
        tags_into(s.get("tags"), &mut tags, &|| format!("series[{i}].tags"))?;
        let Some(ps) = s.get("points").and_then(|p| p.as_array()) else {
            return Err(invalid(&|| format!("series[{i}].points"), "required array"));
        };
        timestamps.clear();
        ends.clear();
        values.clear();
        for (j, p) in ps.iter().enumerate() {
            let at = || format!("series[{i}].points[{j}]");
            let pair = p
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| invalid(&at, "expected [timestamp, [values...]]"))?;
            let (Some(ts), Some(vs)) = (pair.get(0), pair.get(1)) else {
                return Err(invalid(&at, "expected [timestamp, [values...]]"));
            };
            let ts = ts
                .cast_f64()
                .ok_or_else(|| invalid(&|| format!("{}[0]", at()), "expected a number"))?;
            let vs = vs.as_array().ok_or_else(|| {
                invalid(&|| format!("{}[1]", at()), "expected an array of numbers")
            })?;
            for (k, v) in vs.iter().enumerate() {
                values.push(v.cast_f64().ok_or_else(|| {
                    invalid(&|| format!("{}[1][{k}]", at()), "expected a number")
                })?);
            }
            timestamps.push(ts);
            ends.push(values.len());
        }
        counts.series += 1;
        counts.points += timestamps.len();
        counts.values += values.len();
        f(&DistributionSeries {
            metric,
            host,
            tags: &tags,
            points: DistributionPoints {
                timestamps: &timestamps,
                ends: &ends,
                values: &values,
            },
        });
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Points = Vec<(f64, Vec<f64>)>;

    #[derive(Debug, PartialEq)]
    struct Seen {
        metric: String,
        host: Option<String>,
        tags: Vec<String>,
        points: Points,
    }

    fn parse(json: &str) -> Result<(Vec<Seen>, DistributionCounts), BodyError> {
        let mut body = json.as_bytes().to_vec();
        let mut seen = Vec::new();
        let counts = for_each_series(&mut body, &mut simd_json::Buffers::default(), |s| {
            assert_eq!(s.points.len(), s.points.iter().count());
            assert_eq!(
                s.points.all_values(),
                s.points
                    .iter()
                    .flat_map(|(_, v)| v.iter().copied())
                    .collect::<Vec<_>>()
            );
            seen.push(Seen {
                metric: s.metric.into(),
                host: s.host.map(Into::into),
                tags: s.tags.iter().map(|t| t.to_string()).collect(),
                points: s.points.iter().map(|(t, v)| (t, v.to_vec())).collect(),
            })
        })?;
        Ok((seen, counts))
    }

    #[test]
    fn points_keep_their_own_values() {
        let (seen, counts) = parse(
            r#"{"series":[
              {"metric":"a","points":[[1700000000,[0.1,0.2]],[1700000010.5,[]],[1700000020,[3]]],
               "host":"h","tags":["t:1"],"type":"distribution"},
              {"metric":"b","points":[],"host":null,"tags":null,"type":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![
                Seen {
                    metric: "a".into(),
                    host: Some("h".into()),
                    tags: vec!["t:1".into()],
                    points: vec![
                        (1.7e9, vec![0.1, 0.2]),
                        (1_700_000_010.5, vec![]),
                        (1_700_000_020.0, vec![3.0])
                    ],
                },
                Seen {
                    metric: "b".into(),
                    host: None,
                    tags: vec![],
                    points: vec![],
                }
            ]
        );
        assert_eq!(
            counts,
            DistributionCounts {
                series: 2,
                points: 3,
                values: 3
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = |j: &str| parse(j).unwrap_err().to_string();
        assert_eq!(e(r#"{}"#), "missing required field `series`");
        assert_eq!(e(r#"{"series":[[]]}"#), "series[0]: expected an object");
        assert_eq!(
            e(r#"{"series":[{"points":[]}]}"#),
            "series[0].metric: required string"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m"}]}"#),
            "series[0].points: required array"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"type":"gauge"}]}"#),
            "series[0].type: expected \"distribution\""
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"type":1}]}"#),
            "series[0].type: expected a string or null"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[[1,[1]],[1]]}]}"#),
            "series[0].points[1]: expected [timestamp, [values...]]"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[{"t":1}]}]}"#),
            "series[0].points[0]: expected [timestamp, [values...]]"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[[null,[1]]]}]}"#),
            "series[0].points[0][0]: expected a number"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[[1,2]]}]}"#),
            "series[0].points[0][1]: expected an array of numbers"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[[1,[1,"2"]]]}]}"#),
            "series[0].points[0][1][1]: expected a number"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"host":5}]}"#),
            "series[0].host: expected a string or null"
        );
        assert_eq!(
            e(r#"{"series":[{"metric":"m","points":[],"tags":[[]]}]}"#),
            "series[0].tags[0]: expected a string"
        );
        assert_eq!(
            e(&format!(
                r#"{{"series":[{{"metric":"m","points":[[1,{}1{}]]}}]}}"#,
                "[".repeat(60),
                "]".repeat(60)
            )),
            "JSON nested deeper than 64 levels"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut body = bytes;
            let _ = for_each_series(&mut body, &mut simd_json::Buffers::default(), |_| {});
        }

        #[test]
        fn counts_and_views_match_the_input(
            series in proptest::collection::vec(
                proptest::collection::vec((0u32..2_000_000_000, proptest::collection::vec(-1e6f64..1e6, 0..5)), 0..5),
                0..5)
        ) {
            let json = serde_json::json!({"series": series.iter().enumerate().map(|(i, ps)| serde_json::json!({
                "metric": format!("m{i}"),
                "points": ps.iter().map(|(t, v)| serde_json::json!([t, v])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()});
            let (seen, counts) = parse(&json.to_string()).unwrap();
            proptest::prop_assert_eq!(counts.series, series.len());
            proptest::prop_assert_eq!(counts.points, series.iter().map(Vec::len).sum::<usize>());
            proptest::prop_assert_eq!(counts.values, series.iter().flatten().map(|(_, v)| v.len()).sum::<usize>());
            for (got, want) in seen.iter().zip(&series) {
                let want: Points = want.iter().map(|(t, v)| (f64::from(*t), v.clone())).collect();
                proptest::prop_assert_eq!(&got.points, &want);
            }
        }
    }
}
