//! The crate's layering, read from its sources: every `crate::…`, `super::…`
//! and `self::…` path names the module it uses. Modules depend only on their
//! own layer and the layers below, the top-level modules form no cycle, and
//! no two files import each other, directly or round a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may use its own layer and those below; within a
/// layer the uses must not form a cycle (train and serve, say, may not use
/// each other both ways).
const LAYERS: &[&[&str]] = &[
    &["ffi", "fsutil", "rng", "paths", "torch_runtime", "gpu_info"],
    &["config", "data", "dist", "tb", "env_report", "rundir"],
    &["model"],
    &["task"],
    &["train", "serve"],
    &["sweep", "launch", "bench"],
    &["report"],
    &["cli"],
];

type Module = Vec<String>;

/// Every module of the crate (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`) and its file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(src).unwrap().with_extension("");
            let mut m: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                m.pop();
            }
            (m, f)
        })
        .collect()
}

/// The source without comments (so doc links and prose name no dependency).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let (mut i, mut in_str) = (0, false);
    while i < b.len() {
        if in_str {
            if b[i] == b'\\' {
                i += 2;
                continue;
            }
            in_str = b[i] != b'"';
            out.push(b[i] as char);
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else {
            in_str = b[i] == b'"' && !(i > 0 && b[i - 1] == b'\'');
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &[u8], i: usize) -> Option<(String, usize)> {
    let start = i;
    let mut j = i;
    while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
        j += 1;
    }
    (j > start).then(|| (String::from_utf8_lossy(&s[start..j]).into_owned(), j))
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The paths of a use tree starting at `i` (after `root::`): `a::b`,
/// `a::{b, c::d}`, `{a, b}`; each as its segments.
fn use_tree(s: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    i = skip_ws(s, i);
    if i < s.len() && s[i] == b'{' {
        i += 1;
        loop {
            i = skip_ws(s, i);
            if i >= s.len() || s[i] == b'}' {
                return i + 1;
            }
            i = use_tree(s, i, prefix.clone(), out);
            i = skip_ws(s, i);
            if i < s.len() && s[i] == b',' {
                i += 1;
            }
        }
    }
    let mut path = prefix;
    while let Some((name, j)) = ident_at(s, i) {
        path.push(name);
        i = j;
        if s[i..].starts_with(b"::") {
            i += 2;
            if i < s.len() && s[i] == b'{' {
                return use_tree(s, i, path, out);
            }
        } else {
            break;
        }
    }
    out.push(path);
    i
}

/// The modules a file uses.
fn uses(module: &Module, text: &str, all: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let s = code(text);
    let s = s.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        let root = ["crate", "super", "self"].into_iter().find(|r| boundary && s[i..].starts_with(r.as_bytes()));
        let Some(root) = root.filter(|r| s[i + r.len()..].starts_with(b"::")) else {
            i += 1;
            continue;
        };
        // `self` of a file is the file's module; `super` its parent (a `mod.rs`
        // file is its folder's module, so its parent is the folder's parent).
        let base: Module = match root {
            "crate" => Vec::new(),
            "self" => module.clone(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        let mut paths = Vec::new();
        i = use_tree(s, i + root.len() + 2, Vec::new(), &mut paths);
        for p in paths {
            let full: Module = base.iter().cloned().chain(p).collect();
            if let Some(target) = (1..=full.len()).rev().map(|n| full[..n].to_vec()).find(|m| all.contains_key(m)) {
                found.insert(target);
            }
        }
    }
    found.remove(module);
    found
}

/// The file-level dependency graph, without edges between a module and its
/// ancestors (a `mod.rs` declares its children; children use their parent).
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let all = modules(src);
    all.iter()
        .map(|(m, f)| {
            let text = std::fs::read_to_string(f).unwrap();
            let deps = uses(m, &text, &all).into_iter().filter(|d| !d.starts_with(m) && !m.starts_with(d)).collect();
            (m.clone(), deps)
        })
        .collect()
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles<T: Ord + Clone>(edges: &BTreeMap<T, BTreeSet<T>>) -> Vec<Vec<T>> {
    struct S<T> {
        index: BTreeMap<T, usize>,
        low: BTreeMap<T, usize>,
        stack: Vec<T>,
        on: BTreeSet<T>,
        out: Vec<Vec<T>>,
    }
    fn visit<T: Ord + Clone>(v: &T, e: &BTreeMap<T, BTreeSet<T>>, s: &mut S<T>) {
        let n = s.index.len();
        s.index.insert(v.clone(), n);
        s.low.insert(v.clone(), n);
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        for w in e.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, e, s);
                let l = s.low[w].min(s.low[v]);
                s.low.insert(v.clone(), l);
            } else if s.on.contains(w) {
                let l = s.index[w].min(s.low[v]);
                s.low.insert(v.clone(), l);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s =
        S { index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(v, edges, &mut s);
        }
    }
    s.out
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("top-level module `{top}` is in no layer of tests/architecture.rs: add it to LAYERS"))
}

fn top_level(g: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in g.iter().filter(|(m, _)| !m.is_empty()) {
        let entry = top.entry(m[0].clone()).or_default();
        entry.extend(deps.iter().filter(|d| !d.is_empty() && d[0] != m[0]).map(|d| d[0].clone()));
    }
    top
}

#[test]
fn modules_use_only_their_own_layer_and_the_layers_below() {
    let g = graph(&src());
    let mut wrong = Vec::new();
    for (m, deps) in g.iter().filter(|(m, _)| !m.is_empty()) {
        for d in deps.iter().filter(|d| !d.is_empty() && d[0] != m[0]) {
            if layer_of(&d[0]) > layer_of(&m[0]) {
                wrong.push(format!("{} uses {} (a layer above it)", m.join("::"), d.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn top_level_modules_form_no_cycle() {
    let found = cycles(&top_level(&graph(&src())));
    assert!(found.is_empty(), "top-level modules that use each other round a loop: {found:?}");
}

#[test]
fn no_two_files_use_each_other() {
    let found: Vec<String> = cycles(&graph(&src()))
        .into_iter()
        .map(|c| c.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" <-> "))
        .collect();
    assert!(found.is_empty(), "files in a dependency cycle:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_uses_and_cycles() {
    // Its own parts, on made-up sources, so a parser that found nothing could not pass.
    let all: BTreeMap<Module, PathBuf> = [vec!["a"], vec!["a", "x"], vec!["b"], vec!["b", "y"], vec!["c"]]
        .into_iter()
        .map(|m| (m.into_iter().map(String::from).collect(), PathBuf::new()))
        .collect();
    let me: Module = vec!["a".into(), "x".into()];
    let text =
        "use crate::b::{y::Thing, self};\n// crate::c::nothing\nfn f() { super::x::g(); crate::c::h(\"crate::zzz\") }";
    let got: Vec<String> = uses(&me, text, &all).into_iter().map(|m| m.join("::")).collect();
    assert_eq!(got, ["b", "b::y", "c"]);
    let edges: BTreeMap<&str, BTreeSet<&str>> =
        [("a", ["b"].into()), ("b", ["c"].into()), ("c", ["a"].into()), ("d", ["a"].into())].into();
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
}
