//! Series identity: metric name, canonical tags and host, packed into one byte string, and
//! a listener scope.
//!
//! The scope is 0 for series aggregated across listeners (the default, as gostatsd does),
//! or `1 + i` when the route table in force matches on listener `i` by name: the same
//! name, tags and host then make one series per listener, so a route can tell them apart.
//!
//! Tags are canonicalised so that tag order never splits a series: empty tags dropped, sorted,
//! de-duplicated. The key is built in a reusable scratch buffer and identified by a 128-bit
//! keyed hash ([`SeriesId`]), so looking up an existing series allocates nothing and never
//! reads stored key bytes; only a new series copies its key into a `Box<[u8]>` (kept for
//! output).

use crate::statsd::LineError;

/// Seed of [`member_hash`]: fixed, so every process hashes a member the same way.
const MEMBER_SEED: u64 = 0x5357_5953_4554_4d31; // "SWYSETM1"
/// Seed of [`SeriesKey::stable_hash`]: fixed, so every process routes a series the same way.
const STABLE_SEED: u64 = 0x5357_5953_4552_4931; // "SWYSERI1"

/// The 64-bit hash a set stores for `member`: xxh3-64 with a fixed seed, the same in every
/// process, so sets consolidated by different forwarders union exactly at an aggregator.
/// Hash flooding is handled by the set's table, which hashes these again with a random key
/// ([`MemberSet`](super::interval::MemberSet)).
pub fn member_hash(member: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(member.as_bytes(), MEMBER_SEED)
}

/// A packed series key: `name ++ tags joined by ',' ++ host`, with the part lengths and
/// the listener scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    bytes: Box<[u8]>,
    // A name is at most a datagram (64 KiB): 16 bits, so the key stays 24 bytes.
    name_len: u16,
    scope: u8,
    tags_len: u32,
}

impl SeriesKey {
    /// The metric name.
    pub fn name(&self) -> &str {
        self.part(0, self.name_len as usize)
    }
    /// The listener scope (0: across listeners; `1 + i`: listener `i` only).
    pub fn scope(&self) -> u8 {
        self.scope
    }
    /// Canonical tags joined by `,` (empty when there are none).
    pub fn tags_joined(&self) -> &str {
        let start = self.name_len as usize;
        self.part(start, start + self.tags_len as usize)
    }
    /// Canonical tags.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags_joined().split(',').filter(|t| !t.is_empty())
    }
    /// The host (empty when unknown).
    pub fn host(&self) -> &str {
        self.part(
            self.name_len as usize + self.tags_len as usize,
            self.bytes.len(),
        )
    }
    fn part(&self, a: usize, b: usize) -> &str {
        // Keys are only built from `&str` parts split at char boundaries.
        self.bytes
            .get(a..b)
            .and_then(|s| std::str::from_utf8(s).ok())
            .unwrap_or("")
    }
    /// A hash of the name, canonical tags and host that every process computes alike
    /// (xxh3-64 with a fixed seed, the part lengths mixed in), for choosing an aggregator
    /// ([`AggregatorRing`](crate::forward::AggregatorRing)). The listener scope is left out: a
    /// forwarded series does not carry it. Not for hash tables fed by untrusted input (anyone
    /// can compute it); [`KeyBuilder`]'s seeded [`SeriesId`] is.
    pub fn stable_hash(&self) -> u64 {
        let lens = (u64::from(self.name_len) << 32) | u64::from(self.tags_len);
        xxhash_rust::xxh3::xxh3_64_with_seed(
            &self.bytes,
            STABLE_SEED ^ lens.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }
    /// Heap bytes held by this key.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// Builds canonical keys in reusable scratch space and hashes them with a process-wide seed
/// (the same on every shard, so `hash % shards` names one owner).
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    buf: Vec<u8>,
    /// (8-byte big-endian prefix, start, end) of each tag: the prefix orders most tags
    /// without a byte-string comparison.
    tags: Vec<(u64, u32, u32)>,
    name_len: u16,
    tags_len: u32,
    scope: u8,
    /// Maximum number of tags accepted on one line.
    pub max_tags: usize,
    seed: u64,
}

/// A series' identity: a 128-bit keyed hash of its canonical key. `hash` picks the table
/// bucket and the owner shard; `check` settles equality without touching the key bytes
/// (one cache miss per line instead of two). Two distinct series share an id with
/// probability 2^-128 per pair (the Datadog Agent identifies contexts by 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesId {
    /// Low 64 bits.
    pub hash: u64,
    /// High 64 bits.
    pub check: u64,
}

