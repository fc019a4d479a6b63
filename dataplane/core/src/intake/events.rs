//! `POST /api/v1/events` (`formats.md` §1.7): one event object, `{"title","text",
//! "date_happened","host","device_name","priority","alert_type","aggregation_key",
//! "source_type_name","related_event_id","tags"}`, handed to a callback as a borrowed
//! [`Event`].
//!
//! `title` and `text` are required strings; everything else may be missing or null.
//! Limits from the spec (`EventCreateRequest`, `formats.md` §1.2) are enforced as a 400
//! naming the field rather than truncated silently: `text` at most [`MAX_TEXT_CHARS`]
//! characters, `aggregation_key` at most [`MAX_AGGREGATION_KEY_CHARS`]. The title's
//! documented 100-character limit is *not* enforced: Datadog's own client test suite posts a
//! longer title and expects 200 OK ("Post an event with a long title returns OK response").
//! `priority` and `alert_type` must be one of the spec's values. The Agent's events travel
//! over `/intake/`, not here.
//!
//! Parsed in place into a simd-json tape (see [`json`](super::json)); the only allocations
//! are the tape and the tag `Vec`, once per request.

use super::json::{invalid, opt_int, opt_num, opt_str, parse_tape, req_str, tags_into};
use super::BodyError;

/// The spec's limit on `text`, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// The spec's limit on `aggregation_key`, in characters.
pub const MAX_AGGREGATION_KEY_CHARS: usize = 100;

/// Accepted `priority` values.
pub const PRIORITIES: [&str; 2] = ["normal", "low"];
/// Accepted `alert_type` values.
pub const ALERT_TYPES: [&str; 7] = [
    "error",
    "warning",
    "info",
    "success",
    "user_update",
    "recommendation",
    "snapshot",
];

/// One event, borrowed from the parsed body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// `title`
    pub title: &'a str,
    /// `text` (Markdown when wrapped in `%%% ... %%%`), at most [`MAX_TEXT_CHARS`] characters.
    pub text: &'a str,
    /// `date_happened`, POSIX seconds (`None`: the receiver's time applies).
    pub date_happened: Option<f64>,
    /// `host`
    pub host: Option<&'a str>,
    /// `device_name`
    pub device_name: Option<&'a str>,
    /// `priority`, one of [`PRIORITIES`].
    pub priority: Option<&'a str>,
    /// `alert_type`, one of [`ALERT_TYPES`].
    pub alert_type: Option<&'a str>,
    /// `aggregation_key`, at most [`MAX_AGGREGATION_KEY_CHARS`] characters.
    pub aggregation_key: Option<&'a str>,
    /// `source_type_name`
    pub source_type_name: Option<&'a str>,
    /// `related_event_id`
    pub related_event_id: Option<i64>,
    /// `tags`
    pub tags: &'a [&'a str],
}

fn too_long(s: &str, max: usize) -> bool {
    // Bytes >= chars, so the count is only needed past `max` bytes.
    s.len() > max && s.chars().count() > max
}

fn one_of<'i>(
    v: Option<&'i str>,
    allowed: &[&str],
    field: &'static str,
) -> Result<Option<&'i str>, BodyError> {
    match v {
        Some(s) if !allowed.contains(&s) => Err(invalid(
            &|| field.to_string(),
            &format!("expected one of {}", allowed.join(", ")),
        )),
        v => Ok(v),
    }
}

