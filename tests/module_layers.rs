//! The top-level modules of `src/` form layers: no module imports one that (directly or through
//! others) imports it back. Read from the source text, so a new `crate::x` path that closes a
//! circle fails here with the circle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module name -> the top-level modules its files name as `crate::<module>`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let targets = graph.entry(module.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != module {
                    targets.insert(name);
                }
            }
        }
    }
    graph
}

/// A path from `from` back to `to` through the graph, if there is one.
fn path_back(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str, seen: &mut BTreeSet<String>) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![to.to_string()]);
    }
    if !seen.insert(from.to_string()) {
        return None;
    }
    for next in graph.get(from).into_iter().flatten() {
        if let Some(mut rest) = path_back(graph, next, to, seen) {
            rest.insert(0, from.to_string());
            return Some(rest);
        }
    }
    None
}

#[test]
fn top_level_modules_have_no_import_cycles() {
    let graph = imports();
    assert!(graph.contains_key("engine") && graph.contains_key("api"), "the scan found no modules: {graph:?}");
    for (module, targets) in &graph {
        for target in targets {
            if let Some(cycle) = path_back(&graph, target, module, &mut BTreeSet::new()) {
                panic!("import cycle: {module} -> {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_wire_types_and_the_engine_stay_below_the_doors() {
    let graph = imports();
    assert_eq!(graph["api"], BTreeSet::new(), "api must import nothing of Easel's");
    for door in ["server", "app", "cli", "service", "jobs"] {
        assert!(!graph["engine"].contains(door), "engine imports {door}");
    }
}
