//! The layering of `chatmesh-core`, checked on its source: no import cycle between top-level modules,
//! imports point down the layers (data, then the node, then the behaviour modules), and the crate doc's
//! module map names every module.
//!
//! A module's imports are every path in its code (comments and literals left out) that starts with
//! `crate::`, or with enough `super::` to leave the module: `use` lines, `use crate::{a, b::C}` groups and
//! paths written inline alike. A file belongs to the top-level module it sits under (`src/history/sync.rs`
//! to `history`); `lib.rs`, which declares and re-exports the modules, belongs to none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up; a module imports only from layers below its own, and data modules also from one
/// another.
/// - Data: types and the pure functions on them. They never import a module that drives the node, so the
///   node and its behaviour modules can hold and use them without a cycle.
/// - The node: `Node` and its driving API; it holds the data.
/// - Behaviour: every other module, each an `impl Node` for one job.
const DATA: &[&str] = &["types", "config", "stats", "timer", "view", "ballot", "history", "wire", "io", "connections"];
const NODE: &str = "node";

/// 0 for data, 1 for the node, 2 for behaviour.
fn layer(module: &str) -> usize {
    if DATA.contains(&module) {
        0
    } else if module == NODE {
        1
    } else {
        2
    }
}

/// Where a path was written: file and line.
#[derive(Clone, Debug)]
struct At {
    file: String,
    line: usize,
    path: String,
}

/// top-level module -> the top-level modules it imports, each with where it first does.
type Graph = BTreeMap<String, BTreeMap<String, At>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("src is readable").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/history/sync.rs` -> `["history", "sync"]`, `src/history/mod.rs` ->
/// `["history"]`, `src/lib.rs` -> `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
}

