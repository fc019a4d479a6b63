//! The pure half of the HTTP intake: request-body decoding within limits and Datadog payload
//! parsing. The glommio HTTP server (`switchyard-shard`'s `http` module) only moves bytes to
//! and from here.
//!
//! - [`accept`]: one request body from wire bytes to an accepted
//!   [`IntakePayload`](crate::egress::IntakePayload): decode within the endpoint's caps,
//!   validate the whole payload, count series and points.
//! - [`decompress`]: `identity`, `gzip`, `deflate` (a zlib stream, with raw-deflate
//!   fallback) with libdeflate, and `zstd`/`zstd1`, always into a buffer capped at the
//!   configured decompressed limit: a bomb gets [`BodyError::TooLarge`], never an
//!   allocation of its claimed size.
//! - [`json`]: the nesting guard (simd-json recurses per level when building values, so a
//!   deep body would overflow the stack) and shared field helpers.
//! - [`series_v1`], [`series_v2`]: `/api/v1/series` and `/api/v2/series`, parsed in place
//!   with simd-json (reused buffers), every variant real clients send (float timestamps,
//!   `null` host/device, missing `type`/`interval`), handed out as borrowed
//!   [`DdSeries`](crate::translate::DdSeries) so one translator serves both.
//! - [`check_run`], [`events`], [`distribution_points`]: the other intake endpoints,
//!   validated and viewed in place.
//! - [`gostatsd`]: gostatsd forwarders' `/v2/raw` and `/v2/event` protobuf bodies (zlib,
//!   lz4 or none), and their series as aggregator input.

pub mod accept;
pub mod check_run;
pub mod decompress;
pub mod distribution_points;
pub mod events;
pub mod gostatsd;
pub mod json;
pub mod series_v1;
pub mod series_v2;

/// Parses a v1 or v2 series body in place, chosen by `endpoint`, and calls `f` with each
/// series as the same borrowed [`DdSeries`](crate::translate::DdSeries) view. Other
/// endpoints yield nothing (`Ok(0)`).
///
/// # Errors
/// The parser's [`BodyError`].
pub fn for_each_series(
    endpoint: crate::egress::Endpoint,
    body: &mut [u8],
    buffers: &mut simd_json::Buffers,
    f: impl FnMut(&crate::translate::DdSeries<'_>),
) -> Result<usize, BodyError> {
    match endpoint {
        crate::egress::Endpoint::SeriesV1 => series_v1::for_each_series(body, buffers, f),
        crate::egress::Endpoint::SeriesV2 => series_v2::for_each_series(body, buffers, f),
        _ => Ok(0),
    }
}

/// Why a request body was rejected, with the HTTP status the vendor would answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// `Content-Encoding` is not one we decode (415).
    #[error("unsupported Content-Encoding `{0}`")]
    UnsupportedEncoding(String),
    /// The body is larger than allowed once decompressed (413).
    #[error("payload too large: more than {limit} bytes once decompressed")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The compressed stream is corrupt or truncated (400).
    #[error("invalid {encoding} body: {detail}")]
    Corrupt {
        /// The encoding.
        encoding: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The JSON is malformed or not the expected shape (400).
    #[error("{0}")]
    Invalid(String),
}

impl BodyError {
    /// The HTTP status the Datadog intake answers with.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::UnsupportedEncoding(_) => 415,
            BodyError::TooLarge { .. } => 413,
            BodyError::Corrupt { .. } | BodyError::Invalid(_) => 400,
        }
    }
}
