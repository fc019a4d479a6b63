//! DogStatsD events and service checks.
//!
//! ```text
//! _e{<title_len>,<text_len>}:<title>|<text>[|d:<ts>][|h:<host>][|k:<key>][|p:<prio>][|s:<src>][|t:<type>][|#tags]
//! _sc|<name>|<status 0..3>[|d:<ts>][|h:<host>][|#tags][|m:<message>]
//! ```
//! Lengths are byte lengths of the title and text as sent (an escaped newline counts as two
//! bytes). Both are decoded and counted; forwarding them is a later stage.

use super::LineError;

/// A DogStatsD event, borrowing from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// Event title.
    pub title: &'a str,
    /// Event text (escaped newlines left as `\n`).
    pub text: &'a str,
    /// `d:` timestamp.
    pub timestamp: Option<u64>,
    /// `h:` hostname.
    pub host: &'a str,
    /// `k:` aggregation key.
    pub aggregation_key: &'a str,
    /// `p:` priority (`normal` or `low`).
    pub priority: &'a str,
    /// `s:` source type name.
    pub source_type: &'a str,
    /// `t:` alert type (`error`, `warning`, `info`, `success`).
    pub alert_type: &'a str,
    /// Raw tags after `#`.
    pub tags: &'a str,
}

/// A DogStatsD service check, borrowing from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCheck<'a> {
    /// Check name.
    pub name: &'a str,
    /// Status: 0 OK, 1 warning, 2 critical, 3 unknown.
    pub status: u8,
    /// `d:` timestamp.
    pub timestamp: Option<u64>,
    /// `h:` hostname.
    pub host: &'a str,
    /// Raw tags after `#`.
    pub tags: &'a str,
    /// `m:` message (always the last field, so it may contain `|`).
    pub message: &'a str,
}

/// Parses `_e{..}` lines.
///
/// # Errors
/// [`LineError::InvalidEvent`] or [`LineError::InvalidUtf8`].
pub fn parse_event(line: &[u8]) -> Result<Event<'_>, LineError> {
    let line = simdutf8::basic::from_utf8(line).map_err(|_| LineError::InvalidUtf8)?;
    let bad = LineError::InvalidEvent;
    let rest = line.strip_prefix("_e{").ok_or(bad)?;
    let close = rest.find("}:").ok_or(bad)?;
    let (tl, xl) = rest[..close].split_once(',').ok_or(bad)?;
    let title_len: usize = tl.parse().map_err(|_| bad)?;
    let text_len: usize = xl.parse().map_err(|_| bad)?;
    let body = &rest[close + 2..];
    let title = body.get(..title_len).ok_or(bad)?;
    let after_title = &body[title_len..];
    let after_title = after_title.strip_prefix('|').ok_or(bad)?;
    let text = after_title.get(..text_len).ok_or(bad)?;
    if title.is_empty() {
        return Err(bad);
    }
    let tail = &after_title[text_len..];
    if !tail.is_empty() && !tail.starts_with('|') {
        return Err(bad);
    }
    let mut ev = Event {
        title,
        text,
        timestamp: None,
        host: "",
        aggregation_key: "",
        priority: "",
        source_type: "",
        alert_type: "",
        tags: "",
    };
    for field in tail.split('|').skip(1) {
        if let Some(v) = field.strip_prefix("d:") {
            ev.timestamp = Some(v.parse().map_err(|_| bad)?);
        } else if let Some(v) = field.strip_prefix("h:") {
            ev.host = v;
        } else if let Some(v) = field.strip_prefix("k:") {
            ev.aggregation_key = v;
        } else if let Some(v) = field.strip_prefix("p:") {
            ev.priority = v;
        } else if let Some(v) = field.strip_prefix("s:") {
            ev.source_type = v;
        } else if let Some(v) = field.strip_prefix("t:") {
            ev.alert_type = v;
        } else if let Some(v) = field.strip_prefix('#') {
            ev.tags = v;
        }
    }
    Ok(ev)
}

