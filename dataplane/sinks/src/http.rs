//! What the HTTP vendor sinks share: a ureq agent (rustls with the ring provider; Mozilla's
//! public roots, plus the PEM certificates of `ca_file`), a reused libdeflate compressor and
//! body buffer, and the classification of responses.
//!
//! Outcomes of one attempt: any 2xx succeeds; 5xx, 408 and 429 are retryable (with the
//! vendor's `Retry-After` seconds on 429 and 503, capped at [`RETRY_AFTER_CAP`]); every other
//! status is a rejection, never retried; no response at all (connection, TLS, timeout) is
//! retryable. Each attempt is counted in `switchyard_sink_requests_total{outcome}` and
//! timed in `switchyard_sink_request_duration_seconds`. Redirects are not followed.
//!
//! Keys and tokens travel only in request headers; nothing here logs a header. A vendor may
//! quote the credential it refused in its error body ("invalid API key abc..."): the quoted
//! body of a rejection has every credential header's value replaced by `<redacted>` (see
//! [`redact_credentials`]) before it reaches an error, a log line or the dead letters.

use crate::stats::{RequestOutcome, SinkStats};
use crate::SinkError;
use std::io::Read;
use std::time::{Duration, Instant};
use switchyard_core::config::{Compression, HttpSinkSettings};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Longest `Retry-After` honoured; a longer one is cut to this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// Response bytes read (to reuse the connection, to log a rejection's reason, and for the
/// dead letters).
const RESPONSE_PREFIX: u64 = crate::deadletter::RESPONSE_CAP as u64;
/// Response bytes quoted in a rejection log.
const LOGGED_PREFIX: usize = 256;

/// Request headers that carry credentials (lower-case names): their values never appear in
/// an error.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "dd-api-key",
    "dd-application-key",
    "x-sf-token",
    "authorization",
    "x-api-key",
];

/// `text` with every value of a credential header in `headers` replaced by `<redacted>`.
pub fn redact_credentials(text: &str, headers: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in headers {
        let secret = CREDENTIAL_HEADERS
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c));
        // `Bearer <token>`: the token alone may be quoted too.
        let token = value.split_once(' ').map_or(*value, |(_, t)| t).trim();
        for v in [*value, token] {
            if secret && !v.is_empty() && out.contains(v) {
                out = out.replace(v, "<redacted>");
            }
        }
    }
    out
}

/// A request body compressor (libdeflate), reused across requests.
pub struct BodyCompressor {
    compression: Compression,
    inner: Option<libdeflater::Compressor>,
    out: Vec<u8>,
}

impl std::fmt::Debug for BodyCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyCompressor")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl BodyCompressor {
    /// A compressor for `compression` at libdeflate `level` (1..=12, validated at load).
    pub fn new(compression: Compression, level: u8) -> Self {
        let inner = match compression {
            Compression::None => None,
            Compression::Gzip | Compression::Deflate => Some(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(i32::from(level)).unwrap_or_default(),
            )),
        };
        Self {
            compression,
            inner,
            out: Vec::new(),
        }
    }

    /// The `Content-Encoding` to send, if any (`deflate` is a zlib stream, as Datadog means
    /// it).
    pub fn content_encoding(&self) -> Option<&'static str> {
        match self.compression {
            Compression::Gzip => Some("gzip"),
            Compression::Deflate => Some("deflate"),
            Compression::None => None,
        }
    }

    /// Compresses `raw` into the reused buffer and returns the bytes to send (`raw` itself
    /// without compression).
    ///
    /// # Errors
    /// [`SinkError::Fatal`] if libdeflate fails (its bound makes this unreachable).
    pub fn compress<'b>(&'b mut self, raw: &'b [u8]) -> Result<&'b [u8], SinkError> {
        let Some(c) = self.inner.as_mut() else {
            return Ok(raw);
        };
        let (bound, res) = match self.compression {
            Compression::Gzip => {
                let bound = c.gzip_compress_bound(raw.len());
                self.out.resize(bound, 0);
                (bound, c.gzip_compress(raw, &mut self.out))
            }
            _ => {
                let bound = c.zlib_compress_bound(raw.len());
                self.out.resize(bound, 0);
                (bound, c.zlib_compress(raw, &mut self.out))
            }
        };
        match res {
            Ok(n) if n <= bound => Ok(&self.out[..n]),
            _ => Err(SinkError::Fatal("compression failed".into())),
        }
    }
}

/// The HTTP client of one sink worker.
pub struct HttpClient {
    agent: ureq::Agent,
    resp: Vec<u8>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

/// Trusted roots: Mozilla's, plus every certificate in `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<TlsConfig, SinkError> {
    let Some(path) = ca_file else {
        return Ok(TlsConfig::builder().root_certs(RootCerts::WebPki).build());
    };
    let pem = std::fs::read(path)
        .map_err(|e| SinkError::Fatal(format!("reading ca_file {}: {e}", path.display())))?;
    let mut extra = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => extra.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(SinkError::Fatal(format!(
                    "ca_file {}: invalid PEM: {e}",
                    path.display()
                )))
            }
        }
    }
    if extra.is_empty() {
        return Err(SinkError::Fatal(format!(
            "ca_file {}: no CERTIFICATE in it",
            path.display()
        )));
    }
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .chain(extra);
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::from(roots))
        .build())
}

