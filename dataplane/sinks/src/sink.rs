//! The closed set of sinks, dispatched by `match`.
//!
//! Each sink handles one queue item ([`Egress`]) at a time: it encodes the item into
//! requests (or writes) within its limits and hands each to [`Ctx::deliver`], which retries
//! and accounts the values. What a sink cannot carry is counted as dropped
//! (`unsupported`), never lost silently.

pub mod blackhole;
pub mod datadog;
pub mod file;
pub mod forward;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kinesis;
pub mod local_log;
pub mod signalfx;
pub mod stdout;

use crate::driver::Ctx;
use crate::stats::DropReason;
use crate::SinkError;
use switchyard_core::config::{SinkConfig, SinkKind};
use switchyard_core::egress::{Egress, Endpoint, ForwardItem, IntakePayload};
use switchyard_core::encode::datadog_series;
use switchyard_core::intake;
use switchyard_core::model::SeriesBatch;

/// What a sink accepts per delivery call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    /// Most series per call (request, write).
    pub max_series: usize,
}

/// A contiguous slice of a batch handed to one delivery call.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// The batch.
    pub batch: &'a SeriesBatch,
    /// First series index.
    pub start: usize,
    /// One past the last series index.
    pub end: usize,
}

impl Chunk<'_> {
    /// Number of series in the chunk.
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Splits `batch` into chunks of at most `limit` series.
pub fn chunks(batch: &SeriesBatch, limit: usize) -> impl Iterator<Item = Chunk<'_>> {
    let limit = limit.max(1);
    (0..batch.len()).step_by(limit).map(move |start| Chunk {
        batch,
        start,
        end: batch.len().min(start.saturating_add(limit)),
    })
}

/// Reused space to parse an intake payload in place (simd-json mutates its input, and the
/// payload is shared with other sinks, so it is copied first).
#[derive(Default)]
pub struct ParseScratch {
    /// A copy of the body.
    pub body: Vec<u8>,
    /// simd-json's buffers.
    pub buffers: simd_json::Buffers,
    /// Decodes payloads the queues carry compressed.
    pub decoder: switchyard_core::intake::decompress::BodyDecoder,
}

impl std::fmt::Debug for ParseScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParseScratch").finish_non_exhaustive()
    }
}

impl ParseScratch {
    /// Copies `body` into the scratch buffer; returns it and the parser's buffers.
    pub fn load(&mut self, body: &[u8]) -> (&mut [u8], &mut simd_json::Buffers) {
        self.body.clear();
        self.body.extend_from_slice(body);
        (&mut self.body, &mut self.buffers)
    }

    /// Writes a payload's JSON (decoded if it is stored compressed) into the scratch
    /// buffer; returns it and the parser's buffers.
    ///
    /// # Errors
    /// The stored body does not decode (not expected: the intake decoded it).
    pub fn load_payload(
        &mut self,
        p: &IntakePayload,
    ) -> Result<(&mut [u8], &mut simd_json::Buffers), switchyard_core::intake::BodyError> {
        p.json_into(&mut self.decoder, &mut self.body)?;
        Ok((&mut self.body, &mut self.buffers))
    }
}

/// Counts a forwarder flush handed to a sink other than `forward` as `unsupported`.
pub(crate) fn not_forwarded(f: &ForwardItem, ctx: &Ctx<'_>) {
    ctx.drop_once_logged(
        DropReason::Unsupported,
        f.partials.len() as u64,
        "forwarder aggregates are sent only by the forward sink",
    );
}

/// Every sink kind.
#[derive(Debug)]
pub enum AnySink {
    /// NDJSON to a file.
    File(file::FileSink),
    /// NDJSON to standard output.
    Stdout(stdout::StdoutSink),
    /// Discards.
    Blackhole(blackhole::BlackholeSink),
    /// Datadog intake.
    Datadog(Box<datadog::DatadogSink>),
    /// SignalFx `/v2/datapoint`.
    Signalfx(Box<signalfx::SignalfxSink>),
    /// Kinesis Data Streams (KPL-aggregated stream batches).
    Kinesis(Box<kinesis::KinesisSink>),
    /// Stream records on a Kafka topic (cargo feature `kafka`).
    #[cfg(feature = "kafka")]
    Kafka(Box<kafka::KafkaSink>),
    /// The local segment log (stream records).
    LocalLog(Box<local_log::LocalLogSink>),
    /// Aggregators (forwarder mode).
    Forward(Box<forward::ForwardSink>),
}

impl AnySink {
    /// Builds a sink from its validated config (opens files, reads secrets and CA files).
    ///
    /// # Errors
    /// Why the sink could not be built.
    pub fn build(cfg: &SinkConfig) -> Result<Self, SinkError> {
        Ok(match cfg.kind() {
            SinkKind::File { path } => AnySink::File(file::FileSink::open(&path)?),
            SinkKind::Stdout => AnySink::Stdout(stdout::StdoutSink::new()),
            SinkKind::Blackhole => AnySink::Blackhole(blackhole::BlackholeSink),
            SinkKind::Datadog(s) => AnySink::Datadog(Box::new(datadog::DatadogSink::new(&s)?)),
            SinkKind::Signalfx(s) => AnySink::Signalfx(Box::new(signalfx::SignalfxSink::new(&s)?)),
            SinkKind::Kinesis(s) => AnySink::Kinesis(Box::new(kinesis::KinesisSink::new(&s)?)),
            #[cfg(feature = "kafka")]
            SinkKind::Kafka(s) => AnySink::Kafka(Box::new(kafka::KafkaSink::new(&s)?)),
            #[cfg(not(feature = "kafka"))]
            SinkKind::Kafka(_) => {
                return Err(SinkError::Fatal(
                    "built without the kafka feature: rebuild with --features kafka".into(),
                ))
            }
            SinkKind::LocalLog(s) => AnySink::LocalLog(Box::new(local_log::LocalLogSink::new(&s)?)),
            SinkKind::Forward(s) => AnySink::Forward(Box::new(forward::ForwardSink::new(&s)?)),
        })
    }

