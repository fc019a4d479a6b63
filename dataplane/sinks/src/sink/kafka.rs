//! The `kafka` sink (cargo feature `kafka`): every queue item becomes stream records on a
//! Kafka topic, produced by an idempotent producer (`switchyard-kafka`, librdkafka) and
//! accounted only once the broker acknowledged them.
//!
//! An item's series are grouped by partition, `md5(series key) mod partitions` (series key:
//! name, host, device and tags), so a series always lands on the same partition and keeps its
//! order there. Each group of at most [`MAX_SERIES_PER_RECORD`] series becomes one record:
//! a [`StreamBatch`] in the envelope of `docs/STREAM_FORMAT.md` with the configured encoding
//! and compression (libdeflate; librdkafka's own compression is off), produced to that
//! partition with the key `p<partition>`. All records of an item are handed to librdkafka
//! first, then each one's delivery report is awaited: a delivered record counts its points as
//! delivered; a failed one is sent again by the driver's retry loop (`max_retries`), then
//! dropped (`retries_exhausted`), by a new producer when the old one failed fatally or its
//! record timed out (a broker restarted without its data never takes the old producer id
//! again); a record the broker can never take (too large, not
//! authorized) is dropped as `fatal`. The partition count is read from the topic's metadata
//! and refreshed every [`PARTITIONS_REFRESH`].
//!
//! Payloads: `/api/v1/series` and `/api/v2/series` bodies are carried (points with a null
//! timestamp or value are dropped as `translation`); other endpoints are dropped as
//! `unsupported`.
//!
//! Metrics: the driver's per-sink counters (delivered, dropped by reason, retries, bytes:
//! `bytes_total` counts records as produced, `uncompressed_bytes_total` their payloads before
//! compression).

use crate::driver::Ctx;
use crate::sink::ParseScratch;
use crate::stats::DropReason;
use crate::SinkError;
use std::time::{Duration, Instant};
use switchyard_core::config::{BatchEncoding, Compression, KafkaSettings};
use switchyard_core::egress::{Egress, Endpoint, IntakePayload};
use switchyard_core::translate::TranslateConfig;
use switchyard_kafka::{Error as KafkaError, Pending, Producer, ProducerConfig, RDKafkaErrorCode};
use switchyard_stream::batch::partition_key;
use switchyard_stream::{envelope, kpl, Encoding, StreamBatch, StreamEncoder};

/// Most series in one record (keeps records well under the brokers' 1 MB default).
pub const MAX_SERIES_PER_RECORD: usize = 2000;
/// How often the topic's partition count is read again.
pub const PARTITIONS_REFRESH: Duration = Duration::from_secs(60);

/// The partition of a series: MD5 of its key (stable across processes and versions) modulo
/// the partition count.
pub fn partition_of(key: &str, partitions: usize) -> usize {
    (kpl::hash_key(key) % partitions.max(1) as u128) as usize
}

/// One record of an item on its way.
#[derive(Debug, Default)]
struct Outgoing {
    partition: i32,
    points: u64,
    raw: u64,
    record: Vec<u8>,
}

/// The Kafka sink of one worker.
#[derive(Debug)]
pub struct KafkaSink {
    producer: Producer,
    topic: String,
    encoding: Encoding,
    compression: envelope::Compression,
    request_timeout: Duration,
    encoder: StreamEncoder,
    partitions: Option<(usize, Instant)>,
    all: StreamBatch,
    parts: Vec<StreamBatch>,
    out: Vec<Outgoing>,
    key: String,
    scratch: ParseScratch,
}

fn stream_compression(c: Compression) -> envelope::Compression {
    match c {
        Compression::Gzip => envelope::Compression::Gzip,
        Compression::Deflate => envelope::Compression::Deflate,
        Compression::None => envelope::Compression::None,
    }
}

fn sink_error(e: KafkaError) -> SinkError {
    if e.is_retryable() || e.is_fatal() {
        SinkError::Retryable(e.to_string())
    } else {
        SinkError::Fatal(e.to_string())
    }
}