/// Parses `_sc|..` lines.
///
/// # Errors
/// [`LineError::InvalidServiceCheck`] or [`LineError::InvalidUtf8`].
pub fn parse_service_check(line: &[u8]) -> Result<ServiceCheck<'_>, LineError> {
    let line = simdutf8::basic::from_utf8(line).map_err(|_| LineError::InvalidUtf8)?;
    let bad = LineError::InvalidServiceCheck;
    let rest = line.strip_prefix("_sc|").ok_or(bad)?;
    // `m:` is last and may contain `|`: cut it off first.
    let (rest, message) = match rest.find("|m:") {
        Some(i) => (&rest[..i], &rest[i + 3..]),
        None => (rest, ""),
    };
    let mut fields = rest.split('|');
    let name = fields.next().filter(|n| !n.is_empty()).ok_or(bad)?;
    let status: u8 = fields.next().and_then(|s| s.parse().ok()).ok_or(bad)?;
    if status > 3 {
        return Err(bad);
    }
    let mut sc = ServiceCheck {
        name,
        status,
        timestamp: None,
        host: "",
        tags: "",
        message,
    };
    for field in fields {
        if let Some(v) = field.strip_prefix("d:") {
            sc.timestamp = Some(v.parse().map_err(|_| bad)?);
        } else if let Some(v) = field.strip_prefix("h:") {
            sc.host = v;
        } else if let Some(v) = field.strip_prefix('#') {
            sc.tags = v;
        }
    }
    Ok(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hot_shots_event() {
        let e = parse_event(
            b"_e{6,11}:Deploy|v1.2.3 done|d:1700000000|h:web-1|k:d1|t:success|#env:prod",
        )
        .unwrap();
        assert_eq!(e.title, "Deploy");
        assert_eq!(e.text, "v1.2.3 done");
        assert_eq!(e.timestamp, Some(1_700_000_000));
        assert_eq!(e.host, "web-1");
        assert_eq!(e.aggregation_key, "d1");
        assert_eq!(e.alert_type, "success");
        assert_eq!(e.tags, "env:prod");
    }

    #[test]
    fn event_lengths_count_escaped_newlines_as_sent() {
        let e = parse_event(br"_e{5,4}:Title|a\nb").unwrap();
        assert_eq!(e.text, r"a\nb");
    }

    #[test]
    fn rejects_events_whose_lengths_lie() {
        assert_eq!(parse_event(b"_e{10,2}:ab|cd"), Err(LineError::InvalidEvent));
        assert_eq!(parse_event(b"_e{2,10}:ab|cd"), Err(LineError::InvalidEvent));
        assert_eq!(parse_event(b"_e{x,1}:ab|c"), Err(LineError::InvalidEvent));
        assert_eq!(parse_event(b"_e{1,1}:ab|c"), Err(LineError::InvalidEvent));
    }

    #[test]
    fn parses_service_check_with_message_last() {
        let s =
            parse_service_check(b"_sc|app.ok|1|h:web-1|#env:prod,db:main|m:slow|really").unwrap();
        assert_eq!(s.name, "app.ok");
        assert_eq!(s.status, 1);
        assert_eq!(s.host, "web-1");
        assert_eq!(s.tags, "env:prod,db:main");
        assert_eq!(s.message, "slow|really");
    }

    #[test]
    fn rejects_bad_service_checks() {
        assert!(parse_service_check(b"_sc||1").is_err());
        assert!(parse_service_check(b"_sc|x|7").is_err());
        assert!(parse_service_check(b"_sc|x").is_err());
    }

    #[test]
    fn never_panics_on_multibyte_lengths() {
        // A length that splits a multi-byte character must be an error, not a panic.
        assert!(parse_event("_e{1,1}:é|x".as_bytes()).is_err());
    }
}
