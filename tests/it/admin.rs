//! The admin API (`/admin/api/…`): only on the admin listener, only with the token, read-only
//! on a pool of its own; the answers `calls show`, `events find` and `dead-letters` give.

use serde_json::Value;

use crate::both_stores;
use crate::common::{spawn_app_with, Backend, TestApp};
use ringback::simulate::sample;

const TOKEN: &str = "admin-token-of-the-test-0123456789";
const SESSION: &str = "1201_612_77_0_20261205090000@callenabler245.huaweicaas.com";

async fn app(backend: Backend) -> (TestApp, tempfile::NamedTempFile) {
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), format!("{TOKEN}\n")).unwrap();
    let path = token.path().to_owned();
    let app = spawn_app_with(
        backend,
        move |c| {
            c.http.admin_addr = Some("127.0.0.1:0".into());
            c.http.admin_token_file = Some(path);
        },
        None,
    )
    .await;
    (app, token)
}

async fn get(app: &TestApp, base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(format!("{base}/admin/api/{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn the_admin_api_answers_on_its_listener_with_its_token_only(backend: Backend) {
    let (app, _token) = app(backend).await;
    let admin = app.admin_address.clone().expect("admin listener");
    let at = chrono::Utc::now();
    let body = sample::status_body("callout", SESSION, at);
    let res = app.post_with("open", body.to_string(), &[]).await;
    assert_eq!(res.status(), 200);
    let refused = format!(
        r#"{{"eventType":"disconnect","statusInfo":{{"sessionId":"{SESSION}","timestamp":"later"}}}}"#
    );
    let res = app
        .post_with("open", refused, &[("x-request-id", "req-admin".into())])
        .await;
    assert_eq!(res.status(), 400);

    let call = format!("calls/{}", urlencoding(SESSION));
    let (status, t) = get(&app, &admin, &call, Some(TOKEN)).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["events"][0]["event_type"], "callout");
    assert_eq!(t["dead_letters"][0]["request_id"], "req-admin");

    // No token, a wrong one: 401 with the challenge; the hooks listener does not have it.
    let (status, e) = get(&app, &admin, &call, None).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = get(
        &app,
        &admin,
        &call,
        Some("admin-token-of-the-test-0123456780"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = get(&app, &app.address, &call, Some(TOKEN)).await;
    assert_eq!(status, 404, "the hooks listener serves no admin API");

    let (status, page) = get(
        &app,
        &admin,
        "dead-letters?request_id=req-admin",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["dead_letters"].as_array().unwrap().len(), 1);
    assert!(page["next"].is_null());
    let id = page["dead_letters"][0]["id"].as_str().unwrap().to_owned();
    let (status, letter) = get(&app, &admin, &format!("dead-letters/{id}"), Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(letter["body"].as_str().unwrap().contains(SESSION));

    let caller = t["events"][0]["detail"]["caller"].as_str().unwrap();
    let (status, found) = get(
        &app,
        &admin,
        &format!("events?number={}", urlencoding(caller)),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["records"][0]["belongs_to"], SESSION);

    let (status, e) = get(&app, &admin, "events", Some(TOKEN)).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, _) = get(&app, &admin, "calls/no-such-call", Some(TOKEN)).await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// The console: a login with the token opens an HttpOnly, SameSite=Strict session; the call's
/// page shows its events and dead letter; logout needs the session's CSRF token; the hooks
/// listener has none of it.
async fn the_console_shows_a_call_behind_a_login(backend: Backend) {
    let (app, _token) = app(backend).await;
    let admin = app.admin_address.clone().expect("admin listener");
    let at = chrono::Utc::now();
    for event in ["callout", "alerting"] {
        let body = sample::status_body(event, SESSION, at);
        assert_eq!(
            app.post_with("open", body.to_string(), &[]).await.status(),
            200
        );
    }
    let refused = format!(
        r#"{{"eventType":"disconnect","statusInfo":{{"sessionId":"{SESSION}","timestamp":"later"}}}}"#
    );
    app.post_with("open", refused, &[("x-request-id", "req-console".into())])
        .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let html = |res: reqwest::Response| async move {
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    };

    let (status, login) = html(client.get(format!("{admin}/admin/")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(login.contains(r#"name="token""#), "{login}");
    let wrong = client
        .post(format!("{admin}/admin/login"))
        .form(&[("token", "not-the-token-at-all-0123456789")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let cookie = log_in(&client, &admin).await;
    let get = |path: String| {
        let (client, cookie) = (client.clone(), cookie.clone());
        async move {
            client
                .get(path)
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
        }
    };

    let (status, page) =
        html(get(format!("{admin}/admin/calls?id={}", urlencoding(SESSION))).await).await;
    assert_eq!(status, 200);
    let (callout, alerting) = (
        page.find(">callout<").unwrap(),
        page.find(">alerting<").unwrap(),
    );
    assert!(callout < alerting, "the events in order");
    assert!(
        page.contains("invalid_time") && page.contains("req-console"),
        "{page}"
    );
    let (_, list) =
        html(get(format!("{admin}/admin/dead-letters?request_id=req-console")).await).await;
    let link = list
        .split("href=\"/admin/dead-letters/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a letter's link")
        .to_owned();
    let (_, later) = html(
        get(format!(
            "{admin}/admin/dead-letters?request_id=req-console&since=2999-01-01T00%3A00"
        ))
        .await,
    )
    .await;
    assert!(
        !later.contains(&link),
        "a time filter after the letter hides it"
    );
    let (status, detail) = html(get(format!("{admin}/admin/dead-letters/{link}")).await).await;
    assert_eq!(status, 200);
    assert!(detail.contains(SESSION), "the body, as received");

    let (_, overview) = html(get(format!("{admin}/admin/")).await).await;
    assert!(
        overview.contains("Publisher") && overview.contains("backlog"),
        "the publisher's state: {overview}"
    );
    assert!(
        overview.contains("call-status 2<") && overview.contains(">2 / 1<"),
        "source open: two records in the last hour, two pushes answered 2xx and one refused: \
         {overview}"
    );
    if backend == Backend::Postgres {
        assert!(
            overview.contains("<td>call_events</td>"),
            "partitions: {overview}"
        );
    }
    let caller = "%2B8613800000022";
    let (status, events) = html(get(format!("{admin}/admin/events?q={caller}")).await).await;
    assert_eq!(status, 200);
    assert!(
        events.contains(&format!("/admin/calls?id={}", urlencoding(SESSION))),
        "a record of the number links to its call: {events}"
    );

    // The hooks listener serves no console.
    let (status, _) = html(get(format!("{}/admin/", app.address)).await).await;
    assert_eq!(status, 404);

    // Logout: refused without the session's CSRF token, done with it.
    let post = |csrf: &str| {
        client
            .post(format!("{admin}/admin/logout"))
            .header(reqwest::header::COOKIE, cookie.clone())
            .form(&[("csrf", csrf.to_owned())])
            .send()
    };
    assert_eq!(post("forged").await.unwrap().status(), 403);
    let csrf = csrf_of(&page);
    assert_eq!(post(&csrf).await.unwrap().status(), 303);
    let (_, after) = html(get(format!("{admin}/admin/calls?id=x")).await).await;
    assert!(after.contains(r#"name="token""#), "the session is closed");
    app.stop().await;
}

/// Logs in to the console at `admin`: the session cookie (`name=value`).
async fn log_in(client: &reqwest::Client, admin: &str) -> String {
    let ok = client
        .post(format!("{admin}/admin/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let set = ok.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

/// The value of the first hidden `csrf` input of a page.
fn csrf_of(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the CSRF token in the page")
        .to_owned()
}

/// A dead letter reprocessed from the API (dry run, then refused: the parser still refuses it)
/// and from the console (CSRF checked; dry run, then committed once its body parses); a second
/// reprocess of a committed letter is a 409.
async fn dead_letters_are_reprocessed_from_the_api_and_the_console(backend: Backend) {
    let (app, _token) = app(backend).await;
    let admin = app.admin_address.clone().expect("admin listener");
    let at = chrono::Utc::now();
    let callout = sample::status_body("callout", SESSION, at);
    assert_eq!(
        app.post_with("open", callout.to_string(), &[])
            .await
            .status(),
        200
    );
    let refused = format!(
        r#"{{"eventType":"disconnect","statusInfo":{{"sessionId":"{SESSION}","timestamp":"later"}}}}"#
    );
    let res = app
        .post_with("open", refused, &[("x-request-id", "req-rp".into())])
        .await;
    assert_eq!(res.status(), 400);
    let (_, page) = get(&app, &admin, "dead-letters?request_id=req-rp", Some(TOKEN)).await;
    let id = page["dead_letters"][0]["id"].as_str().unwrap().to_owned();

    let post = |path: String, token: Option<&str>| {
        let mut req = app.client.post(format!("{admin}/admin/api/{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let reprocess = format!("dead-letters/{id}/reprocess");
    let (status, _) = post(reprocess.clone(), None).await;
    assert_eq!(status, 401);
    let (status, e) = get(&app, &admin, &reprocess, Some(TOKEN)).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, dry) = post(format!("{reprocess}?dry_run=true"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (
            dry["dry_run"].as_bool(),
            dry["outcome"].as_str(),
            dry["code"].as_str()
        ),
        (Some(true), Some("refused"), Some("invalid_time"))
    );
    let (_, letter) = get(&app, &admin, &format!("dead-letters/{id}"), Some(TOKEN)).await;
    assert!(
        letter["reprocess_outcome"].is_null(),
        "a dry run records nothing: {letter}"
    );
    let (status, again) = post(reprocess.clone(), Some(TOKEN)).await;
    assert_eq!(
        (status, again["outcome"].as_str()),
        (200, Some("refused")),
        "{again}"
    );

    // What a fixed parser would now accept: the body as the platform should have sent it.
    let fixed = sample::status_body("disconnect", SESSION, at).to_string();
    let sql = match backend {
        Backend::Postgres => "UPDATE dead_letters SET body = $1 WHERE request_id = 'req-rp'",
        Backend::Sqlite => "UPDATE dead_letters SET body = ?1 WHERE request_id = 'req-rp'",
    };
    sqlx::query(sql)
        .bind(fixed.into_bytes())
        .execute(&app.db.pool)
        .await
        .unwrap();

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = log_in(&client, &admin).await;
    let letter_url = format!("{admin}/admin/dead-letters/{id}");
    let page = client
        .get(&letter_url)
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(">Reprocess<"),
        "a refused letter can be tried again: {page}"
    );
    let csrf = csrf_of(&page);
    let form = |fields: Vec<(&'static str, String)>| {
        client
            .post(format!("{letter_url}/reprocess"))
            .header(reqwest::header::COOKIE, &cookie)
            .form(&fields)
            .send()
    };
    assert_eq!(form(vec![]).await.unwrap().status(), 403, "no CSRF token");
    assert_eq!(
        form(vec![("csrf", "forged".into())])
            .await
            .unwrap()
            .status(),
        403
    );
    let dry = form(vec![("csrf", csrf.clone()), ("dry_run", "1".into())])
        .await
        .unwrap();
    assert_eq!(dry.status(), 200);
    let dry = dry.text().await.unwrap();
    assert!(dry.contains("Dry run: it would be committed"), "{dry}");
    let done = form(vec![("csrf", csrf.clone())])
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("Reprocessed: committed"), "{done}");
    assert!(
        !done.contains(">Reprocess<"),
        "a committed letter offers no second try"
    );

    let call = format!("calls/{}", urlencoding(SESSION));
    let (_, t) = get(&app, &admin, &call, Some(TOKEN)).await;
    let types: Vec<&str> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["callout", "disconnect"], "{t}");
    let (_, letter) = get(&app, &admin, &format!("dead-letters/{id}"), Some(TOKEN)).await;
    assert_eq!(letter["reprocess_outcome"], "committed");
    let (status, e) = post(reprocess, Some(TOKEN)).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("not_reprocessable")),
        "{e}"
    );
    app.stop().await;
}

/// Eleven wrong tokens in a minute from one address: 429 with `Retry-After`, for the API and
/// the console's login alike, even with the right token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_limited_per_address() {
    let (app, _token) = app(Backend::Sqlite).await;
    let admin = app.admin_address.clone().expect("admin listener");
    for _ in 0..10 {
        let (status, _) = get(
            &app,
            &admin,
            "events?id=x",
            Some("wrong-token-0123456789abcdef"),
        )
        .await;
        assert_eq!(status, 401);
    }
    let res = app
        .client
        .get(format!("{admin}/admin/api/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let secs: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");
    let login = app
        .client
        .post(format!("{admin}/admin/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    app.stop().await;
}

/// Percent-encodes what a path segment or query value cannot hold as is.
fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The admin pool cannot write, and its statements are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_pool_is_read_only_and_bounded() {
    let db = crate::common::TestDb::new(Backend::Postgres).await;
    db.store().await.migrate().await.unwrap();
    let (calls, _) = ringback::store::connect_admin(&db.database_config()).unwrap();
    let ringback::store::calls::Calls::Postgres(pool) = calls else {
        panic!("a PostgreSQL pool")
    };
    let err = sqlx::query("DELETE FROM cdrs")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    let err = sqlx::query("SELECT pg_sleep(10)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
    pool.close().await;
    db.drop_db().await;
}

both_stores!(
    the_admin_api_answers_on_its_listener_with_its_token_only,
    the_console_shows_a_call_behind_a_login,
    dead_letters_are_reprocessed_from_the_api_and_the_console,
);
