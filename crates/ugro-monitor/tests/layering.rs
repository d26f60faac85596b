//! The daemon's modules form no cycle: every `crate::X` a module's code names (tests and
//! comments aside) is an edge, and the graph of top-level modules must be a DAG. Subsystems
//! take narrow handles (`host::Host` and their own trait) instead of naming `shared::Shared`,
//! and only the composition and the HTTP endpoints above it name `shared`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level module a source file belongs to (`src/runs/tracker.rs` → `runs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The modules named by `crate::…` in a file's code: comments and the `#[cfg(test)]` module at
/// the end are left out (tests may reach anywhere).
fn names(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(m) = module_of(&src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(m.clone()).or_default();
        for n in names(&text) {
            if n != m {
                deps.insert(n);
            }
        }
    }
    // Names that are not modules (crate-level items such as EXIT_CONFIG) are not edges.
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    g
}

/// A cycle in `g`, if there is one (depth-first search with colours).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, d, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_modules_of_the_daemon_form_no_cycle() {
    let g = graph();
    assert!(g.len() > 20, "too few modules found: {g:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!("module cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn subsystems_take_narrow_handles_not_the_daemons_state() {
    let g = graph();
    // The composition and the HTTP endpoints above it are the only ones that name `Shared`.
    let allowed: BTreeSet<&str> = ["daemon", "control", "logs", "metrics", "web"].into();
    let naming_shared: Vec<&String> = g
        .iter()
        .filter(|(m, deps)| deps.contains("shared") && !allowed.contains(m.as_str()))
        .map(|(m, _)| m)
        .collect();
    assert!(
        naming_shared.is_empty(),
        "these modules name crate::shared: {naming_shared:?}"
    );
    let naming_daemon: Vec<&String> = g
        .iter()
        .filter(|(_, deps)| deps.contains("daemon"))
        .map(|(m, _)| m)
        .collect();
    assert!(
        naming_daemon.is_empty(),
        "these modules name crate::daemon: {naming_daemon:?}"
    );
}

#[test]
fn the_checker_sees_a_cycle_and_the_forms_of_a_path() {
    let text = "use crate::{a, b::c};\nfn f() { crate::d::x(); } // crate::e\n#[cfg(test)]\nmod tests { use crate::f; }\n";
    let n = names(text);
    assert_eq!(n, ["a", "b", "d"].iter().map(|s| s.to_string()).collect());
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["c".to_string()].into()),
        ("c".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
