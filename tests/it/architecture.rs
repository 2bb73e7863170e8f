//! The module structure of `src/`, checked from the source text (issue #12, "structure").
//!
//! Every `src/**/*.rs` file of the library is read and its references to other files of
//! the crate are collected: `use` trees (braces expanded) and inline paths in code, both
//! `crate::…`, `super::…`, `self::…` and paths through a child module or a name brought in
//! by `use`. A path names the deepest file that exists for it: `crate::a::b::Item` is
//! `src/a/b.rs` or `src/a/b/mod.rs` when one exists, else `src/a.rs` or `src/a/mod.rs`.
//! Comments, doc comments, string literals, `#[cfg(test)]` items (`mod tests { … }`,
//! test-only helpers) and test-only module files are not read. A file referring to itself
//! is no edge; a `mod.rs` using its child (`child::f`, `self::child::f`) is an edge
//! parent → child and a child using an item of its `mod.rs` (`super::Item`) is an edge
//! child → parent. `mod x;` declarations are not edges. `src/main.rs` (the binary, which
//! sees the library as `retain::…`) is not part of the graph.
//!
//! The rules:
//! 1. no import cycle between files;
//! 2. a file of a lower layer ([`LOWER`]) imports only files of lower layers;
//! 3. the files in [`IMPORT_NOTHING`] import nothing of the crate;
//! 4. a file outside a stage directory ([`STAGES`]) refers only to the stage's root file
//!    (`src/<stage>/mod.rs`), never to a file inside it.
//!
//! The scanner is plain string work with no dependencies: a small tokenizer and a `use`
//! tree parser, tested on snippets at the end of this file.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// The lower layers: top-level modules (`src/<name>.rs` or `src/<name>/…`) that may import
/// only each other, never a stage or the command layer (ARCHITECTURE.md draws them). Add a
/// new low-level module here when it is created; names of modules that do not exist (any
/// more) are tolerated.
const LOWER: &[&str] = &[
    "error",
    "storage",
    "contract",
    "version",
    "progress",
    "report",
    "models",
    "config",
    "inputs",
    "labels",
    "features",
    "labelled",
    "checks",
    "shard",
    "distribution",
];

/// The stages and the command layer. Those that are directories are sealed: a file outside
/// `src/<stage>/` refers only to the stage's root file (`src/<stage>/mod.rs` or
/// `src/<stage>.rs`), not to its internals. Missing names are tolerated.
const STAGES: &[&str] = &[
    "train",
    "score",
    "interventions",
    "grace",
    "readout",
    "monitor",
    "run",
    "backfill",
    "app",
    "table",
    "validate",
    "synth",
];

/// Files that import nothing of the crate: `cli` is the clap definitions only.
const IMPORT_NOTHING: &[&str] = &["src/cli.rs"];

/// How many references to show per edge (the rest are counted).
const SHOWN_PER_EDGE: usize = 3;

