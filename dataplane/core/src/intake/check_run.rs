//! `POST /api/v1/check_run` (service checks, `formats.md` §1.6): a JSON array of
//! `{check, host_name, status, tags, timestamp?, message?}` (the Agent and
//! datadog-api-client), or one such object on its own (datadogpy). Both are accepted.
//!
//! `check` (string) and `status` (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) are required;
//! `host_name`, `tags`, `timestamp` (seconds, integer or float) and `message` may be
//! missing or null. The spec also calls `host_name` and `tags` required, but a check without
//! them is still meaningful, so they are not enforced. Unknown fields are ignored.
//!
//! Each check is handed to a callback as a borrowed [`ServiceCheck`];
//! [`ServiceCheck::as_gauge`] views it as the gauge of `formats.md` §5.3 for the translator.
//! Parsed in place into a simd-json tape (see [`json`](super::json)): one tape allocation per
//! request and a tag `Vec` reused for every check, no allocation per check.

use super::json::{invalid, opt_num, opt_str, parse_tape, req_str, tags_into};
use super::BodyError;
use crate::translate::DdSeries;
use simd_json::prelude::*;
use simd_json::tape::Value;

/// A service check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    /// 0
    Ok = 0,
    /// 1
    Warning = 1,
    /// 2
    Critical = 2,
    /// 3
    Unknown = 3,
}

impl CheckStatus {
    /// The status for a wire code (0..=3).
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(CheckStatus::Ok),
            1 => Some(CheckStatus::Warning),
            2 => Some(CheckStatus::Critical),
            3 => Some(CheckStatus::Unknown),
            _ => None,
        }
    }

    /// The wire code (0..=3), which is also the gauge value.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Datadog's name for it (`OK`, `WARNING`, `CRITICAL`, `UNKNOWN`).
    pub const fn name(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK",
            CheckStatus::Warning => "WARNING",
            CheckStatus::Critical => "CRITICAL",
            CheckStatus::Unknown => "UNKNOWN",
        }
    }
}

/// One service check, borrowed from the parsed body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceCheck<'a> {
    /// `check`: the check's name.
    pub check: &'a str,
    /// `host_name`
    pub host_name: Option<&'a str>,
    /// `status`
    pub status: CheckStatus,
    /// `tags`
    pub tags: &'a [&'a str],
    /// `timestamp` in seconds (`None`: the receiver's time applies).
    pub timestamp: Option<f64>,
    /// `message`
    pub message: Option<&'a str>,
}

impl<'a> ServiceCheck<'a> {
    /// The check as the gauge of `formats.md` §5.3: named after the check, value = status
    /// code, `host` = `host_name`, the check's tags, one point at `timestamp` (or `now_secs`
    /// when the check has none). `point` is caller-owned scratch (a stack array is enough), so
    /// nothing is allocated; feed the result to
    /// [`Translator::push`](crate::translate::Translator::push).
    pub fn as_gauge<'s>(
        &'s self,
        now_secs: f64,
        point: &'s mut [[Option<f64>; 2]; 1],
    ) -> DdSeries<'s> {
        *point = [[
            Some(self.timestamp.unwrap_or(now_secs)),
            Some(f64::from(self.status.code())),
        ]];
        DdSeries {
            metric: self.check,
            kind: Some("gauge"),
            interval: None,
            host: self.host_name,
            device: None,
            tags: self.tags,
            points: point,
        }
    }
}

