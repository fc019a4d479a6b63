//! Dead letters: requests an HTTP vendor sink's vendor refused with a 4xx that no retry can
//! fix (any 4xx but 408 and 429), kept with the vendor's answer so someone can see why.
//!
//! One store per sink in `<state_dir>/deadletter/<sink>/`, opened by the driver when the sink
//! starts (only with a top-level `state_dir` and a non-zero `deadletter_max_bytes`; without
//! them nothing is kept and a rejection is only dropped and logged, as before) and shared,
//! through the sink's [`SinkStats::deadletter`](crate::stats::SinkStats::deadletter), by
//! every context that delivers for the sink: its live workers, the stream workers that
//! deliver into it and its spool's replay. Writes happen on those (synchronous) threads.
//!
//! Format: NDJSON segments, `<seq>.ndjson` (20 zero-padded digits), one entry a line:
//! `time` (RFC 3339) and `time_unix_ms`, `sink`, `request` (`POST <url>`), `content_type`,
//! `status`, `response` (the vendor's body, at most [`RESPONSE_CAP`] bytes, with every
//! credential the request carried replaced by `<redacted>`, see
//! [`crate::http::redact_credentials`]) and `response_truncated`, `values`, `request_bytes`
//! (the body's length before compression) and the body itself: `request_body` (text, the JSON,
//! credentials redacted too) or `request_body_base64` (a protobuf body), at most
//! [`REQUEST_CAP`] bytes (`request_truncated` says when it was cut).
//!
//! Bounds: a segment is closed once it holds an eighth of `deadletter_max_bytes`; while the
//! segments together hold more than `deadletter_max_bytes`, the oldest is removed and its
//! entries and values are counted evicted (never silently). The newest segment is never
//! removed, so the cap can be passed by one entry at most. Appends are plain `write_all`s,
//! not fsynced (a dead letter is a diagnostic, not data the process acknowledged): a crash
//! can leave the last line torn, which reading skips and the next open truncates.
//!
//! Metrics (per sink, rendered by the control plane from [`DeadLetter::counts`]):
//! `switchyard_sink_deadletter_entries_total`, `switchyard_sink_deadletter_values_total`
//! (written since the start), `switchyard_sink_deadletter_bytes` (gauge: bytes held),
//! `switchyard_sink_deadletter_evicted_entries_total`. The values stay counted
//! `dropped{reason="rejected"}` in the ledger: a dead letter is not a delivery.

use base64::Engine as _;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Most bytes of the vendor's response kept per entry.
pub const RESPONSE_CAP: usize = 4096;
/// Most bytes of the request body kept per entry.
pub const REQUEST_CAP: usize = 1 << 20;
/// Segments the cap is split into (a segment closes at `max_bytes / SEGMENTS`).
const SEGMENTS: u64 = 8;

/// What the vendor refused, as handed to [`DeadLetter::write`].
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    /// The URL POSTed to.
    pub url: &'a str,
    /// `Content-Type` of the body (`application/json`, `application/x-protobuf`).
    pub content_type: &'a str,
    /// Request headers: the values of those that carry credentials are redacted from the
    /// stored bodies.
    pub headers: &'a [(&'a str, &'a str)],
    /// HTTP status.
    pub status: u16,
    /// The vendor's response body (already redacted).
    pub response: &'a str,
    /// Values the request carried.
    pub values: u64,
    /// The request body before compression.
    pub body: &'a [u8],
}

/// Counts of one store (for `/metrics` and `GET /v1/deadletter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries held now.
    pub entries: u64,
    /// Values of the entries held now.
    pub values: u64,
    /// Bytes of the segments held now.
    pub bytes: u64,
    /// Entries written since the process started.
    pub written_entries: u64,
    /// Values of the entries written since the process started.
    pub written_values: u64,
    /// Entries removed to stay under the cap since the process started.
    pub evicted_entries: u64,
    /// Values of those entries.
    pub evicted_values: u64,
    /// Entries removed on request (`DELETE /v1/deadletter/<sink>`) since the start.
    pub cleared_entries: u64,
    /// Entries that could not be written (I/O errors; the values stay `rejected`).
    pub write_errors: u64,
}

/// One segment file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u64,
    bytes: u64,
    entries: u64,
    values: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Oldest first; the last is the one appended to.
    segments: VecDeque<Segment>,
    /// The last segment, open for appending.
    file: Option<File>,
}

