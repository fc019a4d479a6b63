//! What every intake JSON parser shares: the nesting guard, the in-place simd-json parse into
//! a tape, and field accessors whose errors name the field (`series[3].points[0]: ...`).
//!
//! **Why a nesting guard.** simd-json 0.15 builds its tape iteratively, but turning the tape
//! into a DOM (`simd_json::borrowed::to_value_with_buffers`) and dropping that DOM both
//! recurse once per level, and no depth limit exists: a 100 000-deep `[[[[...` body (200 KB,
//! far under any size limit) aborts the whole process with a stack overflow, even in a
//! release build on an 8 MiB main thread stack. [`check_depth`] rejects such bodies first, in
//! one pass that skips the bytes of strings (honouring backslash escapes) so brackets inside
//! strings do not count.
//!
//! Every intake parser ([`series_v1`](super::series_v1), [`series_v2`](super::series_v2),
//! [`check_run`](super::check_run), [`events`](super::events),
//! [`distribution_points`](super::distribution_points)) reads the tape directly (a flat
//! `Vec` of nodes that views walk without recursion or allocation), so a request costs one
//! tape allocation and no allocation per series; each applies the guard, so every entry
//! point has the same limit (a DOM is never built, but the guard also bounds the tape walk).

use super::BodyError;
use simd_json::prelude::*;
use simd_json::tape::{Array, Object, Tape, Value};