#[test]
fn no_import_cycles_between_files() {
    let g = Graph::of_src();
    let mut msg = String::new();
    for scc in g.cycles() {
        let inside: BTreeSet<usize> = scc.iter().copied().collect();
        let modules: BTreeSet<&str> = scc.iter().map(|&f| g.files[f].top()).collect();
        msg += &format!(
            "\nimport cycle among {} files in {} top-level modules ({}):\n",
            scc.len(),
            modules.len(),
            modules.iter().copied().collect::<Vec<_>>().join(", ")
        );
        for m in &modules {
            let names: Vec<&str> =
                scc.iter().filter(|&&f| g.files[f].top() == *m).map(|&f| g.files[f].rel.as_str()).collect();
            msg += &format!("  {}\n", names.join(", "));
        }
        if let Some(cycle) = g.shortest_cycle(&scc) {
            let mut path: Vec<&str> = cycle.iter().map(|&f| g.files[f].rel.as_str()).collect();
            path.push(path[0]);
            msg += &format!("  shortest loop: {}\n", path.join(" -> "));
        }
        if modules.len() > 1 {
            // Which top-level module imports which inside the cycle; `^` marks an edge up.
            let mut view: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
            for &(a, b) in g.edges.keys() {
                let (from, to) = (g.files[a].top(), g.files[b].top());
                if inside.contains(&a) && inside.contains(&b) && from != to {
                    let mark = if g.points_up(a, b) { "^" } else { "" };
                    view.entry(from).or_default().insert(format!("{to}{mark}"));
                }
            }
            msg += "  between top-level modules (`^`: points up, against the layering):\n";
            for (from, tos) in view {
                msg += &format!("    {from} -> {}\n", tos.into_iter().collect::<Vec<_>>().join(", "));
            }
        }
        let mutual: Vec<String> = g
            .edges
            .keys()
            .filter(|(a, b)| a < b && inside.contains(a) && inside.contains(b) && g.edges.contains_key(&(*b, *a)))
            .map(|&(a, b)| format!("    {} <-> {}\n", g.files[a].rel, g.files[b].rel))
            .collect();
        if !mutual.is_empty() {
            msg += &format!("  files importing each other:\n{}", mutual.concat());
        }
        let edges: Vec<(usize, usize)> =
            g.edges.keys().copied().filter(|(a, b)| inside.contains(a) && inside.contains(b)).collect();
        let upward: Vec<&(usize, usize)> = edges.iter().filter(|&&(a, b)| g.points_up(a, b)).collect();
        let across: Vec<&(usize, usize)> =
            edges.iter().filter(|&&(a, b)| !g.points_up(a, b) && g.files[a].top() != g.files[b].top()).collect();
        let within: Vec<&(usize, usize)> =
            edges.iter().filter(|&&(a, b)| g.files[a].top() == g.files[b].top()).collect();
        for &&(a, b) in &upward {
            if let Some(back) = g.shortest_path(b, a, &inside) {
                let mut path: Vec<&str> = vec![g.files[a].rel.as_str()];
                path.extend(back.iter().map(|&f| g.files[f].rel.as_str()));
                msg += &format!("  loop closed by the edge up from {}: {}\n", g.files[a].rel, path.join(" -> "));
            }
        }
        if !upward.is_empty() {
            let rest = g.cycles_over(|a, b| inside.contains(&a) && inside.contains(&b) && !g.points_up(a, b));
            if !rest.is_empty() {
                msg += "  loops left once the edges pointing up are gone:\n";
            }
            for c in rest {
                let names: Vec<&str> = c.iter().map(|&f| g.files[f].rel.as_str()).collect();
                msg += &format!("    {}\n", names.join(", "));
            }
        }
        for (title, list) in [
            ("edges pointing up (a lower layer or cli importing a stage/the command layer): fix these first", upward),
            ("other edges between top-level modules", across),
            ("edges inside one module's directory (mod.rs <-> children, siblings)", within),
        ] {
            if !list.is_empty() {
                msg += &format!("  {title}:\n");
                for &&(a, b) in &list {
                    msg += &g.describe_edge(a, b);
                }
            }
        }
    }
    assert!(
        msg.is_empty(),
        "src/ has import cycles between files: every edge inside a cycle is listed with the paths \
         that make it (file:line). Move the shared item down into the file or lower-layer module \
         both sides may import, or pass it in as a parameter, until no loop is left.\n{msg}"
    );
}

#[test]
fn lower_layers_import_only_lower_layers() {
    let g = Graph::of_src();
    let mut msg = String::new();
    for &(a, b) in g.edges.keys() {
        let (from, to) = (g.files[a].top(), g.files[b].top());
        if LOWER.contains(&from) && !to.is_empty() && !LOWER.contains(&to) {
            msg += &format!("  [{from} -> {to}]\n{}", g.describe_edge(a, b));
        }
    }
    assert!(
        msg.is_empty(),
        "lower-layer files import a stage or the command layer. Lower layers (const LOWER in \
         tests/it/architecture.rs): {LOWER:?}. Move the item into a lower module (or add a new \
         lower module to LOWER) so the arrow points down:\n{msg}"
    );
}

#[test]
fn cli_imports_nothing_of_the_crate() {
    let g = Graph::of_src();
    let mut msg = String::new();
    for &(a, b) in g.edges.keys() {
        if IMPORT_NOTHING.contains(&g.files[a].rel.as_str()) {
            msg += &g.describe_edge(a, b);
        }
    }
    assert!(
        msg.is_empty(),
        "{IMPORT_NOTHING:?} must import nothing of the crate (clap definitions only: define the \
         value types there, or convert in `config`/`app`):\n{msg}"
    );
}

#[test]
fn no_file_reaches_into_another_stages_directory() {
    let g = Graph::of_src();
    let mut msg = String::new();
    for &(a, b) in g.edges.keys() {
        let (from, to) = (&g.files[a].module, &g.files[b].module);
        if to.len() > 1 && STAGES.contains(&to[0].as_str()) && from.first() != to.first() {
            let root = g.file_of(&to[..1]).map_or("?", |f| g.files[f].rel.as_str());
            msg += &format!("  [{} is internal to `{}`: use what {root} exports]\n", g.files[b].rel, to[0]);
            msg += &g.describe_edge(a, b);
        }
    }
    assert!(
        msg.is_empty(),
        "files reach into a stage's directory. Only the stage's root file is its interface: \
         re-export or move what is needed (to the stage's root file or to a lower module):\n{msg}"
    );
}

