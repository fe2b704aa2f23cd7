//! Metrics move with traffic and pass promtool; /readyz follows the database; a real
//! Prometheus scrapes ringback; the shipped alert rules and dashboard hold.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{fixture, spawn_app, spawn_app_with, x_aksk_at, Backend, TestApp, PUBLIC_URL};

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

async fn scrape(app: &TestApp) -> String {
    let res = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    res.text().await.unwrap()
}

/// The value of the series `name` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, v) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
            all.then(|| v.parse().ok()).flatten()
        })
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus; .ci/run installs it)");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_pass_promtool() {
    let app = spawn_app(Backend::Sqlite).await;
    for name in ["callout", "alerting", "answer", "disconnect"] {
        assert_eq!(
            app.post_signed(fixture(&format!("huawei/{name}.json")))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        app.post_signed(fixture("huawei/fee.json")).await.status(),
        200
    );
    assert_eq!(
        app.post_signed(fixture("huawei/fee.json")).await.status(),
        200
    ); // retry
    assert_eq!(app.post_signed("{not json").await.status(), 400);
    let forged = x_aksk_at(PUBLIC_URL, "n1", chrono::Utc::now(), "wrong-secret");
    let res = app
        .post_with("hw", fixture("huawei/fee.json"), &[("x-aksk", forged)])
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(app.post_with("nope", "{}", &[]).await.status(), 404);

    let text = scrape(&app).await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    let hooks_ok = [("route", "hooks"), ("source", "hw"), ("status", "200")];
    assert_eq!(v("ringback_http_requests_total", &hooks_ok), Some(6.0));
    assert_eq!(
        v(
            "ringback_http_requests_total",
            &[("source", "hw"), ("status", "400")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "ringback_http_requests_total",
            &[("source", "unknown"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "ringback_http_request_duration_seconds_count",
            &[("route", "hooks"), ("source", "hw")]
        ),
        Some(8.0)
    );
    assert_eq!(
        v("ringback_http_requests_in_flight", &[]),
        Some(1.0),
        "the scrape itself"
    );
    assert_eq!(
        v(
            "ringback_http_request_body_bytes_count",
            &[("source", "hw")]
        ),
        Some(7.0),
        "bodies read (not the 401)"
    );
    let cdr = |outcome| [("source", "hw"), ("kind", "cdr"), ("outcome", outcome)];
    assert_eq!(v("ringback_records_total", &cdr("accepted")), Some(1.0));
    assert_eq!(v("ringback_records_total", &cdr("duplicate")), Some(1.0));
    assert_eq!(
        v(
            "ringback_records_total",
            &[("kind", "call-status"), ("outcome", "accepted")]
        ),
        Some(4.0)
    );
    assert_eq!(
        v("ringback_rejections_total", &[("code", "invalid_json")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "ringback_rejections_total",
            &[("code", "signature_mismatch")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "ringback_auth_failures_total",
            &[("code", "signature_mismatch")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v("ringback_auth_failures_total", &[("code", "invalid_json")]),
        None
    );
    assert_eq!(
        v("ringback_dead_letters_total", &[("code", "invalid_json")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "ringback_call_events_total",
            &[("event_type", "disconnect")]
        ),
        Some(1.0)
    );
    assert_eq!(v("ringback_cdrs_total", &[("answered", "true")]), Some(1.0));
    assert_eq!(
        v("ringback_talk_seconds_total", &[("source", "hw")]),
        Some(11.0)
    );
    assert_eq!(
        v("ringback_billable_seconds_total", &[("source", "hw")]),
        Some(60.0)
    );
    assert!(v("ringback_batch_records_count", &[]).unwrap() >= 1.0);
    assert!(
        v("ringback_batch_records_sum", &[]).unwrap() >= 7.0,
        "6 records + 1 dead letter (an auth failure's letter is committed apart, never batched)"
    );
    assert!(v("ringback_store_commit_duration_seconds_count", &[]).unwrap() >= 1.0);
    assert_eq!(
        v(
            "ringback_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(v("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(v("process_open_fds", &[]).unwrap() > 0.0);
    assert_eq!(
        v("ringback_publisher_mode", &[("mode", "outbox_only")]),
        Some(1.0)
    );
    assert!(v("ringback_outbox_pending", &[]).is_some());
    assert_eq!(
        v(
            "ringback_records_total",
            &[("source", "open"), ("kind", "cdr"), ("outcome", "accepted")]
        ),
        Some(0.0),
        "series exist before traffic"
    );

    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics:\n{out}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database() {
    readyz_through_an_outage(false).await;
}

/// With a spool, a database outage leaves the replica ready (`spooling`) while the spool has
/// room: the balancer keeps it, and the pushes it takes are kept on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_stays_ready_while_the_spool_has_room() {
    readyz_through_an_outage(true).await;
}

async fn readyz_through_an_outage(spool: bool) {
    let app = spawn_app_with(
        Backend::Postgres,
        move |c| {
            c.database.acquire_timeout = Duration::from_millis(500);
            c.spool.enabled = spool;
        },
        None,
    )
    .await;
    let readyz = || async {
        let res = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["store"]["backend"], "postgres");
    assert_eq!(body["publisher"]["mode"], "outbox_only");

    // Make the database unreachable for ringback: refuse new connections, end the open ones.
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::AnyPool::connect(&crate::common::pg_admin_url())
        .await
        .unwrap();
    let run = |sql: String| {
        let admin = admin.clone();
        async move { sqlx::query(&sql).execute(&admin).await.unwrap() }
    };
    run(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    run(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let (status, body) = app
        .readyz_until(if spool { "spooling" } else { "not_ready" })
        .await;
    if spool {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "spooling");
        assert_eq!(body["spool"]["max_bytes"], 1u64 << 30);
    } else {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "not_ready");
        assert!(body.get("spool").is_none());
    }
    assert_eq!(body["store"]["ok"], false);
    assert!(!body["store"]["error"].as_str().unwrap().is_empty());
    assert_eq!(
        value(&scrape(&app).await, "ringback_store_up", &[]),
        Some(0.0)
    );

    run(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    let (status, body) = app.readyz_until("ready").await;
    assert_eq!(
        (status, &body["status"]),
        (200, &serde_json::json!("ready")),
        "ready again once the database is back"
    );
    assert_eq!(
        value(&scrape(&app).await, "ringback_store_up", &[]),
        Some(1.0)
    );
    admin.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_ringback() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(
        app.post_signed(fixture("huawei/fee.json")).await.status(),
        200
    );
    let dir = tempfile::tempdir().unwrap();
    let target = app.address.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ringback\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = crate::common::kafka::free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (Debian package prometheus; .ci/run installs it)");
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let mut seen = None;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(res) = app.client.get(format!("{api}/query?query=ringback_records_total{{source=%22hw%22,kind=%22cdr%22,outcome=%22accepted%22}}")).send().await else {
            continue;
        };
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if let Some(first) = body["data"]["result"].as_array().and_then(|r| r.first()) {
            seen = Some(first.clone());
            break;
        }
    }
    let targets: serde_json::Value = app
        .client
        .get(format!("{api}/targets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let seen = seen.expect("Prometheus stored a ringback metric");
    assert_eq!(seen["metric"]["job"], "ringback");
    assert_eq!(seen["value"][1], "1");
    let active = &targets["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up", "{targets}");
    app.stop().await;
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let (ok, out) = promtool(
        &["check", "rules", &repo("deploy/prometheus/alerts.yml")],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = promtool(
        &["test", "rules", &repo("deploy/prometheus/alerts_test.yml")],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = promtool(
        &["check", "config", &repo("deploy/prometheus/prometheus.yml")],
        None,
    );
    assert!(ok, "{out}");
}

/// Every `ringback_*` metric the dashboard and the rules query is one ringback exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_rules_query_only_exported_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/ringback.json")).unwrap(),
    )
    .unwrap();
    let mut queried = BTreeSet::new();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    exprs.push(std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap());
    for expr in &exprs {
        for (i, _) in expr.match_indices("ringback_") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned();
            queried.insert(base);
        }
    }
    assert!(queried.len() > 10, "{queried:?}");
    let app = crate::common::spawn_app_with(
        Backend::Sqlite,
        |c| {
            let acs = ringback::config::Config::from_toml(
                "[sources.acs]\nkind = \"azure-communication\"\nauth = \"none\"\n",
            )
            .unwrap();
            c.sources.extend(acs.sources);
        },
        None,
    )
    .await;
    // Error codes are only known once they occur; every other series exists from the start.
    assert_eq!(app.post_with("open", "{", &[]).await.status(), 400);
    let text = scrape(&app).await;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<_> = queried
        .iter()
        .filter(|q| !exported.contains(q.as_str()))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    app.stop().await;
}
