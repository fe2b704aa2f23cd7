//! The consumer contract: the JSON Schema (draft 2020-12) of every topic's message value,
//! generated from the Rust types that serialise it (`message::json_schema`) and committed under
//! `schemas/`. `RINGBACK_BLESS=1 cargo test --test it contracts::` rewrites the committed files.
//!
//! The hook contract: `schemas/openapi.json` (OpenAPI 3.1, `ringback openapi`), kept equal to
//! the generated one, and schemathesis run against a live ringback with it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use ringback::domain::{Record, RecordKind};
use ringback::message::{encode, json_schema};
use ringback::simulate::sample;
use ringback::sources::{acs, huawei, Delivery, ParseContext};

fn committed(kind: RecordKind) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{}.v1.json", kind.as_str()))
}

#[test]
fn the_committed_schemas_are_those_of_the_types() {
    let bless = std::env::var_os("RINGBACK_BLESS").is_some();
    for kind in RecordKind::ALL {
        let generated = serde_json::to_string_pretty(&json_schema(kind)).unwrap() + "\n";
        let path = committed(kind);
        if bless {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} is not the schema of the message types: they changed. Run \
             `RINGBACK_BLESS=1 cargo test --test it contracts::`, review the diff (a renamed or \
             retyped field needs a new schema version) and commit it",
            path.display()
        );
    }
}

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let generated =
        serde_json::to_string_pretty(&ringback::ingest::openapi::document()).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/openapi.json");
    if std::env::var_os("RINGBACK_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is not the generated document: run `RINGBACK_BLESS=1 cargo test --test it contracts::` \
         and commit the diff",
        path.display()
    );
}

/// schemathesis (`st`, from PyPI; `.ci/run` installs it and sets RINGBACK_SCHEMATHESIS) against
/// the real binary: no 5xx, every status, header and body as documented, 405 for undocumented
/// methods, a missing required header refused. Only `positive_data_acceptance` is left out:
/// what a hook accepts depends on its source's platform, which one path cannot say, so a body
/// valid for the document's "any JSON" is mostly refused, as it should be.
#[test]
fn schemathesis_finds_the_live_hooks_as_documented() {
    // This deployment's sources, so requests reach the parsers: every one (and one that does
    // not exist) for POST, the ACS one for the handshake (the others answer it 405). The admin
    // API is the next test's: it lives on another listener.
    let mut document = ringback::ingest::openapi::document();
    let hooks = &mut document["paths"]["/hooks/{source}"];
    hooks["post"]["parameters"][0]["schema"] =
        serde_json::json!({"enum": ["hw", "acs", "sw", "none"]});
    hooks["options"]["parameters"][0]["schema"] = serde_json::json!({"enum": ["acs"]});
    let paths = document["paths"].as_object_mut().unwrap();
    paths.retain(|path, _| !path.starts_with("/admin/"));
    schemathesis(&document, &[], &[]);
}

/// …and the admin API on the admin listener, with its token: 401 without it, every answer as
/// documented.
#[test]
fn schemathesis_finds_the_live_admin_api_as_documented() {
    let mut document = ringback::ingest::openapi::document();
    let paths = document["paths"].as_object_mut().unwrap();
    paths.retain(|path, _| path.starts_with("/admin/"));
    let token = "token-of-the-contract-test-0123456789";
    schemathesis(
        &document,
        &[
            ("RINGBACK__HTTP__ADMIN_TOKEN_ENV", "RB_TEST_ADMIN_TOKEN"),
            ("RB_TEST_ADMIN_TOKEN", token),
        ],
        &["--header", &format!("Authorization: Bearer {token}")],
    );
}

