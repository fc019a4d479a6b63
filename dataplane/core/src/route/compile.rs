//! Validation and compilation of a [`RouteTable`] into an immutable [`CompiledRoutes`].
//!
//! Every rule is indexed by one condition so that [`CompiledRoutes::decide`] looks at the
//! few rules that can match a series instead of all of them: exact names in a hash map,
//! prefixes in a byte trie, tag equalities and required keys in hash maps by tag and key.
//! A glob or regex anchored at the start with a literal prefix (`debug.*`,
//! `^api\.(get|post)`, the usual case) is indexed in the trie under that prefix and run on
//! its own only for names that start with it; the others share one `RegexSet`, run once
//! per decision (with 10,000 rules, 3,000 of them patterns: 2.5 µs per decision all in the
//! set, 1.7 µs indexed; `benches/RESULTS.md`). Tag rules are indexed under the tag the
//! fewest rules require. Only rules with none of those (input-only, `tags_match`-only or
//! empty matchers) are checked for every series.

use super::error::RouteError;
use super::table::{RouteConfig, RouteTable};
use super::trie::PrefixTrie;
use super::{InputKind, SinkSet, MAX_SINKS};
use foldhash::fast::FixedState;
use std::collections::HashMap;

/// Rule indices in an index bucket.
pub(crate) type Bucket = Vec<u32>;
pub(crate) type Index = HashMap<Box<str>, Bucket, FixedState>;

/// Compiled size limits of the one regex set (NFA and lazy-DFA cache); far above what
/// 10,000 realistic rules need, low enough that a hostile table cannot take the process's
/// memory.
const SET_SIZE_LIMIT: usize = 256 << 20;
const SET_DFA_LIMIT: usize = 32 << 20;

#[derive(Debug, Clone)]
pub(crate) enum InputMatch {
    Kind(InputKind),
    Listener(Box<str>),
}

/// A compiled `name_glob` or `name_regex`.
#[derive(Debug, Clone)]
pub(crate) enum NamePattern {
    /// Pattern `id` of the shared regex set.
    Set(u32),
    /// A pattern with a literal prefix, run on its own for candidates.
    Own(regex::bytes::Regex),
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) input: Option<InputMatch>,
    pub(crate) exact: Option<Box<str>>,
    pub(crate) prefix: Option<Box<str>>,
    /// This rule's glob and regex.
    pub(crate) patterns: Vec<NamePattern>,
    /// The literal prefix of the first [`NamePattern::Own`] pattern.
    pub(crate) pattern_prefix: Option<Box<[u8]>>,
    /// Whole tags that must be present (`k:v`, or `k` for an empty value).
    pub(crate) tags_eq: Vec<Box<str>>,
    /// Keys that must be present.
    pub(crate) has_keys: Vec<Box<str>>,
    /// Keys whose value must match.
    pub(crate) tags_match: Vec<(Box<str>, regex::Regex)>,
    pub(crate) sinks: SinkSet,
    /// `None`: every series; `Some(t)`: series whose salted hash is below `t`.
    pub(crate) sample_below: Option<u64>,
    pub(crate) salt: u64,
    pub(crate) drop: bool,
    pub(crate) is_final: bool,
    pub(crate) durable: bool,
    pub(crate) rename: Option<(Box<str>, Box<str>)>,
    pub(crate) remove_tags: Vec<Box<str>>,
    pub(crate) rename_tags: Vec<(Box<str>, Box<str>)>,
    pub(crate) add_tags: Vec<(Box<str>, Box<str>)>,
}

impl Rule {
    pub(crate) fn rewrites(&self) -> bool {
        self.rename.is_some()
            || !self.remove_tags.is_empty()
            || !self.rename_tags.is_empty()
            || !self.add_tags.is_empty()
    }
}

/// An immutable, compiled route table: build it once per version with [`compile`] and share
/// it (`Arc`) with every shard. See [`CompiledRoutes::decide`].
#[derive(Debug, Clone)]
pub struct CompiledRoutes {
    pub(crate) table: RouteTable,
    pub(crate) sinks: Vec<String>,
    /// The listener names rules may match, in the order given to [`compile`], and whether
    /// some rule matches each.
    pub(crate) listeners: Vec<(String, bool)>,
    pub(crate) rules: Vec<Rule>,
    /// Rules checked for every series.
    pub(crate) always: Bucket,
    pub(crate) exact: Index,
    pub(crate) prefixes: PrefixTrie,
    pub(crate) set: Option<regex::bytes::RegexSet>,
    /// Rule of each set pattern, when the pattern is the rule's index entry (else `u32::MAX`).
    pub(crate) pattern_rule: Vec<u32>,
    pub(crate) tag_eq: Index,
    pub(crate) tag_key: Index,
}

