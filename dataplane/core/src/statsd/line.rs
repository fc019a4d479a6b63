//! The metric line grammar:
//! `name:value[:value...]|type[|@rate][|#tag,k:v][|c:container][|T<ts>]`.
//!
//! Optional fields after the type may come in any order; unknown fields (`e:`, `card:`, ...)
//! are ignored, as the Datadog Agent does. The first value is parsed here, so a line that
//! returns `Ok` is fully valid; packed values (`t:1:2:3|ms`, DogStatsD v1.1) are validated here
//! and iterated again by [`MetricLine::values`]. Empty packed values (`21::22`) are skipped.

use super::LineError;
use memchr::memchr;

/// The statsd type of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// `c`: a counter, summed (scaled by 1/rate) over the interval.
    Counter,
    /// `g`: a gauge, the last value (or a delta, in the Etsy dialect).
    Gauge,
    /// `ms`: a timer.
    Timer,
    /// `h`: a histogram (aggregated as a timer, as gostatsd does).
    Histogram,
    /// `s`: a set of distinct values.
    Set,
    /// `d`: a distribution (aggregated as a timer, as gostatsd does).
    Distribution,
}

impl MetricKind {
    fn from_bytes(b: &[u8]) -> Result<Self, LineError> {
        match b {
            b"c" => Ok(MetricKind::Counter),
            b"g" => Ok(MetricKind::Gauge),
            b"ms" => Ok(MetricKind::Timer),
            b"h" => Ok(MetricKind::Histogram),
            b"s" => Ok(MetricKind::Set),
            b"d" => Ok(MetricKind::Distribution),
            b"" => Err(LineError::MissingType),
            _ => Err(LineError::UnknownType),
        }
    }

    /// The wire letter(s) of this type.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "c",
            MetricKind::Gauge => "g",
            MetricKind::Timer => "ms",
            MetricKind::Histogram => "h",
            MetricKind::Set => "s",
            MetricKind::Distribution => "d",
        }
    }
}

/// A decoded metric line, borrowing from the datagram.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLine<'a> {
    /// The metric name (non-empty).
    pub name: &'a str,
    /// The raw value field (`1`, `1:2:3`, or a set member).
    pub raw_values: &'a str,
    /// The first numeric value (0 for sets).
    pub first: f64,
    /// Whether the first value carried an explicit `+` or `-` sign (Etsy gauge deltas).
    pub first_signed: bool,
    /// Whether more than one value is packed in the line.
    pub packed: bool,
    /// The statsd type.
    pub kind: MetricKind,
    /// The sample rate in (0, 1]; 1 when absent.
    pub sample_rate: f64,
    /// The raw tag list after `#` (comma separated; may be empty).
    pub tags: &'a str,
    /// The container id from `c:` (DogStatsD v1.2), empty when absent.
    pub container: &'a str,
    /// The `T<unix seconds>` timestamp (DogStatsD v1.3), if present.
    pub timestamp: Option<u64>,
}

impl<'a> MetricLine<'a> {
    /// Every numeric value of the line with its explicit-sign flag (one for unpacked lines).
    /// Values were validated when the line was parsed, so none is skipped here.
    pub fn values(&self) -> impl Iterator<Item = (f64, bool)> + 'a {
        let packed = self.packed;
        let first = (self.first, self.first_signed);
        let raw = self.raw_values;
        let single = (!packed).then_some(first);
        let many = packed.then(|| {
            raw.split(':')
                .filter(|v| !v.is_empty())
                .filter_map(parse_value)
        });
        single.into_iter().chain(many.into_iter().flatten())
    }
}

fn parse_value(v: &str) -> Option<(f64, bool)> {
    let signed = matches!(v.as_bytes().first(), Some(b'+' | b'-'));
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(|x| (x, signed))
}

fn check_value(v: &str) -> Result<(f64, bool), LineError> {
    let signed = matches!(v.as_bytes().first(), Some(b'+' | b'-'));
    // `str::parse` accepts "inf"/"nan"/"infinity": reject them with their own reason.
    let x: f64 = v.parse().map_err(|_| LineError::InvalidValue)?;
    if !x.is_finite() {
        return Err(LineError::NonFiniteValue);
    }
    Ok((x, signed))
}