/// Runs schemathesis with `document` against a ringback of the test's own (SQLite, no broker);
/// with `RINGBACK__HTTP__ADMIN_TOKEN_ENV` in `env`, against its admin listener.
fn schemathesis(document: &serde_json::Value, env: &[(&str, &str)], args: &[&str]) {
    let st = std::env::var("RINGBACK_SCHEMATHESIS").expect(
        "RINGBACK_SCHEMATHESIS: the path of schemathesis' `st` (pip install schemathesis; \
         .ci/run installs it)",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringback.toml");
    std::fs::write(
        &config,
        "[log]\nlevel = \"error\"\n[kafka]\nbrokers = \"\"\n\
         [sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"none\"\n\
         [sources.acs]\nkind = \"azure-communication\"\nauth = \"none\"\n\
         [sources.sw]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\n\
         secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
    )
    .unwrap();
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, document.to_string()).unwrap();
    let free_port = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (port, admin_port) = (free_port(), free_port());
    let admin = env
        .iter()
        .any(|(k, _)| *k == "RINGBACK__HTTP__ADMIN_TOKEN_ENV");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringback"));
    command
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("RINGBACK__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env(
            "RINGBACK__DATABASE__URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("rb.db").display()),
        )
        .env("RINGBACK__SPOOL__PATH", dir.path().join("spool.db"))
        .envs(env.iter().copied());
    if admin {
        command.env(
            "RINGBACK__HTTP__ADMIN_ADDR",
            format!("127.0.0.1:{admin_port}"),
        );
    }
    let mut server = command.spawn().unwrap();
    let target = if admin { admin_port } else { port };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", target)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "ringback did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let examples = std::env::var("RINGBACK_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "100".into());
    let run = std::process::Command::new(&st)
        .args(["run", spec.to_str().unwrap()])
        .args(["--url", &format!("http://127.0.0.1:{target}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", &examples, "--seed", "1"])
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .output()
        .expect("running schemathesis");
    server.kill().unwrap();
    server.wait().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    println!("{out}");
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn ctx() -> ParseContext {
    ParseContext {
        source: "src".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap(),
        region: None,
    }
}

fn files(dir: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every record of every fixture, and of the simulator's bodies.
fn records() -> Vec<Record> {
    let mut all = Vec::new();
    for path in files("huawei") {
        if let Ok(parsed) = huawei::parse_body(&std::fs::read(&path).unwrap(), &ctx()) {
            all.extend(parsed.records);
        }
    }
    for path in files("acs") {
        if let Ok(Delivery::Records(parsed)) =
            acs::parse_body(&std::fs::read(&path).unwrap(), &ctx())
        {
            all.extend(parsed.records);
        }
    }
    // An ACS event ringback does not model: a webhook-events message.
    let other = serde_json::json!([{"id": "w-1", "topic": "/t", "subject": "s",
        "eventType": "Microsoft.Communication.SomethingNew", "eventTime": "2024-01-02T03:04:05Z",
        "data": {"anything": [1, 2]}, "dataVersion": "1.0", "metadataVersion": "1"}]);
    if let Ok(Delivery::Records(parsed)) = acs::parse_body(other.to_string().as_bytes(), &ctx()) {
        all.extend(parsed.records);
    }
    let end = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let fee = sample::fee_body(3, 50, end).to_string();
    all.extend(huawei::parse_body(fee.as_bytes(), &ctx()).unwrap().records);
    for event in ["callout", "alerting", "answer", "collectInfo", "disconnect"] {
        let body = sample::status_body(event, "s-1", end).to_string();
        all.extend(huawei::parse_body(body.as_bytes(), &ctx()).unwrap().records);
    }
    all
}

#[test]
fn every_message_the_encoder_produces_validates_against_its_schema() {
    let validators: BTreeMap<&str, jsonschema::Validator> = RecordKind::ALL
        .iter()
        .map(|kind| {
            let schema: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(committed(*kind)).unwrap()).unwrap();
            (
                kind.as_str(),
                jsonschema::draft202012::new(&schema).unwrap(),
            )
        })
        .collect();
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    for record in records() {
        let entry = encode(&record);
        let value: serde_json::Value = serde_json::from_str(&entry.payload).unwrap();
        let validator = &validators[entry.kind.as_str()];
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {errors:?}\n{value}",
            entry.kind.as_str()
        );
        // …and a message of another kind does not pass for this one.
        for (other, v) in &validators {
            if *other != entry.kind.as_str() {
                assert!(
                    !v.is_valid(&value),
                    "a {} message passes as {other}",
                    entry.kind.as_str()
                );
            }
        }
        *checked.entry(entry.kind.as_str()).or_default() += 1;
    }
    for kind in RecordKind::ALL {
        assert!(
            checked.get(kind.as_str()).is_some_and(|n| *n > 0),
            "no message of {} was checked: {checked:?}",
            kind.as_str()
        );
    }
}
