//! Switchyard's stream formats, pure: no I/O, no threads, no runtime.
//!
//! - [`envelope`]: the small versioned envelope (magic, version, encoding, compression,
//!   lengths) around one batch, with a cap on the decompressed size.
//! - [`batch`]: [`StreamBatch`](batch::StreamBatch), the rkyv-archived batch of series that
//!   workers read in place, built from flushed statsd batches or parsed Datadog payloads,
//!   and its SignalFx JSON alternative.
//! - [`codec`]: one stream record from and to a batch, buffers reused.
//! - [`kpl`]: KPL record aggregation and KCL-compatible de-aggregation for Kinesis.
//!
//! The byte layouts are documented in `docs/STREAM_FORMAT.md`.

pub mod batch;
pub mod codec;
pub mod envelope;
pub mod kpl;

pub use batch::{
    access, partition_hash, ArchivedStreamBatch, BatchError, Kind, Point, StreamBatch,
};
pub use codec::{Decoded, StreamDecoder, StreamEncoder, StreamError};
pub use envelope::{Compression, Encoding, Envelope, EnvelopeError};