impl KafkaSink {
    /// Builds the sink: the producer (connections open lazily) and the encoder.
    ///
    /// # Errors
    /// An invalid producer configuration or compression level.
    pub fn new(s: &KafkaSettings) -> Result<Self, SinkError> {
        let st = &s.stream_settings;
        let mut pc = ProducerConfig::new(s.brokers.clone());
        pc.message_timeout = st.request_timeout;
        pc.extra.push((
            "request.timeout.ms".into(),
            st.request_timeout
                .as_millis()
                .clamp(1, i32::MAX as u128)
                .to_string(),
        ));
        let producer =
            Producer::new(pc).map_err(|e| SinkError::Fatal(format!("kafka producer: {e}")))?;
        let encoder =
            StreamEncoder::with_level(TranslateConfig::default(), i32::from(st.compression_level))
                .map_err(|e| SinkError::Fatal(format!("compression_level: {e}")))?;
        Ok(Self {
            producer,
            topic: s.topic.clone(),
            encoding: match st.encoding {
                BatchEncoding::Rkyv => Encoding::Rkyv,
                BatchEncoding::Json => Encoding::Json,
            },
            compression: stream_compression(st.compression),
            request_timeout: st.request_timeout,
            encoder,
            partitions: None,
            all: StreamBatch::new(),
            parts: Vec::new(),
            out: Vec::new(),
            key: String::new(),
            scratch: ParseScratch::default(),
        })
    }

    /// Delivers one queue item.
    pub fn handle(&mut self, item: &Egress, ctx: &Ctx<'_>) {
        self.all.clear();
        match item {
            Egress::Series(b) => self.all.extend_from_series_batch(b),
            Egress::Forward(f) => return super::not_forwarded(f, ctx),
            Egress::Payload(p) => {
                if !self.load_payload(p, ctx) {
                    return;
                }
            }
        }
        let total = self.all.point_count() as u64;
        if let Egress::Payload(p) = item {
            // Points with a null timestamp or value are not carried.
            ctx.drop_values(DropReason::Translation, p.points.saturating_sub(total));
        }
        if total == 0 {
            return;
        }
        let Some(n) = self.partition_count(ctx) else {
            let reason = if ctx.aborting() {
                DropReason::Shutdown
            } else {
                DropReason::RetriesExhausted
            };
            tracing::error!(sink = ctx.name, topic = %self.topic, values = total,
                "partition count of the topic unavailable: dropping the item");
            return ctx.drop_values(reason, total);
        };
        let series = self.all.len();
        let mut start = 0;
        while start < series {
            let end = series.min(start + MAX_SERIES_PER_RECORD.saturating_mul(n));
            self.group(start, end, n);
            self.encode(ctx);
            self.produce(ctx);
            start = end;
        }
    }

    /// Parses a series payload into `self.all`; false (values accounted) when it is not
    /// carried.
    fn load_payload(&mut self, p: &IntakePayload, ctx: &Ctx<'_>) -> bool {
        if !matches!(p.endpoint, Endpoint::SeriesV1 | Endpoint::SeriesV2) {
            ctx.drop_once_logged(
                DropReason::Unsupported,
                p.points,
                &format!(
                    "{} payloads are not written to Kafka; their points are dropped",
                    p.endpoint.label()
                ),
            );
            return false;
        }
        let parsed = self
            .scratch
            .load_payload(p)
            .and_then(|(body, buffers)| self.all.extend_from_intake(p.endpoint, body, buffers));
        if let Err(e) = parsed {
            tracing::error!(sink = ctx.name, endpoint = p.endpoint.label(), error = %e,
                points = p.points, "stored payload could not be parsed: dropping it");
            ctx.drop_values(DropReason::Fatal, p.points);
            return false;
        }
        true
    }

    /// The topic's partition count: cached, refreshed every [`PARTITIONS_REFRESH`] (the old
    /// count is kept if a refresh fails); fetched with the driver's retries when unknown.
    fn partition_count(&mut self, ctx: &Ctx<'_>) -> Option<usize> {
        let (producer, topic, timeout) = (&self.producer, &self.topic, self.request_timeout);
        match self.partitions {
            Some((n, at)) if at.elapsed() < PARTITIONS_REFRESH => return Some(n),
            Some((n, _)) => {
                let n = producer.partition_count(topic, timeout).unwrap_or(n);
                self.partitions = Some((n, Instant::now()));
                return Some(n);
            }
            None => {}
        }
        let mut found = None;
        ctx.deliver(0, 0, || {
            let n = producer
                .partition_count(topic, timeout)
                .map_err(sink_error)?;
            found = Some(n);
            Ok(0)
        });
        self.partitions = found.map(|n| (n, Instant::now()));
        found
    }

    /// Groups the series `start..end` of `self.all` by partition into `self.parts`.
    fn group(&mut self, start: usize, end: usize, n: usize) {
        self.parts.resize_with(n, StreamBatch::new);
        for p in &mut self.parts {
            p.clear();
        }
        for s in self.all.series().skip(start).take(end - start) {
            partition_key(s.name(), s.host(), s.device(), s.tags(), &mut self.key);
            if let Some(part) = self.parts.get_mut(partition_of(&self.key, n)) {
                part.push_series(
                    s.name(),
                    s.kind(),
                    s.interval(),
                    s.host(),
                    s.device(),
                    s.tags(),
                    s.points().iter().copied(),
                );
            }
        }
    }

