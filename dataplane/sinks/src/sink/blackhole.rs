//! Counts and discards: for benchmarks and for measuring the rest of the pipeline.

/// The blackhole sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackholeSink;
