//! Documentation that cannot go stale: the generated reference pages equal what the code
//! gives (`RINGBACK_BLESS=1 cargo test --test docs` rewrites them), every relative link and
//! anchor of the README, the changelog and `docs/` resolves, every alert rule has a
//! `runbook_url` to its section of the runbook, and the docs' `console` examples print what
//! the binary prints.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The README, the changelog and every page under `docs/`.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![repo("README.md"), repo("CHANGELOG.md")];
    walk(&repo("docs"), &mut out);
    out.sort();
    out
}

/// A page's text outside fenced code blocks and inline code.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut code = false;
        for c in line.chars() {
            if c == '`' {
                code = !code;
            } else if !code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, punctuation but `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`… as on GitHub).
fn anchors(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#').replace('`', "").as_str());
        let mut anchor = base.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    seen
}

/// The targets of a page's inline links `[text](target)`, outside code.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let name = page.strip_prefix(repo("")).unwrap().display().to_string();
            if !file.exists() {
                broken.push(format!("{name}: {target}: no such file"));
            } else if !anchor.is_empty() && !anchors(&file).contains(anchor) {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_a_broken_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("a.md");
    std::fs::write(
        &page,
        "# Title\n\n## The `spool`, fsync'd\n\nSee [x](#nope) and `[y](#z)`.\n",
    )
    .unwrap();
    let found = anchors(&page);
    assert!(found.contains("the-spool-fsyncd"), "{found:?}");
    assert!(!found.contains("nope"));
    assert_eq!(
        links(&std::fs::read_to_string(&page).unwrap()),
        vec!["#nope"]
    );
}

#[test]
fn every_alert_has_a_runbook_section() {
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let runbook = repo("docs/operations/alerts.md");
    let sections = anchors(&runbook);
    let mut alerts = Vec::new();
    let mut urls = Vec::new();
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            alerts.push(name.to_owned());
        } else if let Some(url) = line.strip_prefix("runbook_url: ") {
            urls.push(url.trim_matches('"').to_owned());
        }
    }
    assert_eq!(alerts.len(), 15, "the rules as this test knows them");
    assert_eq!(alerts.len(), urls.len(), "every alert has a runbook_url");
    for (alert, url) in alerts.iter().zip(&urls) {
        let want = format!("docs/operations/alerts.md#{}", alert.to_lowercase());
        assert_eq!(url, &want, "{alert}");
        assert!(
            sections.contains(&alert.to_lowercase()),
            "{alert}: no section in docs/operations/alerts.md"
        );
    }
}

/// Compares a generated page with the committed one; `RINGBACK_BLESS=1` rewrites it.
fn generated(path: &str, content: String) {
    let file = repo(path);
    if std::env::var_os("RINGBACK_BLESS").is_some() {
        std::fs::write(&file, &content).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == content,
        "{path} is not what the code gives: run `RINGBACK_BLESS=1 cargo test --test docs` and commit it"
    );
}

/// A table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[test]
fn the_metrics_reference_is_the_registry() {
    let metrics = ringback::metrics::Metrics::new();
    let mut page = String::from(
        "# Metrics reference\n\n\
         GENERATED from the registry (`Metrics::catalogue`) by `tests/docs.rs`: do not edit, run\n\
         `RINGBACK_BLESS=1 cargo test --test docs`. What the figures mean for an operator, with\n\
         dashboards and alerts, is in [observability](../operations/observability.md).\n\n\
         | metric | type | labels | meaning |\n|---|---|---|---|\n",
    );
    for m in metrics.catalogue() {
        let labels: Vec<String> = m.labels.iter().map(|l| format!("`{l}`")).collect();
        page.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind,
            labels.join(", "),
            cell(&m.help)
        ));
    }
    assert!(metrics.catalogue().len() > 40);
    generated("docs/reference/metrics.md", page);
}

#[test]
fn the_answers_reference_is_the_openapi_document() {
    let doc = ringback::ingest::openapi::document();
    let mut page = String::from(
        "# Answers reference: every endpoint, status and error code\n\n\
         GENERATED from `ringback openapi` (the document committed as\n\
         [`schemas/openapi.json`](../../schemas/openapi.json)) by `tests/docs.rs`: do not edit,\n\
         run `RINGBACK_BLESS=1 cargo test --test docs`. The endpoints explained, with examples:\n\
         [endpoints](endpoints.md).\n",
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            page.push_str(&format!(
                "\n## `{} {path}`\n\n{}\n\n| status | when |\n|---|---|\n",
                method.to_uppercase(),
                op["summary"].as_str().unwrap_or("")
            ));
            for (status, response) in responses {
                let description = response["description"].as_str().unwrap_or("");
                let (head, codes) = description.split_once("\n\n").unwrap_or((description, ""));
                let codes: Vec<&str> = codes.lines().map(|l| l.trim_start_matches("- ")).collect();
                let when = if codes.is_empty() {
                    cell(head)
                } else {
                    format!("{}: {}", cell(head), cell(&codes.join("; ")))
                };
                page.push_str(&format!("| {status} | {when} |\n"));
            }
        }
    }
    generated("docs/reference/answers.md", page);
}