fn utf8(b: &[u8]) -> Result<&str, LineError> {
    simdutf8::basic::from_utf8(b).map_err(|_| LineError::InvalidUtf8)
}

/// Parses one metric line (without its terminator).
///
/// # Errors
/// The [`LineError`] naming the first thing wrong with the line.
pub fn parse_metric(line: &[u8]) -> Result<MetricLine<'_>, LineError> {
    parse_metric_str(utf8(line)?)
}

/// The `|`-separated fields of `s`, found with `memchr`.
fn pipe_fields(s: &str) -> impl Iterator<Item = &str> {
    let mut start = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rest = s.get(start..)?;
        match memchr(b'|', rest.as_bytes()) {
            Some(i) => {
                let f = &rest[..i];
                start += i + 1;
                Some(f)
            }
            None => {
                done = true;
                Some(rest)
            }
        }
    })
}

/// Parses one metric line already known to be UTF-8 (the shard validates whole datagrams).
///
/// # Errors
/// The [`LineError`] naming the first thing wrong with the line.
pub fn parse_metric_str(line: &str) -> Result<MetricLine<'_>, LineError> {
    let bytes = line.as_bytes();
    let pipe = memchr(b'|', bytes);
    let head_end = pipe.unwrap_or(bytes.len());
    let head = &line[..head_end];
    let colon = memchr(b':', head.as_bytes()).ok_or(LineError::MissingValue)?;
    let name = &head[..colon];
    if name.is_empty() {
        return Err(LineError::EmptyName);
    }
    let raw_values = &head[colon + 1..];
    if raw_values.is_empty() {
        return Err(LineError::MissingValue);
    }
    let Some(pipe) = pipe else {
        return Err(LineError::MissingType);
    };
    let rest = &line[pipe + 1..];
    let mut fields = pipe_fields(rest);
    let kind = MetricKind::from_bytes(fields.next().unwrap_or("").as_bytes())?;

    let mut sample_rate = 1.0;
    let mut tags = "";
    let mut container = "";
    let mut timestamp = None;
    for field in fields {
        let fb = field.as_bytes();
        match fb.first() {
            Some(b'@') => {
                let r: f64 = field[1..]
                    .parse()
                    .map_err(|_| LineError::InvalidSampleRate)?;
                // NaN fails both comparisons, so it is rejected too. A rate so small that
                // its inverse overflows (below ~5.6e-309) would scale a value to infinity.
                if !(r > 0.0 && r <= 1.0 && (1.0 / r).is_finite()) {
                    return Err(LineError::InvalidSampleRate);
                }
                sample_rate = r;
            }
            Some(b'#') => tags = &field[1..],
            Some(b'T') => {
                let ts: u64 = field[1..]
                    .parse()
                    .map_err(|_| LineError::InvalidTimestamp)?;
                timestamp = Some(ts);
            }
            Some(b'c') if fb.get(1) == Some(&b':') => container = &field[2..],
            _ => {} // unknown or empty fields are ignored, as the Agent does
        }
    }

    let (first, first_signed, packed) = if kind == MetricKind::Set {
        (0.0, false, false)
    } else if memchr(b':', raw_values.as_bytes()).is_none() {
        let (x, s) = check_value(raw_values)?;
        (x, s, false)
    } else {
        let mut first = None;
        for v in raw_values.split(':').filter(|v| !v.is_empty()) {
            let parsed = check_value(v)?;
            first.get_or_insert(parsed);
        }
        let (x, s) = first.ok_or(LineError::MissingValue)?;
        (x, s, true)
    };

    Ok(MetricLine {
        name,
        raw_values,
        first,
        first_signed,
        packed,
        kind,
        sample_rate,
        tags,
        container,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> MetricLine<'_> {
        parse_metric(s.as_bytes()).unwrap()
    }

    #[test]
    fn parses_full_dogstatsd_line_in_any_field_order() {
        let l = ok("page.views:1|c|#env:prod,route:home|@0.5|T1700000000|c:abc|card:low");
        assert_eq!(l.name, "page.views");
        assert_eq!(l.kind, MetricKind::Counter);
        assert_eq!(l.first, 1.0);
        assert_eq!(l.sample_rate, 0.5);
        assert_eq!(l.tags, "env:prod,route:home");
        assert_eq!(l.container, "abc");
        assert_eq!(l.timestamp, Some(1_700_000_000));
    }

    #[test]
    fn parses_every_type() {
        for (t, k) in [
            ("c", MetricKind::Counter),
            ("g", MetricKind::Gauge),
            ("ms", MetricKind::Timer),
            ("h", MetricKind::Histogram),
            ("s", MetricKind::Set),
            ("d", MetricKind::Distribution),
        ] {
            assert_eq!(ok(&format!("x:1|{t}")).kind, k);
        }
    }

    #[test]
    fn packed_values_skip_empty_ones() {
        let l = ok("t:1:2::3|ms");
        assert!(l.packed);
        let v: Vec<f64> = l.values().map(|(x, _)| x).collect();
        assert_eq!(v, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn set_member_is_the_whole_value() {
        let l = ok("users:user-1234|s");
        assert_eq!(l.raw_values, "user-1234");
        assert_eq!(l.values().count(), 1);
    }

    #[test]
    fn signs_are_reported_for_gauge_dialects() {
        assert!(ok("g:+3|g").first_signed);
        assert!(ok("g:-3|g").first_signed);
        assert!(!ok("g:3|g").first_signed);
        assert_eq!(ok("g:+3|g").first, 3.0);
    }

    #[test]
    fn rejects_bad_lines_with_a_reason() {
        let cases: &[(&[u8], LineError)] = &[
            (b"g:|g", LineError::MissingValue),
            (b"novalue|c", LineError::MissingValue),
            (b":1|c", LineError::EmptyName),
            (b"x:1", LineError::MissingType),
            (b"x:1|", LineError::MissingType),
            (b"x:1|q", LineError::UnknownType),
            (b"x:abc|c", LineError::InvalidValue),
            (b"x:NaN|g", LineError::NonFiniteValue),
            (b"x:inf|g", LineError::NonFiniteValue),
            (b"x:1|c|@0", LineError::InvalidSampleRate),
            (b"x:1|c|@2", LineError::InvalidSampleRate),
            (b"x:1|c|@nan", LineError::InvalidSampleRate),
            (b"x:1|c|@1e308", LineError::InvalidSampleRate),
            (b"x:1|c|@1e-320", LineError::InvalidSampleRate),
            (b"x:1|c|Tsoon", LineError::InvalidTimestamp),
            (b"x:\xff|c", LineError::InvalidUtf8),
            (b"x:1:a|ms", LineError::InvalidValue),
            (b"x::|ms", LineError::MissingValue),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_metric(line).unwrap_err(),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn repeated_colons_do_not_confuse_the_name() {
        let l = ok("a:1:::::2|c");
        assert_eq!(l.name, "a");
        assert_eq!(l.values().count(), 2);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_metric(&bytes);
        }

        #[test]
        fn round_trips_generated_lines(
            name in "[a-zA-Z][a-zA-Z0-9_.]{0,30}",
            value in -1.0e9f64..1.0e9,
            kind in prop::sample::select(vec!["c", "g", "ms", "h", "d"]),
            rate in prop::sample::select(vec![None, Some(0.5), Some(0.25), Some(1.0)]),
            tags in proptest::collection::vec("[a-z]{1,8}(:[a-z0-9]{0,8})?", 0..5),
        ) {
            let mut line = format!("{name}:{value}|{kind}");
            if let Some(r) = rate { line.push_str(&format!("|@{r}")); }
            if !tags.is_empty() { line.push_str(&format!("|#{}", tags.join(","))); }
            let l = parse_metric(line.as_bytes()).unwrap();
            prop_assert_eq!(l.name, name.as_str());
            prop_assert_eq!(l.first, value);
            prop_assert_eq!(l.kind.as_str(), kind);
            prop_assert_eq!(l.sample_rate, rate.unwrap_or(1.0));
            let joined = tags.join(",");
            prop_assert_eq!(l.tags, joined.as_str());
        }
    }
}
