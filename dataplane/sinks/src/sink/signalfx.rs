//! SignalFx sink: translates series to `/v2/datapoint` (`formats.md` §5, via
//! [`switchyard_core::translate`]) as JSON or protobuf `DataPointUploadMessage`
//! (`encoding`), compresses with libdeflate, and POSTs with `X-SF-Token`.
//!
//! Inputs: statsd batches; HTTP intake payloads of `/api/v1/series` and `/api/v2/series`
//! (decoded again into a reused buffer when the queue carries the client's gzip/zlib bytes,
//! else copied into it, then parsed in place) and `/api/v1/check_run` (each check
//! as a gauge of its status, §5.3). Distribution points and events are not translated:
//! their points are counted as dropped, `reason="unsupported"`, with one info log.
//! Requests carry at most `max_series_per_request` series.
//!
//! Outcomes: 2xx delivered; 5xx, 408, 429, timeouts and connection errors retried; any other
//! status is `rejected` (never retried) and the request (its JSON or protobuf body before
//! compression) goes to the sink's dead letters ([`crate::deadletter`]). Points the translation drops (non-finite values,
//! too many dimensions, unknown types) are counted as `reason="translation"`.
//!
//! Buffers (body, compressed body, parse scratch, protobuf scratch) and the translator are
//! reused across requests.

pub mod proto;

use super::{chunks, ParseScratch};
use crate::driver::{Ctx, DeadLetterRequest};
use crate::http::{BodyCompressor, HttpClient};
use crate::stats::DropReason;
use crate::SinkError;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_core::config::{SfxEncoding, SignalfxSettings};
use switchyard_core::egress::{Egress, Endpoint, IntakePayload};
use switchyard_core::intake::{self, check_run, BodyError};
use switchyard_core::translate::{DdSeries, TranslateConfig, Translator};

/// Posts translated datapoints to a SignalFx-compatible endpoint.
pub struct SignalfxSink {
    url: String,
    token: Option<String>,
    encoding: SfxEncoding,
    http: HttpClient,
    compressor: BodyCompressor,
    translator: Translator,
    proto: proto::ProtoWriter,
    json: Vec<u8>,
    scratch: ParseScratch,
    pending_series: usize,
    /// Most series per request.
    pub max_series: usize,
}