/// The nesting limit every intake parser applies. Datadog payloads nest at most 6 levels
/// (`distribution_points`: object, `series`, series, `points`, point, values).
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Rejects `body` if its arrays and objects nest deeper than `max_depth` (the top-level value
/// is level 1). Brackets inside strings are skipped; malformed JSON is left for the parser to
/// reject. One pass, no allocation, stops at the first level too deep.
///
/// # Errors
/// [`BodyError::Invalid`] `"JSON nested deeper than N levels"`.
pub fn check_depth(body: &[u8], max_depth: usize) -> Result<(), BodyError> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&b) = body.get(i) {
        i += 1;
        match b {
            b'"' => loop {
                // Inside a string: jump to the next quote or backslash.
                let Some(off) = body
                    .get(i..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                else {
                    return Ok(()); // unterminated string: the parser reports it
                };
                let at = i + off;
                if body.get(at) == Some(&b'\\') {
                    i = at + 2; // skip the escaped byte, whatever it is
                } else {
                    i = at + 1;
                    break;
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(BodyError::Invalid(format!(
                        "JSON nested deeper than {max_depth} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Applies the nesting guard and parses `body` in place into a tape (strings are unescaped
/// into `body` and borrowed from it).
pub(crate) fn parse_tape<'b>(
    body: &'b mut [u8],
    buffers: &mut simd_json::Buffers,
) -> Result<Tape<'b>, BodyError> {
    check_depth(body, DEFAULT_MAX_DEPTH)?;
    simd_json::to_tape_with_buffers(body, buffers)
        .map_err(|e| BodyError::Invalid(format!("invalid JSON: {e}")))
}

/// Builds the lazily formatted path of a field, only called on error.
pub(crate) type At<'a> = &'a dyn Fn() -> String;

pub(crate) fn invalid(at: At<'_>, what: &str) -> BodyError {
    BodyError::Invalid(format!("{}: {what}", at()))
}

fn is_null(v: &Value<'_, '_>) -> bool {
    v.as_null().is_some()
}

/// The top-level object's array field `name` (`{"series":[...]}`).
pub(crate) fn root_array<'t, 'i>(
    root: Value<'t, 'i>,
    name: &str,
) -> Result<Array<'t, 'i>, BodyError> {
    let Some(obj) = root.as_object() else {
        return Err(BodyError::Invalid("expected a JSON object".into()));
    };
    match obj.get(name) {
        Some(v) => v
            .as_array()
            .ok_or_else(|| BodyError::Invalid(format!("{name}: expected an array"))),
        None => Err(BodyError::Invalid(format!(
            "missing required field `{name}`"
        ))),
    }
}

/// `v` as an object.
pub(crate) fn object<'t, 'i>(v: Value<'t, 'i>, at: At<'_>) -> Result<Object<'t, 'i>, BodyError> {
    v.as_object()
        .ok_or_else(|| invalid(at, "expected an object"))
}

/// A string that must be present and not null.
pub(crate) fn req_str<'i>(v: Option<Value<'_, 'i>>, at: At<'_>) -> Result<&'i str, BodyError> {
    v.and_then(|v| v.into_string())
        .ok_or_else(|| invalid(at, "required string"))
}

/// A string, or `None` when missing or null.
pub(crate) fn opt_str<'i>(
    v: Option<Value<'_, 'i>>,
    at: At<'_>,
) -> Result<Option<&'i str>, BodyError> {
    match v {
        None => Ok(None),
        Some(v) if is_null(&v) => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .ok_or_else(|| invalid(at, "expected a string or null")),
    }
}

/// A number (integer or float), or `None` when missing or null.
pub(crate) fn opt_num(v: Option<Value<'_, '_>>, at: At<'_>) -> Result<Option<f64>, BodyError> {
    match v {
        None => Ok(None),
        Some(v) if is_null(&v) => Ok(None),
        Some(v) => v
            .cast_f64()
            .map(Some)
            .ok_or_else(|| invalid(at, "expected a number or null")),
    }
}

/// An integer, or `None` when missing or null (floats are rejected).
pub(crate) fn opt_int(v: Option<Value<'_, '_>>, at: At<'_>) -> Result<Option<i64>, BodyError> {
    match v {
        None => Ok(None),
        Some(v) if is_null(&v) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(at, "expected an integer or null")),
    }
}

/// Appends the strings of the array `v` (missing or null: none) to `out`.
pub(crate) fn tags_into<'i>(
    v: Option<Value<'_, 'i>>,
    out: &mut Vec<&'i str>,
    at: At<'_>,
) -> Result<(), BodyError> {
    let Some(v) = v else { return Ok(()) };
    if is_null(&v) {
        return Ok(());
    }
    let Some(tags) = v.as_array() else {
        return Err(invalid(at, "expected an array of strings"));
    };
    for (j, t) in tags.iter().enumerate() {
        match t.into_string() {
            Some(t) => out.push(t),
            None => {
                return Err(BodyError::Invalid(format!(
                    "{}[{j}]: expected a string",
                    at()
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Vec<u8> {
        let mut b = vec![b'['; depth];
        b.extend(std::iter::repeat_n(b']', depth));
        b
    }

    #[test]
    fn depth_limit_is_inclusive() {
        assert_eq!(check_depth(&nested(64), 64), Ok(()));
        assert_eq!(
            check_depth(&nested(65), 64),
            Err(BodyError::Invalid(
                "JSON nested deeper than 64 levels".into()
            ))
        );
        assert_eq!(check_depth(b"{\"a\":[{}]}", 3), Ok(()));
        assert!(check_depth(b"{\"a\":[{}]}", 2).is_err());
    }

    #[test]
    fn siblings_do_not_add_up() {
        let flat = b"[[],[],[],[],[]]".repeat(1000);
        assert_eq!(check_depth(&flat, 2), Ok(()));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let s = br#"{"a":"[[[[{{{{","b":["x\"[[[["],"c":"\\","d":[1]}"#;
        assert_eq!(check_depth(s, 2), Ok(()));
        // The escaped quote does not end the string; the one after `\\` does.
        assert!(check_depth(br#"["\\",[[]]]"#, 2).is_err());
        assert_eq!(check_depth(br#"["\"[[[["]"#, 1), Ok(()));
    }

    #[test]
    fn malformed_input_is_left_to_the_parser() {
        for b in [&b"]]]]"[..], b"\"unterminated [[[", b"\"\\", b"[\"a\\"] {
            assert_eq!(check_depth(b, 1), Ok(()), "{b:?}");
        }
    }

    #[test]
    fn a_nesting_bomb_is_rejected_before_parsing() {
        // One million levels: simd-json's DOM builder would overflow the stack on this.
        let mut body = nested(1_000_000);
        let mut buffers = simd_json::Buffers::default();
        assert_eq!(
            parse_tape(&mut body, &mut buffers).unwrap_err(),
            BodyError::Invalid("JSON nested deeper than 64 levels".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn matches_a_naive_depth_count(bytes in proptest::collection::vec(
            proptest::sample::select(b"[]{}\"\\a,:".to_vec()), 0..64)) {
            // Reference: the same definition written as a plain state machine.
            let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
            for &b in &bytes {
                if in_str {
                    if esc { esc = false } else if b == b'\\' { esc = true } else if b == b'"' { in_str = false }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'[' | b'{' => { depth += 1; max = max.max(depth) }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            for limit in 0..8 {
                proptest::prop_assert_eq!(check_depth(&bytes, limit).is_ok(), max <= limit);
            }
        }
    }
}