impl CompiledRoutes {
    /// The table's version string.
    pub fn version(&self) -> &str {
        &self.table.version
    }

    /// The table this was compiled from (what `GET /v1/routes` returns).
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The sink names, in the order [`SinkSet`] bits refer to.
    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }

    /// The scope series of listener `index` (in the listener order given to [`compile`])
    /// aggregate in: `1 + index` when some rule matches that listener by name, so its series
    /// stay apart from other listeners'; 0 (aggregated across listeners) otherwise, or past
    /// 254 listeners.
    pub fn listener_scope(&self, index: usize) -> u8 {
        match self.listeners.get(index) {
            Some((_, true)) => u8::try_from(index + 1).unwrap_or(0),
            _ => 0,
        }
    }

    /// The listener name of a scope ([`Self::listener_scope`]); `""` for scope 0.
    pub fn scope_listener(&self, scope: u8) -> &str {
        (scope as usize)
            .checked_sub(1)
            .and_then(|i| self.listeners.get(i))
            .map_or("", |(name, _)| name.as_str())
    }

    /// Number of rules (rule indices in a [`super::Decision`] are below this).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Name of rule `i` (for per-route counters).
    pub fn rule_name(&self, i: usize) -> Option<&str> {
        self.table.routes.get(i).map(|r| r.name.as_str())
    }
}

/// Validates `table` against the ordered sink names (bit `i` of a [`SinkSet`] is
/// `sinks[i]`) and the listener names a `match.input` may use besides `statsd` and `http`,
/// and compiles it.
///
/// # Errors
/// The first problem, naming the rule and field: unknown sink or input, bad regex or glob,
/// `sample` outside [0, 1], a rule that sends nowhere, duplicate names, more than 64 sinks,
/// a rule that can never match.
pub fn compile<S: AsRef<str>, L: AsRef<str>>(
    table: &RouteTable,
    sinks: &[S],
    listeners: &[L],
) -> Result<CompiledRoutes, RouteError> {
    let sinks: Vec<String> = sinks.iter().map(|s| s.as_ref().to_string()).collect();
    if sinks.len() > MAX_SINKS {
        return Err(RouteError::table(
            "sinks",
            format!(
                "{} sinks configured; routes can address at most {MAX_SINKS}",
                sinks.len()
            ),
        ));
    }
    let listeners: Vec<&str> = listeners.iter().map(AsRef::as_ref).collect();
    let mut out = CompiledRoutes {
        table: table.clone(),
        sinks,
        listeners: listeners.iter().map(|l| (l.to_string(), false)).collect(),
        rules: Vec::with_capacity(table.routes.len()),
        always: Vec::new(),
        exact: Index::default(),
        prefixes: PrefixTrie::default(),
        set: None,
        pattern_rule: Vec::new(),
        tag_eq: Index::default(),
        tag_key: Index::default(),
    };
    let mut patterns: Vec<String> = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    // The first earlier rule that matches everything and stops evaluation.
    let mut shadow: Option<usize> = None;
    for (i, r) in table.routes.iter().enumerate() {
        let e = |field: &str, m: String| RouteError::rule(i, &r.name, field, m);
        if r.name.is_empty() {
            return Err(e("name", "must not be empty".into()));
        }
        if let Some(j) = names.insert(&r.name, i) {
            return Err(e(
                "name",
                format!("duplicate route name (also routes[{j}])"),
            ));
        }
        let rule = compile_rule(i, r, &out.sinks, &listeners, &mut patterns)?;
        if let Some(j) = shadow {
            return Err(e(
                "",
                format!(
                    "can never match: routes[{j}] ({:?}) before it matches every series and stops evaluation",
                    table.routes[j].name
                ),
            ));
        }
        if r.matcher.is_empty() && rule.sample_below.is_none() && (r.drop || r.is_final) {
            shadow = Some(i);
        }
        if let Some(InputMatch::Listener(l)) = &rule.input {
            for (name, used) in &mut out.listeners {
                if **name == **l {
                    *used = true;
                }
            }
        }
        out.rules.push(rule);
    }
    // Tag rules are indexed by their tag (or key) the fewest rules require: with
    // `{env = "prod", service = "checkout"}` on many rules, `env:prod` would make them all
    // candidates for every production series.
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for rule in &out.rules {
        for t in rule.tags_eq.iter().chain(&rule.has_keys) {
            *uses.entry(t).or_default() += 1;
        }
    }
    let rarest = |v: &[Box<str>]| {
        v.iter()
            .min_by_key(|t| uses.get(&***t).copied().unwrap_or(0))
            .cloned()
    };
    for (i, rule) in out.rules.iter().enumerate() {
        let idx = i as u32;
        // Index the rule by its most selective condition.
        if let Some(x) = &rule.exact {
            out.exact.entry(x.clone()).or_default().push(idx);
        } else if let Some(p) = &rule.prefix {
            out.prefixes.insert(p.as_bytes(), idx);
        } else if let Some(lit) = &rule.pattern_prefix {
            out.prefixes.insert(lit, idx);
        } else if let Some(NamePattern::Set(p)) = rule.patterns.first() {
            grow(&mut out.pattern_rule, *p as usize + 1);
            out.pattern_rule[*p as usize] = idx;
        } else if let Some(t) = rarest(&rule.tags_eq) {
            out.tag_eq.entry(t).or_default().push(idx);
        } else if let Some(k) = rarest(&rule.has_keys) {
            out.tag_key.entry(k).or_default().push(idx);
        } else {
            out.always.push(idx);
        }
    }
    grow(&mut out.pattern_rule, patterns.len());
    if !patterns.is_empty() {
        let set = regex::bytes::RegexSetBuilder::new(&patterns)
            .size_limit(SET_SIZE_LIMIT)
            .dfa_size_limit(SET_DFA_LIMIT)
            .build()
            .map_err(|err| {
                RouteError::table(
                    "routes",
                    format!(
                        "the name_glob and name_regex patterns together are too large: {}",
                        regex_message(&err)
                    ),
                )
            })?;
        out.set = Some(set);
    }
    Ok(out)
}

