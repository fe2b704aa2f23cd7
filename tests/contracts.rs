//! The consumer contract: the JSON Schema (draft 2020-12) of every topic's message value,
//! generated from the Rust types that serialise it (`message::json_schema`) and committed under
//! `schemas/`. `RINGBACK_BLESS=1 cargo test --test contracts` rewrites the committed files.

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
             `RINGBACK_BLESS=1 cargo test --test contracts`, review the diff (a renamed or \
             retyped field needs a new schema version) and commit it",
            path.display()
        );
    }
}

fn ctx() -> ParseContext {
    ParseContext {
        source: "src".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap(),
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
        let Some(entry) = encode(&record) else {
            continue;
        };
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
