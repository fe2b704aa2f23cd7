//! The operator's console in a real browser: Debian's Chromium, headless, driven through
//! ChromeDriver (WebDriver) with fantoccini. A Huawei call's five status pushes, its CDR and a
//! refused push go to a live ringback on PostgreSQL; the browser is refused with a wrong token,
//! logs in, searches the session id and reads the timeline (events in order, the CDR, the dead
//! letter), opens the letter, dry-runs it and reprocesses it from its page. A form posted with
//! the browser's own session cookie but without the CSRF token is refused.
//!
//! Chromium and ChromeDriver come from Debian (`apt-get install chromium chromium-driver`, as
//! `.ci/run` does); `RINGBACK_CHROMEDRIVER` and `RINGBACK_CHROMIUM` name others. Missing, the
//! test fails: it never skips. `RINGBACK_BLESS=1` also writes the timeline's screenshot to
//! `docs/console-timeline.png` (docs/operations/console.md shows it); every run writes it under `target/`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use common::kafka::{create_topics, Tansu};
use common::{spawn_app_with, Backend};
use ringback::config::KafkaConfig;
use ringback::simulate::sample;

const TOKEN: &str = "browser-admin-token-0123456789abcdef";
const SESSION: &str = "1201_612_88_0_20261205101500@callenabler245.huaweicaas.com";
const EVENTS: [&str; 5] = ["callout", "alerting", "answer", "collectInfo", "disconnect"];

/// ChromeDriver on a port of its own, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let bin = std::env::var("RINGBACK_CHROMEDRIVER").unwrap_or("/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: apt-get install chromium chromium-driver (as .ci/run does), or set \
             RINGBACK_CHROMEDRIVER"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::get(format!("{url}/status"))
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    async fn browser(&self) -> Client {
        let binary = std::env::var("RINGBACK_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1100"]
            }),
        );
        ClientBuilder::native()
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

/// Waits (up to 10 s) for an element of the page being loaded.
async fn wait_for(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("waiting for {css}: {e}"));
}