fn grow(v: &mut Vec<u32>, len: usize) {
    if v.len() < len {
        v.resize(len, u32::MAX);
    }
}

/// The useful line of a regex error (the crate's message spans several lines, with a caret
/// under the pattern).
fn regex_message(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| s.trim().to_string(), str::to_string)
}

/// The literal bytes a pattern's matches must start with: the literal that directly follows
/// a leading `^` (not `(?m)^`) in the parsed pattern, or `None`.
fn literal_prefix(pattern: &str) -> Option<Box<[u8]>> {
    use regex_syntax::hir::{HirKind, Look};
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let mut it = parts.iter();
    if !matches!(it.next()?.kind(), HirKind::Look(Look::Start)) {
        return None;
    }
    let mut lit = Vec::new();
    for p in it {
        match p.kind() {
            HirKind::Literal(l) => lit.extend_from_slice(&l.0),
            _ => break,
        }
    }
    (!lit.is_empty()).then(|| lit.into_boxed_slice())
}

/// Compiles one name pattern: on its own, indexed by its literal prefix, when it has one;
/// else into the shared set.
fn add_pattern(
    pattern: &str,
    rule_patterns: &mut Vec<NamePattern>,
    pattern_prefix: &mut Option<Box<[u8]>>,
    set: &mut Vec<String>,
) -> Result<(), String> {
    match literal_prefix(pattern) {
        Some(lit) => {
            let re = regex::bytes::RegexBuilder::new(pattern)
                .size_limit(SET_SIZE_LIMIT)
                .build()
                .map_err(|err| regex_message(&err))?;
            rule_patterns.push(NamePattern::Own(re));
            pattern_prefix.get_or_insert(lit);
        }
        None => {
            rule_patterns.push(NamePattern::Set(set.len() as u32));
            set.push(pattern.to_string());
        }
    }
    Ok(())
}

fn check_key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        Err("a tag key must not be empty".into())
    } else if k.contains(':') {
        Err(format!("tag key `{k}` must not contain `:`"))
    } else {
        Ok(())
    }
}