    /// The sink's per-call limits.
    pub fn limits(&self) -> SinkLimits {
        match self {
            AnySink::File(_) | AnySink::Stdout(_) => SinkLimits { max_series: 10_000 },
            AnySink::Datadog(s) => SinkLimits {
                max_series: s.max_series,
            },
            AnySink::Signalfx(s) => SinkLimits {
                max_series: s.max_series,
            },
            AnySink::Blackhole(_) | AnySink::Kinesis(_) | AnySink::Forward(_) => SinkLimits {
                max_series: usize::MAX,
            },
            #[cfg(feature = "kafka")]
            AnySink::Kafka(_) => SinkLimits {
                max_series: kafka::MAX_SERIES_PER_RECORD,
            },
            AnySink::LocalLog(_) => SinkLimits {
                max_series: local_log::MAX_SERIES_PER_RECORD,
            },
        }
    }

    /// Delivers one queue item: every value it carries ends up delivered or dropped by
    /// reason in `ctx.stats`.
    pub fn handle(&mut self, item: &Egress, ctx: &Ctx<'_>) {
        let limit = self.limits().max_series;
        if let Egress::Forward(f) = item {
            return match self {
                AnySink::Forward(s) => s.handle(f, ctx),
                _ => not_forwarded(f, ctx),
            };
        }
        match self {
            AnySink::Blackhole(_) => {
                ctx.delivered(item.points());
            }
            AnySink::Datadog(s) => s.handle(item, ctx),
            AnySink::Signalfx(s) => s.handle(item, ctx),
            AnySink::Kinesis(s) => s.handle(item, ctx),
            #[cfg(feature = "kafka")]
            AnySink::Kafka(s) => s.handle(item, ctx),
            AnySink::LocalLog(s) => s.handle(item, ctx),
            AnySink::Forward(_) => ctx.drop_once_logged(
                DropReason::Unsupported,
                item.points(),
                "the forward sink carries only the forwarder's statsd aggregates",
            ),
            AnySink::File(_) | AnySink::Stdout(_) => match item {
                Egress::Series(b) => {
                    for c in chunks(b, limit) {
                        let raw = match self {
                            AnySink::File(s) => s.encode(c),
                            AnySink::Stdout(s) => s.encode(c),
                            _ => 0,
                        };
                        ctx.deliver(c.len() as u64, raw, || self.write_buf());
                    }
                }
                Egress::Payload(p) => self.write_payload(p, ctx),
                Egress::Forward(f) => not_forwarded(f, ctx),
            },
        }
    }

    /// File and stdout: writes the encoded buffer.
    fn write_buf(&mut self) -> Result<u64, SinkError> {
        match self {
            AnySink::File(s) => s.write_buf(),
            AnySink::Stdout(s) => s.write_buf(),
            _ => Ok(0),
        }
    }

    /// File and stdout: a v1 or v2 series payload is written as its series, one v1 object
    /// per line (the sinks' NDJSON format); other endpoints are `unsupported`.
    fn write_payload(&mut self, p: &IntakePayload, ctx: &Ctx<'_>) {
        let (scratch, buf) = match self {
            AnySink::File(s) => (&mut s.scratch, &mut s.buf),
            AnySink::Stdout(s) => (&mut s.scratch, &mut s.buf),
            _ => return,
        };
        if !matches!(p.endpoint, Endpoint::SeriesV1 | Endpoint::SeriesV2) {
            return ctx.drop_once_logged(
                DropReason::Unsupported,
                p.points,
                &format!(
                    "{} payloads are not written by file or stdout sinks",
                    p.endpoint.label()
                ),
            );
        }
        buf.clear();
        let parsed = scratch.load_payload(p).and_then(|(body, buffers)| {
            intake::for_each_series(p.endpoint, body, buffers, |s| {
                datadog_series::write_dd_series(buf, s)
            })
        });
        if let Err(e) = parsed {
            tracing::error!(sink = ctx.name, error = %e, "invalid series payload: dropping it");
            ctx.drop_values(DropReason::Fatal, p.points);
            return;
        }
        let raw = buf.len() as u64;
        ctx.deliver(p.points, raw, || self.write_buf());
    }

    /// Flushes buffered output (called when the queue runs dry and at shutdown).
    ///
    /// # Errors
    /// A retryable error when the flush failed.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            AnySink::File(s) => s.flush(),
            AnySink::Stdout(s) => s.flush(),
            AnySink::Datadog(_)
            | AnySink::Signalfx(_)
            | AnySink::Blackhole(_)
            | AnySink::Kinesis(_)
            | AnySink::LocalLog(_)
            | AnySink::Forward(_) => Ok(()),
            // Every record was awaited in `handle`.
            #[cfg(feature = "kafka")]
            AnySink::Kafka(_) => Ok(()),
        }
    }
}
