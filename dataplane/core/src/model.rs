//! The flushed-series model shared by every sink.
//!
//! A flush produces one [`SeriesBatch`] per owner shard: all names, tags and hosts live in one
//! string arena and each series is a small fixed-size record pointing into it, so building a
//! batch of 100k series costs a handful of allocations, not one per series. Batches are
//! immutable once built and shared by every sink through an `Arc`.

use std::ops::Range;

/// The Datadog series type a flushed value is sent as (v1 `type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesType {
    /// Last value in the interval.
    Gauge,
    /// Events per second over the interval.
    Rate,
    /// Number of events in the interval.
    Count,
}

impl SeriesType {
    /// The v1 JSON spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            SeriesType::Gauge => "gauge",
            SeriesType::Rate => "rate",
            SeriesType::Count => "count",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where one series' identity lives in the arena; shared by the sub-metrics of a timer.
/// Two records of a batch share an identity exactly when their `IdentityRef`s are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityRef {
    name: Span,
    tags: Span, // indices into `tag_spans`
    host: Span,
    /// Listener scope (see [`crate::aggregate::SeriesKey::scope`]).
    scope: u8,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    ident: IdentityRef,
    suffix: Span,
    kind: SeriesType,
    value: f64,
}

/// An immutable batch of flushed series with one timestamp and interval.
#[derive(Debug, Clone, Default)]
pub struct SeriesBatch {
    arena: String,
    tag_spans: Vec<Span>,
    records: Vec<Record>,
    /// Flush time, POSIX seconds.
    pub timestamp: u64,
    /// Flush interval in seconds.
    pub interval: f64,
}

/// One series of a batch, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    batch: &'a SeriesBatch,
    rec: &'a Record,
}

impl<'a> SeriesRef<'a> {
    /// Base name (without the sub-metric suffix).
    pub fn base_name(&self) -> &'a str {
        self.batch
            .arena
            .get(self.rec.ident.name.range())
            .unwrap_or("")
    }
    /// Sub-metric suffix, such as `.count` or `.upper_90` (empty for plain series).
    pub fn suffix(&self) -> &'a str {
        self.batch.arena.get(self.rec.suffix.range()).unwrap_or("")
    }
    /// Host (empty when unknown).
    pub fn host(&self) -> &'a str {
        self.batch
            .arena
            .get(self.rec.ident.host.range())
            .unwrap_or("")
    }
    /// Canonical (sorted, de-duplicated) tags.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let b = self.batch;
        b.tag_spans
            .get(self.rec.ident.tags.range())
            .unwrap_or(&[])
            .iter()
            .map(move |s| b.arena.get(s.range()).unwrap_or(""))
    }
    /// The identity this record belongs to (equal for the sub-metrics of one timer, which
    /// are pushed one after another).
    pub fn identity(&self) -> IdentityRef {
        self.rec.ident
    }
    /// The listener scope of its identity (0: aggregated across listeners).
    pub fn scope(&self) -> u8 {
        self.rec.ident.scope
    }
    /// Series type.
    pub fn kind(&self) -> SeriesType {
        self.rec.kind
    }
    /// The value.
    pub fn value(&self) -> f64 {
        self.rec.value
    }
    /// Full name: base name followed by the suffix.
    pub fn name(&self) -> String {
        let mut s = String::with_capacity(self.base_name().len() + self.suffix().len());
        s.push_str(self.base_name());
        s.push_str(self.suffix());
        s
    }
}

impl SeriesBatch {
    /// An empty batch for the given flush time and interval.
    pub fn new(timestamp: u64, interval: f64) -> Self {
        Self {
            timestamp,
            interval,
            ..Self::default()
        }
    }

    fn push_str(&mut self, s: &str) -> Span {
        let start = self.arena.len() as u32;
        self.arena.push_str(s);
        Span {
            start,
            end: self.arena.len() as u32,
        }
    }

    /// Adds a series identity (name, canonical tags, host) to the arena, in scope 0.
    pub fn identity<'t>(
        &mut self,
        name: &str,
        tags: impl IntoIterator<Item = &'t str>,
        host: &str,
    ) -> IdentityRef {
        self.identity_scoped(name, tags, host, 0)
    }

    /// [`SeriesBatch::identity`] in listener scope `scope` (routes that match a statsd
    /// listener by name read it back with [`SeriesRef::scope`]).
    pub fn identity_scoped<'t>(
        &mut self,
        name: &str,
        tags: impl IntoIterator<Item = &'t str>,
        host: &str,
        scope: u8,
    ) -> IdentityRef {
        let name = self.push_str(name);
        let first = self.tag_spans.len() as u32;
        for t in tags {
            let s = self.push_str(t);
            self.tag_spans.push(s);
        }
        let tags = Span {
            start: first,
            end: self.tag_spans.len() as u32,
        };
        let host = self.push_str(host);
        IdentityRef {
            name,
            tags,
            host,
            scope,
        }
    }

    /// Adds one value for an identity; `suffix` is appended to the name (`""` for none).
    /// Suffixes are `'static` sub-metric names or precomputed percentile names.
    pub fn push(&mut self, ident: IdentityRef, suffix: &str, kind: SeriesType, value: f64) {
        let suffix = self.push_str(suffix);
        self.records.push(Record {
            ident,
            suffix,
            kind,
            value,
        });
    }

    /// A batch of the series at `ranges` (indices into this one, in order), with the same
    /// timestamp and interval: what a sink did not deliver of a batch it sent in parts.
    pub fn select(&self, ranges: &[std::ops::Range<usize>]) -> SeriesBatch {
        let mut out = SeriesBatch::new(self.timestamp, self.interval);
        for r in ranges {
            for s in self.records.get(r.clone()).unwrap_or(&[]) {
                let s = SeriesRef {
                    batch: self,
                    rec: s,
                };
                let id = out.identity_scoped(s.base_name(), s.tags(), s.host(), s.scope());
                out.push(id, s.suffix(), s.kind(), s.value());
            }
        }
        out
    }

    /// Number of series in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Iterates the series in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SeriesRef<'_>> {
        self.records
            .iter()
            .map(move |rec| SeriesRef { batch: self, rec })
    }

    /// Approximate heap size in bytes (for queue accounting).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.tag_spans.capacity() * std::mem::size_of::<Span>()
            + self.records.capacity() * std::mem::size_of::<Record>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_sub_metrics_share_one_identity() {
        let mut b = SeriesBatch::new(1_700_000_000, 10.0);
        let id = b.identity("t", ["a:1", "b"], "web-1");
        b.push(id, ".count", SeriesType::Gauge, 3.0);
        b.push(id, ".count_ps", SeriesType::Rate, 0.3);
        let v: Vec<_> = b.iter().collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name(), "t.count");
        assert_eq!(v[1].name(), "t.count_ps");
        assert_eq!(v[1].tags().collect::<Vec<_>>(), vec!["a:1", "b"]);
        assert_eq!(v[1].host(), "web-1");
        assert_eq!(v[1].kind(), SeriesType::Rate);
    }
}
