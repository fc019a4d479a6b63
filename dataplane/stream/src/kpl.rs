//! KPL record aggregation, byte-compatible with the Kinesis Producer Library and every KCL
//! consumer (`shared/reference/streams.md` section D, awslabs `aggregation-format.md`).
//!
//! ```text
//! | F3 89 9A C2 | AggregatedRecord (protobuf, proto2) | MD5 of the protobuf bytes (16 B) |
//! ```
//!
//! - [`Aggregator`] packs user records (partition key, optional explicit hash key, data) into
//!   aggregated Kinesis records no larger than a configured size (default 1 MiB, counting the
//!   outer partition key as Kinesis does), deduplicating both key tables. The protobuf is
//!   written incrementally (tables then records, the order a protobuf encoder writes them),
//!   so adding a record copies its data once and allocates nothing for keys already seen.
//!   Kinesis routes an aggregate by its own key, and KCL drops a whole aggregate when any
//!   inner record hashes outside the lease's range, so keep **one aggregator per destination
//!   shard** and re-split on reshard.
//! - [`deaggregate`] follows KCL's `AggregatorUtil.deaggregate`: anything shorter than the
//!   magic, without it, with no protobuf after it, with a wrong MD5 or an unparsable protobuf
//!   is passed through unchanged as one record; otherwise each inner record comes out with
//!   its sub-sequence number (its index). Records whose key index is out of range, whose
//!   required fields are missing or whose keys are not UTF-8 are treated like a parse error.
//! - [`hash_key`]: MD5 of a partition key as an unsigned 128-bit big-endian integer, the
//!   value Kinesis maps to a shard; [`format_hash_key`]/[`parse_hash_key`] for the decimal
//!   `ExplicitHashKey` strings.
//!
//! Pure code: no I/O, no threads, no metrics.