/// A parsed `Retry-After` in seconds, capped; `None` when absent or an HTTP date.
fn retry_after(resp: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP))
}

impl HttpClient {
    /// A client with the sink's timeout and trusted roots.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when `ca_file` cannot be read or holds no certificate.
    pub fn new(s: &HttpSinkSettings) -> Result<Self, SinkError> {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(s.request_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls_config(s.ca_file.as_deref())?)
            .build();
        Ok(Self {
            agent: config.into(),
            resp: Vec::with_capacity(RESPONSE_PREFIX as usize),
        })
    }

    /// POSTs `body`; counts the attempt and its latency in `stats`. Returns the bytes sent.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] / [`SinkError::RetryAfter`] for 5xx, 408, 429 and transport
    /// errors; [`SinkError::Rejected`] for any other non-2xx status.
    pub fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        stats: &SinkStats,
    ) -> Result<u64, SinkError> {
        let mut req = self.agent.post(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let started = Instant::now();
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(e) => {
                stats.request(RequestOutcome::Error, started.elapsed());
                return Err(SinkError::Retryable(format!("POST {url}: {e}")));
            }
        };
        // Read a bounded prefix of the body: lets the connection be reused, and is the
        // reason quoted when the vendor refuses the data.
        self.resp.clear();
        let _ = resp
            .body_mut()
            .as_reader()
            .take(RESPONSE_PREFIX)
            .read_to_end_capped(&mut self.resp);
        let took = started.elapsed();
        let status = resp.status().as_u16();
        match status {
            200..=299 => {
                stats.request(RequestOutcome::Success, took);
                Ok(body.len() as u64)
            }
            408 | 429 | 500..=599 => {
                stats.request(RequestOutcome::Retryable, took);
                let reason = format!("POST {url}: HTTP {status}");
                match retry_after(&resp).filter(|_| matches!(status, 429 | 503)) {
                    Some(after) => Err(SinkError::RetryAfter { reason, after }),
                    None => Err(SinkError::Retryable(reason)),
                }
            }
            _ => {
                stats.request(RequestOutcome::Rejected, took);
                // Redacted from the whole prefix read, then cut: a credential that straddles
                // the cut is never half-quoted.
                let all = String::from_utf8_lossy(&self.resp);
                let redacted = redact_credentials(&all, headers);
                let quoted: String = redacted.chars().take(LOGGED_PREFIX).collect();
                Err(SinkError::Rejected {
                    status,
                    reason: format!("POST {url}: {quoted}"),
                    response: redacted,
                })
            }
        }
    }
}

/// `read_to_end` through a `take` (the limit is the `take`).
trait ReadCapped {
    fn read_to_end_capped(self, out: &mut Vec<u8>) -> std::io::Result<usize>;
}

impl<R: Read> ReadCapped for std::io::Take<R> {
    fn read_to_end_capped(mut self, out: &mut Vec<u8>) -> std::io::Result<usize> {
        let mut buf = [0u8; 1024];
        let mut total = 0;
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    out.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    total += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_quoted_by_a_vendor_are_redacted() {
        let headers = [
            ("Content-Type", "application/json"),
            ("DD-API-KEY", "k-123456"),
            ("Authorization", "Bearer tok-987"),
        ];
        let body = "{\"errors\":[\"API key k-123456 invalid\"],\"t\":\"tok-987\",\"ct\":\"application/json\"}";
        let r = redact_credentials(body, &headers);
        assert!(!r.contains("k-123456") && !r.contains("tok-987"), "{r}");
        assert!(r.contains("API key <redacted> invalid"), "{r}");
        // Other headers' values are not credentials.
        assert!(r.contains("application/json"), "{r}");
    }

    #[test]
    fn compressors_produce_what_their_content_encoding_says() {
        let raw = br#"{"series":[{"metric":"a","points":[[1,2]]}]}"#.repeat(20);
        let mut d = libdeflater::Decompressor::new();
        let mut out = vec![0u8; raw.len()];

        let mut gz = BodyCompressor::new(Compression::Gzip, 6);
        assert_eq!(gz.content_encoding(), Some("gzip"));
        let body = gz.compress(&raw).unwrap().to_vec();
        assert!(body.len() < raw.len());
        let n = d.gzip_decompress(&body, &mut out).unwrap();
        assert_eq!(&out[..n], &raw[..]);

        let mut z = BodyCompressor::new(Compression::Deflate, 1);
        assert_eq!(z.content_encoding(), Some("deflate"));
        let body = z.compress(&raw).unwrap().to_vec();
        let n = d.zlib_decompress(&body, &mut out).unwrap();
        assert_eq!(&out[..n], &raw[..]);

        let mut none = BodyCompressor::new(Compression::None, 6);
        assert_eq!(none.content_encoding(), None);
        assert_eq!(none.compress(&raw).unwrap(), &raw[..]);
    }
}
