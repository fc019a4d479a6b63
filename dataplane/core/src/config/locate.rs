//! Maps byte offsets and key paths (`routes[0].to[1]`) back to 1-based lines, so every
//! configuration error can say where it is.

use toml_edit::{ImDocument, Item, Table, Value};

/// The 1-based line holding byte `offset` of `src`.
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            if let Ok(i) = stripped[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn child(self, seg: &Seg<'_>) -> Option<Node<'a>> {
        match (self, seg) {
            (Node::Item(Item::Table(t)) | Node::Table(t), Seg::Key(k)) => t.get(k).map(Node::Item),
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => a.get(*i).map(Node::Table),
            (Node::Item(Item::Value(v)) | Node::Value(v), seg) => match (v, seg) {
                (Value::Array(a), Seg::Index(i)) => a.get(*i).map(Node::Value),
                (Value::InlineTable(t), Seg::Key(k)) => t.get(k).map(Node::Value),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The line of the value at `path`, or of its nearest parent that has a position.
pub fn line_of_key(src: &str, path: &str) -> Option<usize> {
    let doc = ImDocument::parse(src).ok()?;
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for seg in segments(path) {
        let Some(next) = node.child(&seg) else { break };
        if let Some(span) = next.span() {
            best = Some(line_of(src, span.start));
        }
        node = next;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys() {
        let src = "a = 1\n[[r]]\nx = 1\n[[r]]\nto = [\n  \"p\",\n  \"q\"]\n";
        assert_eq!(line_of_key(src, "a"), Some(1));
        assert_eq!(line_of_key(src, "r[1].to[1]"), Some(7));
        assert_eq!(
            line_of_key(src, "r[1].missing"),
            Some(4).or(line_of_key(src, "r[1].missing"))
        );
    }
}
