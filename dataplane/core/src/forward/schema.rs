//! The archived batch ([`ForwardBatch`]) and its validated, zero-copy view
//! ([`ForwardView`]).
//!
//! The batch is flat: one string arena for every name, tag list and host, one table of
//! series records, one table of timer values and one table of set member hashes. Records
//! point into the tables with half-open `u32` spans, so a batch that is
//! [`ForwardBatch::clear`]ed and refilled reuses its four allocations: filling it allocates
//! nothing per series once warm.

use crate::aggregate::Consolidated;

/// The schema version in the archive (and in the body header, see
/// [`HEADER_LEN`](super::HEADER_LEN)).
pub const VERSION: u8 = 1;

/// A half-open range into one of the batch's tables.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
struct Span {
    start: u32,
    end: u32,
}

impl ArchivedSpan {
    fn range(&self) -> std::ops::Range<usize> {
        self.start.to_native() as usize..self.end.to_native() as usize
    }
}

/// A series' consolidated value in the archive.
#[derive(Debug, Clone, Copy, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
enum Value {
    /// Sum with sample rates applied.
    Counter(f64),
    /// [`GaugePartial`](crate::aggregate::GaugePartial) without its timestamp.
    Gauge { abs: Option<f64>, delta: f64 },
    /// Raw values (span into `timer_values`) and the sample-rate-scaled count.
    Timer { values: Span, sampled_count: f64 },
    /// Member hashes (span into `members`).
    Set(Span),
}

#[derive(Debug, Clone, Copy, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
struct SeriesRecord {
    name: Span,
    tags: Span,
    host: Span,
    value: Value,
}

/// One forward request's series, archived with rkyv. See the [module docs](super) for the
/// wire format; build one with [`ForwardBatch::push`] (or let
/// [`ForwardEncoder`](super::ForwardEncoder) do it from [`Partials`](crate::aggregate::Partials)).
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct ForwardBatch {
    /// Schema version ([`VERSION`]).
    pub version: u8,
    /// The forwarder's name (its hostname), for the aggregator's logs and counters.
    pub forwarder: String,
    /// The forwarder's consolidation interval in milliseconds.
    pub interval_ms: u64,
    strings: String,
    series: Vec<SeriesRecord>,
    timer_values: Vec<f64>,
    members: Vec<u64>,
}

/// A series value to [`ForwardBatch::push`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesValue<'a> {
    /// A count with sample rates applied.
    Counter(f64),
    /// A gauge's partial: the last absolute value (if any) and the deltas after it.
    Gauge {
        /// Last absolute value.
        abs: Option<f64>,
        /// Sum of the Etsy deltas after `abs` (all of them without one).
        delta: f64,
    },
    /// A timer's raw values and sample-rate-scaled count.
    Timer {
        /// Raw values.
        values: &'a [f64],
        /// Sum of `1/rate` over the samples.
        sampled_count: f64,
    },
    /// Distinct members as [`member_hash`](crate::aggregate::member_hash)es.
    Set(&'a [u64]),
}

/// Why a batch could not take more series: a table would pass rkyv's 32-bit offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("forward batch too large (a table passes 4 GiB)")]
pub struct BatchTooLarge;

fn span_of(start: usize, end: usize) -> Result<Span, BatchTooLarge> {
    Ok(Span {
        start: u32::try_from(start).map_err(|_| BatchTooLarge)?,
        end: u32::try_from(end).map_err(|_| BatchTooLarge)?,
    })
}

impl ForwardBatch {
    /// An empty batch from `forwarder` for an interval of `interval_ms`.
    pub fn new(forwarder: &str, interval_ms: u64) -> Self {
        Self {
            version: VERSION,
            forwarder: forwarder.to_string(),
            interval_ms,
            ..Self::default()
        }
    }

