//! Datadog sink: the old vendor, so nothing is translated.
//!
//! - Statsd batches are encoded as `POST /api/v1/series` bodies (`{"series":[...]}`, at most
//!   `max_series_per_request` series each; encoded straight into a reused buffer).
//! - HTTP intake payloads are passed through: POSTed to `endpoint` + the path they came in
//!   on, with the body as received (validated by the intake). When the payload holds the
//!   client's bytes in the encoding this sink sends (gzip for `gzip`, a zlib stream for
//!   `deflate`, plain JSON for `none`), those bytes go out untouched: no decode, no
//!   recompression (the costliest step otherwise). Else the JSON is decoded if needed and
//!   compressed per the sink's `compression`. `bytes_uncompressed` counts the JSON either
//!   way.
//!
//! Headers: `Content-Type: application/json`, `Content-Encoding` (`gzip`, `deflate` = a zlib
//! stream, or none), and `DD-API-KEY`: the key from `api_key_env` when configured, else the
//! key the payload's client sent. Data with no key at all (statsd aggregates without
//! `api_key_env`, a payload without a client key) is dropped, `reason="no_api_key"`, with one
//! error log. Any 2xx is success; retries and rejections as in [`crate::http`]; a refused
//! request goes to the sink's dead letters ([`crate::deadletter`]) with its JSON (a
//! passed-through payload's client bytes are decoded again for it).

use super::chunks;
use crate::driver::{Ctx, DeadLetterRequest};
use crate::http::{BodyCompressor, HttpClient};
use crate::stats::DropReason;
use crate::SinkError;
use std::borrow::Cow;
use switchyard_core::config::DatadogSettings;
use switchyard_core::egress::{ApiKey, BodyFormat, Egress, Endpoint, IntakePayload};
use switchyard_core::encode::datadog_series;
use switchyard_core::intake::decompress::BodyDecoder;

/// Posts series and passes payloads through to a Datadog-compatible intake.
pub struct DatadogSink {
    urls: [String; Endpoint::ALL.len()],
    api_key: Option<ApiKey>,
    http: HttpClient,
    compressor: BodyCompressor,
    json: Vec<u8>,
    decoder: BodyDecoder,
    /// Most series per request (statsd batches).
    pub max_series: usize,
}

