//! Pure packing for the Kinesis sink: series to shards, shards to stream batches, batches to
//! KPL-aggregated records, records to `PutRecords` calls. No I/O, so the benchmark and the
//! unit tests drive it directly.
//!
//! 1. Each series goes to the open shard whose hash range holds its partition hash
//!    (name, host, device, tags), so a series always lands on the same shard and keeps its
//!    order.
//! 2. Per shard, series are gathered into [`StreamBatch`]es of about
//!    [`Packer::chunk_bytes`] (uncompressed) and each is encoded as one envelope (a *user
//!    record*); an envelope larger than the record limit allows is split in half until it fits.
//! 3. The user records of a shard go through that shard's KPL [`Aggregator`], with the
//!    shard's starting hash key as the explicit hash key of every inner and outer record
//!    (KCL drops inner records whose key falls outside its lease's range). The aggregators
//!    stay open across [`Packer::add`] calls, so the envelopes of many small queue items
//!    share records; [`Packer::finish`] closes them.
//! 4. [`plan_call`] takes the front record of each ready shard's queue into a call within
//!    500 records and 5 MiB: one record per shard per call, so a shard's order survives
//!    partial failures.

use super::shards::ShardMap;
use std::collections::VecDeque;
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

/// One shard's open aggregate.
#[derive(Debug)]
struct ShardAgg {
    id: String,
    start: u128,
    ehk: String,
    agg: Aggregator,
    /// Points in the open aggregate.
    points: u64,
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
    aggs: Vec<ShardAgg>,
    envelopes: Vec<(Vec<u8>, u64)>,
    queues: Vec<VecDeque<Entry>>,
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
            aggs: Vec::new(),
            envelopes: Vec::new(),
            queues: Vec::new(),
        }
    }

    /// The record limit in use.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Bytes in the open aggregates.
    pub fn open_bytes(&self) -> usize {
        self.aggs.iter().map(|a| a.agg.size()).sum()
    }

    /// Packs every series of `batch` into records for the shards of `map`, appended to
    /// `entries` in shard order (each shard's records in series order); nothing stays open.
    pub fn pack(
        &mut self,
        batch: &StreamBatch,
        map: &ShardMap,
        entries: &mut Vec<Entry>,
    ) -> PackDrops {
        let mut queues = std::mem::take(&mut self.queues);
        queues.iter_mut().for_each(VecDeque::clear);
        let drops = self.add(batch, map, &mut queues);
        self.finish(&mut queues);
        for q in &mut queues {
            entries.extend(q.drain(..));
        }
        self.queues = queues;
        drops
    }

    /// Closes every open aggregate into `queues` (by shard index).
    pub fn finish(&mut self, queues: &mut Vec<VecDeque<Entry>>) {
        queues.resize_with(queues.len().max(self.aggs.len()), VecDeque::new);
        for (shard, a) in self.aggs.iter_mut().enumerate() {
            if let (Some(rec), Some(q)) = (a.agg.finish(), queues.get_mut(shard)) {
                q.push_back(Entry {
                    shard,
                    record: rec,
                    points: std::mem::take(&mut a.points),
                    attempts: 0,
                });
            }
        }
    }

    /// Opens aggregates for the shards of `map` unless they are open for the same shards
    /// (whatever was open for another map is closed into `queues` first).
    fn follow(&mut self, map: &ShardMap, queues: &mut Vec<VecDeque<Entry>>) {
        let same = self.aggs.len() == map.len()
            && self.aggs.iter().enumerate().all(|(i, a)| {
                map.get(i)
                    .is_some_and(|r| r.id == a.id && r.start == a.start)
            });
        if same {
            return;
        }
        self.finish(queues);
        self.aggs = (0..map.len())
            .filter_map(|i| map.get(i))
            .map(|r| ShardAgg {
                id: r.id.clone(),
                start: r.start,
                ehk: format_hash_key(r.start),
                agg: Aggregator::new(self.max_record_bytes).with_shard_hash_key(Some(r.start)),
                points: 0,
            })
            .collect();
    }

    /// Adds every series of `batch` to the open aggregates of its shard in `map`; records
    /// that fill up are pushed to `queues[shard]` (in series order per shard). Call
    /// [`Packer::finish`] to close what stays open.
    pub fn add(
        &mut self,
        batch: &StreamBatch,
        map: &ShardMap,
        queues: &mut Vec<VecDeque<Entry>>,
    ) -> PackDrops {
        self.follow(map, queues);
        queues.resize_with(queues.len().max(map.len()), VecDeque::new);
        let mut drops = PackDrops::default();
        self.per_shard.iter_mut().for_each(Vec::clear);
        self.per_shard.resize_with(map.len(), Vec::new);
        for (i, s) in batch.series().enumerate() {
            match map.lookup(s.partition_hash(&mut self.key)) {
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
        let mut envelopes = std::mem::take(&mut self.envelopes);
        for (shard, idx) in per_shard.iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            envelopes.clear();
            self.user_records(&series, idx, &mut envelopes, &mut drops);
            let (Some(a), Some(q)) = (self.aggs.get_mut(shard), queues.get_mut(shard)) else {
                drops.unmapped += envelopes.iter().map(|e| e.1).sum::<u64>();
                continue;
            };
            for (data, points) in envelopes.drain(..) {
                match a.agg.add(&a.id, Some(&a.ehk), &data) {
                    Ok(Some(rec)) => {
                        q.push_back(Entry {
                            shard,
                            record: rec,
                            points: a.points,
                            attempts: 0,
                        });
                        a.points = points;
                    }
                    Ok(None) => a.points += points,
                    Err(_) => drops.too_large += points,
                }
            }
        }
        self.per_shard = per_shard;
        self.envelopes = envelopes;
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

/// Picks the next call from the per-shard `queues`: at most [`MAX_CALL_RECORDS`] records
/// and [`MAX_CALL_BYTES`], and at most one record per shard: the front of its queue. One
/// record per shard keeps a shard's order under partial failures (a failed entry goes back
/// to the front of its queue; were a later record of the same shard in the same call, it
/// could succeed first). Records are aggregated up to the record limit, so one record per
/// shard per call still fills a shard's byte limit. `admit(shard, entry)` says whether the
/// shard may take that record now (and reserves its pacing tokens when it does). Writes how
/// many records each shard gives (0 or 1) into `take` (by shard index) and returns the
/// total.
pub fn plan_call(
    queues: &[VecDeque<Entry>],
    mut admit: impl FnMut(usize, &Entry) -> bool,
    take: &mut Vec<usize>,
) -> usize {
    take.clear();
    take.resize(queues.len(), 0);
    let mut n = 0usize;
    let mut bytes = 0usize;
    for ((shard, q), t) in queues.iter().enumerate().zip(take.iter_mut()) {
        if n >= MAX_CALL_RECORDS {
            break;
        }
        let Some(e) = q.front() else {
            continue;
        };
        let size = e.record.size();
        if bytes + size > MAX_CALL_BYTES || !admit(shard, e) {
            continue;
        }
        bytes += size;
        n += 1;
        *t = 1;
    }
    n
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
            let shard = map.lookup(s.partition_hash(&mut key)).unwrap();
            assert_eq!(seen[s.name()], shard);
        }
    }

    #[test]
    fn calls_take_one_record_per_ready_shard_within_the_byte_limit() {
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
        let queues = |n: usize, items: &[(usize, usize)]| {
            let mut q: Vec<VecDeque<Entry>> = vec![VecDeque::new(); n];
            for &(s, len) in items {
                q[s].push_back(rec(s, len));
            }
            q
        };
        let mut take = Vec::new();
        // 700 records, most of shard 0: one record of each shard, never two of one.
        let items: Vec<(usize, usize)> = (0..700).map(|i| (i * 3 / 700, 10)).collect();
        let q = queues(3, &items);
        assert_eq!(plan_call(&q, |_, _| true, &mut take), 3);
        assert_eq!(take, vec![1, 1, 1]);
        // A shard that is not ready gives nothing; the others still go.
        plan_call(&q, |s, _| s != 1, &mut take);
        assert_eq!(take, vec![1, 0, 1]);
        // 600 shards: the call stops at 500 records.
        let items: Vec<(usize, usize)> = (0..600).map(|s| (s, 10)).collect();
        let q = queues(600, &items);
        assert_eq!(plan_call(&q, |_, _| true, &mut take), MAX_CALL_RECORDS);
        // Bytes: the second shard's record does not fit; the third one still goes.
        let q = queues(3, &[(0, 3 << 20), (1, 3 << 20), (2, 1 << 20)]);
        assert_eq!(plan_call(&q, |_, _| true, &mut take), 2);
        assert_eq!(take, vec![1, 0, 1]);
    }

    #[test]
    fn small_batches_share_records_until_finished() {
        let map = two_shards();
        let mut p = Packer::new(
            StreamEncoder::default(),
            Encoding::Rkyv,
            Compression::Deflate,
            1 << 20,
        );
        let mut queues = Vec::new();
        let mut points = 0;
        for _ in 0..50 {
            let b = batch(20);
            points += b.point_count() as u64;
            assert_eq!(p.add(&b, &map, &mut queues), PackDrops::default());
        }
        assert!(queues.iter().all(VecDeque::is_empty), "nothing full yet");
        assert!(p.open_bytes() > 0);
        p.finish(&mut queues);
        assert_eq!(p.open_bytes(), 0);
        let entries: Vec<&Entry> = queues.iter().flatten().collect();
        assert_eq!(entries.len(), 2, "one record per shard for 50 items");
        assert!(entries.iter().all(|e| e.record.user_records >= 10));
        assert_eq!(entries.iter().map(|e| e.points).sum::<u64>(), points);
    }
}