/// Parses an event body in place and calls `f` with it; returns what `f` returns.
///
/// # Errors
/// [`BodyError::Invalid`] naming the first field at fault (`text: longer than 4000
/// characters`), or for a body nested deeper than
/// [`DEFAULT_MAX_DEPTH`](super::json::DEFAULT_MAX_DEPTH). `f` is not called then.
pub fn with_event<R>(
    body: &mut [u8],
    buffers: &mut simd_json::Buffers,
    f: impl FnOnce(&Event<'_>) -> R,
) -> Result<R, BodyError> {
    let tape = parse_tape(body, buffers)?;
    let Some(e) = tape.as_value().as_object() else {
        return Err(BodyError::Invalid("expected a JSON object".into()));
    };
    let s = |field: &'static str| opt_str(e.get(field), &|| field.to_string());
    let title = req_str(e.get("title"), &|| "title".into())?;
    let text = req_str(e.get("text"), &|| "text".into())?;
    if too_long(text, MAX_TEXT_CHARS) {
        return Err(invalid(
            &|| "text".into(),
            &format!("longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    let aggregation_key = s("aggregation_key")?;
    if aggregation_key.is_some_and(|k| too_long(k, MAX_AGGREGATION_KEY_CHARS)) {
        return Err(invalid(
            &|| "aggregation_key".into(),
            &format!("longer than {MAX_AGGREGATION_KEY_CHARS} characters"),
        ));
    }
    let mut tags: Vec<&str> = Vec::new();
    tags_into(e.get("tags"), &mut tags, &|| "tags".into())?;
    let event = Event {
        title,
        text,
        date_happened: opt_num(e.get("date_happened"), &|| "date_happened".into())?,
        host: s("host")?,
        device_name: s("device_name")?,
        priority: one_of(s("priority")?, &PRIORITIES, "priority")?,
        alert_type: one_of(s("alert_type")?, &ALERT_TYPES, "alert_type")?,
        aggregation_key,
        source_type_name: s("source_type_name")?,
        related_event_id: opt_int(e.get("related_event_id"), &|| "related_event_id".into())?,
        tags: &tags,
    };
    Ok(f(&event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<R>(json: &str, f: impl FnOnce(&Event<'_>) -> R) -> Result<R, BodyError> {
        let mut body = json.as_bytes().to_vec();
        with_event(&mut body, &mut simd_json::Buffers::default(), f)
    }

    fn err(json: &str) -> String {
        parse(json, |_| ()).unwrap_err().to_string()
    }

    #[test]
    fn minimal_and_full_events() {
        let min = parse(r#"{"title":"t","text":""}"#, |e| format!("{e:?}")).unwrap();
        assert_eq!(
            min,
            format!(
                "{:?}",
                Event {
                    title: "t",
                    text: "",
                    date_happened: None,
                    host: None,
                    device_name: None,
                    priority: None,
                    alert_type: None,
                    aggregation_key: None,
                    source_type_name: None,
                    related_event_id: None,
                    tags: &[],
                }
            )
        );
        let full = parse(
            r#"{"title":"Disk \"full\"","text":"a\nb","date_happened":1700000000,"host":"web-1",
                "device_name":"sda1","priority":"low","alert_type":"user_update","aggregation_key":"k",
                "source_type_name":"nagios","related_event_id":42,"tags":["env:prod","x"],
                "unknown":{"a":[1]}}"#,
            |e| {
                assert_eq!(
                    *e,
                    Event {
                        title: "Disk \"full\"",
                        text: "a\nb",
                        date_happened: Some(1.7e9),
                        host: Some("web-1"),
                        device_name: Some("sda1"),
                        priority: Some("low"),
                        alert_type: Some("user_update"),
                        aggregation_key: Some("k"),
                        source_type_name: Some("nagios"),
                        related_event_id: Some(42),
                        tags: &["env:prod", "x"],
                    }
                );
                7
            },
        );
        assert_eq!(full, Ok(7));
    }

    #[test]
    fn text_limit_counts_characters_not_bytes() {
        let at_limit = "é".repeat(MAX_TEXT_CHARS); // 8000 bytes, 4000 chars
        let ok = format!(r#"{{"title":"t","text":"{at_limit}"}}"#);
        assert_eq!(parse(&ok, |e| e.text.chars().count()), Ok(MAX_TEXT_CHARS));
        let over = format!(r#"{{"title":"t","text":"{at_limit}x"}}"#);
        assert_eq!(err(&over), "text: longer than 4000 characters");
        let key = "k".repeat(MAX_AGGREGATION_KEY_CHARS + 1);
        assert_eq!(
            err(&format!(
                r#"{{"title":"t","text":"","aggregation_key":"{key}"}}"#
            )),
            "aggregation_key: longer than 100 characters"
        );
        // The title limit is documented but not enforced by Datadog.
        let title = "t".repeat(300);
        let long_title = format!(r#"{{"title":"{title}","text":""}}"#);
        assert_eq!(parse(&long_title, |e| e.title.len()), Ok(300));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"text":"x"}"#), "title: required string");
        assert_eq!(err(r#"{"title":"t","text":null}"#), "text: required string");
        assert_eq!(
            err(r#"{"title":"t","text":"","priority":"high"}"#),
            "priority: expected one of normal, low"
        );
        assert_eq!(
            err(r#"{"title":"t","text":"","alert_type":"fatal"}"#),
            "alert_type: expected one of error, warning, info, success, user_update, recommendation, snapshot"
        );
        assert_eq!(
            err(r#"{"title":"t","text":"","date_happened":"yesterday"}"#),
            "date_happened: expected a number or null"
        );
        assert_eq!(
            err(r#"{"title":"t","text":"","related_event_id":1.5}"#),
            "related_event_id: expected an integer or null"
        );
        assert_eq!(
            err(r#"{"title":"t","text":"","host":["a"]}"#),
            "host: expected a string or null"
        );
        assert_eq!(
            err(r#"{"title":"t","text":"","tags":[true]}"#),
            "tags[0]: expected a string"
        );
        assert_eq!(
            err(r#"[{"title":"t","text":""}]"#),
            "expected a JSON object"
        );
        assert!(err("").starts_with("invalid JSON"));
        let bomb = format!(
            r#"{{"title":"t","text":"","x":{}{}}}"#,
            "{\"a\":".repeat(70),
            "}".repeat(70)
        );
        assert_eq!(err(&bomb), "JSON nested deeper than 64 levels");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut body = bytes;
            let _ = with_event(&mut body, &mut simd_json::Buffers::default(), |_| ());
        }

        #[test]
        fn text_over_the_limit_is_always_rejected(len in 0usize..4100, wide in proptest::prelude::any::<bool>()) {
            let c = if wide { "ü" } else { "a" };
            let mut body = format!(r#"{{"title":"t","text":"{}"}}"#, c.repeat(len)).into_bytes();
            let r = with_event(&mut body, &mut simd_json::Buffers::default(), |e| e.text.chars().count());
            if len > MAX_TEXT_CHARS {
                proptest::prop_assert_eq!(r.unwrap_err().status(), 400);
            } else {
                proptest::prop_assert_eq!(r, Ok(len));
            }
        }
    }
}