impl std::fmt::Debug for SignalfxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("SignalfxSink")
            .field("url", &self.url)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl SignalfxSink {
    /// Builds the sink; reads the token from its environment variable.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when the named token variable is not set or `ca_file` is unusable.
    pub fn new(s: &SignalfxSettings) -> Result<Self, SinkError> {
        let token = match &s.token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                SinkError::Fatal(format!("environment variable {var} (token_env) is not set"))
            })?),
            None => None,
        };
        Ok(Self {
            url: format!("{}/v2/datapoint", s.http.endpoint),
            token,
            encoding: s.encoding,
            http: HttpClient::new(&s.http)?,
            compressor: BodyCompressor::new(s.http.compression, s.http.compression_level),
            translator: Translator::new(TranslateConfig {
                rate_as: s.rate_as,
                ..Default::default()
            }),
            proto: proto::ProtoWriter::default(),
            json: Vec::with_capacity(1 << 20),
            scratch: ParseScratch::default(),
            pending_series: 0,
            max_series: s.http.max_series_per_request.max(1),
        })
    }

    /// Translates and delivers one queue item.
    pub fn handle(&mut self, item: &Egress, ctx: &Ctx<'_>) {
        match item {
            Egress::Series(b) => {
                for c in chunks(b, self.max_series) {
                    match self.encoding {
                        SfxEncoding::Json => self.translator.push_batch_range(b, c.start, c.end),
                        SfxEncoding::Protobuf => {
                            let w = &mut self.proto;
                            self.translator
                                .visit_batch_range(b, c.start, c.end, |t| w.push(t));
                        }
                    }
                    ctx.set_part(Some(c.start..c.end));
                    self.send(ctx);
                    ctx.set_part(None);
                }
            }
            Egress::Payload(p) => self.handle_payload(p, ctx),
            Egress::Forward(f) => super::not_forwarded(f, ctx),
        }
    }

    fn handle_payload(&mut self, p: &IntakePayload, ctx: &Ctx<'_>) {
        if matches!(p.endpoint, Endpoint::DistributionPoints | Endpoint::Events) {
            return ctx.drop_once_logged(
                DropReason::Unsupported,
                p.points,
                &format!(
                    "{} payloads are not translated to SignalFx; their points are dropped",
                    p.endpoint.label()
                ),
            );
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let (body, buffers) = match scratch.load_payload(p) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.scratch = scratch;
                tracing::error!(sink = ctx.name, endpoint = p.endpoint.label(), error = %e,
                    points = p.points, "stored payload could not be decoded: dropping it");
                return ctx.drop_values(DropReason::Fatal, p.points);
            }
        };
        let mut accounted = 0;
        let parsed: Result<usize, BodyError> = match p.endpoint {
            Endpoint::SeriesV1 | Endpoint::SeriesV2 => {
                intake::for_each_series(p.endpoint, body, buffers, |s| {
                    accounted += self.add(s, ctx);
                })
            }
            Endpoint::CheckRun => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64().floor());
                check_run::for_each_check(body, buffers, |c| {
                    let mut point = [[None; 2]; 1];
                    accounted += self.add(&c.as_gauge(now, &mut point), ctx);
                })
            }
            // Handled above, before decoding.
            Endpoint::DistributionPoints | Endpoint::Events => Ok(0),
        };
        self.scratch = scratch;
        if self.pending_series > 0 {
            accounted += self.send(ctx);
        }
        if let Err(e) = parsed {
            // The intake validated the payload, so this is a bug, not bad input: account
            // for what was not translated.
            let left = p.points.saturating_sub(accounted);
            tracing::error!(sink = ctx.name, endpoint = p.endpoint.label(), error = %e, points = left,
                "payload could not be parsed again: dropping the rest");
            ctx.drop_values(DropReason::Fatal, left);
        }
    }

    /// Translates one series into the pending request, sending it when it is full. Returns
    /// the points accounted for by requests sent meanwhile.
    fn add(&mut self, s: &DdSeries<'_>, ctx: &Ctx<'_>) -> u64 {
        match self.encoding {
            SfxEncoding::Json => self.translator.push(s),
            SfxEncoding::Protobuf => {
                let w = &mut self.proto;
                self.translator.visit(s, |t| w.push(t));
            }
        }
        self.pending_series += 1;
        if self.pending_series >= self.max_series {
            self.send(ctx)
        } else {
            0
        }
    }

    /// Sends the pending request: accounts translation drops, delivers the rest. Returns the
    /// points it accounted for.
    fn send(&mut self, ctx: &Ctx<'_>) -> u64 {
        self.pending_series = 0;
        let st = self.translator.take_stats();
        ctx.drop_values(DropReason::Translation, st.dropped.iter().sum());
        let raw: &[u8] = match self.encoding {
            SfxEncoding::Json => {
                self.json.clear();
                if !self.translator.is_empty() {
                    self.translator.finish(&mut self.json);
                }
                &self.json
            }
            SfxEncoding::Protobuf => &self.proto.body,
        };
        if st.points_out > 0 {
            let content_type = match self.encoding {
                SfxEncoding::Json => "application/json",
                SfxEncoding::Protobuf => "application/x-protobuf",
            };
            let encoding = self.compressor.content_encoding();
            let raw_len = raw.len() as u64;
            match self.compressor.compress(raw) {
                Ok(body) => {
                    let mut headers = [("Content-Type", content_type), ("", ""), ("", "")];
                    let mut n = 1;
                    if let Some(e) = encoding {
                        headers[n] = ("Content-Encoding", e);
                        n += 1;
                    }
                    if let Some(t) = &self.token {
                        headers[n] = ("X-SF-Token", t);
                        n += 1;
                    }
                    let (url, http) = (&self.url, &mut self.http);
                    ctx.deliver_or_dead_letter(
                        st.points_out,
                        raw_len,
                        DeadLetterRequest {
                            url,
                            content_type,
                            headers: &headers[..n],
                        },
                        || Cow::Borrowed(raw),
                        || http.post(url, &headers[..n], body, ctx.stats),
                    );
                }
                Err(e) => {
                    tracing::error!(sink = ctx.name, error = %e, "dropping request");
                    ctx.drop_values(DropReason::Fatal, st.points_out);
                }
            }
        }
        self.proto.body.clear();
        st.points_in
    }
}
