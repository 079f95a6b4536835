//! No two source files of the gateway import each other, directly or in a circle.
//!
//! A file's imports are the files its `crate::` and `super::` paths resolve to (in `use`
//! declarations and in code; tests excluded), and, for a module's own file, the child modules
//! it uses or re-exports (`pub use child::Item`). A circle means two parts that cannot be
//! read, changed or tested one without the other: one of them should own what both need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[test]
fn no_source_file_takes_part_in_an_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files(&src);
    let modules: BTreeMap<Vec<String>, String> =
        files.keys().map(|f| (module_path(f), f.clone())).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &files {
        // `super` is the parent of the file's module (`a/b.rs` and `a/b/mod.rs` are `a::b`).
        let here = module_path(file);
        let parent = here[..here.len().saturating_sub(1)].to_vec();
        let mut imports = BTreeSet::new();
        let source = without_tests(text);
        for child in child_uses(&source) {
            let mut full = here.clone();
            full.push(child);
            if let Some(target) = modules.get(&full)
                && target != file
            {
                imports.insert(target.clone());
            }
        }
        for path in paths(&source) {
            let full = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("super") => {
                    let mut full = parent.clone();
                    full.extend(path[1..].iter().cloned());
                    full
                }
                _ => continue,
            };
            if let Some(target) = resolve(&modules, &full)
                && target != *file
            {
                imports.insert(target);
            }
        }
        graph.insert(file.clone(), imports);
    }
    let cycles = strongly_connected(&graph);
    assert!(
        cycles.is_empty(),
        "files that import each other, directly or in a circle:\n{}",
        cycles
            .iter()
            .map(|c| format!("  {}", c.join(" <-> ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_checker_finds_a_circle() {
    let files = BTreeMap::from([
        ("a.rs".to_string(), BTreeSet::from(["b.rs".to_string()])),
        ("b.rs".to_string(), BTreeSet::from(["c.rs".to_string()])),
        ("c.rs".to_string(), BTreeSet::from(["a.rs".to_string()])),
        ("d.rs".to_string(), BTreeSet::from(["a.rs".to_string()])),
    ]);
    assert_eq!(
        strongly_connected(&files),
        vec![vec!["a.rs".to_string(), "b.rs".into(), "c.rs".into()]]
    );
    assert_eq!(
        child_uses(
            "pub use provider::{A, B};\nuse serde::Deserialize;\nmod x;\npub(crate) use child;\n"
        ),
        ["provider", "serde", "child"]
    );
    let text = "use crate::x::{a, b::{c, d}};\nfn f() { super::y::z(); crate::w::v(); }";
    let found = paths(text);
    for expected in [
        vec!["crate", "x", "a"],
        vec!["crate", "x", "b", "c"],
        vec!["crate", "x", "b", "d"],
        vec!["super", "y", "z"],
        vec!["crate", "w", "v"],
    ] {
        let expected: Vec<String> = expected.into_iter().map(String::from).collect();
        assert!(found.contains(&expected), "{expected:?} in {found:?}");
    }
    for visibility in ["", "pub ", "pub(crate) ", "pub(in crate::console) "] {
        let text = format!(
            "use crate::a;\n#[cfg(test)]\n{visibility}mod tests {{\n    use crate::b;\n}}\n"
        );
        assert_eq!(without_tests(&text), "use crate::a;\n", "{visibility:?}");
    }
    let not_tests = "use crate::a;\n#[cfg(test)]\nmod testsuite {\n}\n";
    assert_eq!(without_tests(not_tests), not_tests);
}

/// The child modules a module's file names at the start of a `use` (`use child::…`,
/// `pub use child::…`, `use child;`), which imports them as much as `crate::…` would.
fn child_uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let rest = line
            .strip_prefix("pub(crate) use ")
            .or_else(|| line.strip_prefix("pub(super) use "))
            .or_else(|| line.strip_prefix("pub use "))
            .or_else(|| line.strip_prefix("use "));
        let Some(rest) = rest else { continue };
        let name: String = rest
            .bytes()
            .take_while(|b| is_ident(*b))
            .map(char::from)
            .collect();
        if !name.is_empty()
            && !["crate", "super", "self", "std", "core", "alloc"].contains(&name.as_str())
        {
            out.push(name);
        }
    }
    out
}

/// Every `.rs` file under `dir` that is not test-only, by path relative to `dir`.
fn source_files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .expect("readable source dir")
            .flatten()
        {
            let path: PathBuf = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let name = rel.rsplit('/').next().unwrap_or_default();
            if !rel.ends_with(".rs") || name == "tests.rs" || name.starts_with("test_") {
                continue;
            }
            out.insert(rel, std::fs::read_to_string(&path).expect("readable file"));
        }
    }
    out
}

/// `listener/tls.rs` → `[listener, tls]`; `listener/mod.rs` → `[listener]`; `lib.rs` → `[]`.
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without its inline `#[cfg(test)]` module (from its start to the end of the file,
/// where this code base keeps it).
fn without_tests(text: &str) -> String {
    let at = text.match_indices("#[cfg(test)]\n").find(|(at, marker)| {
        let next = &text[at + marker.len()..];
        let line = next.lines().next().unwrap_or_default();
        // `mod tests {` under any visibility: `pub`, `pub(crate)`, `pub(in crate::x)`.
        let visibility = line.strip_suffix("mod tests {").unwrap_or("-");
        visibility.is_empty()
            || visibility == "pub "
            || (visibility.starts_with("pub(") && visibility.ends_with(") "))
    });
    match at {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}

/// Every `crate::…` and `super::…` path in `text`, groups (`a::{b, c::d}`) expanded.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let root = ["crate::", "super::"]
            .into_iter()
            .find(|r| rest.starts_with(r.as_bytes()));
        let boundary = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        match root {
            Some(r) if boundary => {
                let root = r.trim_end_matches("::").to_string();
                let end = expand(text, i + r.len(), vec![root], &mut out);
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// Reads a path continuing `prefix` at `at`; pushes each full path; returns where it ended.
fn expand(text: &str, mut at: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let bytes = text.as_bytes();
    loop {
        if bytes.get(at) == Some(&b'{') {
            at += 1;
            loop {
                while bytes
                    .get(at)
                    .is_some_and(|b| b.is_ascii_whitespace() || *b == b',')
                {
                    at += 1;
                }
                match bytes.get(at) {
                    None => return at,
                    Some(b'}') => return at + 1,
                    _ => {}
                }
                let before = at;
                at = expand(text, at, prefix.clone(), out);
                // Skip an `as name` rename.
                while bytes.get(at).is_some_and(|b| *b != b',' && *b != b'}') {
                    at += 1;
                }
                if at == before {
                    at += 1;
                }
            }
        }
        let start = at;
        while bytes.get(at).is_some_and(|b| is_ident(*b)) {
            at += 1;
        }
        if at == start {
            out.push(prefix);
            return at;
        }
        let segment = &text[start..at];
        if segment != "self" {
            prefix.push(segment.to_string());
        }
        if bytes[at..].starts_with(b"::") {
            at += 2;
            continue;
        }
        out.push(prefix);
        return at;
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The file of the longest module prefix of `path`.
fn resolve(modules: &BTreeMap<Vec<String>, String>, path: &[String]) -> Option<String> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).cloned())
}

/// The strongly connected components of more than one file (Tarjan), each sorted.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found.sort();
    s.found
}
