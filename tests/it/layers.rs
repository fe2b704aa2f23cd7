//! The layers of `src/` (docs/architecture.md): each top-level module may use only the modules
//! below it. Read from the source text: every `crate::<module>` path, and every module named in
//! a `use crate::{…}` group, outside test code (`tests.rs` files and what follows
//! `#[cfg(test)]`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top to bottom. A module may use any module after it, none before it.
const LAYERS: &[&str] = &[
    "cli",
    "testkit",
    "startup",
    "emulate",
    "simulate",
    "admin",
    "ingest",
    "batch",
    "publish",
    "spool",
    "maintenance",
    "metrics",
    "telemetry",
    "config",
    "message",
    "sources",
    "store",
    "auth",
    "error",
    "retry",
    "domain",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a piece of source text names through `crate::`.
fn used_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect()
    };
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::X, b, c::{…}}`: the names at the group's top level.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && c.is_ascii_lowercase() => {
                        used.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    c if !c.is_whitespace() => item_start = false,
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "main" || top == "lib" || path.file_name().unwrap() == "tests.rs" {
            continue;
        }
        assert!(
            LAYERS.contains(&top.as_str()),
            "src/{top} is in no layer: add it to LAYERS and to the architecture in docs/architecture.md"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let used = used_modules(text);
        uses.entry(top.clone()).or_default().extend(
            used.into_iter()
                .filter(|m| *m != top && LAYERS.contains(&m.as_str())),
        );
    }
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m).unwrap();
    let upward: Vec<String> = uses
        .iter()
        .flat_map(|(from, to)| {
            to.iter()
                .filter(|m| rank(m) < rank(from))
                .map(move |m| format!("{from} uses {m}"))
        })
        .collect();
    assert!(upward.is_empty(), "imports from a layer above: {upward:?}");
    // The graph is not empty: the test reads what it means to read.
    assert!(uses["ingest"].contains("batch") && uses["message"].contains("sources"));
    assert!(uses["config"].contains("store") && uses["config"].contains("sources"));
}

#[test]
fn the_reader_finds_modules_in_use_groups_and_paths() {
    let used = used_modules(
        "use crate::{auth::aksk::{self, X}, config, domain::Y};\nlet x = crate::error::f(); // crate::batch",
    );
    let names: Vec<&str> = used.iter().map(String::as_str).collect();
    assert_eq!(names, ["auth", "config", "domain", "error"]);
}
