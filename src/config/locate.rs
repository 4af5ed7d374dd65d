//! Maps key paths to positions in the TOML text and back, so config errors can say where.

use toml_edit::{ImDocument, Item, Table, Value};

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(n) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(n));
            }
        }
    }
    out
}

/// Byte offset of the key named by `path` (e.g. `trunks[1].ha1`), or of the nearest enclosing
/// table or key that exists when the key itself is absent.
pub fn span_of(doc: &ImDocument<String>, path: &str) -> Option<usize> {
    let segs = segments(path);
    let mut best = None;
    in_table(doc.as_table(), &segs, &mut best);
    best
}

fn mark(best: &mut Option<usize>, span: Option<std::ops::Range<usize>>) {
    if let Some(s) = span {
        *best = Some(s.start);
    }
}

fn in_table(t: &Table, segs: &[Seg<'_>], best: &mut Option<usize>) {
    let Some((Seg::Key(k), rest)) = segs.split_first() else {
        return;
    };
    if let Some((key, item)) = t.get_key_value(k) {
        mark(best, key.span());
        in_item(item, rest, best);
    }
}

fn in_item(item: &Item, segs: &[Seg<'_>], best: &mut Option<usize>) {
    match (segs.first(), item) {
        (Some(Seg::Key(_)), Item::Table(t)) => in_table(t, segs, best),
        (Some(Seg::Index(i)), Item::ArrayOfTables(a)) => {
            if let Some(t) = a.get(*i) {
                mark(best, t.span());
                in_table(t, &segs[1..], best);
            }
        }
        (_, Item::Value(v)) => in_value(v, segs, best),
        _ => {}
    }
}

fn in_value(v: &Value, segs: &[Seg<'_>], best: &mut Option<usize>) {
    match (segs.first(), v) {
        (Some(Seg::Key(k)), Value::InlineTable(t)) => {
            if let Some((key, item)) = t.get_key_value(k) {
                mark(best, key.span());
                in_item(item, &segs[1..], best);
            }
        }
        (Some(Seg::Index(i)), Value::Array(arr)) => {
            if let Some(v) = arr.get(*i) {
                mark(best, v.span());
                in_value(v, &segs[1..], best);
            }
        }
        _ => {}
    }
}

/// The dotted path of the innermost key whose key or value contains `offset`.
pub fn key_at(doc: &ImDocument<String>, offset: usize) -> String {
    let mut path = String::new();
    walk_table(doc.as_table(), offset, "", &mut path);
    path
}

fn contains(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset <= s.end)
}

fn walk_table(t: &Table, offset: usize, prefix: &str, found: &mut String) {
    for (k, item) in t.iter() {
        let Some((key, _)) = t.get_key_value(k) else {
            continue;
        };
        let here = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        match item {
            Item::Table(sub) => {
                if contains(key.span(), offset) {
                    *found = here.clone();
                }
                walk_table(sub, offset, &here, found);
            }
            Item::ArrayOfTables(a) => {
                for (i, sub) in a.iter().enumerate() {
                    let p = format!("{here}[{i}]");
                    if contains(sub.span(), offset) {
                        *found = p.clone();
                    }
                    walk_table(sub, offset, &p, found);
                }
            }
            Item::Value(v) => {
                if contains(key.span(), offset) || contains(v.span(), offset) {
                    *found = here;
                }
            }
            Item::None => {}
        }
    }
}