/// Parses a check_run body (an array of checks, or a single check object) in place and calls
/// `f` for each check. Returns the number of checks.
///
/// # Errors
/// [`BodyError::Invalid`] naming the first field at fault (`[2].status: ...` in an array,
/// `status: ...` for a single object), or for a body nested deeper than
/// [`DEFAULT_MAX_DEPTH`](super::json::DEFAULT_MAX_DEPTH).
pub fn for_each_check(
    body: &mut [u8],
    buffers: &mut simd_json::Buffers,
    mut f: impl FnMut(&ServiceCheck<'_>),
) -> Result<usize, BodyError> {
    let tape = parse_tape(body, buffers)?;
    let root = tape.as_value();
    let mut tags: Vec<&str> = Vec::with_capacity(16);
    if let Some(checks) = root.as_array() {
        let mut n = 0;
        for (i, c) in checks.iter().enumerate() {
            one(c, Some(i), &mut tags, &mut f)?;
            n += 1;
        }
        Ok(n)
    } else if root.as_object().is_some() {
        one(root, None, &mut tags, &mut f)?;
        Ok(1)
    } else {
        Err(BodyError::Invalid(
            "expected a service check object or an array of them".into(),
        ))
    }
}

/// The path of `field` in check `idx` (`None`: the body is a single check).
fn path(idx: Option<usize>, field: &str) -> String {
    match (idx, field) {
        (Some(i), "") => format!("[{i}]"),
        (Some(i), f) => format!("[{i}].{f}"),
        (None, f) => f.to_string(),
    }
}

fn one<'i>(
    v: Value<'_, 'i>,
    idx: Option<usize>,
    tags: &mut Vec<&'i str>,
    f: &mut impl FnMut(&ServiceCheck<'_>),
) -> Result<(), BodyError> {
    let Some(c) = v.as_object() else {
        return Err(invalid(&|| path(idx, ""), "expected an object"));
    };
    let check = req_str(c.get("check"), &|| path(idx, "check"))?;
    let at_status = || path(idx, "status");
    let status = c
        .get("status")
        .and_then(|s| s.as_i64())
        .and_then(CheckStatus::from_code)
        .ok_or_else(|| {
            invalid(
                &at_status,
                "required, one of 0 (OK), 1 (WARNING), 2 (CRITICAL), 3 (UNKNOWN)",
            )
        })?;
    let host_name = opt_str(c.get("host_name"), &|| path(idx, "host_name"))?;
    let timestamp = opt_num(c.get("timestamp"), &|| path(idx, "timestamp"))?;
    let message = opt_str(c.get("message"), &|| path(idx, "message"))?;
    tags.clear();
    tags_into(c.get("tags"), tags, &|| path(idx, "tags"))?;
    f(&ServiceCheck {
        check,
        host_name,
        status,
        tags,
        timestamp,
        message,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Seen {
        check: String,
        host_name: Option<String>,
        status: CheckStatus,
        tags: Vec<String>,
        timestamp: Option<f64>,
        message: Option<String>,
    }

    fn parse(json: &str) -> Result<Vec<Seen>, BodyError> {
        let mut body = json.as_bytes().to_vec();
        let mut seen = Vec::new();
        let n = for_each_check(&mut body, &mut simd_json::Buffers::default(), |c| {
            seen.push(Seen {
                check: c.check.into(),
                host_name: c.host_name.map(Into::into),
                status: c.status,
                tags: c.tags.iter().map(|t| t.to_string()).collect(),
                timestamp: c.timestamp,
                message: c.message.map(Into::into),
            })
        })?;
        assert_eq!(n, seen.len());
        Ok(seen)
    }

    #[test]
    fn accepts_an_array_or_one_object() {
        let one = parse(r#"{"check":"a","status":2,"host_name":null,"timestamp":1.5}"#).unwrap();
        assert_eq!(
            one,
            vec![Seen {
                check: "a".into(),
                host_name: None,
                status: CheckStatus::Critical,
                tags: vec![],
                timestamp: Some(1.5),
                message: None,
            }]
        );
        let many = parse(
            r#"[{"check":"a","status":0,"tags":["x:1"]},{"check":"b","status":3,"tags":["y"],"message":"m"}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].tags, ["x:1"]);
        assert_eq!(
            (
                many[1].status,
                many[1].tags.clone(),
                many[1].message.as_deref()
            ),
            (CheckStatus::Unknown, vec!["y".to_string()], Some("m"))
        );
        assert_eq!(parse("[]").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = |j: &str| parse(j).unwrap_err().to_string();
        let status = "required, one of 0 (OK), 1 (WARNING), 2 (CRITICAL), 3 (UNKNOWN)";
        assert_eq!(e(r#"{"status":0}"#), "check: required string");
        assert_eq!(e(r#"{"check":"a"}"#), format!("status: {status}"));
        assert_eq!(
            e(r#"[{"check":"a","status":0},{"check":"b","status":4}]"#),
            format!("[1].status: {status}")
        );
        assert_eq!(
            e(r#"[{"check":"a","status":"0"}]"#),
            format!("[0].status: {status}")
        );
        assert_eq!(
            e(r#"[{"check":"a","status":1.0}]"#),
            format!("[0].status: {status}")
        );
        assert_eq!(
            e(r#"[{"check":"a","status":0}, 7]"#),
            "[1]: expected an object"
        );
        assert_eq!(
            e(r#"[{"check":"a","status":0,"host_name":1}]"#),
            "[0].host_name: expected a string or null"
        );
        assert_eq!(
            e(r#"{"check":"a","status":0,"tags":[1]}"#),
            "tags[0]: expected a string"
        );
        assert_eq!(
            e(r#"{"check":"a","status":0,"timestamp":"now"}"#),
            "timestamp: expected a number or null"
        );
        assert_eq!(
            e(r#"{"check":"a","status":0,"message":{}}"#),
            "message: expected a string or null"
        );
        assert_eq!(
            e("\"ok\""),
            "expected a service check object or an array of them"
        );
        assert!(e("[").starts_with("invalid JSON"));
        assert_eq!(
            e(&format!("[{}]", "[".repeat(64) + &"]".repeat(64))),
            "JSON nested deeper than 64 levels"
        );
    }

    #[test]
    fn a_check_is_a_gauge_of_its_status() {
        let mut body = br#"[{"check":"app.ok","host_name":"web-1","status":2,"tags":["env:prod"]},
                 {"check":"db.ok","status":1,"timestamp":1700000000}]"#
            .to_vec();
        let mut t = crate::translate::Translator::new(Default::default());
        for_each_check(&mut body, &mut simd_json::Buffers::default(), |c| {
            let mut point = [[None; 2]];
            t.push(&c.as_gauge(1_800_000_000.0, &mut point));
        })
        .unwrap();
        let mut out = Vec::new();
        t.finish(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"gauge":[
                {"metric":"app.ok","value":2,"timestamp":1_800_000_000_000_i64,
                 "dimensions":{"env":"prod","host":"web-1"}},
                {"metric":"db.ok","value":1,"timestamp":1_700_000_000_000_i64,"dimensions":{}}
            ]})
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut body = bytes;
            let _ = for_each_check(&mut body, &mut simd_json::Buffers::default(), |_| {});
        }

        #[test]
        fn never_panics_on_near_valid_payloads(
            fields in proptest::collection::vec(proptest::sample::select(vec![
                r#""check":"c""#, r#""check":null"#, r#""status":1"#, r#""status":-1"#,
                r#""status":18446744073709551615"#, r#""host_name":"h""#, r#""tags":["a"]"#,
                r#""tags":{}"#, r#""timestamp":1e308"#, r#""message":"m""#,
            ]), 0..6),
            array in proptest::prelude::any::<bool>(),
        ) {
            let obj = format!("{{{}}}", fields.join(","));
            let mut body = if array { format!("[{obj},{obj}]") } else { obj }.into_bytes();
            let _ = for_each_check(&mut body, &mut simd_json::Buffers::default(), |_| {});
        }
    }
}
