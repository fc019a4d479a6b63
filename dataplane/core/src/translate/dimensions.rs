//! Datadog tags -> SignalFx dimensions (`formats.md` §5.2), computed once per series into a
//! reusable arena.
//!
//! 1. Split at the first `:` (`k:v:w` -> `k` = `v:w`).
//! 2. A bare tag `canary` becomes `unnamed_canary` = `canary` (or `canary` = `true`, or is
//!    dropped, per [`BareTagPolicy`]).
//! 3. Empty keys or values are dropped and counted.
//! 4. Keys: every char that is not a letter, digit, `_`, `-` or `.` becomes `_` (`.` too in
//!    strict mode); a key not starting with a letter, or starting with `sf_`, `aws_`, `gcp_`,
//!    `azure_` or `_`, gets a `dd_` prefix; at most 128 chars. Case is kept unless
//!    `lowercase_keys`.
//! 5. Values: at most 256 chars, cut on a character boundary.
//! 6. Duplicate keys: sorted, de-duplicated values joined with `,` (or first / last wins).
//! 7. `host` and `device` from the series win over tags.

use super::write_json_str;

/// What to do with a tag without `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareTagPolicy {
    /// `unnamed_<tag>` = `<tag>` (OTel datadogreceiver): nothing lost, no collision.
    #[default]
    Unnamed,
    /// `<tag>` = `true`.
    True,
    /// Drop the tag (counted).
    Drop,
}

/// What to do when several tags share a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// Sorted, de-duplicated values joined with `,`: deterministic whatever the tag order.
    #[default]
    Join,
    /// The first tag wins.
    First,
    /// The last tag wins.
    Last,
}

/// Tag translation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionConfig {
    /// Bare tags.
    pub bare_tags: BareTagPolicy,
    /// Duplicate keys.
    pub duplicates: DuplicatePolicy,
    /// Map `.` in keys to `_` too (the legacy SignalFx charset).
    pub strict_keys: bool,
    /// Lowercase keys (risks merging distinct dimensions; off by default).
    pub lowercase_keys: bool,
    /// Most dimensions per datapoint (SignalFx drops more than 36 silently).
    pub max_dimensions: usize,
}

impl Default for DimensionConfig {
    fn default() -> Self {
        Self {
            bare_tags: BareTagPolicy::Unnamed,
            duplicates: DuplicatePolicy::Join,
            strict_keys: false,
            lowercase_keys: false,
            max_dimensions: 36,
        }
    }
}

/// SignalFx's limit on dimension names, in characters.
pub const MAX_KEY_CHARS: usize = 128;
/// SignalFx's limit on dimension values, in characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// What building the dimensions of one series did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    /// Tags dropped.
    pub tags_dropped: u64,
    /// Tags whose key collided with an earlier one.
    pub duplicate_keys: u64,
}

/// (key start, key end, value start, value end, input order) into the input arena.
type Pair = (u32, u32, u32, u32, u32);

/// The dimensions of one series, in reusable arenas (no allocation in steady state).
#[derive(Debug, Default)]
pub struct Dimensions {
    /// Sanitised keys and truncated values of the tags, in input order.
    arena: String,
    pairs: Vec<Pair>,
    /// The final dimensions: (key start, key end, value start, value end) into `out`.
    out: String,
    merged: Vec<(u32, u32, u32, u32)>,
    scratch: Vec<(u32, u32)>,
}

fn truncate_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

const RESERVED: [&str; 5] = ["sf_", "aws_", "gcp_", "azure_", "_"];

impl Dimensions {
    /// Number of dimensions built.
    pub fn len(&self) -> usize {
        self.merged.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.merged.is_empty()
    }

    fn s(&self, a: u32, b: u32) -> &str {
        self.out.get(a as usize..b as usize).unwrap_or("")
    }