/// The whole graph, for looking around while restructuring:
/// `cargo test --test it architecture::print_import_graph -- --ignored --nocapture`
#[test]
#[ignore = "prints the import graph; run by hand"]
fn print_import_graph() {
    let g = Graph::of_src();
    for &(a, b) in g.edges.keys() {
        print!("{}", g.describe_edge(a, b));
    }
}

// ---------------------------------------------------------------------------------------
// The graph

struct SrcFile {
    /// `src/a/b.rs`, with `/` on every platform.
    rel: String,
    /// The module path: `src/a/b.rs` and `src/a/b/mod.rs` are `["a", "b"]`, `src/lib.rs` is `[]`.
    module: Vec<String>,
    text: String,
}

impl SrcFile {
    /// The top-level module, `""` for the crate root.
    fn top(&self) -> &str {
        self.module.first().map_or("", String::as_str)
    }
}

/// One reference: where, and the path as it reads (`use crate::a::B`, `crate::a::f`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ref {
    line: usize,
    text: String,
}

struct Graph {
    files: Vec<SrcFile>,
    by_module: BTreeMap<Vec<String>, usize>,
    /// (from, to) → the references that make the edge, in source order.
    edges: BTreeMap<(usize, usize), Vec<Ref>>,
}

impl Graph {
    fn of_src() -> Graph {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        walk(&root.join("src"), &mut paths);
        let mut sources = Vec::new();
        for p in paths {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            if rel == "src/main.rs" || rel.starts_with("src/bin/") {
                continue; // binary crates: they see the library as `retain::…`
            }
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
            sources.push((rel, text));
        }
        Graph::build(sources)
    }

    /// The graph of the given `(src/… path, text)` files.
    fn build(sources: Vec<(String, String)>) -> Graph {
        let mut files: Vec<SrcFile> =
            sources.into_iter().map(|(rel, text)| SrcFile { module: module_of(&rel), rel, text }).collect();
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        let all_modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
        let scanned: Vec<Scan> = files.iter().map(|f| scan(&f.text, &f.module, &|m| all_modules.contains(m))).collect();
        // Files declared under `#[cfg(test)] mod x;` (and everything below them) are tests.
        let test_only: BTreeSet<Vec<String>> = scanned.iter().flat_map(|s| s.test_modules.iter().cloned()).collect();
        let is_test = |m: &[String]| test_only.iter().any(|t| m.starts_with(t));
        let keep: Vec<bool> = files.iter().map(|f| !is_test(&f.module)).collect();
        let mut kept = Vec::new();
        let mut kept_scans = Vec::new();
        for ((f, s), k) in files.into_iter().zip(scanned).zip(keep) {
            if k {
                kept.push(f);
                kept_scans.push(s);
            }
        }
        let by_module = kept.iter().enumerate().map(|(i, f)| (f.module.clone(), i)).collect();
        let mut g = Graph { files: kept, by_module, edges: BTreeMap::new() };
        for (from, s) in kept_scans.into_iter().enumerate() {
            for (target, r) in s.refs {
                if let Some(to) = g.file_of(&target)
                    && to != from
                {
                    g.edges.entry((from, to)).or_default().push(r);
                }
            }
        }
        for refs in g.edges.values_mut() {
            refs.sort();
            refs.dedup();
        }
        g
    }

    /// The deepest file of the graph that holds an absolute path.
    fn file_of(&self, path: &[String]) -> Option<usize> {
        (0..=path.len()).rev().find_map(|n| self.by_module.get(&path[..n]).copied())
    }

    /// Does the edge break the layering (rule 2, or rule 3's `IMPORT_NOTHING`)?
    fn points_up(&self, a: usize, b: usize) -> bool {
        let (from, to) = (self.files[a].top(), self.files[b].top());
        (LOWER.contains(&from) && !to.is_empty() && !LOWER.contains(&to))
            || IMPORT_NOTHING.contains(&self.files[a].rel.as_str())
    }

    /// `    src/a.rs -> src/b.rs: use crate::b::{X, Y} (line 3); b::f (line 40); … (+2 more lines)`
    fn describe_edge(&self, a: usize, b: usize) -> String {
        let refs = &self.edges[&(a, b)];
        // One entry per source line; the leaves of one `use` item are put back together.
        let mut lines: BTreeMap<usize, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
        for r in refs {
            let entry = lines.entry(r.line).or_default();
            match r.text.strip_prefix("use ") {
                Some(path) => entry.0.push(path),
                None if !entry.1.contains(&r.text.as_str()) => entry.1.push(&r.text),
                None => {}
            }
        }
        let mut shown: Vec<String> = Vec::new();
        for (line, (uses, inline)) in &lines {
            let mut parts = Vec::new();
            if !uses.is_empty() {
                parts.push(format!("use {}", merge_use_paths(uses)));
            }
            parts.extend(inline.iter().map(|s| s.to_string()));
            shown.push(format!("{} (line {line})", parts.join(", ")));
        }
        // `use` lines first: that is where a move starts.
        shown.sort_by_key(|s| !s.starts_with("use "));
        let more = shown.len().saturating_sub(SHOWN_PER_EDGE);
        shown.truncate(SHOWN_PER_EDGE);
        let mut s = format!("    {} -> {}: {}", self.files[a].rel, self.files[b].rel, shown.join("; "));
        if more > 0 {
            s += &format!("; … (+{more} more lines)");
        }
        s + "\n"
    }

