//! SignalFx sink: translates flushed series to `/v2/datapoint` JSON (`formats.md` §5, via
//! [`switchyard_core::translate`]), compresses with libdeflate gzip, and POSTs with
//! `X-SF-Token`.
//!
//! Outcomes: 200 delivered; 429, 5xx, timeouts and connection errors are retryable; any
//! other 4xx is fatal for the chunk (the data will never be accepted). Points the
//! translation drops (non-finite values, too many dimensions) are counted as
//! `reason="translation"`.
//!
//! Buffers (JSON body, compressed body) and the translator are reused across requests.

use super::Chunk;
use crate::SinkError;
use switchyard_core::config::{Compression, SignalfxSettings};
use switchyard_core::translate::{TranslateConfig, Translator};

/// Posts translated datapoints to a SignalFx-compatible endpoint.
pub struct SignalfxSink {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
    compressor: Option<libdeflater::Compressor>,
    translator: Translator,
    json: Vec<u8>,
    body: Vec<u8>,
    /// Datapoints of the last delivered chunk that translation dropped.
    pub last_translation_drops: u64,
    /// Most series per request.
    pub max_series: usize,
}

impl std::fmt::Debug for SignalfxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("SignalfxSink")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SignalfxSink {
    /// Builds the sink; reads the token from its environment variable.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when the named token variable is not set.
    pub fn new(s: &SignalfxSettings) -> Result<Self, SinkError> {
        let token = match &s.token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                SinkError::Fatal(format!("environment variable {var} (token_env) is not set"))
            })?),
            None => None,
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(s.request_timeout))
            .http_status_as_error(false)
            .build();
        let compressor = match s.compression {
            Compression::Gzip => Some(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(i32::from(s.compression_level))
                    .unwrap_or_default(),
            )),
            Compression::None => None,
        };
        Ok(Self {
            url: s.datapoint_url.clone(),
            token,
            agent: config.into(),
            compressor,
            translator: Translator::new(TranslateConfig {
                rate_as: s.rate_as,
                ..Default::default()
            }),
            json: Vec::with_capacity(1 << 20),
            body: Vec::new(),
            last_translation_drops: 0,
            max_series: s.max_series_per_request,
        })
    }

    /// Gzips `json` into `out` when a compressor is configured; returns the bytes to send.
    fn encode<'b>(
        compressor: Option<&mut libdeflater::Compressor>,
        json: &'b [u8],
        out: &'b mut Vec<u8>,
    ) -> &'b [u8] {
        let Some(c) = compressor else { return json };
        out.resize(c.gzip_compress_bound(json.len()), 0);
        match c.gzip_compress(json, out) {
            Ok(n) => &out[..n],
            // The bound makes this unreachable; fall back to the plain body.
            Err(_) => json,
        }
    }

    /// Translates and posts a chunk; returns the bytes sent.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] for 429, 5xx and transport errors; [`SinkError::Fatal`] for
    /// other 4xx.
    pub fn deliver(&mut self, chunk: Chunk<'_>) -> Result<u64, SinkError> {
        self.translator
            .push_batch_range(chunk.batch, chunk.start, chunk.end);
        let st = self.translator.take_stats();
        self.last_translation_drops = st.dropped.iter().sum();
        if self.translator.is_empty() {
            return Ok(0);
        }
        self.json.clear();
        self.translator.finish(&mut self.json);
        let gzip = self.compressor.is_some();
        let body = Self::encode(self.compressor.as_mut(), &self.json, &mut self.body);
        let sent = body.len() as u64;
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        if let Some(t) = &self.token {
            req = req.header("X-SF-Token", t);
        }
        let url = &self.url;
        let resp = req
            .send(body)
            .map_err(|e| SinkError::Retryable(format!("POST {url}: {e}")))?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(sent),
            429 | 500..=599 | 408 => {
                Err(SinkError::Retryable(format!("POST {url}: HTTP {status}")))
            }
            _ => Err(SinkError::Fatal(format!("POST {url}: HTTP {status}"))),
        }
    }
}
