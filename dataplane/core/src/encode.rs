//! Wire encoders for flushed series.
//!
//! Encoders append to a caller-owned, reused `Vec<u8>`; they allocate only when the buffer
//! must grow.

pub mod datadog_series;
