//! The route table schema: one shape for the config file's `[[routes]]` and the control
//! API's JSON (`GET/PUT /v1/routes`). Pure data; [`super::compile`] checks and compiles it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole route table, as the control API sends and returns it.
///
/// ```json
/// {"version": "7", "routes": [{"name": "all-to-old", "to": ["old"]}]}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// Opaque version string; `PUT /v1/routes` compares it with `If-Match`.
    #[serde(default)]
    pub version: String,
    /// Ordered rules.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `[[routes]]`: one ordered rule. A series matches when every condition of `match` holds
/// (an absent `match` matches everything); it then goes to the union of the `to` sinks of
/// every matching rule, unless a matching rule drops it.
///
/// ```toml
/// [[routes]]
/// name = "trial"
/// match = { name_prefix = "checkout.", tags = { env = "prod" } }
/// sample = 0.1
/// to = ["trial"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Rule name, unique in the table; per-route counters are labelled with it, and it
    /// salts the sample so two rules with the same share pick different series.
    pub name: String,
    /// Conditions, all of which must hold; absent matches every series.
    #[serde(
        default,
        rename = "match",
        skip_serializing_if = "MatchConfig::is_empty"
    )]
    pub matcher: MatchConfig,
    /// Sinks that receive the matching series. Required unless `drop = true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Share of series, in [0, 1], this rule applies to: a stable fork by series hash, so a
    /// series is always in or always out (a trial vendor sees whole series, never a share
    /// of points). A series outside the share is treated as not matching this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
    /// Discard matching series for every sink, including sinks of earlier rules;
    /// evaluation stops here. Takes no `to` and no `sample`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop: bool,
    /// Stop evaluating later rules once this one applies.
    #[serde(default, rename = "final", skip_serializing_if = "is_false")]
    pub is_final: bool,
    /// An HTTP payload holding a series this rule sends somewhere is answered `202` only
    /// once every sink it is queued for made it durable (delivered, written to its spool,
    /// or to its stream); else `503` with `Retry-After` (`[http] durable_timeout`). The
    /// default (`false`) answers once queued. Statsd input is unaffected (UDP has no answer).
    #[serde(default, skip_serializing_if = "is_false")]
    pub durable: bool,
    /// Replace a name prefix: `rename = { prefix = "old.", to = "new." }`. Applies to the
    /// series as every sink sees it, when the name starts with `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<RenameConfig>,
    /// Tags to set, `key = "value"` (an empty value adds the bare key); a tag with the same
    /// key is replaced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_tags: BTreeMap<String, String>,
    /// Tag keys to remove (every tag with that key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
    /// Tag keys to rename, `old = "new"` (values are kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename_tags: BTreeMap<String, String>,
}

/// `match`: every present condition must hold. Names are matched before any rename, tags
/// before any tag rule (rules see the series as it arrived).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Where the series came in: `statsd`, `http`, or a listener named by its address as
    /// written in the config (`udp://127.0.0.1:8125`, `unixgram:///run/s.sock`, or the
    /// `[http] listen` value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Exact metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Metric name prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Glob over the whole name: `*` and `?` match any characters (dots included),
    /// `[abc]` a class, `{a,b}` alternatives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_glob: Option<String>,
    /// Regular expression (Rust `regex` syntax) searched in the name; anchor it with `^`
    /// and `$` to match the whole name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_regex: Option<String>,
    /// Tags that must be present, `key = "value"`; the value `"*"` only requires the key,
    /// the empty value requires the bare tag `key`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Tag keys whose value must match a regular expression (searched, as `name_regex`);
    /// a bare tag has the empty value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags_match: BTreeMap<String, String>,
    /// Tag keys that must be present, with any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has_tags: Vec<String>,
}

impl MatchConfig {
    /// Whether there is no condition at all (the matcher matches every series).
    pub fn is_empty(&self) -> bool {
        self.input.is_none()
            && self.name.is_none()
            && self.name_prefix.is_none()
            && self.name_glob.is_none()
            && self.name_regex.is_none()
            && self.tags.is_empty()
            && self.tags_match.is_empty()
            && self.has_tags.is_empty()
    }
}

/// `rename`: prefix replacement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// The prefix to replace (empty: prepend `to`).
    pub prefix: String,
    /// What replaces it.
    pub to: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}