use bytes::Bytes;
use hashbrown::HashMap;
use md5::{Digest, Md5};
use prost::encoding::{encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 trailer.
pub const DIGEST_LEN: usize = 16;
/// Kinesis' default per-record limit (data + partition key), 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
/// Kinesis' limit on a partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// `AggregatedRecord` (proto2). The key tables are `repeated string` in the schema; they are
/// read as bytes here (same wire type) so decoding borrows them, and checked for UTF-8.
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    /// `repeated string partition_key_table = 1`
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub partition_key_table: Vec<Bytes>,
    /// `repeated string explicit_hash_key_table = 2`
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<Bytes>,
    /// `repeated Record records = 3`
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// `Record` (proto2). The required fields are read as optional so a missing one is detected.
#[derive(Clone, PartialEq, Message)]
pub struct Record {
    /// `required uint64 partition_key_index = 1`
    #[prost(uint64, optional, tag = "1")]
    pub partition_key_index: Option<u64>,
    /// `optional uint64 explicit_hash_key_index = 2`
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// `required bytes data = 3`
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub data: Option<Bytes>,
    /// `repeated Tag tags = 4` (unused by KPL and KCL)
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `Tag` (proto2), unused.
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    /// `required string key = 1`
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// `optional string value = 2`
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Why a user record cannot be aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    /// Partition keys are 1 to 256 characters.
    #[error("partition key must be 1 to 256 characters")]
    BadPartitionKey,
    /// Explicit hash keys are decimal integers in 0..2^128.
    #[error("explicit hash key is not a decimal integer below 2^128")]
    BadExplicitHashKey,
    /// The record alone does not fit in one aggregated record.
    #[error("user record of {size} bytes does not fit a {max}-byte Kinesis record")]
    TooLarge {
        /// Bytes it would take in an aggregate on its own (with framing and key).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// MD5 of `partition_key` as an unsigned 128-bit big-endian integer: the hash key Kinesis
/// maps to a shard.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// A hash key as the decimal string `ExplicitHashKey` takes.
pub fn format_hash_key(key: u128) -> String {
    key.to_string()
}

/// Parses a decimal `ExplicitHashKey` (`0|[1-9][0-9]{0,38}`, below 2^128).
pub fn parse_hash_key(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    s.parse().ok()
}

/// One finished Kinesis record: what goes into a `PutRecords` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecord {
    /// The outer partition key (the first user record's).
    pub partition_key: String,
    /// The outer explicit hash key: the aggregator's shard key if set, else the first user
    /// record's, else none (Kinesis then hashes `partition_key`).
    pub explicit_hash_key: Option<String>,
    /// Magic, protobuf and MD5.
    pub data: Vec<u8>,
    /// Number of user records inside.
    pub user_records: usize,
}

impl KinesisRecord {
    /// Bytes Kinesis counts against its record limit (data + partition key).
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_field(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    prost::encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

/// Packs user records into KPL aggregated records under a size limit. One per destination
/// shard; see the module docs.
#[derive(Debug, Clone)]
pub struct Aggregator {
    max_record_bytes: usize,
    shard_hash_key: Option<String>,
    pk_table: Vec<u8>,
    ehk_table: Vec<u8>,
    records: Vec<u8>,
    pk_index: HashMap<Box<str>, u64, foldhash::fast::RandomState>,
    ehk_index: HashMap<Box<str>, u64, foldhash::fast::RandomState>,
    count: usize,
    first_pk: String,
    first_ehk: Option<String>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORD_BYTES)
    }
}

impl Aggregator {
    /// An aggregator producing Kinesis records of at most `max_record_bytes` (data plus
    /// partition key; read the stream's `MaxRecordSizeInKiB`, default 1 MiB).
    pub fn new(max_record_bytes: usize) -> Self {
        Self {
            max_record_bytes,
            shard_hash_key: None,
            pk_table: Vec::new(),
            ehk_table: Vec::new(),
            records: Vec::new(),
            pk_index: HashMap::default(),
            ehk_index: HashMap::default(),
            count: 0,
            first_pk: String::new(),
            first_ehk: None,
        }
    }

    /// Sets the outer explicit hash key of every aggregate (a key inside the destination
    /// shard's range, such as its starting hash key), so Kinesis routes it to that shard.
    #[must_use]
    pub fn with_shard_hash_key(mut self, key: Option<u128>) -> Self {
        self.shard_hash_key = key.map(format_hash_key);
        self
    }

    /// The configured maximum record size.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Number of user records pending.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size the pending aggregate would have as a Kinesis record (data + partition key).
    pub fn size(&self) -> usize {
        if self.count == 0 {
            return 0;
        }
        MAGIC.len()
            + self.pk_table.len()
            + self.ehk_table.len()
            + self.records.len()
            + DIGEST_LEN
            + self.first_pk.len()
    }

    /// Bytes adding this record grows the aggregate by (with `new_pk`/`new_ehk` for keys
    /// not yet in the tables), and the encoded length of the inner `Record`.
    fn growth(
        &self,
        pk: &str,
        pk_idx: u64,
        ehk: Option<(&str, u64, bool)>,
        new_pk: bool,
        data_len: usize,
    ) -> (usize, usize) {
        let mut rec = key_len(1) + encoded_len_varint(pk_idx) + field_len(3, data_len);
        let mut grow = 0;
        if new_pk {
            grow += field_len(1, pk.len());
        }
        if let Some((k, idx, new)) = ehk {
            rec += key_len(2) + encoded_len_varint(idx);
            if new {
                grow += field_len(2, k.len());
            }
        }
        (grow + field_len(3, rec), rec)
    }

    /// Adds one user record. When it does not fit the pending aggregate, that aggregate is
    /// finished and returned, and the record starts the next one.
    ///
    /// # Errors
    /// [`KplError`] for an invalid key, or a record too large to fit even an empty aggregate
    /// (nothing is finished or added then).
    pub fn add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> Result<Option<KinesisRecord>, KplError> {
        if partition_key.is_empty()
            || (partition_key.len() > MAX_PARTITION_KEY_CHARS
                && partition_key.chars().count() > MAX_PARTITION_KEY_CHARS)
        {
            return Err(KplError::BadPartitionKey);
        }
        if let Some(k) = explicit_hash_key {
            if parse_hash_key(k).is_none() {
                return Err(KplError::BadExplicitHashKey);
            }
        }
        // Alone in a fresh aggregate.
        let (alone, _) = self.growth(
            partition_key,
            0,
            explicit_hash_key.map(|k| (k, 0, true)),
            true,
            data.len(),
        );
        let alone = MAGIC.len() + alone + DIGEST_LEN + partition_key.len();
        if alone > self.max_record_bytes {
            return Err(KplError::TooLarge {
                size: alone,
                max: self.max_record_bytes,
            });
        }
        let mut finished = None;
        if self.count > 0 {
            let (grow, _) = self.placement_growth(partition_key, explicit_hash_key, data.len());
            if self.size() + grow > self.max_record_bytes {
                finished = self.finish();
            }
        }
        self.push(partition_key, explicit_hash_key, data);
        Ok(finished)
    }

    fn placement_growth(&self, pk: &str, ehk: Option<&str>, data_len: usize) -> (usize, usize) {
        let (pk_idx, new_pk) = match self.pk_index.get(pk) {
            Some(&i) => (i, false),
            None => (self.pk_index.len() as u64, true),
        };
        let ehk = ehk.map(|k| match self.ehk_index.get(k) {
            Some(&i) => (k, i, false),
            None => (k, self.ehk_index.len() as u64, true),
        });
        self.growth(pk, pk_idx, ehk, new_pk, data_len)
    }

    fn push(&mut self, pk: &str, ehk: Option<&str>, data: &[u8]) {
        let (_, rec_len) = self.placement_growth(pk, ehk, data.len());
        let pk_idx = match self.pk_index.get(pk) {
            Some(&i) => i,
            None => {
                let i = self.pk_index.len() as u64;
                self.pk_index.insert(pk.into(), i);
                put_field(&mut self.pk_table, 1, pk.as_bytes());
                i
            }
        };
        let ehk_idx = ehk.map(|k| match self.ehk_index.get(k) {
            Some(&i) => i,
            None => {
                let i = self.ehk_index.len() as u64;
                self.ehk_index.insert(k.into(), i);
                put_field(&mut self.ehk_table, 2, k.as_bytes());
                i
            }
        });
        let r = &mut self.records;
        prost::encoding::encode_key(3, WireType::LengthDelimited, r);
        encode_varint(rec_len as u64, r);
        prost::encoding::encode_key(1, WireType::Varint, r);
        encode_varint(pk_idx, r);
        if let Some(i) = ehk_idx {
            prost::encoding::encode_key(2, WireType::Varint, r);
            encode_varint(i, r);
        }
        put_field(r, 3, data);
        if self.count == 0 {
            self.first_pk.clear();
            self.first_pk.push_str(pk);
            self.first_ehk = ehk.map(str::to_owned);
        }
        self.count += 1;
    }

    /// Finishes the pending aggregate (`None` when nothing is pending).
    pub fn finish(&mut self) -> Option<KinesisRecord> {
        if self.count == 0 {
            return None;
        }
        let body = self.pk_table.len() + self.ehk_table.len() + self.records.len();
        let mut data = Vec::with_capacity(MAGIC.len() + body + DIGEST_LEN);
        data.extend_from_slice(&MAGIC);
        data.extend_from_slice(&self.pk_table);
        data.extend_from_slice(&self.ehk_table);
        data.extend_from_slice(&self.records);
        let digest = Md5::digest(&data[MAGIC.len()..]);
        data.extend_from_slice(&digest);
        let rec = KinesisRecord {
            partition_key: std::mem::take(&mut self.first_pk),
            explicit_hash_key: self
                .shard_hash_key
                .clone()
                .or_else(|| self.first_ehk.take()),
            data,
            user_records: self.count,
        };
        self.pk_table.clear();
        self.ehk_table.clear();
        self.records.clear();
        self.pk_index.clear();
        self.ehk_index.clear();
        self.first_ehk = None;
        self.count = 0;
        Some(rec)
    }
}

/// One user record out of [`deaggregate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    partition_key: Option<Bytes>,
    explicit_hash_key: Option<Bytes>,
    /// The user data.
    pub data: Bytes,
    /// Index inside the aggregate; `None` for a record passed through unaggregated (its
    /// sub-sequence number is 0 for checkpoints).
    pub sub_sequence_number: Option<u64>,
}

fn as_str(b: &Bytes) -> &str {
    // Checked in `deaggregate_bytes`.
    std::str::from_utf8(b).unwrap_or("")
}

impl UserRecord {
    /// The inner partition key; `None` for a pass-through record (use the Kinesis record's).
    pub fn partition_key(&self) -> Option<&str> {
        self.partition_key.as_ref().map(as_str)
    }

    /// The inner explicit hash key, if any.
    pub fn explicit_hash_key(&self) -> Option<&str> {
        self.explicit_hash_key.as_ref().map(as_str)
    }

    /// The effective hash key KCL checks against the lease range: the explicit hash key, else
    /// MD5 of the partition key. `None` for a pass-through record (hash the Kinesis record's
    /// key) or an unparsable explicit key.
    pub fn hash_key(&self) -> Option<u128> {
        match self.explicit_hash_key() {
            Some(k) => parse_hash_key(k),
            None => self.partition_key().map(hash_key),
        }
    }
}

/// The user records of one Kinesis record.
#[derive(Debug, Clone)]
pub struct Deaggregated {
    passthrough: Option<Bytes>,
    agg: AggregatedRecord,
    next: usize,
}

impl Deaggregated {
    /// Whether the record was a KPL aggregate.
    pub fn is_aggregated(&self) -> bool {
        self.passthrough.is_none() && !self.agg.records.is_empty()
    }
}

impl Iterator for Deaggregated {
    type Item = UserRecord;

    fn next(&mut self) -> Option<UserRecord> {
        if let Some(data) = self.passthrough.take() {
            return Some(UserRecord {
                partition_key: None,
                explicit_hash_key: None,
                data,
                sub_sequence_number: None,
            });
        }
        let r = self.agg.records.get(self.next)?;
        let i = self.next;
        self.next += 1;
        let table = |t: &[Bytes], idx: Option<u64>| {
            idx.and_then(|i| usize::try_from(i).ok())
                .and_then(|i| t.get(i))
                .cloned()
        };
        Some(UserRecord {
            partition_key: table(&self.agg.partition_key_table, r.partition_key_index),
            explicit_hash_key: table(&self.agg.explicit_hash_key_table, r.explicit_hash_key_index),
            data: r.data.clone().unwrap_or_default(),
            sub_sequence_number: Some(i as u64),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.passthrough.is_some())
            + self.agg.records.len().saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Deaggregated {}

/// [`deaggregate_bytes`] over a borrowed record (copied once into a shared buffer that the
/// user records' data slices point into).
pub fn deaggregate(record: &[u8]) -> Deaggregated {
    deaggregate_bytes(Bytes::copy_from_slice(record))
}

fn valid_aggregate(body: &Bytes) -> Option<AggregatedRecord> {
    let agg = AggregatedRecord::decode(body.clone()).ok()?;
    let keys_ok = |t: &[Bytes]| t.iter().all(|k| std::str::from_utf8(k).is_ok());
    if !keys_ok(&agg.partition_key_table) || !keys_ok(&agg.explicit_hash_key_table) {
        return None;
    }
    let in_table = |i: u64, t: &[Bytes]| usize::try_from(i).is_ok_and(|i| i < t.len());
    let records_ok = agg.records.iter().all(|r| {
        r.data.is_some()
            && r.partition_key_index
                .is_some_and(|i| in_table(i, &agg.partition_key_table))
            && r.explicit_hash_key_index
                .is_none_or(|i| in_table(i, &agg.explicit_hash_key_table))
    });
    records_ok.then_some(agg)
}

/// Splits a Kinesis record into its user records, KCL's way (see the module docs): a KPL
/// aggregate yields each inner record with its sub-sequence number and keys; anything else
/// comes out unchanged as one record. Never fails; the data slices share `record`'s buffer.
pub fn deaggregate_bytes(record: Bytes) -> Deaggregated {
    let passthrough = |record| Deaggregated {
        passthrough: Some(record),
        agg: AggregatedRecord::default(),
        next: 0,
    };
    let n = record.len();
    if n < MAGIC.len() || record[..MAGIC.len()] != MAGIC || n - MAGIC.len() <= DIGEST_LEN {
        return passthrough(record);
    }
    let body = record.slice(MAGIC.len()..n - DIGEST_LEN);
    if Md5::digest(&body)[..] != record[n - DIGEST_LEN..] {
        return passthrough(record);
    }
    match valid_aggregate(&body) {
        Some(agg) => Deaggregated {
            passthrough: None,
            agg,
            next: 0,
        },
        None => passthrough(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_md5_big_endian() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        let k = hash_key("series-1");
        assert_eq!(parse_hash_key(&format_hash_key(k)), Some(k));
        assert_eq!(parse_hash_key(&u128::MAX.to_string()), Some(u128::MAX));
        for bad in [
            "",
            "01",
            "+1",
            "-1",
            "1a",
            "340282366920938463463374607431768211456",
        ] {
            assert_eq!(parse_hash_key(bad), None, "{bad}");
        }
        assert_eq!(parse_hash_key("0"), Some(0));
    }

    #[test]
    fn incremental_encoding_equals_prost() {
        let mut a = Aggregator::default();
        a.add("a", None, b"one").unwrap();
        a.add("b", Some("42"), b"two").unwrap();
        a.add("a", Some("42"), b"").unwrap();
        let rec = a.finish().unwrap();
        let expected = AggregatedRecord {
            partition_key_table: vec![Bytes::from("a"), Bytes::from("b")],
            explicit_hash_key_table: vec![Bytes::from("42")],
            records: vec![
                Record {
                    partition_key_index: Some(0),
                    explicit_hash_key_index: None,
                    data: Some(Bytes::from("one")),
                    tags: vec![],
                },
                Record {
                    partition_key_index: Some(1),
                    explicit_hash_key_index: Some(0),
                    data: Some(Bytes::from("two")),
                    tags: vec![],
                },
                Record {
                    partition_key_index: Some(0),
                    explicit_hash_key_index: Some(0),
                    data: Some(Bytes::new()),
                    tags: vec![],
                },
            ],
        }
        .encode_to_vec();
        assert_eq!(&rec.data[4..rec.data.len() - 16], &expected[..]);
        assert_eq!(rec.partition_key, "a");
        assert_eq!(rec.explicit_hash_key, None);
        assert_eq!(rec.user_records, 3);
        let out: Vec<_> = deaggregate(&rec.data).collect();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].partition_key(), Some("b"));
        assert_eq!(out[1].explicit_hash_key(), Some("42"));
        assert_eq!(out[1].hash_key(), Some(42));
        assert_eq!(out[2].sub_sequence_number, Some(2));
        assert_eq!(out[0].hash_key(), Some(hash_key("a")));
        assert!(a.is_empty());
        assert_eq!(a.finish(), None);
    }

    #[test]
    fn splits_at_the_limit_and_never_exceeds_it() {
        let max = 1000;
        let mut a = Aggregator::new(max).with_shard_hash_key(Some(7));
        let mut out = Vec::new();
        let mut sent = 0;
        for i in 0..200 {
            let pk = format!("series-{}", i % 13);
            let data = vec![i as u8; 17 + i % 50];
            if let Some(r) = a.add(&pk, None, &data).unwrap() {
                out.push(r);
            }
            sent += 1;
        }
        out.extend(a.finish());
        assert!(out.len() > 5);
        let mut got = 0;
        for r in &out {
            assert!(r.size() <= max, "{} > {max}", r.size());
            assert_eq!(r.explicit_hash_key.as_deref(), Some("7"));
            let d = deaggregate(&r.data);
            assert!(d.is_aggregated());
            assert_eq!(d.len(), r.user_records);
            got += d.count();
        }
        assert_eq!(got, sent);
        // Aggregates are filled: each but the last is within one record of the limit.
        for r in &out[..out.len() - 1] {
            assert!(r.size() > max - 100, "{}", r.size());
        }
    }

    #[test]
    fn exact_fit_is_accepted() {
        let mut a = Aggregator::new(100);
        // magic 4 + pk table 3 + record field (1 + 1 + (2 + 1 + 1 + len)) + md5 16 + pk 1
        let len = 100 - 30;
        let r = a.add("k", None, &vec![0; len]);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(a.size(), 100);
        assert_eq!(
            Aggregator::new(100).add("k", None, &vec![0; len + 1]),
            Err(KplError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(a.finish().unwrap().size(), 100);
    }

    #[test]
    fn invalid_keys() {
        let mut a = Aggregator::default();
        assert_eq!(a.add("", None, b"x"), Err(KplError::BadPartitionKey));
        assert_eq!(
            a.add(&"é".repeat(257), None, b"x"),
            Err(KplError::BadPartitionKey)
        );
        assert!(a.add(&"é".repeat(256), None, b"x").is_ok());
        assert_eq!(
            a.add("k", Some("x"), b"x"),
            Err(KplError::BadExplicitHashKey)
        );
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn non_aggregated_records_pass_through() {
        let mut a = Aggregator::default();
        a.add("k", None, b"payload").unwrap();
        let good = a.finish().unwrap().data;
        let mut bad_md5 = good.clone();
        let n = bad_md5.len();
        bad_md5[n - 1] ^= 1;
        let mut bad_proto = MAGIC.to_vec();
        bad_proto.extend_from_slice(&[0xff; 8]);
        let digest = Md5::digest(&bad_proto[4..]);
        bad_proto.extend_from_slice(&digest);
        // Index out of range, with a correct MD5.
        let bad_index = {
            let body = AggregatedRecord {
                partition_key_table: vec![Bytes::from("k")],
                explicit_hash_key_table: vec![],
                records: vec![Record {
                    partition_key_index: Some(1),
                    explicit_hash_key_index: None,
                    data: Some(Bytes::from("x")),
                    tags: vec![],
                }],
            }
            .encode_to_vec();
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&body);
            v.extend_from_slice(&Md5::digest(&body));
            v
        };
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            MAGIC[..3].to_vec(),
            b"plain json {}".to_vec(),
            [&MAGIC[..], &[0; 16]].concat(),
            bad_md5,
            bad_proto,
            bad_index,
        ];
        for c in cases {
            let d = deaggregate(&c);
            assert!(!d.is_aggregated());
            let v: Vec<_> = d.collect();
            assert_eq!(v.len(), 1);
            assert_eq!(&v[0].data[..], &c[..]);
            assert_eq!(v[0].sub_sequence_number, None);
            assert_eq!(v[0].partition_key(), None);
        }
        assert_eq!(deaggregate(&good).count(), 1);
        assert!(deaggregate(&good).is_aggregated());
    }
}