    /// The dimensions as (key, value), sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.merged
            .iter()
            .map(move |&(ka, kb, va, vb)| (self.s(ka, kb), self.s(va, vb)))
    }

    fn push_key(&mut self, cfg: &DimensionConfig, prefix: &str, raw: &str) -> (u32, u32) {
        let start = self.arena.len();
        let needs_dd = {
            let first_is_letter = prefix
                .chars()
                .chain(raw.chars())
                .next()
                .is_some_and(char::is_alphabetic);
            let whole_starts_reserved = |r: &str| {
                let mut it = prefix.chars().chain(raw.chars());
                r.chars().all(|c| it.next() == Some(c))
            };
            !first_is_letter || RESERVED.iter().any(|r| whole_starts_reserved(r))
        };
        if needs_dd {
            self.arena.push_str("dd_");
        }
        for c in prefix.chars().chain(raw.chars()) {
            let keep =
                c.is_alphanumeric() || c == '_' || c == '-' || (c == '.' && !cfg.strict_keys);
            let c = if keep { c } else { '_' };
            if cfg.lowercase_keys {
                self.arena.extend(c.to_lowercase());
            } else {
                self.arena.push(c);
            }
        }
        let cut = truncate_chars(&self.arena[start..], MAX_KEY_CHARS).len();
        self.arena.truncate(start + cut);
        (start as u32, self.arena.len() as u32)
    }

    fn push_value(&mut self, v: &str) -> (u32, u32) {
        let start = self.arena.len() as u32;
        self.arena.push_str(truncate_chars(v, MAX_VALUE_CHARS));
        (start, self.arena.len() as u32)
    }

    /// Builds the dimensions of one series from its tags, `host` and `device`.
    pub fn build<'a>(
        &mut self,
        cfg: &DimensionConfig,
        tags: impl IntoIterator<Item = &'a str>,
        host: Option<&str>,
        device: Option<&str>,
    ) -> Built {
        self.arena.clear();
        self.pairs.clear();
        self.merged.clear();
        let mut built = Built::default();
        for (order, tag) in tags.into_iter().enumerate() {
            let order = order as u32;
            let (k, v) = match tag.split_once(':') {
                Some((k, v)) => {
                    if k.is_empty() || v.is_empty() {
                        built.tags_dropped += 1;
                        continue;
                    }
                    (self.push_key(cfg, "", k), self.push_value(v))
                }
                None if tag.is_empty() => {
                    built.tags_dropped += 1;
                    continue;
                }
                None => match cfg.bare_tags {
                    BareTagPolicy::Unnamed => {
                        (self.push_key(cfg, "unnamed_", tag), self.push_value(tag))
                    }
                    BareTagPolicy::True => (self.push_key(cfg, "", tag), self.push_value("true")),
                    BareTagPolicy::Drop => {
                        built.tags_dropped += 1;
                        continue;
                    }
                },
            };
            self.pairs.push((k.0, k.1, v.0, v.1, order));
        }
        // host and device win over tags of the same key.
        for (key, val) in [("host", host), ("device", device)] {
            if let Some(val) = val.filter(|v| !v.is_empty()) {
                let ks = self.arena.len() as u32;
                self.arena.push_str(key);
                let k = (ks, self.arena.len() as u32);
                let v = self.push_value(val);
                let arena = &self.arena;
                self.pairs
                    .retain(|p| arena.get(p.0 as usize..p.1 as usize) != Some(key));
                self.pairs.push((k.0, k.1, v.0, v.1, u32::MAX));
            }
        }
        // Phase 2: group equal keys (stable sort keeps input order within a key) and write
        // each resulting dimension into `out`.
        let arena = &self.arena;
        let key = |p: &Pair| arena.get(p.0 as usize..p.1 as usize).unwrap_or("");
        let val = |a: u32, b: u32| arena.get(a as usize..b as usize).unwrap_or("");
        self.pairs
            .sort_by(|a, b| key(a).cmp(key(b)).then(a.4.cmp(&b.4)));
        self.out.clear();
        let mut i = 0;
        while i < self.pairs.len() {
            let mut j = i + 1;
            while j < self.pairs.len() && key(&self.pairs[j]) == key(&self.pairs[i]) {
                j += 1;
            }
            built.duplicate_keys += (j - i - 1) as u64;
            let group = &self.pairs[i..j];
            let ks = self.out.len() as u32;
            self.out.push_str(key(&group[0]));
            let (ke, vs) = (self.out.len() as u32, self.out.len() as u32);
            match cfg.duplicates {
                _ if group.len() == 1 => self.out.push_str(val(group[0].2, group[0].3)),
                DuplicatePolicy::First => self.out.push_str(val(group[0].2, group[0].3)),
                DuplicatePolicy::Last => {
                    let l = group[group.len() - 1];
                    self.out.push_str(val(l.2, l.3));
                }
                DuplicatePolicy::Join => {
                    self.scratch.clear();
                    self.scratch.extend(group.iter().map(|p| (p.2, p.3)));
                    self.scratch
                        .sort_by(|a, b| val(a.0, a.1).cmp(val(b.0, b.1)));
                    self.scratch.dedup_by(|a, b| val(a.0, a.1) == val(b.0, b.1));
                    for (n, r) in self.scratch.iter().enumerate() {
                        if n > 0 {
                            self.out.push(',');
                        }
                        self.out.push_str(val(r.0, r.1));
                    }
                    let cut = truncate_chars(&self.out[vs as usize..], MAX_VALUE_CHARS).len();
                    self.out.truncate(vs as usize + cut);
                }
            }
            self.merged.push((ks, ke, vs, self.out.len() as u32));
            i = j;
        }
        built
    }

    /// Writes the dimensions as a JSON object.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, (k, v)) in self.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_json_str(out, k);
            out.push(b':');
            write_json_str(out, v);
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(cfg: &DimensionConfig, tags: &[&str]) -> (Vec<(String, String)>, Built) {
        let mut d = Dimensions::default();
        let b = d.build(cfg, tags.iter().copied(), None, None);
        (
            d.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            b,
        )
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn duplicate_policies() {
        let tags = ["role:web", "role:db", "role:web"];
        let (d, b) = dims(&DimensionConfig::default(), &tags);
        assert_eq!(d, pairs(&[("role", "db,web")]));
        assert_eq!(b.duplicate_keys, 2);
        let first = DimensionConfig {
            duplicates: DuplicatePolicy::First,
            ..Default::default()
        };
        assert_eq!(dims(&first, &tags).0, pairs(&[("role", "web")]));
        let last = DimensionConfig {
            duplicates: DuplicatePolicy::Last,
            ..Default::default()
        };
        assert_eq!(
            dims(&last, &["role:web", "role:db"]).0,
            pairs(&[("role", "db")])
        );
    }

    #[test]
    fn bare_tag_policies() {
        let t = DimensionConfig {
            bare_tags: BareTagPolicy::True,
            ..Default::default()
        };
        assert_eq!(dims(&t, &["canary"]).0, pairs(&[("canary", "true")]));
        let d = DimensionConfig {
            bare_tags: BareTagPolicy::Drop,
            ..Default::default()
        };
        let (v, b) = dims(&d, &["canary"]);
        assert!(v.is_empty());
        assert_eq!(b.tags_dropped, 1);
    }

    #[test]
    fn strict_and_lowercase_keys() {
        let c = DimensionConfig {
            strict_keys: true,
            lowercase_keys: true,
            ..Default::default()
        };
        assert_eq!(dims(&c, &["My.Key:V"]).0, pairs(&[("my_key", "V")]));
    }

    #[test]
    fn keys_are_cut_at_128_chars() {
        let k = format!("{}:v", "k".repeat(200));
        let (d, _) = dims(&DimensionConfig::default(), &[&k]);
        assert_eq!(d[0].0.chars().count(), MAX_KEY_CHARS);
    }

    #[test]
    fn host_wins_over_a_host_tag() {
        let mut d = Dimensions::default();
        d.build(
            &DimensionConfig::default(),
            ["host:a", "x:1"],
            Some("b"),
            None,
        );
        let v: Vec<(&str, &str)> = d.iter().collect();
        assert_eq!(v, vec![("host", "b"), ("x", "1")]);
    }
}