    /// The strongly connected components with more than one file (Tarjan), each sorted.
    fn cycles(&self) -> Vec<Vec<usize>> {
        self.cycles_over(|_, _| true)
    }

    /// The same, over the edges that `keep`.
    fn cycles_over(&self, keep: impl Fn(usize, usize) -> bool) -> Vec<Vec<usize>> {
        struct T<'a> {
            adj: &'a [Vec<usize>],
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            out: Vec<Vec<usize>>,
        }
        fn visit(t: &mut T, v: usize) {
            t.index[v] = Some(t.next);
            t.low[v] = t.next;
            t.next += 1;
            t.stack.push(v);
            t.on_stack[v] = true;
            for &w in t.adj[v].iter() {
                match t.index[w] {
                    None => {
                        visit(t, w);
                        t.low[v] = t.low[v].min(t.low[w]);
                    }
                    Some(iw) if t.on_stack[w] => t.low[v] = t.low[v].min(iw),
                    _ => {}
                }
            }
            if Some(t.low[v]) == t.index[v] {
                let mut scc = Vec::new();
                loop {
                    let w = t.stack.pop().unwrap();
                    t.on_stack[w] = false;
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    t.out.push(scc);
                }
            }
        }
        let mut adj = self.adjacency();
        for (a, tos) in adj.iter_mut().enumerate() {
            tos.retain(|&b| keep(a, b));
        }
        let n = self.files.len();
        let mut t = T {
            adj: &adj,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if t.index[v].is_none() {
                visit(&mut t, v);
            }
        }
        let mut out = t.out;
        out.sort_by_key(|c| (std::cmp::Reverse(c.len()), c[0]));
        out
    }

    fn adjacency(&self) -> Vec<Vec<usize>> {
        let mut adj = vec![Vec::new(); self.files.len()];
        for &(a, b) in self.edges.keys() {
            adj[a].push(b);
        }
        adj
    }

    /// A shortest path `from` → … → `to` through the files of `within` (both ends included).
    fn shortest_path(&self, from: usize, to: usize, within: &BTreeSet<usize>) -> Option<Vec<usize>> {
        let adj = self.adjacency();
        let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(v) = queue.pop_front() {
            if v == to {
                let mut path = vec![v];
                let mut v = v;
                while v != from {
                    v = prev[&v];
                    path.push(v);
                }
                path.reverse();
                return Some(path);
            }
            for &w in &adj[v] {
                if within.contains(&w) && w != from && !prev.contains_key(&w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        None
    }

    /// A shortest loop inside a component, as its files (the first one not repeated).
    fn shortest_cycle(&self, scc: &[usize]) -> Option<Vec<usize>> {
        let inside: BTreeSet<usize> = scc.iter().copied().collect();
        let mut best: Option<Vec<usize>> = None;
        for &(a, b) in self.edges.keys() {
            if !(inside.contains(&a) && inside.contains(&b)) {
                continue;
            }
            // The edge a → b plus a shortest way back b → … → a.
            if let Some(back) = self.shortest_path(b, a, &inside) {
                let mut cycle = vec![a];
                cycle.extend(&back[..back.len() - 1]);
                if best.as_ref().is_none_or(|c| cycle.len() < c.len()) {
                    best = Some(cycle);
                }
            }
        }
        best
    }
}

/// `["crate::a::X", "crate::a::Y as Z"]` → `crate::a::{X, Y as Z}`.
fn merge_use_paths(paths: &[&str]) -> String {
    if paths.len() == 1 {
        return paths[0].to_string();
    }
    let split: Vec<(Vec<&str>, Option<&str>)> = paths
        .iter()
        .map(|p| {
            let (path, alias) = p.split_once(" as ").map_or((*p, None), |(p, a)| (p, Some(a)));
            (path.split("::").collect(), alias)
        })
        .collect();
    let shortest = split.iter().map(|(s, _)| s.len()).min().unwrap_or(0);
    let mut common = 0;
    while common < shortest && split.iter().all(|(s, _)| s[common] == split[0].0[common]) {
        common += 1;
    }
    let rest: Vec<String> = split
        .iter()
        .map(|(s, alias)| {
            let name = if s.len() == common { "self".to_string() } else { s[common..].join("::") };
            alias.map_or(name.clone(), |a| format!("{name} as {a}"))
        })
        .collect();
    format!("{}::{{{}}}", split[0].0[..common].join("::"), rest.join(", "))
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `src/lib.rs` → `[]`.
fn module_of(rel: &str) -> Vec<String> {
    let inner = rel.strip_prefix("src/").unwrap_or(rel).strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = inner.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod")) || parts == ["lib"] {
        parts.pop();
    }
    parts
}

// ---------------------------------------------------------------------------------------
// Tokens: identifiers, `::`, single punctuation; comments dropped, literals opaque.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A string, char, number or lifetime: never part of a path.
    Lit,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn tokenize(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skip a quoted string's body from just after its opening quote; returns the index after it.
    let skip_string = |mut i: usize, line: &mut usize| {
        while i < n {
            match c[i] {
                '\\' => {
                    if at(i + 1) == '\n' {
                        *line += 1;
                    }
                    i += 2;
                }
                '"' => return i + 1,
                ch => {
                    if ch == '\n' {
                        *line += 1;
                    }
                    i += 1;
                }
            }
        }
        n
    };
    while i < n {
        let ch = c[i];
        let start_line = line;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < n {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(i + 1, &mut line);
            out.push(Token { tok: Tok::Lit, line: start_line });
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // '\n', '\'', '\u{…}'
                i += 3;
                while i < n && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3; // 'x'
            } else {
                i += 1; // a lifetime or label
                while i < n && ident_char(c[i]) {
                    i += 1;
                }
            }
            out.push(Token { tok: Tok::Lit, line: start_line });
        } else if ch.is_ascii_digit() {
            while i < n && (ident_char(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit())) {
                i += 1;
            }
            out.push(Token { tok: Tok::Lit, line: start_line });
        } else if ident_char(ch) {
            let s = i;
            while i < n && ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[s..i].iter().collect();
            if matches!(word.as_str(), "r" | "br" | "cr") && (at(i) == '"' || at(i) == '#') {
                let mut j = i;
                while at(j) == '#' {
                    j += 1;
                }
                let hashes = j - i;
                if at(j) == '"' {
                    // A raw string: ends at `"` followed by as many `#`.
                    j += 1;
                    loop {
                        if j >= n {
                            break;
                        }
                        if c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                            j += 1 + hashes;
                            break;
                        }
                        if c[j] == '\n' {
                            line += 1;
                        }
                        j += 1;
                    }
                    i = j;
                    out.push(Token { tok: Tok::Lit, line: start_line });
                    continue;
                }
                if word == "r" && hashes == 1 && ident_char(at(j)) {
                    // A raw identifier: r#type
                    let s = j;
                    while j < n && ident_char(c[j]) {
                        j += 1;
                    }
                    out.push(Token { tok: Tok::Ident(c[s..j].iter().collect()), line: start_line });
                    i = j;
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_string(i + 1, &mut line);
                out.push(Token { tok: Tok::Lit, line: start_line });
                continue;
            }
            if word == "b" && at(i) == '\'' {
                i += if at(i + 1) == '\\' { 4 } else { 3 };
                while i < n && at(i - 1) != '\'' {
                    i += 1;
                }
                out.push(Token { tok: Tok::Lit, line: start_line });
                continue;
            }
            out.push(Token { tok: Tok::Ident(word), line: start_line });
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token { tok: Tok::Sep, line: start_line });
            i += 2;
        } else {
            out.push(Token { tok: Tok::Punct(ch), line: start_line });
            i += 1;
        }
    }
    out
}