fn compile_rule(
    i: usize,
    r: &RouteConfig,
    sinks: &[String],
    listeners: &[&str],
    patterns: &mut Vec<String>,
) -> Result<Rule, RouteError> {
    let e = |field: &str, m: String| RouteError::rule(i, &r.name, field, m);
    let never = |field: &str, why: String| e(field, format!("{why}: the rule can never match"));
    let m = &r.matcher;

    let input = match m.input.as_deref() {
        None => None,
        Some("statsd") => Some(InputMatch::Kind(InputKind::Statsd)),
        Some("http") => Some(InputMatch::Kind(InputKind::Http)),
        Some(l) if listeners.contains(&l) => Some(InputMatch::Listener(l.into())),
        Some(l) => {
            let mut known = vec!["statsd", "http"];
            known.extend_from_slice(listeners);
            return Err(e(
                "match.input",
                format!(
                    "unknown input `{l}` (expected one of: {})",
                    known.join(", ")
                ),
            ));
        }
    };
    for (f, v) in [
        ("match.name", &m.name),
        ("match.name_prefix", &m.name_prefix),
    ] {
        if v.as_deref() == Some("") {
            return Err(e(
                f,
                "must not be empty (omit it to match every name)".into(),
            ));
        }
    }
    if let (Some(n), Some(p)) = (&m.name, &m.name_prefix) {
        if !n.starts_with(p.as_str()) {
            return Err(never(
                "match.name",
                format!("`{n}` does not start with match.name_prefix `{p}`"),
            ));
        }
    }
    let mut rule_patterns = Vec::new();
    let mut pattern_prefix = None;
    if let Some(g) = &m.name_glob {
        let glob = globset::Glob::new(g).map_err(|err| {
            e(
                "match.name_glob",
                format!("invalid glob `{g}`: {}", err.kind()),
            )
        })?;
        if let Some(n) = &m.name {
            if !glob.compile_matcher().is_match(n) {
                return Err(never(
                    "match.name",
                    format!("`{n}` does not match match.name_glob `{g}`"),
                ));
            }
        }
        add_pattern(
            glob.regex(),
            &mut rule_patterns,
            &mut pattern_prefix,
            patterns,
        )
        .map_err(|m| e("match.name_glob", format!("invalid glob `{g}`: {m}")))?;
    }
    if let Some(x) = &m.name_regex {
        let re = regex::bytes::RegexBuilder::new(x)
            .size_limit(SET_SIZE_LIMIT)
            .build()
            .map_err(|err| {
                e(
                    "match.name_regex",
                    format!("invalid regex `{x}`: {}", regex_message(&err)),
                )
            })?;
        if let Some(n) = &m.name {
            if !re.is_match(n.as_bytes()) {
                return Err(never(
                    "match.name",
                    format!("`{n}` does not match match.name_regex `{x}`"),
                ));
            }
        }
        drop(re);
        add_pattern(x, &mut rule_patterns, &mut pattern_prefix, patterns)
            .map_err(|m| e("match.name_regex", format!("invalid regex `{x}`: {m}")))?;
    }

    let mut tags_eq = Vec::new();
    let mut has_keys: Vec<Box<str>> = Vec::new();
    for (k, v) in &m.tags {
        check_key(k).map_err(|msg| e(&format!("match.tags.{k}"), msg))?;
        match v.as_str() {
            "*" => has_keys.push(k.as_str().into()),
            "" => tags_eq.push(k.as_str().into()),
            v => tags_eq.push(format!("{k}:{v}").into_boxed_str()),
        }
    }
    for (j, k) in m.has_tags.iter().enumerate() {
        check_key(k).map_err(|msg| e(&format!("match.has_tags[{j}]"), msg))?;
        has_keys.push(k.as_str().into());
    }
    let mut tags_match = Vec::new();
    for (k, x) in &m.tags_match {
        let f = format!("match.tags_match.{k}");
        check_key(k).map_err(|msg| e(&f, msg))?;
        let re = regex::Regex::new(x)
            .map_err(|err| e(&f, format!("invalid regex `{x}`: {}", regex_message(&err))))?;
        if let Some(v) = m.tags.get(k).filter(|v| v.as_str() != "*") {
            if !re.is_match(v) {
                return Err(never(
                    &f,
                    format!("match.tags.{k} = `{v}` does not match `{x}`"),
                ));
            }
        }
        tags_match.push((k.as_str().into(), re));
    }

    if r.drop {
        if !r.to.is_empty() {
            return Err(e(
                "to",
                "a drop rule sends nowhere: remove `to` or `drop`".into(),
            ));
        }
        if r.sample.is_some() {
            return Err(e("sample", "a drop rule takes no sample".into()));
        }
        if r.durable {
            return Err(e(
                "durable",
                "a drop rule sends nowhere: nothing can be made durable".into(),
            ));
        }
    } else if r.to.is_empty() {
        return Err(e(
            "to",
            "sends nowhere: list sinks in `to` or set `drop = true`".into(),
        ));
    }
    let mut set = SinkSet::EMPTY;
    for (j, s) in r.to.iter().enumerate() {
        // An empty name marks a removed sink's slot: never addressable.
        match sinks.iter().position(|k| k == s && !s.is_empty()) {
            Some(b) => set.insert(b),
            None => {
                let known: Vec<&str> = sinks
                    .iter()
                    .map(String::as_str)
                    .filter(|k| !k.is_empty())
                    .collect();
                return Err(e(
                    &format!("to[{j}]"),
                    format!(
                        "unknown sink `{s}` (configured sinks: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    let sample_below = match r.sample {
        None => None,
        Some(p) if !(0.0..=1.0).contains(&p) => {
            return Err(e("sample", format!("{p} is outside [0, 1]")))
        }
        Some(p) if p >= 1.0 => None,
        // The float-to-int cast saturates; p < 1 keeps the result below 2^64.
        Some(p) => Some((p * 18_446_744_073_709_551_616.0) as u64),
    };

    for k in &r.remove_tags {
        check_key(k).map_err(|msg| e("remove_tags", msg))?;
    }
    for (k, v) in &r.rename_tags {
        let f = format!("rename_tags.{k}");
        check_key(k).map_err(|msg| e(&f, msg))?;
        check_key(v).map_err(|msg| e(&f, msg))?;
    }
    for k in r.add_tags.keys() {
        check_key(k).map_err(|msg| e(&format!("add_tags.{k}"), msg))?;
    }
    if let Some(rn) = &r.rename {
        if rn.to.is_empty() && rn.prefix.is_empty() {
            return Err(e("rename", "renames nothing: set `prefix` or `to`".into()));
        }
    }

    Ok(Rule {
        input,
        exact: m.name.as_deref().map(Into::into),
        prefix: m.name_prefix.as_deref().map(Into::into),
        patterns: rule_patterns,
        pattern_prefix,
        tags_eq,
        has_keys,
        tags_match,
        sinks: set,
        sample_below,
        salt: xxhash_rust::xxh3::xxh3_64(r.name.as_bytes()),
        drop: r.drop,
        is_final: r.is_final,
        durable: r.durable,
        rename: r
            .rename
            .as_ref()
            .map(|rn| (rn.prefix.as_str().into(), rn.to.as_str().into())),
        remove_tags: r.remove_tags.iter().map(|k| k.as_str().into()).collect(),
        rename_tags: r
            .rename_tags
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect(),
        add_tags: r
            .add_tags
            .iter()
            .map(|(k, v)| {
                let tag = if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}:{v}")
                };
                (k.as_str().into(), tag.into_boxed_str())
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(p: &str) -> Option<String> {
        literal_prefix(p).map(|b| String::from_utf8(b.into_vec()).unwrap())
    }

    #[test]
    fn literal_prefix_of_anchored_patterns_only() {
        assert_eq!(lit(r"^api\.(get|post)$").as_deref(), Some("api."));
        assert_eq!(lit(r"^ab?c").as_deref(), Some("a"));
        assert_eq!(lit("^abc").as_deref(), Some("abc"));
        assert_eq!(lit("abc"), None);
        assert_eq!(lit("(?m)^abc"), None);
        assert_eq!(lit("(?i)^abc"), None);
        assert_eq!(lit("^a|^b"), None);
        assert_eq!(lit("^(abc)"), None);
        let glob = |g: &str| lit(globset::Glob::new(g).unwrap().regex());
        assert_eq!(glob("debug.*").as_deref(), Some("debug."));
        assert_eq!(
            glob("svc1.cache.{hit,miss}").as_deref(),
            Some("svc1.cache.")
        );
        assert_eq!(glob("*.errors"), None);
    }
}