impl std::fmt::Debug for DatadogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogSink")
            .field("series_url", &self.urls[Endpoint::SeriesV1.index()])
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl DatadogSink {
    /// Builds the sink; reads the API key from its environment variable, if configured.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when the named variable is not set (or empty), or `ca_file` is
    /// unusable.
    pub fn new(s: &DatadogSettings) -> Result<Self, SinkError> {
        let api_key = match &s.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Some(ApiKey::new(k.trim())),
                _ => {
                    return Err(SinkError::Fatal(format!(
                        "environment variable {var} (api_key_env) is not set"
                    )))
                }
            },
            None => None,
        };
        Ok(Self {
            urls: Endpoint::ALL.map(|e| format!("{}{}", s.http.endpoint, e.path())),
            api_key,
            http: HttpClient::new(&s.http)?,
            compressor: BodyCompressor::new(s.http.compression, s.http.compression_level),
            json: Vec::with_capacity(1 << 20),
            decoder: BodyDecoder::default(),
            max_series: s.http.max_series_per_request.max(1),
        })
    }

    /// Delivers one queue item.
    pub fn handle(&mut self, item: &Egress, ctx: &Ctx<'_>) {
        match item {
            Egress::Series(b) => {
                let Some(key) = &self.api_key else {
                    return ctx.drop_once_logged(
                        DropReason::NoApiKey,
                        b.len() as u64,
                        "statsd aggregates cannot be sent to Datadog without a key: set api_key_env on this sink",
                    );
                };
                for c in chunks(b, self.max_series) {
                    self.json.clear();
                    datadog_series::write_series_payload(&mut self.json, b, c.start, c.end);
                    ctx.set_part(Some(c.start..c.end));
                    post(
                        &mut self.http,
                        &mut self.compressor,
                        ctx,
                        &self.urls[Endpoint::SeriesV1.index()],
                        key,
                        &self.json,
                        c.len() as u64,
                    );
                    ctx.set_part(None);
                }
            }
            Egress::Payload(p) => self.pass_through(p, ctx),
            Egress::Forward(f) => super::not_forwarded(f, ctx),
        }
    }

    fn pass_through(&mut self, p: &IntakePayload, ctx: &Ctx<'_>) {
        let Some(key) = self.api_key.as_ref().or(p.api_key.as_ref()) else {
            return ctx.drop_once_logged(
                DropReason::NoApiKey,
                p.points,
                "a payload without a client API key cannot be forwarded: set api_key_env on this sink",
            );
        };
        let url = &self.urls[p.endpoint.index()];
        let sends = self.compressor.content_encoding();
        if p.body.format.content_encoding() == sends {
            // The client's bytes are already what this sink would send.
            let headers = headers(key, sends);
            let (http, body, decoder) = (&mut self.http, &p.body.bytes, &mut self.decoder);
            // The JSON, decoded again only if the vendor refuses it.
            let json = move || {
                if p.body.format == BodyFormat::Json {
                    return Cow::Borrowed(&body[..]);
                }
                let mut out = Vec::new();
                match p.json_into(decoder, &mut out) {
                    Ok(()) => Cow::Owned(out),
                    Err(_) => Cow::Borrowed(&body[..]),
                }
            };
            ctx.deliver_or_dead_letter(
                p.points,
                p.decoded_bytes,
                dead_letter(url, &headers),
                json,
                || http.post(url, headers.as_slice(), body, ctx.stats),
            );
            return;
        }
        let raw: &[u8] = if p.body.format == BodyFormat::Json {
            &p.body.bytes
        } else {
            if let Err(e) = p.json_into(&mut self.decoder, &mut self.json) {
                tracing::error!(sink = ctx.name, endpoint = p.endpoint.label(), error = %e,
                    points = p.points, "stored payload could not be decoded: dropping it");
                return ctx.drop_values(DropReason::Fatal, p.points);
            }
            &self.json
        };
        post(
            &mut self.http,
            &mut self.compressor,
            ctx,
            url,
            key,
            raw,
            p.points,
        );
    }
}

/// The request headers: JSON, the key, and the `Content-Encoding` if any.
fn headers<'a>(key: &'a ApiKey, encoding: Option<&'static str>) -> Headers<'a> {
    let mut h = Headers {
        list: [
            ("Content-Type", "application/json"),
            ("DD-API-KEY", key.expose()),
            ("", ""),
        ],
        n: 2,
    };
    if let Some(e) = encoding {
        h.list[2] = ("Content-Encoding", e);
        h.n = 3;
    }
    h
}

/// Up to three headers, without allocating.
struct Headers<'a> {
    list: [(&'static str, &'a str); 3],
    n: usize,
}

impl Headers<'_> {
    fn as_slice(&self) -> &[(&'static str, &str)] {
        &self.list[..self.n]
    }
}

/// Compresses `raw` and delivers it (with retries) as `values` values.
fn post(
    http: &mut HttpClient,
    compressor: &mut BodyCompressor,
    ctx: &Ctx<'_>,
    url: &str,
    key: &ApiKey,
    raw: &[u8],
    values: u64,
) {
    let encoding = compressor.content_encoding();
    let body = match compressor.compress(raw) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(sink = ctx.name, error = %e, "dropping request");
            return ctx.drop_values(DropReason::Fatal, values);
        }
    };
    let headers = headers(key, encoding);
    ctx.deliver_or_dead_letter(
        values,
        raw.len() as u64,
        dead_letter(url, &headers),
        || Cow::Borrowed(raw),
        || http.post(url, headers.as_slice(), body, ctx.stats),
    );
}

/// What the dead letters record of a request (its body is JSON).
fn dead_letter<'a>(url: &'a str, headers: &'a Headers<'a>) -> DeadLetterRequest<'a> {
    DeadLetterRequest {
        url,
        content_type: "application/json",
        headers: headers.as_slice(),
    }
}
