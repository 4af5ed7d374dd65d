//! The house rules, read from the source: imports run one way through the rooms
//! (`daemon → {ops, call, sim} → cluster → {sip, carrier, media, numbers, logging} → config`), no two
//! folders of `src/` import each other (directly or round a loop), and no source file outside
//! the tests grows past the size a reader takes in at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A room's height: a room may import rooms below it, and rooms of its own height as long as
/// no loop forms. `fuzzing` drives every room from outside and is left out.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("sip", 1),
    ("carrier", 1),
    ("media", 1),
    ("numbers", 1),
    ("logging", 1),
    ("cluster", 2),
    ("call", 3),
    ("ops", 3),
    ("sim", 3),
    ("daemon", 4),
];

/// The longest a non-test source file may be.
const MAX_LINES: usize = 620;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs") || name.ends_with("_harness.rs")
}

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/sip/endpoint/mod.rs` → `["sip", "endpoint"]`.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src()).expect("below src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The folder of `src/` a module path lives in: its longest prefix that is a directory.
fn folder_of(module: &[String]) -> String {
    let mut best = String::new();
    for n in 1..=module.len() {
        let candidate = module[..n].join("/");
        if src().join(&candidate).is_dir() {
            best = candidate;
        }
    }
    best
}

/// The module paths a file's code names through `crate::` and `super::`, comments and test
/// modules excluded (the text after the first `#[cfg(test)]` is a file's tests).
fn imports(path: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(path).expect("source is readable");
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or("");
    // comments may name any module
    let code: String = before_tests
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let module = module_of(path);
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        found.push(path_after(&code[i + "crate::".len()..], Vec::new()));
    }
    for (i, _) in code.match_indices("super::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        // `super` is the module one up: a mod.rs's module is its folder, so either way
        // that is the module path less its last part
        let mut base = module.clone();
        base.pop();
        let mut rest = &code[i + "super::".len()..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        found.push(path_after(rest, base));
    }
    found
}

/// `base` followed by the module names (lowercase segments) at the start of `text`; a type,
/// a `{` group or anything else ends the path.
fn path_after(text: &str, mut base: Vec<String>) -> Vec<String> {
    let line = text.lines().next().unwrap_or("");
    for segment in line.split("::") {
        let name: String = segment
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        let whole = name.len() == segment.len();
        base.push(name);
        if !whole {
            break;
        }
    }
    base
}

fn room(folder: &str) -> &str {
    folder.split('/').next().unwrap_or(folder)
}

fn layer(room: &str) -> Option<u8> {
    LAYERS.iter().find(|(r, _)| *r == room).map(|(_, l)| *l)
}

/// Folder-to-folder imports, with the file that makes each.
fn folder_edges() -> BTreeMap<(String, String), PathBuf> {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut edges = BTreeMap::new();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let from = folder_of(&module_of(file));
        let from = if from.is_empty() {
            module_of(file).first().cloned().unwrap_or_default()
        } else {
            from
        };
        for target in imports(file) {
            let to = folder_of(&target);
            let to = if to.is_empty() {
                target.first().cloned().unwrap_or_default()
            } else {
                to
            };
            if to.is_empty() || from == to {
                continue;
            }
            // a folder and the folders inside it form one room's tree: their imports are the
            // room's own business
            let nested = from.starts_with(&format!("{to}/")) || to.starts_with(&format!("{from}/"));
            if !nested {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| file.clone());
            }
        }
    }
    edges
}

#[test]
fn imports_run_down_the_layers() {
    let mut wrong = Vec::new();
    for ((from, to), file) in folder_edges() {
        let (a, b) = (room(&from), room(&to));
        if let (Some(la), Some(lb)) = (layer(a), layer(b)) {
            if lb > la {
                wrong.push(format!("{} imports {to} (from {from})", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_folders_import_each_other() {
    let edges = folder_edges();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().insert(to);
    }
    // depth-first search for a back edge
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let hops: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let file = &edges[&(w[0].clone(), w[1].clone())];
                    format!("{} → {} ({})", w[0], w[1], file.display())
                })
                .collect();
            panic!("folders import each other: {}", hops.join(", "));
        }
    }
}

#[test]
fn no_source_file_outside_the_tests_is_over_the_limit() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !is_test_file(f))
        .filter_map(|f| {
            let n = fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} has {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split by purpose:\n{}", long.join("\n"));
}

#[test]
fn the_rules_see_the_imports_they_judge() {
    // The checks above pass vacuously if the reader finds nothing: the daemon imports the
    // call layer and the SIP endpoint imports the SIP transaction layer.
    let edges = folder_edges();
    assert!(edges.contains_key(&("daemon".to_string(), "call".to_string())));
    assert!(edges.contains_key(&("sip/endpoint".to_string(), "sip/transaction".to_string())));
    assert!(edges.keys().all(|(f, t)| f != t));
}
