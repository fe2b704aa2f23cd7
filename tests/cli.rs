//! The binary as a user runs it: default config on SQLite, SIGTERM drains and exits 0,
//! `migrate` and `check-config`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ringback");

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_default_config_serves_on_sqlite_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--config", &repo("config/default.toml"), "serve"])
        .current_dir(dir.path())
        .env("RINGBACK__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("RINGBACK__HTTP__WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            up = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "ringback did not come up");
    let res = client
        .post(format!("{base}/hooks/demo"))
        .header("content-type", "application/json")
        .body(std::fs::read_to_string(repo("tests/fixtures/huawei/fee.json")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        dir.path().join("data/ringback.db").exists(),
        "the embedded database is under ./data"
    );
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[batch]\nmax_records = 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("batch.max_records"), "{stderr}");

    let out = Command::new(BIN)
        .args(["--config", &repo("config/default.toml"), "check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/hooks/demo"));
}

#[test]
fn a_missing_secret_is_a_startup_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"aksk\"\napp_key = \"k\"\n\
         app_secret_env = \"RINGBACK_TEST_UNSET_SECRET\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .env_remove("RINGBACK_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RINGBACK_TEST_UNSET_SECRET"), "{stderr}");
    assert!(stderr.contains("sources.hw.app_secret_env"), "{stderr}");
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/m.db?mode=rwc", dir.path().display());
    let out = Command::new(BIN)
        .arg("migrate")
        .current_dir(dir.path())
        .env("RINGBACK__DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("m.db").exists());
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_the_refusal_code() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args(["--config", &repo("config/default.toml"), "serve"])
        .current_dir(dir.path())
        .env("RINGBACK__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("RINGBACK__HTTP__WORKERS", "1")
        .env("RINGBACK__LOG__FORMAT", "json")
        .env("RINGBACK__KAFKA__BROKERS", "")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = client
        .post(format!("{base}/hooks/demo"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-abc-123")
        .body("{\"eventType\": \"fee\", \"feeLst\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["x-request-id"], "req-abc-123");
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let refusal = lines
        .iter()
        .find(|l| l["code"] == "invalid_json")
        .unwrap_or_else(|| panic!("no refusal line in:\n{stdout}"));
    assert_eq!(refusal["level"], "INFO");
    assert_eq!(refusal["source"], "demo");
    assert_eq!(refusal["span"]["request_id"], "req-abc-123", "{refusal}");
    assert!(
        lines.iter().all(|l| l["level"] != "ERROR"),
        "bad input puts no data at risk: no ERROR line"
    );
}

/// Every configuration the repository ships (production example, compose, Kubernetes base and
/// overlay) passes `check-config` with the secrets they name set, and a missing secret of
/// `kafka.client_env` is named.
#[test]
fn every_shipped_configuration_is_valid() {
    let secrets = [
        ("RINGBACK_HUAWEI_APP_SECRET", "a-huawei-app-secret"),
        ("RINGBACK_KAFKA_USERNAME", "u"),
        ("RINGBACK_KAFKA_PASSWORD", "p"),
    ];
    for file in [
        "config/production.example.toml",
        "deploy/compose/ringback.toml",
        "deploy/kubernetes/base/ringback.toml",
        "deploy/kubernetes/overlays/example/ringback.toml",
    ] {
        let out = Command::new(BIN)
            .args(["--config", &repo(file), "check-config"])
            .env(
                "RINGBACK__DATABASE__URL",
                "postgres://ringback@db.internal/ringback",
            )
            .envs(secrets)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(BIN)
        .args([
            "--config",
            &repo("deploy/kubernetes/base/ringback.toml"),
            "check-config",
        ])
        .env(
            "RINGBACK__DATABASE__URL",
            "postgres://ringback@db.internal/ringback",
        )
        .env_remove("RINGBACK_KAFKA_PASSWORD")
        .env("RINGBACK_KAFKA_USERNAME", "u")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kafka.client_env.sasl.password: environment variable RINGBACK_KAFKA_PASSWORD is not set"),
        "{stderr}"
    );
}

/// The keys of a table of the configuration page, `docs/reference/configuration.md`
/// (`| `key` | default | meaning |`), between the `start` and `end` headings (`end` empty: to
/// the page's end), each cell's keys split on ` / `, with the default cell when it is one value.
fn readme_keys(start: &str, end: &str) -> Vec<(String, Option<String>)> {
    let readme = std::fs::read_to_string(repo("docs/reference/configuration.md")).unwrap();
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("configuration.md: {start}"));
    let section = &readme[from..];
    let section = if end.is_empty() {
        section
    } else {
        &section[..section
            .find(end)
            .unwrap_or_else(|| panic!("configuration.md: {end}"))]
    };
    let mut keys = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let default = cells
            .get(1)
            .map(|c| c.trim())
            .filter(|c| c.starts_with('`') && c.ends_with('`') && c.matches('`').count() == 2);
        for key in cells[0].trim_start_matches("| ").split(" / ") {
            keys.push((
                key.trim().trim_matches('`').to_owned(),
                default.map(|d| d.trim_matches('`').to_owned()),
            ));
        }
    }
    keys
}

/// A schema default as the configuration page writes it.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ringback config-schema` prints the configuration's JSON Schema, and the configuration page's
/// configuration tables say exactly its keys, with its defaults.
#[test]
fn the_configuration_page_tables_are_the_config_schema() {
    let out = Command::new(BIN).arg("config-schema").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let defs = &schema["$defs"];
    let section_def = |section: &str| -> &serde_json::Value {
        let r = schema["properties"][section]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("no section {section}"));
        &defs[r.trim_start_matches("#/$defs/")]
    };
    // Every key of the schema, `section.key`, but the sources (a table of their own).
    let mut in_schema = std::collections::BTreeMap::new();
    for section in schema["properties"].as_object().unwrap().keys() {
        if section == "sources" {
            continue;
        }
        for (key, prop) in section_def(section)["properties"].as_object().unwrap() {
            in_schema.insert(format!("{section}.{key}"), prop.get("default").map(plain));
        }
    }
    let mut in_readme = std::collections::BTreeMap::new();
    for (key, default) in readme_keys("# Configuration", "## Sources") {
        if key == "retention.<table>" {
            for table in section_def("retention")["properties"]
                .as_object()
                .unwrap()
                .keys()
            {
                in_readme.insert(format!("retention.{table}"), None);
            }
        } else {
            in_readme.insert(key, default);
        }
    }
    let missing: Vec<_> = in_schema
        .keys()
        .filter(|k| !in_readme.contains_key(*k))
        .collect();
    let unknown: Vec<_> = in_readme
        .keys()
        .filter(|k| !in_schema.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys the configuration page's table does not describe: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "configuration page keys the configuration does not have: {unknown:?}"
    );
    let wrong: Vec<String> = in_readme
        .iter()
        .filter_map(|(key, readme)| {
            let (Some(readme), Some(Some(schema))) = (readme, in_schema.get(key)) else {
                return None;
            };
            // A table's default is written in TOML on the page: not compared.
            let table = schema.starts_with("{\"");
            (!table && readme != schema)
                .then(|| format!("{key}: configuration page {readme}, default {schema}"))
        })
        .collect();
    assert!(wrong.is_empty(), "defaults: {wrong:?}");
    // Sources: every key of a source table, described.
    let source_keys: std::collections::BTreeSet<String> = defs["SourceTable"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let described: std::collections::BTreeSet<String> = readme_keys("## Sources", "")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let missing: Vec<_> = source_keys.difference(&described).collect();
    let unknown: Vec<_> = described.difference(&source_keys).collect();
    assert!(
        missing.is_empty(),
        "source keys the configuration page does not describe: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "configuration page source keys that do not exist: {unknown:?}"
    );
}
