//! Pure packing for the Kinesis sink: series to shards, shards to stream batches, batches to
//! KPL-aggregated records, records to `PutRecords` calls. No I/O, so the benchmark and the
//! unit tests drive it directly.
//!
//! 1. Each series goes to the open shard whose hash range holds the MD5 of its identity
//!    (name, host, device, tags), so a series always lands on the same shard and keeps its
//!    order.
//! 2. Per shard, series are gathered into [`StreamBatch`]es of about
//!    [`Packer::chunk_bytes`] (uncompressed) and each is encoded as one envelope (a *user
//!    record*); an envelope larger than the record limit allows is split in half until it fits.
//! 3. The user records of a shard go through that shard's KPL [`Aggregator`], with the
//!    shard's starting hash key as the explicit hash key of every inner and outer record
//!    (KCL drops inner records whose key falls outside its lease's range).
//! 4. [`plan_call`] takes records in order into calls within 500 records and 5 MiB.

use super::shards::ShardMap;
use switchyard_stream::batch::SeriesRef;
use switchyard_stream::kpl::{format_hash_key, Aggregator, KinesisRecord};
use switchyard_stream::{Compression, Encoding, StreamBatch, StreamEncoder, StreamError};

/// Most records in one `PutRecords` call.
pub const MAX_CALL_RECORDS: usize = 500;
/// Most bytes (data plus partition keys) in one `PutRecords` call.
pub const MAX_CALL_BYTES: usize = 5 << 20;
/// Room kept in a record for the aggregation framing around one user record (keys, tags,
/// varints, magic, digest).
const FRAMING_SLACK: usize = 256;

/// One aggregated record bound for a shard, with the values it carries.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the destination shard in the [`ShardMap`].
    pub shard: usize,
    /// The record.
    pub record: KinesisRecord,
    /// Points inside (for the ledger).
    pub points: u64,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Values the packer could not turn into records, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PackDrops {
    /// Points of series too large for one record even alone, or that failed to encode.
    pub too_large: u64,
    /// Points of series no open shard covers (an incomplete shard map).
    pub unmapped: u64,
}

/// Turns batches into per-shard aggregated records; buffers reused between items.
#[derive(Debug)]
pub struct Packer {
    encoder: StreamEncoder,
    encoding: Encoding,
    compression: Compression,
    max_record_bytes: usize,
    /// Uncompressed batch size aimed at per user record.
    pub chunk_bytes: usize,
    key: String,
    per_shard: Vec<Vec<u32>>,
    chunk: StreamBatch,
    out: Vec<u8>,
}

impl Packer {
    /// A packer writing records of at most `max_record_bytes` (the stream's limit).
    pub fn new(
        encoder: StreamEncoder,
        encoding: Encoding,
        compression: Compression,
        max_record_bytes: usize,
    ) -> Self {
        // Compressed envelopes are a fraction of the batch; uncompressed ones must fit a
        // record on their own.
        let chunk_bytes = match compression {
            Compression::None => max_record_bytes / 4,
            _ => max_record_bytes / 2,
        };
        Self {
            encoder,
            encoding,
            compression,
            max_record_bytes,
            chunk_bytes: chunk_bytes.max(1024),
            key: String::new(),
            per_shard: Vec::new(),
            chunk: StreamBatch::new(),
            out: Vec::new(),
        }
    }