#[derive(Debug, Default)]
struct Counters {
    written_entries: AtomicU64,
    written_values: AtomicU64,
    evicted_entries: AtomicU64,
    evicted_values: AtomicU64,
    cleared_entries: AtomicU64,
    write_errors: AtomicU64,
}

/// The dead-letter store of one sink.
#[derive(Debug)]
pub struct DeadLetter {
    sink: String,
    dir: PathBuf,
    max_bytes: AtomicU64,
    inner: Mutex<Inner>,
    counters: Counters,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.ndjson"))
}

/// The `values` of one stored line, `None` when it is not an entry (a torn line).
fn line_values(line: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get("values")?.as_u64()
}

/// The first `cap` bytes of `s`, cut at a character boundary.
fn cut(s: &str, cap: usize) -> &str {
    if s.len() <= cap {
        return s;
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

impl DeadLetter {
    /// Opens (creating it if needed) the store of sink `sink` in
    /// `<state_dir>/deadletter/<sink>`, holding at most `max_bytes`. Reads the segments
    /// already there to count them, and cuts a torn last line off the newest.
    ///
    /// # Errors
    /// The directory cannot be created or read, or a segment cannot be read.
    pub fn open(state_dir: &Path, sink: &str, max_bytes: u64) -> std::io::Result<Self> {
        let dir = state_dir.join("deadletter").join(sink);
        std::fs::create_dir_all(&dir)?;
        let mut seqs: Vec<u64> = std::fs::read_dir(&dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let stem = name.to_str()?.strip_suffix(".ndjson")?;
                stem.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        let mut segments = VecDeque::with_capacity(seqs.len());
        let last = seqs.last().copied();
        for seq in seqs {
            let path = segment_path(&dir, seq);
            let mut seg = Segment {
                seq,
                bytes: 0,
                entries: 0,
                values: 0,
            };
            let mut r = BufReader::new(File::open(&path)?);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                if line.last() != Some(&b'\n') {
                    // A torn last line (a crash mid-append).
                    if Some(seq) == last {
                        OpenOptions::new()
                            .write(true)
                            .open(&path)?
                            .set_len(seg.bytes)?;
                    }
                    break;
                }
                seg.bytes += n as u64;
                if let Some(v) = line_values(&line) {
                    seg.entries += 1;
                    seg.values += v;
                }
            }
            segments.push_back(seg);
        }
        Ok(Self {
            sink: sink.to_owned(),
            dir,
            max_bytes: AtomicU64::new(max_bytes),
            inner: Mutex::new(Inner {
                segments,
                file: None,
            }),
            counters: Counters::default(),
        })
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes the cap (a reloaded `deadletter_max_bytes`; `0` stops keeping entries).
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store's counts.
    pub fn counts(&self) -> Counts {
        let inner = self.lock();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            entries: inner.segments.iter().map(|s| s.entries).sum(),
            values: inner.segments.iter().map(|s| s.values).sum(),
            bytes: inner.segments.iter().map(|s| s.bytes).sum(),
            written_entries: get(&c.written_entries),
            written_values: get(&c.written_values),
            evicted_entries: get(&c.evicted_entries),
            evicted_values: get(&c.evicted_values),
            cleared_entries: get(&c.cleared_entries),
            write_errors: get(&c.write_errors),
        }
    }

    /// The NDJSON line (with its newline) of one entry.
    fn line(&self, r: &Rejection<'_>) -> Vec<u8> {
        let now = SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let response = cut(r.response, RESPONSE_CAP);
        let mut entry = serde_json::json!({
            "time": humantime::format_rfc3339_millis(now).to_string(),
            "time_unix_ms": ms,
            "sink": self.sink,
            "request": format!("POST {}", r.url),
            "content_type": r.content_type,
            "status": r.status,
            "response": response,
            "response_truncated": r.response.len() >= RESPONSE_CAP,
            "values": r.values,
            "request_bytes": r.body.len(),
        });
        let truncated = match std::str::from_utf8(r.body) {
            Ok(text) => {
                let text = crate::http::redact_credentials(text, r.headers);
                let kept = cut(&text, REQUEST_CAP);
                entry["request_body"] = kept.into();
                kept.len() < text.len()
            }
            Err(_) => {
                let kept = r.body.get(..REQUEST_CAP).unwrap_or(r.body);
                entry["request_body_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(kept)
                    .into();
                kept.len() < r.body.len()
            }
        };
        entry["request_truncated"] = truncated.into();
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Keeps one refused request. Returns whether it was written (not when the cap is `0`,
    /// nor when the write failed: that is logged and counted in
    /// [`Counts::write_errors`]).
    pub fn write(&self, r: &Rejection<'_>) -> bool {
        let max = self.max_bytes.load(Ordering::Relaxed);
        if max == 0 {
            return false;
        }
        let line = self.line(r);
        let mut inner = self.lock();
        match self.append(&mut inner, &line, r.values, max) {
            Ok(()) => {
                let c = &self.counters;
                c.written_entries.fetch_add(1, Ordering::Relaxed);
                c.written_values.fetch_add(r.values, Ordering::Relaxed);
                true
            }
            Err(e) => {
                // Reopen next time (the file may have been removed underneath).
                inner.file = None;
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(sink = %self.sink, dir = %self.dir.display(), error = %e,
                    "writing a dead letter failed");
                false
            }
        }
    }

    fn append(&self, inner: &mut Inner, line: &[u8], values: u64, max: u64) -> std::io::Result<()> {
        let segment_cap = (max / SEGMENTS).max(1);
        let rotate = match inner.segments.back() {
            None => true,
            Some(s) => s.bytes > 0 && s.bytes + line.len() as u64 > segment_cap,
        };
        if rotate {
            let seq = inner.segments.back().map_or(0, |s| s.seq + 1);
            inner.file = None;
            inner.segments.push_back(Segment {
                seq,
                bytes: 0,
                entries: 0,
                values: 0,
            });
        }
        let Some(seg) = inner.segments.back_mut() else {
            return Err(std::io::Error::other("no segment"));
        };
        let path = segment_path(&self.dir, seg.seq);
        if inner.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            // What the file holds is what is counted (a failed earlier append may have
            // left part of a line: cut it).
            let len = f.seek(SeekFrom::End(0))?;
            if len != seg.bytes {
                f.set_len(seg.bytes)?;
            }
            inner.file = Some(f);
        }
        if let Some(f) = inner.file.as_mut() {
            f.write_all(line)?;
        }
        seg.bytes += line.len() as u64;
        seg.entries += 1;
        seg.values += values;
        self.evict(inner, max);
        Ok(())
    }

    /// Removes the oldest segments while they hold more than `max` bytes (never the newest).
    fn evict(&self, inner: &mut Inner, max: u64) {
        while inner.segments.len() > 1 && inner.segments.iter().map(|s| s.bytes).sum::<u64>() > max
        {
            let Some(old) = inner.segments.pop_front() else {
                break;
            };
            if let Err(e) = std::fs::remove_file(segment_path(&self.dir, old.seq)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(sink = %self.sink, error = %e, "removing a dead-letter segment");
                }
            }
            let c = &self.counters;
            c.evicted_entries.fetch_add(old.entries, Ordering::Relaxed);
            c.evicted_values.fetch_add(old.values, Ordering::Relaxed);
            tracing::warn!(sink = %self.sink, entries = old.entries, values = old.values,
                "dead letters over deadletter_max_bytes: the oldest segment was removed");
        }
    }

    /// Up to `limit` entries, newest first, and whether older ones were left out (by the
    /// limit or because the answer reached `max_bytes` of stored lines). Torn or unparseable
    /// lines are skipped.
    ///
    /// # Errors
    /// A segment cannot be read.
    pub fn read(
        &self,
        limit: usize,
        max_bytes: usize,
    ) -> std::io::Result<(Vec<serde_json::Value>, bool)> {
        let inner = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for seg in inner.segments.iter().rev() {
            let f = match File::open(segment_path(&self.dir, seg.seq)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            // Only what was counted (a concurrent append cannot be half-read: the lock).
            let mut r = BufReader::new(f).take(seg.bytes);
            let mut lines = Vec::new();
            let mut line = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                lines.push(std::mem::take(&mut line));
            }
            for l in lines.iter().rev() {
                if out.len() >= limit || (bytes > 0 && bytes + l.len() > max_bytes) {
                    return Ok((out, true));
                }
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) {
                    bytes += l.len();
                    out.push(v);
                }
            }
        }
        Ok((out, false))
    }

    /// Removes every entry; returns how many there were (counted in
    /// [`Counts::cleared_entries`]).
    ///
    /// # Errors
    /// A segment could not be removed (those before it are gone and counted).
    pub fn clear(&self) -> std::io::Result<u64> {
        let mut inner = self.lock();
        inner.file = None;
        let mut cleared = 0;
        while let Some(seg) = inner.segments.front().copied() {
            match std::fs::remove_file(segment_path(&self.dir, seg.seq)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.counters
                        .cleared_entries
                        .fetch_add(cleared, Ordering::Relaxed);
                    return Err(e);
                }
            }
            inner.segments.pop_front();
            cleared += seg.entries;
        }
        self.counters
            .cleared_entries
            .fetch_add(cleared, Ordering::Relaxed);
        Ok(cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection<'a>(body: &'a [u8], response: &'a str, values: u64) -> Rejection<'a> {
        Rejection {
            url: "http://vendor/api/v1/series",
            content_type: "application/json",
            headers: &[("DD-API-KEY", "secret-key-1")],
            status: 400,
            response,
            values,
            body,
        }
    }

    fn segment_files(d: &DeadLetter) -> usize {
        std::fs::read_dir(d.dir()).unwrap().count()
    }

    #[test]
    fn entries_keep_the_answer_and_the_body_newest_first_without_credentials() {
        let state = tempfile::tempdir().unwrap();
        let d = DeadLetter::open(state.path(), "dd", 1 << 20).unwrap();
        assert_eq!(d.dir(), state.path().join("deadletter").join("dd"));
        let body = br#"{"series":[{"metric":"a.b","tags":["k:secret-key-1"]}]}"#;
        assert!(d.write(&rejection(body, "{\"errors\":[\"bad\"]}", 1)));
        assert!(d.write(&rejection(b"{\"series\":[]}", "second", 2)));
        let (all, more) = d.read(100, usize::MAX).unwrap();
        assert!(!more);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["response"], "second", "newest first");
        let e = &all[1];
        assert_eq!(e["sink"], "dd");
        assert_eq!(e["status"], 400);
        assert_eq!(e["request"], "POST http://vendor/api/v1/series");
        assert_eq!(e["response"], "{\"errors\":[\"bad\"]}");
        assert_eq!(e["values"], 1);
        assert_eq!(e["request_bytes"], body.len());
        assert_eq!(e["request_truncated"], false);
        let text = e["request_body"].as_str().unwrap();
        assert!(text.contains("\"metric\":\"a.b\""), "{text}");
        assert!(
            !text.contains("secret-key-1") && text.contains("<redacted>"),
            "{text}"
        );
        assert!(e["time_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        let (one, more) = d.read(1, usize::MAX).unwrap();
        assert!(more);
        assert_eq!(one[0]["response"], "second");
        let c = d.counts();
        assert_eq!(
            (c.entries, c.values, c.written_entries, c.written_values),
            (2, 3, 2, 3)
        );
        assert!(c.bytes > body.len() as u64);
    }

    #[test]
    fn bodies_and_answers_are_capped_and_binary_bodies_kept_as_base64() {
        let state = tempfile::tempdir().unwrap();
        let d = DeadLetter::open(state.path(), "sfx", 64 << 20).unwrap();
        let big = "x".repeat(REQUEST_CAP + 10);
        let long_answer = "é".repeat(RESPONSE_CAP);
        assert!(d.write(&rejection(big.as_bytes(), &long_answer, 5)));
        let proto = [0x0a_u8, 0xff, 0x00, 0x80];
        assert!(d.write(&Rejection {
            content_type: "application/x-protobuf",
            ..rejection(&proto, "no", 1)
        }));
        let (all, _) = d.read(10, usize::MAX).unwrap();
        let b = &all[0];
        assert_eq!(b["content_type"], "application/x-protobuf");
        assert_eq!(b["request_body_base64"], "Cv8AgA==");
        assert!(b.get("request_body").is_none());
        let t = &all[1];
        assert_eq!(t["request_truncated"], true);
        assert_eq!(t["request_bytes"], REQUEST_CAP + 10);
        assert_eq!(t["request_body"].as_str().unwrap().len(), REQUEST_CAP);
        assert_eq!(t["response_truncated"], true);
        let r = t["response"].as_str().unwrap();
        assert!(
            r.len() <= RESPONSE_CAP && r.len() > RESPONSE_CAP - 2,
            "cut on a char boundary"
        );
    }

    #[test]
    fn segments_rotate_and_the_oldest_are_evicted_and_counted_under_the_cap() {
        let state = tempfile::tempdir().unwrap();
        let max = 64 << 10;
        let d = DeadLetter::open(state.path(), "dd", max).unwrap();
        let body = "y".repeat(3000);
        for i in 1..=100 {
            assert!(d.write(&rejection(body.as_bytes(), "bad", i)));
        }
        let c = d.counts();
        let line = c.bytes / c.entries;
        assert!(c.bytes <= max + line, "{c:?}");
        assert!(c.bytes > max / 2, "{c:?}");
        assert!(c.evicted_entries > 0, "{c:?}");
        assert_eq!(
            c.entries + c.evicted_entries,
            100,
            "every removal counted: {c:?}"
        );
        assert_eq!(c.values + c.evicted_values, (1..=100).sum::<u64>(), "{c:?}");
        assert_eq!((c.written_entries, c.written_values), (100, 5050));
        assert!(segment_files(&d) > 1 && segment_files(&d) <= SEGMENTS as usize + 1);
        let on_disk: u64 = std::fs::read_dir(d.dir())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, c.bytes);
        // What is left is the newest, in order.
        let (all, more) = d.read(1000, usize::MAX).unwrap();
        assert!(!more);
        let values: Vec<u64> = all.iter().map(|e| e["values"].as_u64().unwrap()).collect();
        let expect: Vec<u64> = (100 - c.entries + 1..=100).rev().collect();
        assert_eq!(values, expect);
        // A reopened store counts what is on disk.
        drop(d);
        let d = DeadLetter::open(state.path(), "dd", max).unwrap();
        let again = d.counts();
        assert_eq!(
            (again.entries, again.values, again.bytes),
            (c.entries, c.values, c.bytes)
        );
        assert_eq!(again.evicted_entries, 0, "counters are per process");
    }

    #[test]
    fn a_torn_last_line_is_skipped_on_read_and_cut_on_open() {
        let state = tempfile::tempdir().unwrap();
        let d = DeadLetter::open(state.path(), "dd", 1 << 20).unwrap();
        assert!(d.write(&rejection(b"{}", "one", 1)));
        assert!(d.write(&rejection(b"{}", "two", 2)));
        let seg = segment_path(d.dir(), 0);
        let whole = std::fs::metadata(&seg).unwrap().len();
        // A crash mid-append.
        OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(b"{\"time\":\"2024-")
            .unwrap();
        let (all, _) = d.read(10, usize::MAX).unwrap();
        assert_eq!(all.len(), 2, "the torn line is not read");
        drop(d);
        let d = DeadLetter::open(state.path(), "dd", 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole, "cut on open");
        assert_eq!(d.counts().entries, 2);
        assert!(d.write(&rejection(b"{}", "three", 3)));
        let (all, _) = d.read(10, usize::MAX).unwrap();
        let answers: Vec<&str> = all
            .iter()
            .map(|e| e["response"].as_str().unwrap())
            .collect();
        assert_eq!(answers, ["three", "two", "one"]);
    }

    #[test]
    fn clearing_removes_everything_and_counts_it_and_a_zero_cap_keeps_nothing() {
        let state = tempfile::tempdir().unwrap();
        let d = DeadLetter::open(state.path(), "dd", 1 << 20).unwrap();
        for i in 0..3 {
            assert!(d.write(&rejection(b"{}", "x", i)));
        }
        assert_eq!(d.clear().unwrap(), 3);
        let c = d.counts();
        assert_eq!((c.entries, c.bytes, c.cleared_entries), (0, 0, 3));
        assert_eq!(segment_files(&d), 0);
        assert!(d.read(10, usize::MAX).unwrap().0.is_empty());
        assert!(d.write(&rejection(b"{}", "after", 1)));
        assert_eq!(d.read(10, usize::MAX).unwrap().0[0]["response"], "after");
        d.set_max_bytes(0);
        assert!(!d.write(&rejection(b"{}", "off", 1)));
        assert_eq!(d.counts().entries, 1);
    }

    #[test]
    fn a_read_stops_at_its_byte_budget() {
        let state = tempfile::tempdir().unwrap();
        let d = DeadLetter::open(state.path(), "dd", 1 << 20).unwrap();
        let body = "z".repeat(1000);
        for i in 0..5 {
            assert!(d.write(&rejection(body.as_bytes(), "x", i)));
        }
        let c = d.counts();
        let line = (c.bytes / c.entries) as usize;
        let (some, more) = d.read(100, 2 * line + line / 2).unwrap();
        assert!(more);
        assert_eq!(some.len(), 2);
        // One entry always fits, however small the budget.
        assert_eq!(d.read(100, 1).unwrap().0.len(), 1);
    }
}