/// The keys of a JSON Schema object, `prefix.key`, with type, default and description.
fn keys(
    schema: &Value,
    defs: &Value,
    prefix: &str,
    out: &mut Vec<(String, String, String, String)>,
) {
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => defs[r.trim_start_matches("#/$defs/")].clone(),
            None => v.clone(),
        }
    };
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (key, spec) in properties {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let target = resolve(spec);
        if target["properties"].is_object() && key != "sources" {
            keys(&target, defs, &path, out);
            continue;
        }
        let kind = match (&target["type"], &target["enum"], &spec["type"]) {
            (Value::String(t), _, _) => t.clone(),
            (Value::Array(ts), _, _) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join(" or "),
            (_, Value::Array(vs), _) => vs
                .iter()
                .map(|v| format!("`{}`", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "object".into(),
        };
        let default = match &spec["default"] {
            Value::Null => "–".to_owned(),
            v => format!("`{v}`"),
        };
        let description = spec["description"]
            .as_str()
            .or(target["description"].as_str())
            .unwrap_or("");
        out.push((path, kind, default, cell(description)));
    }
}

#[test]
fn the_configuration_reference_is_the_schema() {
    let schema = ringback::config::Config::json_schema();
    let mut rows = Vec::new();
    keys(&schema, &schema["$defs"], "", &mut rows);
    let source = &schema["$defs"]["SourceTable"];
    let mut source_rows = Vec::new();
    keys(source, &schema["$defs"], "sources.<name>", &mut source_rows);
    assert!(
        rows.len() > 40 && source_rows.len() > 15,
        "{} {}",
        rows.len(),
        source_rows.len()
    );
    let mut page = String::from(
        "# Configuration keys\n\n\
         GENERATED from `ringback config-schema` by `tests/docs.rs`: do not edit, run\n\
         `RINGBACK_BLESS=1 cargo test --test docs`. Every key of the file, with its type, default\n\
         and meaning; how the layers combine, and the keys explained by task, are in\n\
         [configuration](configuration.md).\n\n\
         | key | type | default | meaning |\n|---|---|---|---|\n",
    );
    for (path, kind, default, description) in rows.into_iter().chain(source_rows) {
        page.push_str(&format!(
            "| `{path}` | {kind} | {default} | {description} |\n"
        ));
    }
    generated("docs/reference/config-keys.md", page);
}

/// The docs' `console` blocks: each `$ ringback ARGS` line is run, and what follows it (up to
/// the next `$` line or the block's end) must be what it prints; a line `...` stands for any
/// number of lines.
#[test]
fn the_docs_console_examples_are_what_the_binary_prints() {
    let mut examples = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim() != "```console" {
                continue;
            }
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let mut i = 0;
            while i < block.len() {
                let Some(command) = block[i].strip_prefix("$ ringback") else {
                    i += 1;
                    continue;
                };
                let mut want = Vec::new();
                i += 1;
                while i < block.len() && !block[i].starts_with("$ ") {
                    want.push(block[i]);
                    i += 1;
                }
                let out = Command::new(env!("CARGO_BIN_EXE_ringback"))
                    .args(command.split_whitespace())
                    .env_remove("RINGBACK_CONFIG")
                    .current_dir(repo(""))
                    .output()
                    .unwrap();
                let got = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                let got: Vec<&str> = got.lines().collect();
                assert!(
                    matches(&want, &got),
                    "{}: `ringback{command}` printed\n{}\nnot\n{}",
                    page.display(),
                    got.join("\n"),
                    want.join("\n")
                );
                examples += 1;
            }
        }
    }
    assert!(examples >= 3, "only {examples} console examples found");
}

/// Whether `got` matches `want`, where a `...` line of `want` matches any lines.
fn matches(want: &[&str], got: &[&str]) -> bool {
    match want.split_first() {
        None => got.iter().all(|l| l.trim().is_empty()),
        Some((&"...", rest)) => (0..=got.len()).any(|skip| matches(rest, &got[skip..])),
        Some((first, rest)) => got
            .split_first()
            .is_some_and(|(g, more)| g.trim_end() == first.trim_end() && matches(rest, more)),
    }
}

#[test]
fn the_example_matcher_can_fail() {
    assert!(matches(&["a", "...", "d"], &["a", "b", "c", "d"]));
    assert!(!matches(&["a", "...", "e"], &["a", "b", "c", "d"]));
    assert!(!matches(&["a"], &["b"]));
}

/// The observability page's table of metrics (written for operators, with label values and
/// advice) names exactly the metrics the registry has.
#[test]
fn the_observability_page_names_every_metric() {
    let page = std::fs::read_to_string(repo("docs/operations/observability.md")).unwrap();
    // A row's first cell may name several (`a`, `b`).
    let described: BTreeSet<String> = page
        .lines()
        .filter(|l| l.starts_with("| `ringback_"))
        .filter_map(|l| l[1..].split(" | ").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect();
    let metrics = ringback::metrics::Metrics::new();
    let registered: BTreeSet<String> = metrics
        .catalogue()
        .iter()
        .map(|m| m.name.clone())
        .filter(|n| n.starts_with("ringback_"))
        .collect();
    let missing: Vec<_> = registered.difference(&described).collect();
    let unknown: Vec<_> = described.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "not on docs/operations/observability.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "on the page, not registered: {unknown:?}"
    );
}
