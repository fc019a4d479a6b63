//! Applies the rename and tag rules of a [`Decision`] into reusable buffers.

use super::compile::CompiledRoutes;
use super::decide::Decision;

/// The rewritten name and tags of one series, in buffers reused across calls (no
/// allocation once they have grown).
#[derive(Debug, Default, Clone)]
pub struct Rewrite {
    name: String,
    buf: String,
    tags: Vec<(u32, u32)>,
    tmp: String,
}

impl Rewrite {
    /// The rewritten name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rewritten tags, sorted and without duplicates (canonical, as the aggregator
    /// keeps them).
    pub fn tags(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.tags
            .iter()
            .map(|&(s, e)| self.buf.get(s as usize..e as usize).unwrap_or(""))
    }

    fn tag(&self, t: (u32, u32)) -> &str {
        self.buf.get(t.0 as usize..t.1 as usize).unwrap_or("")
    }

    fn push(&mut self, parts: &[&str]) {
        let start = self.buf.len() as u32;
        for p in parts {
            self.buf.push_str(p);
        }
        self.tags.push((start, self.buf.len() as u32));
    }

    fn key(&self, t: (u32, u32)) -> &str {
        let tag = self.tag(t);
        tag.split_once(':').map_or(tag, |(k, _)| k)
    }
}

impl CompiledRoutes {
    /// Applies the rename and tag rules of the rules in `d.matched`, in table order, to the
    /// series `name` / `tags` (as given to [`Self::decide`]), writing the result into `out`.
    /// Per rule: the name prefix is replaced (when the current name starts with it), then
    /// `remove_tags`, `rename_tags` and `add_tags` apply, in that order; the tags come out
    /// sorted and de-duplicated.
    ///
    /// Returns `false`, leaving `out` untouched, when the decision rewrites nothing (use the
    /// series as it is). `d` must come from this table.
    pub fn rewrite(&self, d: &Decision, name: &str, tags: &[&str], out: &mut Rewrite) -> bool {
        if !d.rewrites {
            return false;
        }
        out.name.clear();
        out.name.push_str(name);
        out.buf.clear();
        out.tags.clear();
        for t in tags {
            out.push(&[*t]);
        }
        for &i in &d.matched {
            let Some(rule) = self.rules.get(i as usize) else {
                continue;
            };
            if let Some((prefix, to)) = &rule.rename {
                if out.name.starts_with(&**prefix) {
                    out.name.replace_range(..prefix.len(), to);
                }
            }
            for k in &rule.remove_tags {
                let mut kept = std::mem::take(&mut out.tags);
                kept.retain(|&t| out.key(t) != &**k);
                out.tags = kept;
            }
            for (old, new) in &rule.rename_tags {
                for j in 0..out.tags.len() {
                    let t = out.tags[j];
                    if out.key(t) == &**old {
                        let value_at = t.0 as usize + old.len();
                        out.tmp.clear();
                        out.tmp.push_str(new);
                        out.tmp
                            .push_str(out.buf.get(value_at..t.1 as usize).unwrap_or(""));
                        let start = out.buf.len() as u32;
                        out.buf.push_str(&out.tmp);
                        out.tags[j] = (start, out.buf.len() as u32);
                    }
                }
            }
            for (k, tag) in &rule.add_tags {
                let mut kept = std::mem::take(&mut out.tags);
                kept.retain(|&t| out.key(t) != &**k);
                out.tags = kept;
                out.push(&[tag]);
            }
        }
        let mut sorted = std::mem::take(&mut out.tags);
        sorted.sort_unstable_by(|&a, &b| out.tag(a).cmp(out.tag(b)));
        sorted.dedup_by(|a, b| out.tag(*a) == out.tag(*b));
        out.tags = sorted;
        true
    }
}
