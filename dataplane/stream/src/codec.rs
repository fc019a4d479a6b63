//! One stream record from and to a batch: [`envelope`](crate::envelope) around
//! [`batch`](crate::batch), with every buffer reused.
//!
//! - [`StreamEncoder::encode`]: a [`StreamBatch`] as an rkyv archive (uncompressed: archived
//!   straight into the output after the header, no intermediate copy) or as SignalFx JSON,
//!   optionally deflate/gzip-compressed.
//! - [`StreamDecoder::decode`]: header checks and the size cap, decompression into reused
//!   aligned memory when needed, then [`access`](crate::batch::access) for rkyv, or the JSON
//!   bytes as they are.
//!
//! Pure code: no I/O, no threads. Translation statistics for the JSON encoding are kept in
//! the encoder's translator ([`StreamEncoder::take_translate_stats`]) for the caller's
//! `switchyard_translate_points_total`.

use crate::batch::{access, ArchivedStreamBatch, BatchError, BatchWriter, StreamBatch};
use crate::envelope::{
    begin_uncompressed, decode_capped, finish_uncompressed, Compression, Encoding, EnvelopeEncoder,
    EnvelopeError, PayloadBuffer, DEFAULT_MAX_PAYLOAD,
};
use switchyard_core::translate::{TranslateConfig, TranslateStats, Translator};

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The envelope.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The rkyv batch inside it.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl StreamError {
    /// A bounded label for counters.
    pub const fn code(self) -> &'static str {
        match self {
            StreamError::Envelope(e) => e.code(),
            StreamError::Batch(e) => e.code(),
        }
    }
}

/// Encodes batches into stream records, reusing its compressor, rkyv arena, translator and
/// scratch buffers.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    envelope: EnvelopeEncoder,
    writer: BatchWriter,
    translator: Translator,
    json: Vec<u8>,
}

impl StreamEncoder {
    /// An encoder whose JSON encoding translates with `cfg`, compressing at libdeflate's
    /// default level.
    pub fn new(cfg: TranslateConfig) -> Self {
        Self {
            translator: Translator::new(cfg),
            ..Self::default()
        }
    }

    /// An encoder compressing at libdeflate `level` (0..=12).
    ///
    /// # Errors
    /// [`EnvelopeError::InvalidLevel`].
    pub fn with_level(cfg: TranslateConfig, level: i32) -> Result<Self, EnvelopeError> {
        Ok(Self {
            envelope: EnvelopeEncoder::with_level(level)?,
            ..Self::new(cfg)
        })
    }

    /// Appends one record holding `batch` to `out` (clear `out` first to reuse it).
    ///
    /// # Errors
    /// [`StreamError`] when the batch or its body is too large for the format.
    pub fn encode(
        &mut self,
        batch: &StreamBatch,
        encoding: Encoding,
        compression: Compression,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        match (encoding, compression) {
            (Encoding::Rkyv, Compression::None) => {
                let start = begin_uncompressed(out, Encoding::Rkyv);
                if let Err(e) = self.writer.append_to(batch, out) {
                    out.truncate(start);
                    return Err(e.into());
                }
                finish_uncompressed(out, start)?;
            }
            (Encoding::Rkyv, c) => {
                let payload = self.writer.write(batch)?;
                self.envelope.encode(Encoding::Rkyv, c, payload, out)?;
            }
            (Encoding::Json, c) => {
                self.json.clear();
                batch.write_signalfx_json(&mut self.translator, &mut self.json);
                self.envelope.encode(Encoding::Json, c, &self.json, out)?;
            }
        }
        Ok(())
    }

    /// What the JSON encoding dropped or translated since the last call.
    pub fn take_translate_stats(&mut self) -> TranslateStats {
        self.translator.take_stats()
    }
}

/// A decoded record's payload, borrowed from the record or the decoder's buffer.
#[derive(Debug, Clone, Copy)]
pub enum Decoded<'a> {
    /// A validated archive, read in place.
    Rkyv(&'a ArchivedStreamBatch),
    /// SignalFx `/v2/datapoint` JSON, not parsed here.
    Json(&'a [u8]),
}

/// Decodes stream records, reusing its aligned decompression buffer.
#[derive(Debug)]
pub struct StreamDecoder {
    scratch: PayloadBuffer,
    max_payload: usize,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl StreamDecoder {
    /// A decoder refusing payloads larger than `max_payload` bytes once decompressed.
    pub fn new(max_payload: usize) -> Self {
        Self {
            scratch: PayloadBuffer::default(),
            max_payload,
        }
    }

    /// Decodes one record.
    ///
    /// # Errors
    /// [`StreamError::Envelope`] for the envelope (including the size cap),
    /// [`StreamError::Batch`] for an rkyv archive that does not validate.
    pub fn decode<'s>(&'s mut self, record: &'s [u8]) -> Result<Decoded<'s>, StreamError> {
        let env = decode_capped(record, self.max_payload)?;
        let payload = env.payload(&mut self.scratch)?;
        Ok(match env.encoding {
            Encoding::Rkyv => Decoded::Rkyv(access(payload)?),
            Encoding::Json => Decoded::Json(payload),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Kind, Point};

    #[test]
    fn every_encoding_and_compression_round_trips() {
        let mut b = StreamBatch::new();
        for i in 0..200 {
            b.push_series(
                &format!("metric.{i}"),
                Kind::Count,
                Some(10.0),
                Some("h"),
                None,
                ["a:b"],
                [Point {
                    timestamp: 1_700_000_000.0,
                    value: f64::from(i),
                }],
            );
        }
        let mut enc = StreamEncoder::default();
        let mut dec = StreamDecoder::default();
        let mut out = Vec::new();
        for c in [Compression::None, Compression::Deflate, Compression::Gzip] {
            out.clear();
            enc.encode(&b, Encoding::Rkyv, c, &mut out).unwrap();
            match dec.decode(&out).unwrap() {
                Decoded::Rkyv(a) => assert_eq!(a.to_owned_batch(), b),
                Decoded::Json(_) => panic!("expected rkyv"),
            }
            out.clear();
            enc.encode(&b, Encoding::Json, c, &mut out).unwrap();
            match dec.decode(&out).unwrap() {
                Decoded::Json(j) => {
                    let v: serde_json::Value = serde_json::from_slice(j).unwrap();
                    assert_eq!(v["counter"].as_array().unwrap().len(), 200);
                    assert_eq!(v["counter"][199]["value"], 199);
                }
                Decoded::Rkyv(_) => panic!("expected json"),
            }
        }
        assert_eq!(enc.take_translate_stats().points_out, 600);
    }

    #[test]
    fn the_cap_applies_to_batches() {
        let mut b = StreamBatch::new();
        b.push_series("x", Kind::Gauge, None, None, None, [], []);
        let mut out = Vec::new();
        StreamEncoder::default()
            .encode(&b, Encoding::Rkyv, Compression::Gzip, &mut out)
            .unwrap();
        let mut dec = StreamDecoder::new(8);
        assert!(matches!(
            dec.decode(&out),
            Err(StreamError::Envelope(EnvelopeError::TooLarge {
                cap: 8,
                ..
            }))
        ));
    }
}
