//! The crates' layout, checked: no import circle among a crate's modules,
//! and no file of the gateway over 700 lines of code before its tests.
//!
//! A module's use of its own ancestors does not count as an arrow: a
//! folder's `mod.rs` holds what its files share, and declares them. Every
//! other `crate::…` or `super::…` path a module names (outside its tests)
//! is an arrow to the module that defines it. Docs/architecture.md
//! describes the layout these rules keep.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines of code (before `#[cfg(test)]`) a gateway file may have.
const MAX_FILE_LINES: usize = 700;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `.rs` files under `dir`, with their module paths (`net::server`;
/// `lib.rs` is the root, ``""``). Binaries' roots and test files are left out.
fn modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    stack.push(path);
                }
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
            let Some(stem) = rel.strip_suffix(".rs") else { continue };
            if stem == "main" || stem.ends_with("_test") {
                continue;
            }
            let name = match stem {
                "lib" => String::new(),
                s => s.strip_suffix("/mod").unwrap_or(s).replace('/', "::"),
            };
            out.insert(name, path);
        }
    }
    out
}

/// A file's code without its tests: up to the first `#[cfg(test)]`.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The paths after each `prefix::` in `code`, a `{…}` group giving one per
/// member (`crate::{a::b, c}` → `a::b`, `c`).
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut member_depth = 0;
            let mut member = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => member_depth += 1,
                    '}' => member_depth -= 1,
                    ',' if member_depth == 0 => {
                        out.push(member.split("::{").next().unwrap_or("").trim().to_owned());
                        member.clear();
                        continue;
                    }
                    _ => {}
                }
                member.push(c);
            }
        } else {
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.trim_end_matches(':').to_owned());
        }
    }
    out
}

/// `module`'s arrows: the other modules it names, ancestors aside.
fn arrows(module: &str, path: &Path, all: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let code = code(path);
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let named = paths_after(&code, "crate::").into_iter().chain(
        paths_after(&code, "super::")
            .into_iter()
            .map(|p| if parent.is_empty() { p } else { format!("{parent}::{p}") }),
    );
    let ancestors: Vec<String> = (0..module.matches("::").count() + 1)
        .map(|n| module.splitn(n + 1, "::").take(n).collect::<Vec<_>>().join("::"))
        .collect();
    named
        .filter_map(|path| {
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            (0..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|candidate| all.contains_key(candidate))
        })
        .filter(|target| target != module && !ancestors.contains(target))
        .collect()
}

/// A circle of arrows among `graph`'s modules, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        at: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(at.to_owned(), Mark::Open);
        path.push(at.to_owned());
        for next in graph.get(at).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = path.iter().position(|m| m == next).unwrap();
                    let mut found = path[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Mark::New => {
                    if let Some(found) = visit(next, graph, marks, path) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(at.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for start in graph.keys() {
        if marks.get(start).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(found) = visit(start, graph, &mut marks, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let all = modules(src);
    all.iter().map(|(m, p)| (m.clone(), arrows(m, p, &all))).collect()
}

#[test]
fn no_crate_has_an_import_circle() {
    for krate in ["gateway", "store", "protocol", "agent-sim", "testkit"] {
        let graph = graph_of(&repo().join(krate).join("src"));
        assert!(graph.len() > 1 || krate == "testkit", "{krate}: no modules found");
        if let Some(found) = circle(&graph) {
            panic!("{krate}: an import circle: {}", found.join(" → "));
        }
    }
}

#[test]
fn the_check_finds_a_circle_between_siblings_but_not_with_an_ancestor() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("pipeline")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod pipeline;\nmod session;\n").unwrap();
    std::fs::write(src.join("pipeline/mod.rs"), "mod mailbox;\npub struct Answer;\n").unwrap();
    // The mailbox names its parent (no arrow) and the session (an arrow).
    std::fs::write(
        src.join("pipeline/mailbox.rs"),
        "use super::Answer;\nuse crate::session::Outcome;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("session.rs"),
        "use crate::{admit::x, pipeline::mailbox::Mailbox};\n",
    )
    .unwrap();
    let graph = graph_of(src);
    assert_eq!(graph["pipeline::mailbox"], BTreeSet::from(["session".to_owned()]));
    let found = circle(&graph).expect("the mailbox and the session name each other");
    assert!(
        found.contains(&"session".to_owned()) && found.contains(&"pipeline::mailbox".to_owned()),
        "{found:?}"
    );
    // Cut one arrow: no circle.
    std::fs::write(src.join("session.rs"), "pub struct Outcome;\n").unwrap();
    assert_eq!(circle(&graph_of(src)), None);
}

#[test]
fn no_gateway_file_is_over_700_lines_of_code() {
    let src = repo().join("gateway/src");
    let mut long = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.to_string_lossy().ends_with("_test.rs") {
                let lines = code(&path).lines().count();
                if lines > MAX_FILE_LINES {
                    long.push(format!("{} ({lines})", path.strip_prefix(&src).unwrap().display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines of code: {long:?}");
}