/// Tokens with their line numbers: identifiers (and numbers) and punctuation; comments, strings and
/// characters are dropped.
fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let newlines = |s: &[char]| s.iter().filter(|c| **c == '\n').count();
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let (start, mut depth) = (i, 0);
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += newlines(&c[start..i]);
        } else if ch == 'r' && (c.get(i + 1) == Some(&'"') || c.get(i + 1) == Some(&'#')) && {
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            c.get(j) == Some(&'"')
        } {
            // A raw string: r"...", r#"..."#.
            let start = i;
            i += 1;
            let mut hashes = 0;
            while c[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            loop {
                if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            line += newlines(&c[start..i]);
        } else if ch == '"' {
            let start = i;
            i += 1;
            while c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            line += newlines(&c[start..i]);
        } else if ch == '\'' {
            // A character ('a', '\n', '\u{1F600}') or a lifetime ('a): a character closes within a few.
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1; // a lifetime: its name follows as an identifier
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn is_punct(t: Option<&(Tok, usize)>, p: char) -> bool {
    matches!(t, Some((Tok::Punct(q), _)) if *q == p)
}

fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// Whether tokens `i` and `i + 1` are `::`.
fn path_sep(toks: &[(Tok, usize)], i: usize) -> bool {
    is_punct(toks.get(i), ':') && is_punct(toks.get(i + 1), ':')
}

/// Every crate-relative path in one file: (absolute module path it names, line, as written). A path that
/// ends in a `{ .. }` group gives one entry per item of the group.
fn paths_in(text: &str, here: &[String]) -> Vec<(Vec<String>, usize, String)> {
    let toks = tokens(text);
    let mut found = Vec::new();
    // Inline modules (`mod tests { .. }`): their names, and the brace depth each one closes at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = &toks[i];
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(m) if m == "mod" => {
                if let (Some(name), true) = (ident(toks.get(i + 1)), is_punct(toks.get(i + 2), '{')) {
                    inline.push((name.to_string(), depth));
                }
            }
            Tok::Ident(start) if start == "crate" || start == "super" => {
                // Not the tail of a longer path (`a::crate` does not occur; `pub(crate)` is no path).
                let preceded = i >= 2 && path_sep(&toks, i - 2);
                if preceded || !path_sep(&toks, i + 1) {
                    i += 1;
                    continue;
                }
                let mut base: Vec<String> = here.to_vec();
                base.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut j = i;
                if start == "crate" {
                    base.clear();
                    j += 1;
                } else {
                    while ident(toks.get(j)) == Some("super") && path_sep(&toks, j + 1) {
                        base.pop();
                        j += 3;
                    }
                    j -= 2;
                }
                // j is at the `::` after the last `crate`/`super`.
                let mut written = if start == "crate" { "crate".to_string() } else { "super".to_string() };
                let mut segs = base.clone();
                while path_sep(&toks, j) {
                    match toks.get(j + 2) {
                        Some((Tok::Ident(s), _)) if s != "super" => {
                            written.push_str("::");
                            written.push_str(s);
                            segs.push(s.clone());
                            j += 3;
                        }
                        Some((Tok::Punct('{'), _)) => {
                            // A group: the first segment of each item.
                            let mut k = j + 3;
                            let mut d = 1;
                            let mut item_start = true;
                            while k < toks.len() && d > 0 {
                                match &toks[k].0 {
                                    Tok::Punct('{') => d += 1,
                                    Tok::Punct('}') => d -= 1,
                                    Tok::Punct(',') if d == 1 => item_start = true,
                                    Tok::Ident(s) if d == 1 && item_start => {
                                        let mut p = segs.clone();
                                        if s != "self" {
                                            p.push(s.clone());
                                        }
                                        found.push((p, *line, format!("{written}::{{{s}, ..}}")));
                                        item_start = false;
                                    }
                                    _ => {}
                                }
                                k += 1;
                            }
                            segs.clear();
                            break;
                        }
                        _ => break,
                    }
                }
                if !segs.is_empty() {
                    found.push((segs, *line, written));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The import graph between top-level modules.
fn graph() -> (Graph, BTreeSet<String>) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut modules = BTreeSet::new();
    let mut g = Graph::new();
    for file in &files {
        let Some(me) = module_of(file).first().cloned() else { continue };
        modules.insert(me.clone());
        g.entry(me.clone()).or_default();
        let text = std::fs::read_to_string(file).unwrap();
        for (path, line, written) in paths_in(&text, &module_of(file)) {
            let Some(target) = path.first() else { continue };
            if *target != me {
                let rel = file.strip_prefix(src()).unwrap().display().to_string();
                let at = At { file: format!("src/{rel}"), line, path: written };
                g.get_mut(&me).unwrap().entry(target.clone()).or_insert(at);
            }
        }
    }
    // Only edges to modules that exist (a path to an external crate's item re-exported at the root, such
    // as `crate::SigningKey`, names no module).
    for deps in g.values_mut() {
        deps.retain(|m, _| modules.contains(m));
    }
    (g, modules)
}

/// Strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g[v].keys() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t =
        T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

fn show(g: &Graph) -> String {
    g.iter()
        .map(|(m, deps)| format!("  {m} -> {}", deps.keys().cloned().collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let (g, _) = graph();
    let found = cycles(&g);
    let mut report = String::new();
    for comp in &found {
        report.push_str(&format!("cycle among {{{}}}:\n", comp.join(", ")));
        for a in comp {
            for (b, at) in &g[a] {
                if comp.contains(b) {
                    report.push_str(&format!("  {a} -> {b}  ({}:{}: {})\n", at.file, at.line, at.path));
                }
            }
        }
    }
    assert!(found.is_empty(), "import cycles inside chatmesh-core:\n{report}\nthe whole graph:\n{}", show(&g));
    println!("the import graph of chatmesh-core's top-level modules:\n{}", show(&g));
}

#[test]
fn imports_point_down_the_layers() {
    let (g, modules) = graph();
    let mut wrong = Vec::new();
    for m in DATA.iter().copied().chain([NODE]) {
        if !modules.contains(m) {
            wrong.push(format!("  {m}: named in a layer, but there is no such module"));
        }
    }
    let names = ["data", "node", "behaviour"];
    for (m, deps) in &g {
        for (dep, at) in deps {
            let (from, to) = (layer(m), layer(dep));
            if to > from || (to == from && from > 0) {
                let (a, b) = (names[from], names[to]);
                wrong.push(format!("  {m} ({a}) -> {dep} ({b})  ({}:{}: {})", at.file, at.line, at.path));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that do not point down the layers:\n{}", wrong.join("\n"));
}

#[test]
fn the_crate_doc_maps_every_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f).join("::")).filter(|m| !m.is_empty()).collect();
    let mapped: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim_start_matches("//!").trim_start().strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = modules.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&modules).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "lib.rs's module map lacks {missing:?}, and names {stale:?}, which are no modules"
    );
}

/// The checker itself: paths in groups, inline, through `super::` (from an inline module too) are found;
/// paths in comments and strings, `pub(crate)` and lifetimes are not taken for paths.
#[test]
fn the_checker_reads_groups_inline_paths_and_super() {
    let text = "// use crate::nothing;\nuse crate::{a::A, b, self as me};\npub(crate) fn f<'a>(x: &'a str) -> char {\n\
                let s = \"crate::c\"; let r = r#\"crate::c\"#; crate::d::g(); 'x' }\n\
                mod tests { use super::*; use super::super::e::E; }\nuse super::h;\n";
    let here = vec!["x".to_string()];
    let found: Vec<(String, usize)> =
        paths_in(text, &here).into_iter().map(|(p, line, _)| (p.join("::"), line)).collect();
    let want = [("a", 2), ("b", 2), ("", 2), ("d::g", 4), ("x", 5), ("e::E", 5), ("h", 6)];
    assert_eq!(found, want.map(|(p, l)| (p.to_string(), l)));
}