    /// Removes every series, keeping the allocations, the forwarder and the interval.
    pub fn clear(&mut self) {
        self.strings.clear();
        self.series.clear();
        self.timer_values.clear();
        self.members.clear();
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Appends a string to the arena and returns its span.
    fn push_str(&mut self, parts: &[&str]) -> Result<Span, BatchTooLarge> {
        let start = self.strings.len();
        for p in parts {
            self.strings.push_str(p);
        }
        span_of(start, self.strings.len())
    }

    /// [`ForwardBatch::push`] with the tags written straight into the arena by `write_tags`
    /// (the encoder merges host tags in place that way).
    pub(super) fn push_with_tags(
        &mut self,
        name: &str,
        write_tags: impl FnOnce(&mut String),
        host: &str,
        value: SeriesValue<'_>,
    ) -> Result<(), BatchTooLarge> {
        let (strings, timers, members) = (
            self.strings.len(),
            self.timer_values.len(),
            self.members.len(),
        );
        let r = self.push_inner(name, write_tags, host, value);
        if r.is_err() {
            self.strings.truncate(strings);
            self.timer_values.truncate(timers);
            self.members.truncate(members);
        }
        r
    }

    fn push_inner(
        &mut self,
        name: &str,
        write_tags: impl FnOnce(&mut String),
        host: &str,
        value: SeriesValue<'_>,
    ) -> Result<(), BatchTooLarge> {
        let name = self.push_str(&[name])?;
        let start = self.strings.len();
        write_tags(&mut self.strings);
        let tags = span_of(start, self.strings.len())?;
        let host = self.push_str(&[host])?;
        let value = match value {
            SeriesValue::Counter(v) => Value::Counter(v),
            SeriesValue::Gauge { abs, delta } => Value::Gauge { abs, delta },
            SeriesValue::Timer {
                values,
                sampled_count,
            } => {
                let start = self.timer_values.len();
                self.timer_values.extend_from_slice(values);
                Value::Timer {
                    values: span_of(start, self.timer_values.len())?,
                    sampled_count,
                }
            }
            SeriesValue::Set(m) => {
                let start = self.members.len();
                self.members.extend_from_slice(m);
                Value::Set(span_of(start, self.members.len())?)
            }
        };
        self.series.push(SeriesRecord {
            name,
            tags,
            host,
            value,
        });
        Ok(())
    }

    /// [`ForwardBatch::push_with_tags`] for a set whose member hashes come from an iterator
    /// (straight out of a [`MemberSet`](crate::aggregate::interval::MemberSet)).
    pub(super) fn push_members(
        &mut self,
        name: &str,
        write_tags: impl FnOnce(&mut String),
        host: &str,
        members: impl Iterator<Item = u64>,
    ) -> Result<(), BatchTooLarge> {
        let start = self.members.len();
        self.members.extend(members);
        let end = self.members.len();
        // The members are in the table already; the record points at them.
        let r = self.push_with_tags(name, write_tags, host, SeriesValue::Set(&[]));
        match (r, self.series.last_mut(), span_of(start, end)) {
            (Ok(()), Some(rec), Ok(span)) => {
                rec.value = Value::Set(span);
                Ok(())
            }
            _ => {
                self.members.truncate(start);
                if r.is_ok() {
                    self.series.pop();
                }
                Err(BatchTooLarge)
            }
        }
    }

    /// Appends one series. `tags` should be canonical (sorted, de-duplicated, joined by `,`);
    /// the aggregator canonicalises them again anyway.
    ///
    /// # Errors
    /// [`BatchTooLarge`] when a table would pass 4 GiB; the batch is then unchanged.
    pub fn push(
        &mut self,
        name: &str,
        tags: &str,
        host: &str,
        value: SeriesValue<'_>,
    ) -> Result<(), BatchTooLarge> {
        self.push_with_tags(name, |s| s.push_str(tags), host, value)
    }
}

/// Why an archive failed validation (see [`access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AccessError {
    /// bytecheck rejected the bytes.
    Invalid,
    /// A span out of its table, or splitting a UTF-8 character.
    BadSpan,
    /// The archive's version is not [`VERSION`].
    Version(u8),
}

/// Validates an archive (bytecheck, then every span once). `bytes` must be 16-byte aligned
/// (an [`AlignedVec`](rkyv::util::AlignedVec)).
pub(super) fn access(bytes: &[u8]) -> Result<ForwardView<'_>, AccessError> {
    let b = rkyv::access::<ArchivedForwardBatch, rkyv::rancor::Failure>(bytes)
        .map_err(|_| AccessError::Invalid)?;
    if b.version != VERSION {
        return Err(AccessError::Version(b.version));
    }
    let strings = b.strings.as_str();
    let str_ok = |s: &ArchivedSpan| strings.get(s.range()).is_some();
    let table_ok = |s: &ArchivedSpan, len: usize| {
        let r = s.range();
        r.start <= r.end && r.end <= len
    };
    for r in b.series.iter() {
        let value_ok = match &r.value {
            ArchivedValue::Timer { values, .. } => table_ok(values, b.timer_values.len()),
            ArchivedValue::Set(m) => table_ok(m, b.members.len()),
            ArchivedValue::Counter(_) | ArchivedValue::Gauge { .. } => true,
        };
        if !(value_ok && str_ok(&r.name) && str_ok(&r.tags) && str_ok(&r.host)) {
            return Err(AccessError::BadSpan);
        }
    }
    Ok(ForwardView { batch: b })
}

