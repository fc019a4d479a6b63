//! The statsd / DogStatsD datagram codec.
//!
//! A datagram holds one or more messages separated by `\n` (trailing newline optional, `\r\n`
//! tolerated). Each message is a metric line, an event (`_e{..}`) or a service check (`_sc|..`).
//! Decoding borrows from the receive buffer and never allocates: see [`line`] for the metric
//! grammar, [`event`] for events and service checks, and [`LineError`] for the bounded set of
//! reasons a line is rejected (each is counted as
//! `switchyard_statsd_lines_total{result="error",reason=...}`).

pub mod event;
pub mod line;

pub use event::{Event, ServiceCheck};
pub use line::{parse_metric, parse_metric_str, MetricKind, MetricLine};

/// Why a line was rejected. A small `Copy` enum so the hot path counts, never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineError {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The metric name before the first `:` is empty.
    EmptyName,
    /// No `:` separates the name from a value, or the value is empty.
    MissingValue,
    /// No `|type` field follows the value.
    MissingType,
    /// The type is not one of `c g ms h s d`.
    UnknownType,
    /// A value is not a number.
    InvalidValue,
    /// A value is NaN or infinite.
    NonFiniteValue,
    /// `@rate` is not a number in (0, 1], or so small that its inverse overflows.
    InvalidSampleRate,
    /// `T<ts>` is not a non-negative integer.
    InvalidTimestamp,
    /// A malformed event (`_e{...}`).
    InvalidEvent,
    /// A malformed service check (`_sc|...`).
    InvalidServiceCheck,
    /// The line or one of its parts exceeds a configured limit.
    TooLong,
    /// Too many tags on one line.
    TooManyTags,
    /// The shard's active-series cap was reached (counted by the aggregator, not the parser).
    SeriesLimit,
    /// The shard's cap on buffered timer values was reached.
    TimerValuesLimit,
}

impl LineError {
    /// Every reason, in a fixed order (the index of a reason in this array is its counter slot).
    pub const ALL: [LineError; 15] = [
        LineError::InvalidUtf8,
        LineError::EmptyName,
        LineError::MissingValue,
        LineError::MissingType,
        LineError::UnknownType,
        LineError::InvalidValue,
        LineError::NonFiniteValue,
        LineError::InvalidSampleRate,
        LineError::InvalidTimestamp,
        LineError::InvalidEvent,
        LineError::InvalidServiceCheck,
        LineError::TooLong,
        LineError::TooManyTags,
        LineError::SeriesLimit,
        LineError::TimerValuesLimit,
    ];

    /// Number of distinct reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The label value used in metrics.
    pub const fn reason(self) -> &'static str {
        match self {
            LineError::InvalidUtf8 => "invalid_utf8",
            LineError::EmptyName => "empty_name",
            LineError::MissingValue => "missing_value",
            LineError::MissingType => "missing_type",
            LineError::UnknownType => "unknown_type",
            LineError::InvalidValue => "invalid_value",
            LineError::NonFiniteValue => "non_finite_value",
            LineError::InvalidSampleRate => "invalid_sample_rate",
            LineError::InvalidTimestamp => "invalid_timestamp",
            LineError::InvalidEvent => "invalid_event",
            LineError::InvalidServiceCheck => "invalid_service_check",
            LineError::TooLong => "too_long",
            LineError::TooManyTags => "too_many_tags",
            LineError::SeriesLimit => "series_limit",
            LineError::TimerValuesLimit => "timer_values_limit",
        }
    }

    /// The counter slot of this reason (its index in [`LineError::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for LineError {}

/// One decoded message of a datagram.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    /// A metric sample line.
    Metric(MetricLine<'a>),
    /// A DogStatsD event.
    Event(Event<'a>),
    /// A DogStatsD service check.
    ServiceCheck(ServiceCheck<'a>),
}

/// Decodes one line (without its line terminator).
///
/// # Errors
/// Returns the [`LineError`] that says why the line was rejected.
pub fn parse_message(line: &[u8]) -> Result<Message<'_>, LineError> {
    if line.starts_with(b"_e{") {
        return event::parse_event(line).map(Message::Event);
    }
    if line.starts_with(b"_sc|") {
        return event::parse_service_check(line).map(Message::ServiceCheck);
    }
    parse_metric(line).map(Message::Metric)
}

/// Decodes one line already known to be UTF-8.
///
/// # Errors
/// Returns the [`LineError`] that says why the line was rejected.
pub fn parse_message_str(line: &str) -> Result<Message<'_>, LineError> {
    let b = line.as_bytes();
    if b.starts_with(b"_e{") {
        return event::parse_event(b).map(Message::Event);
    }
    if b.starts_with(b"_sc|") {
        return event::parse_service_check(b).map(Message::ServiceCheck);
    }
    line::parse_metric_str(line).map(Message::Metric)
}

/// Byte ranges of the lines of `datagram`: split on `\n` (found with `memchr`), a trailing
/// `\r` removed, empty lines skipped.
fn line_ranges(datagram: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = 0usize;
    std::iter::from_fn(move || loop {
        if start >= datagram.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &datagram[start..]).map_or(datagram.len(), |i| start + i);
        let mut stop = end;
        if stop > start && datagram[stop - 1] == b'\r' {
            stop -= 1;
        }
        let r = start..stop;
        start = end + 1;
        if !r.is_empty() {
            return Some(r);
        }
    })
}

/// Splits a datagram into its lines: on `\n`, with a trailing `\r` removed and empty lines
/// skipped. Never allocates.
pub fn lines(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    line_ranges(datagram).filter_map(move |r| datagram.get(r))
}

/// [`lines`] for a datagram already validated as UTF-8 (`\n` and `\r` are ASCII, so every
/// line is a valid `str`).
pub fn lines_str(datagram: &str) -> impl Iterator<Item = &str> {
    line_ranges(datagram.as_bytes()).filter_map(move |r| datagram.get(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_with_optional_trailing_newline_and_crlf() {
        let got: Vec<&[u8]> = lines(b"a:1|c\r\nb:2|g\n\nc:3|ms").collect();
        assert_eq!(got, vec![&b"a:1|c"[..], b"b:2|g", b"c:3|ms"]);
        assert_eq!(lines(b"a:1|c\n").count(), 1);
        assert_eq!(lines(b"\n\n").count(), 0);
    }

    #[test]
    fn str_lines_match_byte_lines() {
        let d = "a:1|c\r\nb:2|g\n\nc:3|ms\né:1|c";
        let a: Vec<&[u8]> = lines(d.as_bytes()).collect();
        let b: Vec<&[u8]> = lines_str(d).map(str::as_bytes).collect();
        assert_eq!(a, b);
        assert_eq!(parse_message_str("x:1|c"), parse_message(b"x:1|c"));
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in LineError::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn dispatches_on_prefix() {
        assert!(matches!(parse_message(b"x:1|c"), Ok(Message::Metric(_))));
        assert!(matches!(
            parse_message(b"_e{1,1}:a|b"),
            Ok(Message::Event(_))
        ));
        assert!(matches!(
            parse_message(b"_sc|a|0"),
            Ok(Message::ServiceCheck(_))
        ));
    }
}
