//! `ringback dead-letters reprocess` against the real PostgreSQL and a real broker (Tansu):
//! dead letters of several codes and sources, some refused for real by this ringback, some
//! planted as an older ringback would have kept them (the "fix" is the current parser);
//! two reprocessors at once, then a third run that must change nothing.

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::common::kafka::{consume_until, create_topics, Tansu};
use crate::common::{fixture, start_app, Backend, TestDb};
use ringback::auth::standard_webhooks::{decode_secret, sign};
use ringback::config::{Config, KafkaConfig};

const BIN: &str = env!("CARGO_BIN_EXE_ringback");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn sources_toml() -> String {
    format!(
        "[sources.open]\nkind = \"huawei-voicecall\"\nauth = \"none\"\n\
         [sources.acs]\nkind = \"azure-communication\"\nauth = \"none\"\n\
         [sources.sw]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\n\
         secrets = [\"{SECRET}\"]\ntype_pointer = \"/event/type\"\n"
    )
}

/// The tables of the records reprocessing makes, and their topics.
const TOPIC_OF: [(&str, &str); 4] = [
    ("call_events", "call-status"),
    ("cdrs", "cdr"),
    ("acs_call_events", "call-events"),
    ("webhook_events", "webhook-events"),
];

/// A dead letter as an older ringback would have kept it.
struct Plant<'a> {
    source: &'a str,
    scope: &'a str,
    code: &'a str,
    body: &'a str,
    headers: Value,
}

async fn plant(pool: &PgPool, at: DateTime<Utc>, p: &Plant<'_>) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO dead_letters (id, source, received_at, scope, record_index, code, detail, \
                                   body, body_bytes, headers) \
         VALUES ($1, $2, $3, $4, $5, $6, 'refused by an older ringback', $7, $8, $9)",
    )
    .bind(id)
    .bind(p.source)
    .bind(at)
    .bind(p.scope)
    .bind((p.scope == "record").then_some(0))
    .bind(p.code)
    .bind(p.body.as_bytes())
    .bind(p.body.len() as i32)
    .bind(&p.headers)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// `ringback dead-letters <args>` on the test's database and sources.
fn cli(config: &std::path::Path, db: &str, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "dead-letters"])
        .args(args)
        .env("RINGBACK__DATABASE__URL", db)
        .env("RINGBACK__LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: std::process::Child) -> (String, Value) {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "dead-letters failed: {out}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    let report = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (out, report)
}

/// (id → (outcome, reprocessed_at, records)) of every dead letter.
async fn marks(
    pool: &PgPool,
) -> BTreeMap<Uuid, (Option<String>, Option<DateTime<Utc>>, Option<Value>)> {
    sqlx::query("SELECT id, reprocess_outcome, reprocessed_at, reprocess_records FROM dead_letters")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("id"),
                (
                    r.get("reprocess_outcome"),
                    r.get("reprocessed_at"),
                    r.get("reprocess_records"),
                ),
            )
        })
        .collect()
}