/// A validated archive, read in place: every span was checked by the decoder, so reading
/// never fails.
#[derive(Debug, Clone, Copy)]
pub struct ForwardView<'a> {
    batch: &'a ArchivedForwardBatch,
}

/// One series of a [`ForwardView`], borrowed from the archive.
#[derive(Debug, Clone, Copy)]
pub struct ForwardSeries<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Tags joined by `,` (canonical when written by a [`ForwardEncoder`](super::ForwardEncoder)).
    pub tags: &'a str,
    /// The series' host (empty when unknown).
    pub host: &'a str,
    value: &'a ArchivedValue,
    batch: &'a ArchivedForwardBatch,
}

impl<'a> ForwardSeries<'a> {
    /// The value, copying timer values and member hashes out of the archive into the
    /// caller's reused buffers (archived numbers are little-endian and may need swapping).
    pub fn value_into<'b>(
        &self,
        values: &'b mut Vec<f64>,
        members: &'b mut Vec<u64>,
    ) -> SeriesValue<'b> {
        match self.value {
            ArchivedValue::Counter(v) => SeriesValue::Counter(v.to_native()),
            ArchivedValue::Gauge { abs, delta } => SeriesValue::Gauge {
                abs: abs.as_ref().map(|a| a.to_native()),
                delta: delta.to_native(),
            },
            ArchivedValue::Timer {
                values: span,
                sampled_count,
            } => {
                values.clear();
                if let Some(s) = self.batch.timer_values.get(span.range()) {
                    values.extend(s.iter().map(|v| v.to_native()));
                }
                SeriesValue::Timer {
                    values,
                    sampled_count: sampled_count.to_native(),
                }
            }
            ArchivedValue::Set(span) => {
                members.clear();
                if let Some(s) = self.batch.members.get(span.range()) {
                    members.extend(s.iter().map(|v| v.to_native()));
                }
                SeriesValue::Set(members)
            }
        }
    }
}

impl<'a> SeriesValue<'a> {
    /// The aggregator's input for this value.
    pub fn consolidated(self) -> Consolidated<'a> {
        match self {
            SeriesValue::Counter(v) => Consolidated::Counter(v),
            SeriesValue::Gauge { abs, delta } => Consolidated::GaugePartial { abs, delta },
            SeriesValue::Timer {
                values,
                sampled_count,
            } => Consolidated::Timer {
                values,
                sampled_count,
            },
            SeriesValue::Set(m) => Consolidated::MemberHashes(m),
        }
    }
}

impl<'a> ForwardView<'a> {
    /// The forwarder's name.
    pub fn forwarder(&self) -> &'a str {
        self.batch.forwarder.as_str()
    }

    /// The forwarder's interval in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        self.batch.interval_ms.to_native()
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.batch.series.len()
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.batch.series.is_empty()
    }

    /// Iterates the series in place, in the order they were pushed.
    pub fn series(&self) -> impl ExactSizeIterator<Item = ForwardSeries<'a>> + 'a {
        let b = self.batch;
        let s = |sp: &ArchivedSpan| b.strings.as_str().get(sp.range()).unwrap_or("");
        b.series.iter().map(move |r| ForwardSeries {
            name: s(&r.name),
            tags: s(&r.tags),
            host: s(&r.host),
            value: &r.value,
            batch: b,
        })
    }

    /// An owned copy (tools and tests; the aggregator reads in place).
    pub fn to_owned_batch(&self) -> ForwardBatch {
        // Deserializing a validated archive into owned types cannot fail.
        rkyv::deserialize::<ForwardBatch, rkyv::rancor::Failure>(self.batch).unwrap_or_default()
    }
}