/// The text of `css` once `ok` holds for it (the page a click started may still be loading):
/// polled for up to 10 s, then the last text is returned for the assertion to show.
async fn text_when(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ok(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill_and_submit(c: &Client, input: &str, value: &str) {
    let field = c.find(Locator::Css(input)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
    let button = format!("form:has({input}) button");
    c.find(Locator::Css(&button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_call_and_reprocesses_its_dead_letter_in_a_browser() {
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), TOKEN).unwrap();
    let path = token.path().to_owned();
    // A real broker, so that the timeline can say what is on Kafka.
    let tansu = Tansu::start();
    let prefix = format!("browser{}.", uuid::Uuid::new_v4().simple());
    let topics = KafkaConfig {
        topic_prefix: prefix.clone(),
        ..Default::default()
    };
    create_topics(
        &tansu.bootstrap,
        &[topics.topic("call-status"), topics.topic("cdr")],
        1,
    )
    .await;
    let bootstrap = tansu.bootstrap.clone();
    let app = spawn_app_with(
        Backend::Postgres,
        move |c| {
            c.http.admin_addr = Some("127.0.0.1:0".into());
            c.http.admin_token_file = Some(path);
            c.kafka.brokers = bootstrap.into();
            c.kafka.topic_prefix = prefix;
        },
        None,
    )
    .await;
    let admin = app.admin_address.clone().expect("admin listener");

    // The call: five status pushes a few seconds apart, its CDR, and a push the parser refuses.
    let start = Utc::now() - TimeDelta::seconds(60);
    for (i, event) in EVENTS.iter().enumerate() {
        let body = sample::status_body(event, SESSION, start + TimeDelta::seconds(5 * i as i64));
        let res = app.post_with("open", body.to_string(), &[]).await;
        assert_eq!(res.status(), 200, "{event}");
    }
    let mut fee = sample::fee_body(7, 1, start + TimeDelta::seconds(30));
    fee["feeLst"][0]["sessionId"] = json!(SESSION);
    fee["feeLst"][0]["calleeNum"] = json!("+8613800000021");
    assert_eq!(
        app.post_with("open", fee.to_string(), &[]).await.status(),
        200
    );
    let refused = json!({"eventType": "disconnect",
        "statusInfo": {"sessionId": SESSION, "timestamp": "twenty past ten"}});
    let res = app
        .post_with(
            "open",
            refused.to_string(),
            &[("x-request-id", "req-browser".into())],
        )
        .await;
    assert_eq!(res.status(), 400);

    let driver = Driver::start().await;
    let c = driver.browser().await;

    // A wrong token is refused; the right one opens the overview.
    c.goto(&format!("{admin}/admin/")).await.unwrap();
    assert_eq!(text(&c, "h1").await, "Log in");
    fill_and_submit(&c, "input[name=token]", "not-the-admin-token-0123456789").await;
    wait_for(&c, "p.failed").await;
    assert_eq!(text(&c, "p.failed").await, "That is not the admin token.");
    fill_and_submit(&c, "input[name=token]", TOKEN).await;
    assert_eq!(text_when(&c, "h1", |t| t == "Overview").await, "Overview");
    let sources = text(&c, "table.sources").await;
    assert!(sources.contains("call-status 5"), "{sources}");

    // The call, by its session id.
    c.find(Locator::LinkText("Calls"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill_and_submit(&c, "input[name=id]", SESSION).await;
    wait_for(&c, "tr.event").await;
    // Published by now, or within a few seconds: the page says so once reloaded.
    let deadline = Instant::now() + Duration::from_secs(20);
    while text(&c, "main").await.contains("not on Kafka yet") {
        assert!(
            Instant::now() < deadline,
            "the call's records never reached Kafka"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.refresh().await.unwrap();
        wait_for(&c, "tr.event").await;
    }
    let on_kafka = texts(&c, "tr.event td:last-child").await;
    assert_eq!(on_kafka, ["on Kafka"; 5], "every event published");
    let shown = texts(&c, "tr.event td.type").await;
    assert_eq!(shown, EVENTS, "the events in order");
    let cdr = text(&c, "table.cdr").await;
    assert!(cdr.contains("+8613800000022"), "the CDR: {cdr}");
    let letters = texts(&c, "tr.letter").await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].contains("invalid_time") && letters[0].contains("req-browser"),
        "{letters:?}"
    );
    let png = c.screenshot().await.unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot"
    );
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-timeline.png");
    std::fs::write(&target, &png).unwrap();
    if std::env::var_os("RINGBACK_BLESS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console-timeline.png");
        std::fs::write(docs, &png).unwrap();
    }

    // The letter, from the timeline: a dry run, then a reprocess (the parser still refuses it).
    c.find(Locator::Css("tr.letter a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        text_when(&c, "h1", |t| t == "Dead letter").await,
        "Dead letter"
    );
    assert!(text(&c, "pre.body").await.contains("twenty past ten"));
    c.find(Locator::Css("button[name=dry_run]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let dry = text_when(&c, "div.result", |t| t.starts_with("Dry run")).await;
    assert!(dry.starts_with("Dry run: it would be refused"), "{dry}");
    assert_eq!(
        text(&c, "td.outcome").await,
        "-",
        "a dry run records nothing"
    );
    c.find(Locator::Css("button.reprocess"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = text_when(&c, "div.result", |t| t.starts_with("Reprocessed")).await;
    assert!(
        done.starts_with("Reprocessed: refused (invalid_time"),
        "{done}"
    );
    assert!(text(&c, "td.outcome").await.starts_with("refused at "));

    // The browser's own session, without the form's CSRF token: refused.
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "ringback_admin")
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    let letter_url = c.current_url().await.unwrap();
    let forged = reqwest::Client::new()
        .post(format!(
            "{}/reprocess",
            letter_url.as_str().trim_end_matches("/reprocess")
        ))
        .header("cookie", format!("ringback_admin={}", session.value()))
        .form(&[("dry_run", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    c.close().await.unwrap();
    app.stop().await;
}