fn is_punct(t: Option<&Token>, ch: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == ch)
}

fn is_ident(t: Option<&Token>, word: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(w), .. }) if w == word)
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token { tok: Tok::Ident(w), .. }) => Some(w),
        _ => None,
    }
}

/// `[cfg(test)]` starting at `i`?
fn is_cfg_test_brackets(t: &[Token], i: usize) -> bool {
    is_punct(t.get(i), '[')
        && is_ident(t.get(i + 1), "cfg")
        && is_punct(t.get(i + 2), '(')
        && is_ident(t.get(i + 3), "test")
        && is_punct(t.get(i + 4), ')')
        && is_punct(t.get(i + 5), ']')
}

/// `#[cfg(test)]` starting at `i`?
fn is_cfg_test(t: &[Token], i: usize) -> bool {
    is_punct(t.get(i), '#') && is_cfg_test_brackets(t, i + 1)
}

/// Drop every item under `#[cfg(test)]`; returns the rest and the names of child modules
/// declared test-only at the top of the file (`#[cfg(test)] mod tests;`). `None` when the
/// whole file is test-only (`#![cfg(test)]`).
fn strip_cfg_test(t: Vec<Token>) -> Option<(Vec<Token>, Vec<String>)> {
    let mut out = Vec::with_capacity(t.len());
    let mut test_children = Vec::new();
    let mut depth = 0usize; // brace depth of the kept tokens
    let mut i = 0;
    while i < t.len() {
        if depth == 0 && is_punct(t.get(i), '#') && is_punct(t.get(i + 1), '!') && is_cfg_test_brackets(&t, i + 2) {
            return None; // `#![cfg(test)]`: the whole file is test code
        }
        if !is_cfg_test(&t, i) {
            match t[i].tok {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        // Further attributes of the same item.
        while is_punct(t.get(i), '#') && is_punct(t.get(i + 1), '[') {
            let mut d = 0;
            i += 1;
            while i < t.len() {
                match t[i].tok {
                    Tok::Punct('[') => d += 1,
                    Tok::Punct(']') => {
                        d -= 1;
                        if d == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // `mod name;` (after an optional `pub`/`pub(…)`): a test-only module file.
        let mut j = i;
        if is_ident(t.get(j), "pub") {
            j += 1;
            if is_punct(t.get(j), '(') {
                while j < t.len() && !is_punct(t.get(j), ')') {
                    j += 1;
                }
                j += 1;
            }
        }
        if is_ident(t.get(j), "mod") && is_punct(t.get(j + 2), ';') {
            if let (Some(name), 0) = (ident(t.get(j + 1)), depth) {
                test_children.push(name.to_string());
            }
            i = j + 3;
            continue;
        }
        // Any other item: up to `;` at its own level or the close of its first `{ … }`.
        let is_use = is_ident(t.get(j), "use");
        let mut d = 0i32;
        while i < t.len() {
            match t[i].tok {
                Tok::Punct('(' | '[' | '{') => d += 1,
                Tok::Punct(')' | ']') => d -= 1,
                Tok::Punct('}') => {
                    d -= 1;
                    if d == 0 && !is_use {
                        i += 1;
                        break;
                    }
                }
                Tok::Punct(';') if d == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    Some((out, test_children))
}

// ---------------------------------------------------------------------------------------
// References

/// One `use` leaf: `use a::{b::{self as c}, d::*}` has the leaves `a::b` (as `c`) and `a::d::*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UseLeaf {
    path: Vec<String>,
    alias: Option<String>,
    glob: bool,
}

impl UseLeaf {
    /// The name it brings into scope.
    fn binds(&self) -> Option<&str> {
        if self.glob {
            return None;
        }
        self.alias.as_deref().or(self.path.last().map(String::as_str)).filter(|n| *n != "_")
    }

    fn text(&self) -> String {
        let mut s = format!("use {}", self.path.join("::"));
        if self.glob {
            s += "::*";
        }
        if let Some(a) = &self.alias {
            s += &format!(" as {a}");
        }
        s
    }
}

/// Expand one use tree starting at `t[*i]`, with the path so far in `prefix`.
fn use_tree(t: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<UseLeaf>) {
    let mut path = prefix;
    if matches!(t.get(*i).map(|x| &x.tok), Some(Tok::Sep)) {
        *i += 1;
        if path.is_empty() {
            path.push("::".into()); // `use ::name`: an extern crate
        }
    }
    loop {
        match t.get(*i).map(|x| &x.tok) {
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    match t.get(*i).map(|x| &x.tok) {
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            return;
                        }
                        None | Some(Tok::Punct(';')) => return,
                        _ => {}
                    }
                    let before = *i;
                    use_tree(t, i, path.clone(), out);
                    if is_punct(t.get(*i), ',') {
                        *i += 1;
                    } else if *i == before {
                        *i += 1; // not a tree: do not loop forever
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                out.push(UseLeaf { path, alias: None, glob: true });
                return;
            }
            Some(Tok::Ident(seg)) => {
                path.push(seg.clone());
                *i += 1;
                if matches!(t.get(*i).map(|x| &x.tok), Some(Tok::Sep)) {
                    *i += 1;
                    continue;
                }
                let mut alias = None;
                if is_ident(t.get(*i), "as") {
                    alias = ident(t.get(*i + 1)).map(str::to_string);
                    *i += 2;
                }
                if path.last().is_some_and(|s| s == "self") && path.len() > 1 {
                    path.pop();
                }
                out.push(UseLeaf { path, alias, glob: false });
                return;
            }
            _ => return,
        }
    }
}

/// What a file refers to: absolute module paths (item names included) with where and how.
struct Scan {
    refs: Vec<(Vec<String>, Ref)>,
    /// Modules declared `#[cfg(test)] mod x;` here (absolute).
    test_modules: Vec<Vec<String>>,
}

/// Make a written path absolute. `module` is where it is written; `is_module` says whether
/// an absolute path is a module of the crate; `names` are the names `use` brought into scope
/// there. `None`: not a path into the crate (an extern crate, a local type, …).
fn absolute(
    path: &[String],
    module: &[String],
    is_module: &dyn Fn(&[String]) -> bool,
    names: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    let mut out: Vec<String>;
    let rest;
    match first {
        "crate" => {
            out = Vec::new();
            rest = &path[1..];
        }
        "self" => {
            out = module.to_vec();
            rest = &path[1..];
        }
        "super" => {
            out = module.to_vec();
            let mut k = 0;
            while path.get(k).is_some_and(|s| s == "super") {
                out.pop()?;
                k += 1;
            }
            rest = &path[k..];
        }
        "::" => return None,
        name => {
            let mut child = module.to_vec();
            child.push(name.to_string());
            if is_module(&child) {
                out = module.to_vec();
                rest = path;
            } else if let Some(p) = names.get(name) {
                out = p.clone();
                rest = &path[1..];
            } else {
                return None;
            }
        }
    }
    out.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(out)
}

/// Scan one file whose module path is `file_module`.
fn scan(text: &str, file_module: &[String], is_module: &dyn Fn(&[String]) -> bool) -> Scan {
    let Some((t, test_children)) = strip_cfg_test(tokenize(text)) else {
        return Scan { refs: Vec::new(), test_modules: Vec::new() };
    };
    let test_modules = test_children
        .into_iter()
        .map(|c| {
            let mut m = file_module.to_vec();
            m.push(c);
            m
        })
        .collect();

    // One walk: the module each token is in (inline `mod x { … }` included), the `use`
    // leaves with theirs, and which tokens belong to `use` items.
    let mut module_at: Vec<Vec<String>> = Vec::with_capacity(t.len());
    let mut in_use = vec![false; t.len()];
    let mut uses: Vec<(Vec<String>, usize, UseLeaf)> = Vec::new();
    let mut inline_modules: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut stack: Vec<(String, usize)> = Vec::new(); // (inline module, brace depth inside it)
    let mut depth = 0usize;
    let current = |stack: &[(String, usize)]| {
        let mut m = file_module.to_vec();
        m.extend(stack.iter().map(|(n, _)| n.clone()));
        m
    };
    let mut i = 0;
    while i < t.len() {
        let here = current(&stack);
        if is_ident(t.get(i), "use") && !is_punct(t.get(i.wrapping_sub(1)), '.') {
            let line = t[i].line;
            let mut leaves = Vec::new();
            let mut j = i + 1;
            use_tree(&t, &mut j, Vec::new(), &mut leaves);
            while j < t.len() && !is_punct(t.get(j), ';') {
                j += 1;
            }
            for flag in &mut in_use[i..=j.min(t.len() - 1)] {
                *flag = true;
                module_at.push(here.clone());
            }
            uses.extend(leaves.into_iter().map(|l| (here.clone(), line, l)));
            i = j + 1;
            continue;
        }
        if is_ident(t.get(i), "mod")
            && is_punct(t.get(i + 2), '{')
            && let Some(name) = ident(t.get(i + 1))
        {
            let mut m = here.clone();
            m.push(name.to_string());
            inline_modules.insert(m);
            for _ in 0..3 {
                module_at.push(here.clone());
            }
            depth += 1;
            stack.push((name.to_string(), depth));
            i += 3;
            continue;
        }
        match t[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        module_at.push(here);
        i += 1;
    }
    let is_mod = |m: &[String]| is_module(m) || inline_modules.contains(m);

    // The names `use` brings into each module (a `use` may rely on another one's name:
    // resolve until nothing changes).
    let mut names: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut resolved: Vec<Option<Vec<String>>> = vec![None; uses.len()];
    loop {
        let mut progress = false;
        for (k, (m, _, leaf)) in uses.iter().enumerate() {
            if resolved[k].is_some() {
                continue;
            }
            let empty = BTreeMap::new();
            if let Some(abs) = absolute(&leaf.path, m, &is_mod, names.get(m).unwrap_or(&empty)) {
                if let Some(name) = leaf.binds() {
                    names.entry(m.clone()).or_default().insert(name.to_string(), abs.clone());
                }
                resolved[k] = Some(abs);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let mut refs: Vec<(Vec<String>, Ref)> = uses
        .iter()
        .zip(resolved)
        .filter_map(|((_, line, leaf), abs)| Some((abs?, Ref { line: *line, text: leaf.text() })))
        .collect();

    // Inline paths: `a::b::c` not inside a `use`, not continuing another path.
    let empty = BTreeMap::new();
    let mut i = 0;
    while i < t.len() {
        let starts = !in_use[i]
            && ident(t.get(i)).is_some()
            && matches!(t.get(i + 1).map(|x| &x.tok), Some(Tok::Sep))
            && ident(t.get(i + 2)).is_some()
            && !matches!(t.get(i.wrapping_sub(1)).map(|x| &x.tok), Some(Tok::Sep));
        if !starts {
            i += 1;
            continue;
        }
        let mut path = vec![ident(t.get(i)).unwrap().to_string()];
        let mut j = i + 1;
        while matches!(t.get(j).map(|x| &x.tok), Some(Tok::Sep)) {
            match ident(t.get(j + 1)) {
                Some(seg) => path.push(seg.to_string()),
                None => break,
            }
            j += 2;
        }
        let m = &module_at[i];
        if let Some(abs) = absolute(&path, m, &is_mod, names.get(m).unwrap_or(&empty)) {
            refs.push((abs, Ref { line: t[i].line, text: path.join("::") }));
        }
        i = j;
    }
    Scan { refs, test_modules }
}

// ---------------------------------------------------------------------------------------
// The scanner, checked on snippets

mod scanner {
    use super::*;

    fn m(s: &str) -> Vec<String> {
        if s.is_empty() { Vec::new() } else { s.split("::").map(str::to_string).collect() }
    }

    /// The references of `text` written in module `module`, given the crate's modules.
    fn refs(text: &str, module: &str, modules: &[&str]) -> Vec<(String, String)> {
        let modules: BTreeSet<Vec<String>> = modules.iter().map(|s| m(s)).collect();
        scan(text, &m(module), &|x| modules.contains(x))
            .refs
            .into_iter()
            .map(|(abs, r)| (abs.join("::"), r.text))
            .collect()
    }

    #[test]
    fn braced_use_lists_are_expanded() {
        let got = refs("use crate::{contract, features, grace::{self, X as Y}, a::*};", "run", &["grace"]);
        assert_eq!(
            got,
            [
                ("contract".into(), "use crate::contract".into()),
                ("features".into(), "use crate::features".into()),
                ("grace".into(), "use crate::grace".into()),
                ("grace::X".into(), "use crate::grace::X as Y".into()),
                ("a".into(), "use crate::a::*".into()),
            ]
        );
    }

    #[test]
    fn comments_strings_and_test_code_are_not_read() {
        let text = r##"
            //! See [`crate::doc`].
            /* crate::block /* nested crate::n */ */
            const S: &str = "crate::string";
            const R: &str = r#"crate::raw " still"#;
            const C: char = '"'; const L: &'static str = "x";
            #[cfg(test)]
            fn helper() { crate::test_helper::f() }
            #[cfg(test)]
            #[allow(unused)]
            mod tests { use super::*; fn t() { crate::in_tests::f() } }
            #[cfg(test)]
            mod more;
            fn real() { crate::real::f(); }
        "##;
        let s = scan(text, &m("x"), &|_| false);
        let got: Vec<String> = s.refs.iter().map(|(a, _)| a.join("::")).collect();
        assert_eq!(got, ["real::f"]);
        assert_eq!(s.test_modules, [m("x::more")]);
    }

    #[test]
    fn super_self_children_and_use_names_resolve() {
        let mods = ["grace", "grace::model", "grace::episodes"];
        let got = refs(
            "use super::episodes::{Episode};\nuse super::model::{self, Models};\nfn f() { model::fit(super::Estimate); }",
            "grace::evaluate",
            &mods,
        );
        let abs: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            abs,
            [
                "grace::episodes::Episode",
                "grace::model",
                "grace::model::Models",
                "grace::model::fit",
                "grace::Estimate"
            ]
        );
        // In a mod.rs: children by name, and `self::`.
        let got = refs(
            "use tables::UserIds;\nfn f() { user::step(); self::world::X; other::y(); }",
            "synth",
            &["synth", "synth::tables", "synth::user", "synth::world"],
        );
        let abs: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(abs, ["synth::tables::UserIds", "synth::user::step", "synth::world::X"]);
    }

    #[test]
    fn edges_go_to_the_deepest_existing_file_and_respect_mod_rs() {
        let files = [
            ("src/lib.rs", "pub mod a; pub mod b;"),
            ("src/a/mod.rs", "mod inner; use inner::helper; pub const K: u32 = 1;"),
            ("src/a/inner.rs", "pub fn helper() -> u32 { super::K }"),
            ("src/b.rs", "use crate::a::inner::helper; fn f() { crate::a::K; crate::b::g(); }"),
        ];
        let g = Graph::build(files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect());
        let edges: Vec<(String, String)> =
            g.edges.keys().map(|&(a, b)| (g.files[a].rel.clone(), g.files[b].rel.clone())).collect();
        let e = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            edges,
            [
                e("src/a/inner.rs", "src/a/mod.rs"),
                e("src/a/mod.rs", "src/a/inner.rs"),
                e("src/b.rs", "src/a/inner.rs"),
                e("src/b.rs", "src/a/mod.rs")
            ]
        );
        assert_eq!(g.cycles().len(), 1);
    }
}