async fn row_counts(pool: &PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "call_events",
        "cdrs",
        "acs_call_events",
        "webhook_events",
        "dead_letters",
        "outbox",
    ] {
        counts.push(
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(pool)
                .await
                .unwrap(),
        );
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_reprocessed_once_into_rows_and_onto_kafka() {
    let tansu = Tansu::start();
    let prefix = format!("dl{}.", Uuid::new_v4().simple());
    let topics = KafkaConfig {
        topic_prefix: prefix.clone(),
        ..Default::default()
    };
    let names: Vec<String> = TOPIC_OF.iter().map(|(_, k)| topics.topic(k)).collect();
    create_topics(&tansu.bootstrap, &names, 1).await;

    let db = TestDb::new(Backend::Postgres).await;
    let url = db.url.clone();
    let (bootstrap, p) = (tansu.bootstrap.clone(), prefix.clone());
    let app = start_app(
        db,
        move |c: &mut Config| {
            c.sources
                .extend(Config::from_toml(&sources_toml()).unwrap().sources);
            c.kafka.brokers = bootstrap.into();
            c.kafka.topic_prefix = p;
            c.kafka.message_timeout = Duration::from_secs(3);
            c.kafka.sweep_interval = Duration::from_millis(200);
            c.kafka.sweep_grace = Duration::from_millis(500);
        },
        None,
    )
    .await;
    let pool = PgPool::connect(&url).await.unwrap();

    // --- Refused for real by this ringback (the current parser still refuses them).
    let unknown = json!({"eventType": "ringing", "statusInfo": {"sessionId": "s-r1", "timestamp": "2026-12-01 08:00:00"}});
    assert_eq!(
        app.post_with("open", unknown.to_string(), &[])
            .await
            .status(),
        400
    );
    let mut fee: Value = serde_json::from_str(&fixture("huawei/fee.json")).unwrap();
    let mut bad_cdr = fee["feeLst"][0].clone();
    bad_cdr["direction"] = json!("0");
    bad_cdr["sessionId"] = json!("s-r2-bad");
    bad_cdr["icid"] = json!("icid-r2-bad");
    fee["feeLst"] = json!([fee["feeLst"][0].clone(), bad_cdr]);
    let res = app.post_with("open", fee.to_string(), &[]).await;
    assert_eq!(res.status(), 200);
    // An auth failure keeps no body: never eligible.
    let now = Utc::now().timestamp();
    let forged = sign(
        &decode_secret("whsec_ZGlmZmVyZW50LXNlY3JldA==").unwrap(),
        "msg_forged",
        &now.to_string(),
        b"{}",
    );
    let res = app
        .client
        .post(format!("{}/hooks/sw", app.address))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", forged)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A status push stored live, then planted again below (a platform retry refused by an
    // older ringback): reprocessing finds it stored already.
    let answer = fixture("huawei/answer.json");
    assert_eq!(
        app.post_with("open", answer.clone(), &[]).await.status(),
        200
    );

    // --- Planted: what an older ringback refused and this one understands.
    let json_ct = json!({"content-type": "application/json"});
    let at = Utc::now() - chrono::Duration::minutes(5);
    let callout = fixture("huawei/callout.json");
    let cdr = {
        let mut c = fee["feeLst"][0].clone();
        c["sessionId"] = json!("s-planted-cdr");
        c["icid"] = json!("icid-planted-cdr");
        c.to_string()
    };
    let event: Value = serde_json::from_str(&fixture("acs/eventgrid/CallStarted.json")).unwrap();
    let event = event[0].to_string();
    let partial = {
        let mut f = fee.clone();
        f["feeLst"][0]["sessionId"] = json!("s-planted-partial");
        f["feeLst"][0]["icid"] = json!("icid-planted-partial");
        f["feeLst"][1]["sessionId"] = json!("s-planted-partial-bad");
        f["feeLst"][1]["icid"] = json!("icid-planted-partial-bad");
        f.to_string()
    };
    let sw_body = r#"{"event": {"type": "invoice.paid"}, "amount": 7}"#;
    let sw_headers = json!({
        "content-type": "application/json", "webhook-id": "msg_planted",
        "webhook-timestamp": at.timestamp().to_string(), "webhook-signature": "v1,kept"
    });
    let planted = [
        (
            "committed",
            Plant {
                source: "open",
                scope: "request",
                code: "invalid_time",
                body: &callout,
                headers: json_ct.clone(),
            },
        ),
        (
            "committed",
            Plant {
                source: "open",
                scope: "record",
                code: "invalid_type",
                body: &cdr,
                headers: json_ct.clone(),
            },
        ),
        (
            "committed",
            Plant {
                source: "acs",
                scope: "record",
                code: "unsupported_event_type",
                body: &event,
                headers: json_ct.clone(),
            },
        ),
        (
            "committed",
            Plant {
                source: "sw",
                scope: "request",
                code: "invalid_json",
                body: sw_body,
                headers: sw_headers,
            },
        ),
        (
            "duplicate",
            Plant {
                source: "open",
                scope: "request",
                code: "invalid_time",
                body: &answer,
                headers: json_ct.clone(),
            },
        ),
        (
            "partial",
            Plant {
                source: "open",
                scope: "request",
                code: "invalid_type",
                body: &partial,
                headers: json_ct.clone(),
            },
        ),
    ];
    let mut expected: BTreeMap<Uuid, &str> = BTreeMap::new();
    for (i, (outcome, p)) in planted.iter().enumerate() {
        let id = plant(&pool, at + chrono::Duration::milliseconds(i as i64), p).await;
        expected.insert(id, outcome);
    }
    let before = marks(&pool).await;
    assert_eq!(
        before.len(),
        6 + 3,
        "planted 6; refused for real: unknown type, bad CDR, forgery"
    );
    for (id, (outcome, _, _)) in &before {
        if !expected.contains_key(id) {
            expected.insert(*id, "refused");
        }
        assert!(outcome.is_none());
    }
    // The forgery's letter has no body: not eligible, stays untouched.
    let no_body: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM dead_letters WHERE body IS NULL")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(no_body.len(), 1, "the forged Standard Webhooks request");
    expected.remove(&no_body[0]);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringback.toml");
    std::fs::write(&config, sources_toml()).unwrap();

    // --- A dry run says what would happen and changes nothing.
    let counts = row_counts(&pool).await;
    let (out, report) = finished(cli(&config, &url, &["reprocess", "--dry-run"]));
    assert_eq!(report["examined"], 8, "{out}");
    assert_eq!(report["refused"], 2, "{out}");
    assert_eq!(report["partial"], 1, "{out}");
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(row_counts(&pool).await, counts);
    assert_eq!(marks(&pool).await, before);

    // --- Two reprocessors at once, as on two machines.
    let (a, b) = (
        cli(&config, &url, &["reprocess"]),
        cli(&config, &url, &["reprocess"]),
    );
    let ((out_a, ra), (out_b, rb)) = (finished(a), finished(b));
    let sum = |k: &str| ra[k].as_u64().unwrap() + rb[k].as_u64().unwrap();
    assert_eq!(sum("committed"), 4, "{out_a}\n{out_b}");
    assert_eq!(sum("duplicate"), 1, "{out_a}\n{out_b}");
    assert_eq!(sum("partial"), 1, "{out_a}\n{out_b}");
    assert_eq!(sum("refused"), 2, "{out_a}\n{out_b}");
    let after = marks(&pool).await;
    let mut new_records = Vec::new();
    for (id, outcome) in &expected {
        let (got, at, records) = &after[id];
        assert_eq!(got.as_deref(), Some(*outcome), "dead letter {id}");
        assert!(at.is_some());
        let records: Vec<Uuid> = serde_json::from_value(records.clone().unwrap()).unwrap();
        match *outcome {
            "committed" | "duplicate" | "partial" => assert_eq!(records.len(), 1, "{id}"),
            _ => assert!(records.is_empty()),
        }
        if *outcome != "duplicate" {
            new_records.extend(records);
        }
    }
    assert_eq!(
        after[&no_body[0]].0, None,
        "the auth failure is not eligible"
    );
    // Each record committed once: +1 status, +2 CDRs, +1 ACS event, +1 webhook event, and
    // their outbox entries; no new dead letter.
    let now_counts = row_counts(&pool).await;
    let deltas: Vec<i64> = now_counts.iter().zip(&counts).map(|(n, c)| n - c).collect();
    assert_eq!(&deltas[..5], &[1, 2, 1, 1, 0], "rows added per table");
    for id in &new_records {
        let found: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM call_events WHERE id = $1) + (SELECT count(*) FROM cdrs WHERE id = $1) \
                  + (SELECT count(*) FROM acs_call_events WHERE id = $1) + (SELECT count(*) FROM webhook_events WHERE id = $1)",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(found, 1, "record {id} stored once");
    }

    // --- A third run finds nothing to do and changes nothing.
    let (out, report) = finished(cli(&config, &url, &["reprocess"]));
    assert_eq!(report["examined"], 0, "{out}");
    assert_eq!(marks(&pool).await, after);
    assert_eq!(row_counts(&pool).await[..5], now_counts[..5]);
    // `--again` retries the still-refused ones; they stay refused, nothing is added.
    let (out, report) = finished(cli(
        &config,
        &url,
        &["reprocess", "--again", "--code", "unknown_event_type"],
    ));
    assert_eq!(
        (report["examined"].as_u64(), report["refused"].as_u64()),
        (Some(1), Some(1)),
        "{out}"
    );
    assert_eq!(row_counts(&pool).await[..5], now_counts[..5]);

    // --- list and show.
    let (out, _) = finished(cli(&config, &url, &["list", "--source", "sw"]));
    assert_eq!(
        out.lines().count(),
        3,
        "header, the planted one, the forgery: {out}"
    );
    let planted_sw = expected
        .keys()
        .find(|id| out.contains(&id.to_string()) && after[id].0.as_deref() == Some("committed"))
        .copied()
        .unwrap();
    let (out, _) = finished(cli(&config, &url, &["show", &planted_sw.to_string()]));
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["body"], sw_body);
    assert_eq!(shown["headers"]["webhook-id"], "msg_planted");
    assert_eq!(shown["reprocess_outcome"], "committed");

    // --- On Kafka: every new record, published by the running replica from the outbox.
    let mut want: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
    for id in &new_records {
        for (table, kind) in TOPIC_OF {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            if n == 1 {
                want.entry(kind).or_default().insert(id.to_string());
            }
        }
    }
    assert_eq!(
        want.values().map(HashSet::len).sum::<usize>(),
        new_records.len()
    );
    let mut seen = HashSet::new();
    for (kind, ids) in &want {
        let w = ids.clone();
        let got = consume_until(
            &tansu.bootstrap,
            &topics.topic(kind),
            Duration::from_secs(20),
            move |got| w.iter().all(|i| got.contains(i)),
        )
        .await;
        seen.extend(got.iter().filter_map(|m| m.headers.get("ce_id").cloned()));
    }
    let want: HashSet<String> = new_records.iter().map(Uuid::to_string).collect();
    let missing: Vec<&String> = want.difference(&seen).collect();
    assert!(missing.is_empty(), "not on Kafka: {missing:?}");

    // --- A Standard Webhooks event replays (its id and timestamp are in its row): the same
    // message as the live one, on another topic prefix.
    let live = consume_until(
        &tansu.bootstrap,
        &topics.topic("webhook-events"),
        Duration::from_secs(10),
        |ids| !ids.is_empty(),
    )
    .await;
    let replayed_prefix = format!("re{}.", Uuid::new_v4().simple());
    let replayed_topic = KafkaConfig {
        topic_prefix: replayed_prefix.clone(),
        ..Default::default()
    }
    .topic("webhook-events");
    create_topics(&tansu.bootstrap, std::slice::from_ref(&replayed_topic), 1).await;
    let since = (at - chrono::Duration::hours(1)).to_rfc3339();
    let replay = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "replay",
            "--kind",
            "webhook-events",
            "--since",
            &since,
        ])
        .env("RINGBACK__DATABASE__URL", &url)
        .env("RINGBACK__KAFKA__BROKERS", &tansu.bootstrap)
        .env("RINGBACK__KAFKA__TOPIC_PREFIX", &replayed_prefix)
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let again = consume_until(
        &tansu.bootstrap,
        &replayed_topic,
        Duration::from_secs(10),
        |ids| !ids.is_empty(),
    )
    .await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (&again[0].key, &again[0].value),
        (&live[0].key, &live[0].value)
    );
    app.stop().await;
}