    /// The record limit in use.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Packs every series of `batch` into records for the shards of `map`, appended to
    /// `entries` in shard order (each shard's records in series order).
    pub fn pack(
        &mut self,
        batch: &StreamBatch,
        map: &ShardMap,
        entries: &mut Vec<Entry>,
    ) -> PackDrops {
        let mut drops = PackDrops::default();
        self.per_shard.iter_mut().for_each(Vec::clear);
        self.per_shard.resize_with(map.len(), Vec::new);
        for (i, s) in batch.series().enumerate() {
            series_key(&s, &mut self.key);
            match map.lookup(switchyard_stream::kpl::hash_key(&self.key)) {
                Some(shard) => {
                    if let Some(v) = self.per_shard.get_mut(shard) {
                        v.push(i as u32);
                    }
                }
                None => drops.unmapped += s.points().len() as u64,
            }
        }
        let series: Vec<SeriesRef<'_>> = batch.series().collect();
        let per_shard = std::mem::take(&mut self.per_shard);
        for (shard, idx) in per_shard.iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let Some(range) = map.get(shard) else {
                continue;
            };
            let ehk = format_hash_key(range.start);
            let mut agg =
                Aggregator::new(self.max_record_bytes).with_shard_hash_key(Some(range.start));
            let mut pending_points = 0u64;
            let mut user_records = Vec::new();
            self.user_records(&series, idx, &mut user_records, &mut drops);
            for (data, points) in user_records {
                match agg.add(&range.id, Some(&ehk), &data) {
                    Ok(Some(rec)) => {
                        entries.push(Entry {
                            shard,
                            record: rec,
                            points: pending_points,
                            attempts: 0,
                        });
                        pending_points = points;
                    }
                    Ok(None) => pending_points += points,
                    Err(_) => drops.too_large += points,
                }
            }
            if let Some(rec) = agg.finish() {
                entries.push(Entry {
                    shard,
                    record: rec,
                    points: pending_points,
                    attempts: 0,
                });
            }
        }
        self.per_shard = per_shard;
        drops
    }

    /// Encodes the series `idx` of one shard as envelopes of about `chunk_bytes`, each no
    /// larger than a record allows; pushes `(envelope, points)`.
    fn user_records(
        &mut self,
        series: &[SeriesRef<'_>],
        idx: &[u32],
        out: &mut Vec<(Vec<u8>, u64)>,
        drops: &mut PackDrops,
    ) {
        let mut start = 0;
        let mut approx = 0usize;
        for (n, &i) in idx.iter().enumerate() {
            approx += series.get(i as usize).map_or(0, series_bytes);
            if approx >= self.chunk_bytes || n + 1 == idx.len() {
                self.encode_range(series, &idx[start..=n], out, drops);
                start = n + 1;
                approx = 0;
            }
        }
    }

    fn encode_range(
        &mut self,
        series: &[SeriesRef<'_>],
        idx: &[u32],
        out: &mut Vec<(Vec<u8>, u64)>,
        drops: &mut PackDrops,
    ) {
        let limit = self.max_record_bytes.saturating_sub(FRAMING_SLACK + 100);
        self.chunk.clear();
        for &i in idx {
            if let Some(s) = series.get(i as usize) {
                self.chunk.push_series(
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
        let points = self.chunk.point_count() as u64;
        self.out.clear();
        let res: Result<(), StreamError> =
            self.encoder
                .encode(&self.chunk, self.encoding, self.compression, &mut self.out);
        match res {
            Ok(()) if self.out.len() <= limit => out.push((self.out.clone(), points)),
            _ if idx.len() > 1 => {
                let (a, b) = idx.split_at(idx.len() / 2);
                self.encode_range(series, a, out, drops);
                self.encode_range(series, b, out, drops);
            }
            _ => drops.too_large += points,
        }
    }
}

/// Rough uncompressed size of a series in a batch.
fn series_bytes(s: &SeriesRef<'_>) -> usize {
    s.name().len()
        + s.host().map_or(0, str::len)
        + s.tags().map(|t| t.len() + 8).sum::<usize>()
        + s.points().len() * 16
        + 48
}

/// The identity a series is partitioned by: name, host, device and tags.
pub fn series_key(s: &SeriesRef<'_>, key: &mut String) {
    key.clear();
    key.push_str(s.name());
    key.push('\0');
    key.push_str(s.host().unwrap_or(""));
    key.push('\0');
    key.push_str(s.device().unwrap_or(""));
    for t in s.tags() {
        key.push('\0');
        key.push_str(t);
    }
}

/// Picks the next call from `queue` (in order): at most [`MAX_CALL_RECORDS`] records and
/// [`MAX_CALL_BYTES`], only shards for which `ready` holds, and never a record after one of
/// the same shard that was left behind (per-shard order). Returns the queue positions taken.
pub fn plan_call(queue: &[Entry], mut ready: impl FnMut(usize) -> bool, taken: &mut Vec<usize>) {
    taken.clear();
    let mut bytes = 0usize;
    let mut blocked: Vec<usize> = Vec::new();
    for (pos, e) in queue.iter().enumerate() {
        if taken.len() >= MAX_CALL_RECORDS {
            break;
        }
        if blocked.contains(&e.shard) {
            continue;
        }
        let size = e.record.size();
        if !ready(e.shard) || bytes + size > MAX_CALL_BYTES {
            blocked.push(e.shard);
            continue;
        }
        bytes += size;
        taken.push(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::super::shards::{ShardMap, ShardRange};
    use super::*;
    use switchyard_stream::kpl::deaggregate;
    use switchyard_stream::{Decoded, Kind, Point, StreamDecoder};

    fn two_shards() -> ShardMap {
        let half = u128::MAX / 2;
        ShardMap::new(vec![
            ShardRange {
                id: "shardId-000000000000".into(),
                start: 0,
                end: half,
            },
            ShardRange {
                id: "shardId-000000000001".into(),
                start: half + 1,
                end: u128::MAX,
            },
        ])
    }

    fn batch(n: usize) -> StreamBatch {
        let mut b = StreamBatch::new();
        for i in 0..n {
            let tag = format!("env:prod,idx:{i}");
            b.push_series(
                &format!("app.requests.{i}"),
                Kind::Count,
                Some(10.0),
                Some("web-01"),
                None,
                [tag.as_str()],
                [Point {
                    timestamp: 1.7e9,
                    value: i as f64,
                }],
            );
        }
        b
    }

    #[test]
    fn every_series_lands_once_on_its_shard_within_limits() {
        let map = two_shards();
        let mut p = Packer::new(
            StreamEncoder::default(),
            Encoding::Rkyv,
            Compression::Deflate,
            64 << 10,
        );
        let b = batch(20_000);
        let mut entries = Vec::new();
        assert_eq!(p.pack(&b, &map, &mut entries), PackDrops::default());
        assert!(entries.len() > 2, "small limit forces several records");
        let mut seen = std::collections::HashMap::new();
        let mut dec = StreamDecoder::default();
        let mut key = String::new();
        for e in &entries {
            assert!(e.record.size() <= 64 << 10);
            let range = map.get(e.shard).unwrap();
            let mut pts = 0;
            for u in deaggregate(&e.record.data) {
                let hk = u.hash_key().unwrap();
                assert!(range.start <= hk && hk <= range.end);
                let Decoded::Rkyv(a) = dec.decode(&u.data).unwrap() else {
                    panic!("json")
                };
                for s in a.series() {
                    pts += s.points().len() as u64;
                    let name = s.name().to_owned();
                    assert!(seen.insert(name, e.shard).is_none(), "series twice");
                }
            }
            assert_eq!(pts, e.points);
        }
        assert_eq!(seen.len(), 20_000);
        for s in b.series() {
            series_key(&s, &mut key);
            let shard = map.lookup(switchyard_stream::kpl::hash_key(&key)).unwrap();
            assert_eq!(seen[s.name()], shard);
        }
    }

    #[test]
    fn calls_respect_counts_bytes_readiness_and_shard_order() {
        let rec = |shard: usize, len: usize| Entry {
            shard,
            record: KinesisRecord {
                partition_key: "k".into(),
                explicit_hash_key: None,
                data: vec![0; len],
                user_records: 1,
            },
            points: 1,
            attempts: 0,
        };
        let mut q: Vec<Entry> = (0..700).map(|i| rec(i % 3, 10)).collect();
        let mut taken = Vec::new();
        plan_call(&q, |_| true, &mut taken);
        assert_eq!(taken.len(), MAX_CALL_RECORDS);
        plan_call(&q, |s| s != 1, &mut taken);
        assert!(taken.iter().all(|&p| q[p].shard != 1));
        q = vec![rec(0, 3 << 20), rec(0, 3 << 20), rec(1, 1 << 20)];
        plan_call(&q, |_| true, &mut taken);
        // The second shard-0 record does not fit; the shard-1 one after it still goes.
        assert_eq!(taken, vec![0, 2]);
    }
}
