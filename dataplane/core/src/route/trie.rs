//! A byte trie of name prefixes: walking a name once finds every rule whose `name_prefix`
//! it starts with, whatever the number of prefixes.

/// One node: sorted outgoing edges and the rules whose prefix ends here.
#[derive(Debug, Default, Clone)]
struct Node {
    edges: Vec<(u8, u32)>,
    rules: Vec<u32>,
}

/// Prefix trie mapping prefixes to rule indices.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTrie {
    nodes: Vec<Node>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl PrefixTrie {
    /// Adds `rule` under `prefix`.
    pub(crate) fn insert(&mut self, prefix: &[u8], rule: u32) {
        let mut at = 0usize;
        for &b in prefix {
            let next = self.nodes.len() as u32;
            let edges = &mut self.nodes[at].edges;
            at = match edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => edges[i].1 as usize,
                Err(i) => {
                    edges.insert(i, (b, next));
                    self.nodes.push(Node::default());
                    next as usize
                }
            };
        }
        self.nodes[at].rules.push(rule);
    }

    /// Calls `f` with the rules of every inserted prefix of `name`.
    pub(crate) fn for_each_prefix_of(&self, name: &[u8], mut f: impl FnMut(&[u32])) {
        let mut node = &self.nodes[0];
        if !node.rules.is_empty() {
            f(&node.rules);
        }
        for &b in name {
            let Ok(i) = node.edges.binary_search_by_key(&b, |e| e.0) else {
                return;
            };
            let Some(next) = self.nodes.get(node.edges[i].1 as usize) else {
                return;
            };
            node = next;
            if !node.rules.is_empty() {
                f(&node.rules);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_prefix_and_nothing_else() {
        let mut t = PrefixTrie::default();
        t.insert(b"a.", 0);
        t.insert(b"a.b", 1);
        t.insert(b"a.bc", 2);
        t.insert(b"b", 3);
        t.insert(b"a.", 4);
        t.insert(b"", 5);
        let mut got = Vec::new();
        t.for_each_prefix_of(b"a.bd", |r| got.extend_from_slice(r));
        assert_eq!(got, vec![5, 0, 4, 1]);
        got.clear();
        t.for_each_prefix_of(b"a", |r| got.extend_from_slice(r));
        assert_eq!(got, vec![5]);
    }
}
