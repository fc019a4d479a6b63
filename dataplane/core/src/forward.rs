//! The Switchyard-to-Switchyard forward format: what a forwarder POSTs to an aggregator
//! (issue 7), the choice of aggregator per series, and the aggregator's side of it.
//!
//! # Wire format
//!
//! One HTTP request body per aggregator and interval, `Content-Type:`
//! [`application/x-switchyard-forward`](CONTENT_TYPE), no `Content-Encoding`:
//!
//! ```text
//! 0      4         5        8                    12
//! | SYFW | version | 0 0 0  | archive len u32 LE | zlib stream (RFC 1950) ...
//! ```
//!
//! - `version` is [`VERSION`] (also stored in the archive); the three reserved bytes are 0.
//! - The archive length lets the aggregator check its cap and allocate exactly once before
//!   inflating; the stream must inflate to exactly that many bytes. zlib rather than raw
//!   deflate for its Adler-32 check (libdeflate on both sides).
//! - The archive is an rkyv 0.8 archive (default format: little-endian, 32-bit relative
//!   offsets, aligned) of a [`ForwardBatch`]: `version`, `forwarder` (the forwarder's
//!   hostname), `interval_ms`, and the series, flat: one string arena (name, tags joined by
//!   `,`, host per series), the series records (spans into the arena plus the value), one
//!   table of timer values and one of set member hashes. Values:
//!   - `Counter(sum)`: sample rates applied;
//!   - `Gauge { abs: Option<f64>, delta }`: as [`GaugePartial`](crate::aggregate::GaugePartial)
//!     (the last absolute value and the Etsy deltas after it), so the Etsy dialect survives;
//!   - `Timer { values, sampled_count }`: every raw value (percentiles stay exact) and
//!     Σ 1/rate;
//!   - `Set(members)`: [`member_hash`](crate::aggregate::member_hash)es, the same in every
//!     process, so the aggregator's union is exact.
//!
//! The listener scope and the timestamps of gauge values are not sent: the aggregator feeds
//! each body in the scope of its own listener, at the time it arrives.
//!
//! # Sides
//!
//! - Forwarder: [`ForwardEncoder::encode`] writes one body from drained
//!   [`Partials`](crate::aggregate::Partials) (merged across shards with
//!   [`Partials::absorb`](crate::aggregate::Partials::absorb)), keeping the series one
//!   aggregator gets: [`AggregatorRing::pick`] on
//!   [`SeriesKey::stable_hash`](crate::aggregate::SeriesKey::stable_hash).
//! - Aggregator: [`check_content_type`], [`ForwardDecoder::decode`] (caps on the body, the
//!   inflated archive and the series count; bytecheck validation; never panics), then
//!   [`feed`] into the shard's [`IntervalAggregator`](crate::aggregate::IntervalAggregator);
//!   errors carry their HTTP status ([`ForwardError::status`]: 400, 413, 415).
//!
//! Pure code: no I/O, no threads, no metrics ([`ForwardError::reason`], [`Encoded`] and
//! [`FeedOutcome`](crate::aggregate::FeedOutcome) are for the caller's counters).

mod codec;
mod ring;
mod schema;

pub use codec::{
    check_content_type, feed, Encoded, ForwardDecoder, ForwardEncoder, ForwardError, ForwardLimits,
    CONTENT_TYPE, HEADER_LEN, MAGIC,
};
pub use ring::AggregatorRing;
pub use schema::{
    ArchivedForwardBatch, BatchTooLarge, ForwardBatch, ForwardSeries, ForwardView, SeriesValue,
    VERSION,
};
