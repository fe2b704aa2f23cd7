//! `ringback calls show`: a call's records of every source kind, found by any of its ids, in
//! order, with their codes explained, the dead letters that name it and their Kafka state.

use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;

use crate::both_stores;
use crate::common::{fixture, spawn_app_with, Backend, TestApp};
use ringback::config::Config;
use ringback::simulate::sample;
use ringback::store::calls::{Find, OnKafka};

const SESSION: &str = "1201_612_42_0_20261205080000@callenabler245.huaweicaas.com";

fn with_acs(c: &mut Config) {
    let extra =
        Config::from_toml("[sources.acs]\nkind = \"azure-communication\"\nauth = \"none\"\n")
            .unwrap();
    c.sources.extend(extra.sources);
}

async fn post(app: &TestApp, source: &str, body: String) -> Value {
    let res = app
        .post_with(source, body, &[("x-request-id", "req-calls".into())])
        .await;
    res.json().await.unwrap()
}

async fn a_call_of_each_platform_is_found_by_any_of_its_ids(backend: Backend) {
    let app = spawn_app_with(backend, with_acs, None).await;
    let start = Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).unwrap();
    // Huawei: a call's status pushes (out of order on the wire), another call's, its CDR, and
    // a refused push that names it.
    for (event, at) in [
        ("answer", 7),
        ("callout", 0),
        ("alerting", 2),
        ("disconnect", 40),
    ] {
        let body = sample::status_body(event, SESSION, start + Duration::seconds(at));
        assert_eq!(post(&app, "open", body.to_string()).await["status"], "ok");
    }
    let other = sample::status_body("callout", "another-session", start);
    post(&app, "open", other.to_string()).await;
    let mut fee = sample::fee_body(42, 1, start + Duration::seconds(40));
    fee["feeLst"][0]["sessionId"] = SESSION.into();
    let icid = fee["feeLst"][0]["icid"].as_str().unwrap().to_owned();
    assert_eq!(post(&app, "open", fee.to_string()).await["accepted"], 1);
    let refused = format!(
        r#"{{"eventType":"disconnect","statusInfo":{{"sessionId":"{SESSION}","timestamp":"soon"}}}}"#
    );
    assert_eq!(
        post(&app, "open", refused).await["error"]["code"],
        "invalid_time"
    );
    // ACS: a Call Automation batch of one call connection.
    let batch = fixture("acs/callautomation_batch.json");
    let events: Value = serde_json::from_str(&batch).unwrap();
    let connection = events[0]["data"]["callConnectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let server_call = events[0]["data"]["serverCallId"]
        .as_str()
        .unwrap()
        .to_owned();
    let of_connection = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["callConnectionId"] == connection.as_str())
        .count();
    let answer = post(&app, "acs", batch).await;
    assert_eq!(answer["status"], "ok", "{answer}");

    let store = app.db.store().await;
    let calls = store.calls().expect("both stores keep calls");
    let t = calls.timeline(SESSION).await.unwrap();
    let types: Vec<&str> = t.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["callout", "alerting", "answer", "disconnect"]);
    let hangup = &t.events[3].detail;
    assert_eq!(hangup["state_code"], 0);
    assert!(
        hangup["state_meaning"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "the hang-up cause explained from huawei_state_codes: {hangup:?}"
    );
    assert_eq!(t.cdrs.len(), 1);
    assert_eq!(t.cdrs[0].icid.as_deref(), Some(icid.as_str()));
    assert_eq!(t.dead_letters.len(), 1);
    assert_eq!(t.dead_letters[0].code, "invalid_time");
    assert_eq!(t.dead_letters[0].request_id.as_deref(), Some("req-calls"));
    // No broker here: every record waits in the outbox.
    assert!(t.events.iter().all(|e| e.kafka == OnKafka::Pending));
    assert_eq!(t.cdrs[0].kafka, OnKafka::Pending);

    // By the CDR's icid: the same call.
    let by_icid = calls.timeline(&icid).await.unwrap();
    assert_eq!(by_icid.session_id.as_deref(), Some(SESSION));
    assert_eq!(by_icid.events.len(), 4);
    assert_eq!(by_icid.cdrs.len(), 1);

    // ACS, by call connection id and by server call id: the connection's events, in time order.
    let acs = calls.timeline(&connection).await.unwrap();
    assert_eq!(acs.events.len(), of_connection);
    assert!(acs.session_id.is_none() && acs.cdrs.is_empty());
    assert!(acs
        .events
        .windows(2)
        .all(|w| w[0].occurred_at <= w[1].occurred_at));
    assert!(acs
        .events
        .iter()
        .all(|e| e.event_type.starts_with("Microsoft.Communication.")));
    let by_server = calls.timeline(&server_call).await.unwrap();
    assert!(by_server.events.len() >= of_connection);

    // Nothing of a call that never was.
    assert!(calls.timeline("no-such-call").await.unwrap().is_empty());

    // `events find`: by record id, by event id (at any configured source), by number.
    let cdr_id: uuid::Uuid = t.cdrs[0].id.parse().unwrap();
    let by_id = calls.find(&Find::Id(cdr_id)).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(
        (by_id[0].kind, by_id[0].belongs_to.as_deref()),
        ("cdr", Some(SESSION))
    );
    assert_eq!(by_id[0].raw["icid"], icid.as_str());
    let event_id = events[0]["id"].as_str().unwrap().to_owned();
    let sources = vec!["hw".to_owned(), "open".to_owned(), "acs".to_owned()];
    let by_key = calls
        .find(&Find::Key {
            key: event_id.clone(),
            sources: sources.clone(),
        })
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1, "{by_key:?}");
    assert_eq!(by_key[0].kind, "call-events");
    assert_eq!(by_key[0].raw["id"], event_id.as_str());
    let caller = t.events[0].detail["caller"].as_str().unwrap().to_owned();
    let by_number = calls
        .find(&Find::Number {
            number: caller.clone(),
            since: start - Duration::hours(1),
            until: start + Duration::hours(1),
        })
        .await
        .unwrap();
    let of_call: Vec<&str> = by_number
        .iter()
        .filter(|f| f.belongs_to.as_deref() == Some(SESSION))
        .map(|f| f.kind)
        .collect();
    assert_eq!(
        of_call,
        [
            "call-status",
            "call-status",
            "call-status",
            "call-status",
            "cdr"
        ],
        "the call's status events and its CDR carry the number"
    );
    assert!(calls
        .find(&Find::Number {
            number: caller,
            since: start + Duration::hours(1),
            until: start + Duration::hours(2),
        })
        .await
        .unwrap()
        .is_empty());
    assert!(calls
        .find(&Find::Key {
            key: "no-such-event".into(),
            sources,
        })
        .await
        .unwrap()
        .is_empty());
    store.close().await;
    app.stop().await;
}

both_stores!(a_call_of_each_platform_is_found_by_any_of_its_ids);