fn series_id(seed: u64, bytes: &[u8], name_len: u16, tags_len: u32, scope: u8) -> SeriesId {
    // The part lengths (and the scope) select the hash function, so `ab|c` and `a|bc` never
    // share an id, nor one series in two scopes.
    let lens = (u64::from(scope) << 56) | (u64::from(name_len) << 32) | u64::from(tags_len);
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(
        bytes,
        seed ^ lens.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    SeriesId {
        hash: h as u64,
        check: (h >> 64) as u64,
    }
}

/// Where the host of a series comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSource<'a> {
    /// The sender's address (gostatsd's default).
    Sender(&'a str),
    /// A `host:` tag, removed from the tags (gostatsd's `ignore-host`); empty if absent.
    Tag,
}

/// The first 8 bytes of `s`, zero-padded, as a big-endian integer: ordering by it agrees
/// with byte-wise string order except on ties, which fall back to a full comparison.
fn prefix(s: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

impl KeyBuilder {
    /// A builder hashing with `seed`.
    pub fn new(seed: u64, max_tags: usize) -> Self {
        Self {
            buf: Vec::with_capacity(256),
            tags: Vec::with_capacity(32),
            name_len: 0,
            tags_len: 0,
            scope: 0,
            max_tags,
            seed,
        }
    }

    /// Builds the canonical key of `name` with the raw DogStatsD tag list `raw_tags`, in
    /// scope 0, and returns its hash. The key stays in the scratch buffer until the next call.
    ///
    /// # Errors
    /// [`LineError::TooManyTags`] when the line carries more than `max_tags` tags;
    /// [`LineError::TooLong`] for a name over 64 KiB.
    pub fn build(
        &mut self,
        name: &str,
        raw_tags: &str,
        host: HostSource<'_>,
    ) -> Result<SeriesId, LineError> {
        self.build_scoped(name, raw_tags, host, 0)
    }

    /// [`KeyBuilder::build`] in listener scope `scope`.
    ///
    /// # Errors
    /// As [`KeyBuilder::build`].
    pub fn build_scoped(
        &mut self,
        name: &str,
        raw_tags: &str,
        host: HostSource<'_>,
        scope: u8,
    ) -> Result<SeriesId, LineError> {
        let Ok(name_len) = u16::try_from(name.len()) else {
            return Err(LineError::TooLong);
        };
        self.scope = scope;
        self.tags.clear();
        let mut host_tag: Option<(u32, u32)> = None;
        let mut start = 0usize;
        let rb = raw_tags.as_bytes();
        while start <= rb.len() {
            let end = memchr::memchr(b',', &rb[start..]).map_or(rb.len(), |i| start + i);
            if end > start {
                let tag = &raw_tags[start..end];
                if host == HostSource::Tag && tag.starts_with("host:") {
                    host_tag = Some((start as u32 + 5, end as u32));
                } else {
                    if self.tags.len() >= self.max_tags {
                        return Err(LineError::TooManyTags);
                    }
                    self.tags.push((prefix(tag), start as u32, end as u32));
                }
            }
            start = end + 1;
        }
        let slice = |&(_, a, b): &(u64, u32, u32)| &raw_tags[a as usize..b as usize];
        if self.tags.len() > 1 {
            self.tags
                .sort_unstable_by(|x, y| x.0.cmp(&y.0).then_with(|| slice(x).cmp(slice(y))));
            self.tags
                .dedup_by(|x, y| x.0 == y.0 && slice(x) == slice(y));
        }
        self.buf.clear();
        self.buf.extend_from_slice(name.as_bytes());
        let tags_start = self.buf.len();
        for (i, t) in self.tags.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(slice(t).as_bytes());
        }
        self.name_len = name_len;
        self.tags_len = (self.buf.len() - tags_start) as u32;
        match host {
            HostSource::Sender(h) => self.buf.extend_from_slice(h.as_bytes()),
            HostSource::Tag => {
                if let Some(h) = host_tag {
                    self.buf.extend_from_slice(&rb[h.0 as usize..h.1 as usize]);
                }
            }
        }
        Ok(self.hash_current())
    }

    fn hash_current(&self) -> SeriesId {
        series_id(
            self.seed,
            &self.buf,
            self.name_len,
            self.tags_len,
            self.scope,
        )
    }

    /// The id of an owned key, exactly as [`KeyBuilder::build`] computed it from scratch.
    pub fn hash_key(&self, key: &SeriesKey) -> SeriesId {
        series_id(self.seed, &key.bytes, key.name_len, key.tags_len, key.scope)
    }

    /// Whether the scratch key equals `key` byte for byte.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        key.name_len == self.name_len
            && key.tags_len == self.tags_len
            && key.scope == self.scope
            && *key.bytes == self.buf[..]
    }

    /// Copies the scratch key into an owned key (the one allocation of a new series).
    pub fn to_key(&self) -> SeriesKey {
        SeriesKey {
            bytes: self.buf.as_slice().into(),
            name_len: self.name_len,
            scope: self.scope,
            tags_len: self.tags_len,
        }
    }

    /// Hashes a set member: [`member_hash`] (the same in every process, whatever the seed).
    pub fn hash_member(&self, member: &str) -> u64 {
        member_hash(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(
        b: &mut KeyBuilder,
        name: &str,
        tags: &str,
        host: HostSource<'_>,
    ) -> (SeriesId, SeriesKey) {
        let h = b.build(name, tags, host).unwrap();
        (h, b.to_key())
    }

    #[test]
    fn tag_order_duplicates_and_empties_do_not_split_a_series() {
        let mut b = KeyBuilder::new(7, 64);
        let (h1, k1) = key(&mut b, "m", "b:2,a:1", HostSource::Sender("h"));
        let (h2, k2) = key(&mut b, "m", "a:1,,b:2,a:1,", HostSource::Sender("h"));
        assert_eq!(h1, h2);
        assert_eq!(k1, k2);
        assert_eq!(k1.tags().collect::<Vec<_>>(), vec!["a:1", "b:2"]);
        assert_eq!(k1.name(), "m");
        assert_eq!(k1.host(), "h");
    }

    #[test]
    fn parts_cannot_bleed_into_each_other() {
        let mut b = KeyBuilder::new(7, 64);
        let (_, k1) = key(&mut b, "ab", "", HostSource::Sender("c"));
        let (_, k2) = key(&mut b, "a", "", HostSource::Sender("bc"));
        assert_ne!(k1, k2);
    }

    #[test]
    fn host_tag_becomes_the_host_when_ignoring_sender() {
        let mut b = KeyBuilder::new(7, 64);
        let (_, k) = key(&mut b, "m", "env:prod,host:web-9", HostSource::Tag);
        assert_eq!(k.host(), "web-9");
        assert_eq!(k.tags_joined(), "env:prod");
        let (_, k) = key(&mut b, "m", "host:web-9", HostSource::Sender("10.0.0.1"));
        assert_eq!(k.host(), "10.0.0.1");
        assert_eq!(k.tags_joined(), "host:web-9");
    }

    #[test]
    fn too_many_tags_is_an_error() {
        let mut b = KeyBuilder::new(7, 2);
        assert_eq!(
            b.build("m", "a,b,c", HostSource::Tag),
            Err(LineError::TooManyTags)
        );
    }

    #[test]
    fn a_scope_makes_another_series_and_keeps_the_key_small() {
        let mut b = KeyBuilder::new(7, 64);
        let h0 = b.build("m", "a", HostSource::Sender("h")).unwrap();
        let k0 = b.to_key();
        let h1 = b
            .build_scoped("m", "a", HostSource::Sender("h"), 1)
            .unwrap();
        let k1 = b.to_key();
        assert_ne!(h0, h1);
        assert_ne!(k0, k1);
        assert_eq!((k1.scope(), k1.name(), k1.host()), (1, "m", "h"));
        assert_eq!(b.hash_key(&k1), h1);
        assert!(!b.matches(&k0));
        assert_eq!(std::mem::size_of::<SeriesKey>(), 24);
        let long = "x".repeat(70_000);
        assert_eq!(b.build(&long, "", HostSource::Tag), Err(LineError::TooLong));
    }

    #[test]
    fn member_and_stable_hashes_do_not_depend_on_the_seed() {
        let (mut a, mut b) = (KeyBuilder::new(1, 64), KeyBuilder::new(2, 64));
        assert_eq!(a.hash_member("u1"), b.hash_member("u1"));
        assert_ne!(member_hash("u1"), member_hash("u2"));
        let (ha, ka) = key(&mut a, "m", "y,x", HostSource::Sender("h"));
        let (hb, kb) = key(&mut b, "m", "x,y", HostSource::Sender("h"));
        assert_ne!(ha, hb, "series ids are seeded");
        assert_eq!(ka.stable_hash(), kb.stable_hash());
        let scoped = {
            b.build_scoped("m", "x,y", HostSource::Sender("h"), 3)
                .unwrap();
            b.to_key()
        };
        assert_eq!(
            scoped.stable_hash(),
            ka.stable_hash(),
            "scope is not routed on"
        );
        let (_, other) = key(&mut a, "m", "x", HostSource::Sender("yh"));
        assert_ne!(other.stable_hash(), ka.stable_hash());
    }

    #[test]
    fn owned_key_hash_equals_scratch_hash() {
        let mut b = KeyBuilder::new(99, 64);
        let (h, k) = key(&mut b, "m", "z,y", HostSource::Sender("h"));
        assert_eq!(b.hash_key(&k), h);
        assert!(b.matches(&k));
    }
}