    /// Encodes each non-empty partition batch into `self.out` (one record each).
    fn encode(&mut self, ctx: &Ctx<'_>) {
        self.out.clear();
        for (i, part) in self.parts.iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            let points = part.point_count() as u64;
            let mut record = Vec::new();
            match self
                .encoder
                .encode(part, self.encoding, self.compression, &mut record)
            {
                Ok(()) => {
                    let raw =
                        envelope::decode(&record).map_or(record.len(), |e| e.uncompressed_len);
                    self.out.push(Outgoing {
                        partition: i as i32,
                        points,
                        raw: raw as u64,
                        record,
                    });
                }
                Err(e) => {
                    tracing::error!(sink = ctx.name, error = %e, values = points,
                        "batch could not be encoded: dropping it");
                    ctx.drop_values(DropReason::Fatal, points);
                }
            }
        }
    }

    /// Hands every record of `self.out` to librdkafka, then waits for each delivery report
    /// through the driver (which resends failed records).
    fn produce(&mut self, ctx: &Ctx<'_>) {
        let producer = &mut self.producer;
        let topic = self.topic.as_str();
        let mut pending: Vec<Option<Result<Pending, KafkaError>>> = self
            .out
            .iter()
            .map(|o| Some(send(producer, topic, o)))
            .collect();
        for (o, first) in self.out.iter().zip(pending.iter_mut()) {
            let mut timed_out = false;
            ctx.deliver(o.points, o.raw, || {
                let sent = match first.take() {
                    Some(p) => p,
                    None => {
                        renew_if_stuck(producer, timed_out, ctx);
                        send(producer, topic, o)
                    }
                };
                let r = sent.and_then(Pending::wait);
                timed_out = matches!(&r, Err(e) if is_timeout(e));
                r.map(|_| o.record.len() as u64).map_err(sink_error)
            });
        }
    }
}

fn send(producer: &Producer, topic: &str, o: &Outgoing) -> Result<Pending, KafkaError> {
    let key = format!("p{}", o.partition);
    producer.send(topic, Some(o.partition), key.as_bytes(), &o.record)
}

/// Whether a record timed out (librdkafka's `message.timeout.ms`, or no report at all).
fn is_timeout(e: &KafkaError) -> bool {
    match e {
        KafkaError::Timeout(_) => true,
        KafkaError::Kafka(k) => k.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut),
        _ => false,
    }
}

/// A producer is replaced before a resend when it is in a fatal state (its idempotence
/// sequence lost) or its last record timed out: a broker restarted without its data (tansu
/// with memory storage) no longer knows the producer id and answers `UnknownProducerId` to
/// every retry of the old producer, which never recovers; a new one registers afresh.
/// Replacing purges the old producer's queue: its records fail and are resent (at least once).
fn renew_if_stuck(producer: &mut Producer, timed_out: bool, ctx: &Ctx<'_>) {
    let why = producer
        .fatal_error()
        .or_else(|| timed_out.then(|| "a record timed out".to_owned()));
    if let Some(why) = why {
        tracing::error!(sink = ctx.name, error = %why, "kafka producer failed: recreating it");
        match Producer::new(producer.config().clone()) {
            Ok(p) => *producer = p,
            Err(e) => tracing::error!(sink = ctx.name, error = %e, "kafka producer not recreated"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_separate_their_parts_and_map_to_stable_partitions() {
        let mut a = String::new();
        let mut b = String::new();
        partition_key("m", Some("h"), None, ["x:1", "y:2"].into_iter(), &mut a);
        partition_key("m", None, Some("h"), ["x:1", "y:2"].into_iter(), &mut b);
        assert_ne!(a, b, "host and device are told apart");
        assert_eq!(a, "m\0h\0\0x:1\0y:2");
        // MD5 of the key, so the partition never depends on the process or the build.
        assert_eq!(partition_of(&a, 1), 0);
        let p = partition_of(&a, 7);
        assert_eq!(p, (kpl::hash_key(&a) % 7) as usize);
        assert_eq!(partition_of(&a, 7), p);
        let spread: std::collections::BTreeSet<usize> = (0..100)
            .map(|i| partition_of(&format!("m{i}\0h\0"), 4))
            .collect();
        assert_eq!(spread.len(), 4, "100 series cover 4 partitions");
    }
}
