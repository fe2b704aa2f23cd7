//! The operator's console: server-rendered HTML on the admin listener, no frontend build.
//! A login with the admin token opens a session (an `HttpOnly`, `SameSite=Strict` cookie of a
//! random id, kept in memory for 8 hours); the pages are the admin API's answers as HTML:
//! `/admin/` (overview: per source the last hour's records and this replica's pushes, refusals
//! by code, publisher, spool, partitions), `/admin/calls?id=…` (a call's timeline),
//! `/admin/events?q=…` (records by id, event id or dedupe key, or number), `/admin/dead-letters`
//! (filtered list) and `/admin/dead-letters/{id}` (one letter, with dry run and reprocess).
//! Every POST (reprocess, logout) carries the session's CSRF token. Nothing here is served on
//! the hooks listener.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use uuid::Uuid;

use super::{Admin, AdminData};
use crate::store::calls::{OnKafka, Timeline};
use crate::store::dead_letters::Filter;

const COOKIE: &str = "ringback_admin";
const SESSION_FOR: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most (the oldest go first): a token holder cannot grow memory unbounded.
const MOST_SESSIONS: usize = 64;

/// Open console sessions: id → (CSRF token, expiry).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, (String, Instant)>>);

impl Sessions {
    fn open(&self) -> (String, String) {
        let (id, csrf) = (
            Uuid::new_v4().simple().to_string(),
            Uuid::new_v4().simple().to_string(),
        );
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        if map.len() >= MOST_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, u))| *u)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), (csrf.clone(), now + SESSION_FOR));
        (id, csrf)
    }

    /// The CSRF token of a live session.
    fn csrf(&self, id: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(csrf, _)| csrf.clone())
    }

    fn close(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The admin state of a request on the admin listener; `None` elsewhere or when off (404).
fn on_admin<'a>(req: &HttpRequest, data: &'a AdminData) -> Option<&'a Admin> {
    data.get_ref()
        .as_ref()
        .filter(|a| req.app_config().local_addr().port() == a.port)
}

/// The session of the request's cookie: its id and CSRF token.
fn session(req: &HttpRequest, admin: &Admin) -> Option<(String, String)> {
    let id = req
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))?
        .to_owned();
    let csrf = admin.sessions.csrf(&id)?;
    Some((id, csrf))
}

/// The admin state and the session's CSRF token of a signed-in request; else the answer: 404
/// off the admin listener, the login form without a live session.
fn signed_in<'a>(
    req: &HttpRequest,
    data: &'a AdminData,
) -> Result<(&'a Admin, String), Box<HttpResponse>> {
    let admin = on_admin(req, data).ok_or_else(|| Box::new(not_found()))?;
    let (_, csrf) = session(req, admin).ok_or_else(|| Box::new(login_form(None)))?;
    Ok((admin, csrf))
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(serde_json::json!({"error": {"code": "not_found", "message": "no such route"}}))
}

fn page(title: &str, csrf: Option<&str>, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · ringback" }
                style { (CSS) }
            }
            body {
                header {
                    strong { "ringback" }
                    @if let Some(csrf) = csrf {
                        nav {
                            a href="/admin/" { "Overview" }
                            a href="/admin/calls" { "Calls" }
                            a href="/admin/events" { "Events" }
                            a href="/admin/dead-letters" { "Dead letters" }
                            form method="post" action="/admin/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button { "Log out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ))
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:0}header{display:flex;gap:2em;\
align-items:center;padding:.6em 1.2em;background:#223;color:#fff}header a{color:#cde;margin-right:1em}\
nav{display:flex;align-items:center}nav form{display:inline;margin-left:1em}main{padding:1em 1.2em}\
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;\
vertical-align:top}.pending{color:#a60}.failed{color:#b00}code{font-size:12px}\
.result{padding:.6em;margin-bottom:1em;border:1px solid #ccc}.result.ok{background:#efe}\
.result.failed{background:#fee}";

fn login_form(error: Option<&str>) -> HttpResponse {
    let mut res = page(
        "Log in",
        None,
        html! {
            @if let Some(e) = error { p.failed { (e) } }
            form method="post" action="/admin/login" {
                label { "Admin token " input type="password" name="token" autocomplete="off"; }
                " " button { "Log in" }
            }
        },
    );
    if error.is_some() {
        *res.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
    }
    res
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(req: HttpRequest, data: AdminData, form: web::Form<Login>) -> HttpResponse {
    let Some(admin) = on_admin(&req, &data) else {
        return not_found();
    };
    let ip = req.peer_addr().map(|a| a.ip());
    if let Some(secs) = admin.attempts.blocked(ip) {
        let mut res = login_form(Some(&format!(
            "Too many wrong tokens from this address: try again in {secs} s."
        )));
        *res.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return res;
    }
    if !admin.token.matches(form.token.trim().as_bytes()) {
        admin.attempts.failed(ip);
        return login_form(Some("That is not the admin token."));
    }
    let (id, _) = admin.sessions.open();
    // HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it.
    let cookie = format!(
        "{COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_FOR.as_secs()
    );
    HttpResponse::SeeOther()
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

#[derive(Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

async fn logout(req: HttpRequest, data: AdminData, form: web::Form<Csrf>) -> HttpResponse {
    let Some(admin) = on_admin(&req, &data) else {
        return not_found();
    };
    match session(&req, admin) {
        Some((id, csrf))
            if crate::auth::constant_time_eq(csrf.as_bytes(), form.csrf.as_bytes()) =>
        {
            admin.sessions.close(&id);
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/admin/"))
                .finish()
        }
        _ => csrf_refused(),
    }
}

/// `value` as a query value.
fn encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A value as compact JSON, for the state tables.
fn show(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "-".into(),
        Ok(v) => v.to_string(),
        Err(_) => "?".into(),
    }
}

/// A struct's fields as rows.
fn fields(value: &impl serde::Serialize) -> Markup {
    let map = serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    html! {
        table {
            @for (k, v) in &map { tr { th { (k) } td { (show(v)) } } }
        }
    }
}

/// How long the overview's database figures are shared by every viewer.
const OVERVIEW_FOR: Duration = Duration::from_secs(5);
/// Dead letters the overview counts at most.
const OVERVIEW_CAP: i64 = 10_000;

/// The overview's database figures: the last hour's records per source and kind, refusals by
/// source and code, partitions.
pub struct Figures {
    at: Instant,
    letters: Result<Vec<(String, String, i64)>, String>,
    activity: Result<Vec<crate::store::calls::Activity>, String>,
    partitions: Result<Vec<crate::store::calls::Partitions>, String>,
}

impl Figures {
    fn age(&self) -> Duration {
        self.at.elapsed()
    }
}

/// The overview's figures, computed at most once per [`OVERVIEW_FOR`] whoever asks (one
/// computation at a time: the others wait for it): an overview open in many browsers costs the
/// database one set of queries every few seconds, not one per viewer.
#[derive(Default)]
pub struct OverviewCache(tokio::sync::Mutex<Option<std::sync::Arc<Figures>>>);

impl OverviewCache {
    async fn get(&self, admin: &Admin) -> std::sync::Arc<Figures> {
        let mut slot = self.0.lock().await;
        if let Some(f) = slot.as_ref().filter(|f| f.age() < OVERVIEW_FOR) {
            return f.clone();
        }
        let since = chrono::Utc::now() - chrono::Duration::hours(1);
        let (letters, activity, partitions) = tokio::join!(
            admin.letters.counts_since(since, OVERVIEW_CAP),
            admin.calls.activity(since),
            admin.calls.partitions(),
        );
        let shown = |e: crate::store::StoreError| crate::error::error_chain(&e);
        let figures = std::sync::Arc::new(Figures {
            at: Instant::now(),
            letters: letters.map_err(shown),
            activity: activity.map_err(shown),
            partitions: partitions.map_err(shown),
        });
        *slot = Some(figures.clone());
        figures
    }
}

async fn overview(
    req: HttpRequest,
    data: AdminData,
    state: web::Data<crate::ingest::AppState>,
) -> HttpResponse {
    let (admin, csrf) = match signed_in(&req, &data) {
        Ok(signed_in) => signed_in,
        Err(answer) => return *answer,
    };
    let figures = admin.overview.get(admin).await;
    let pushes = state.metrics.pushes();
    let pushes_of = |source: &str| {
        pushes
            .iter()
            .find(|(s, _, _)| s == source)
            .map_or((0, 0), |(_, ok, no)| (*ok, *no))
    };
    let no_activity = Vec::new();
    let activity = figures.activity.as_ref().unwrap_or(&no_activity);
    page(
        "Overview",
        Some(&csrf),
        html! {
            h2 { "Sources" }
            table.sources {
                tr { th { "source" } th { "records in the last hour" } th { "last record" } th { "pushes answered 2xx / refused (this replica, since it started)" } }
                @for s in &admin.sources {
                    @let mine: Vec<_> = activity.iter().filter(|a| &a.source == s).collect();
                    @let (ok, no) = pushes_of(s);
                    tr {
                        td { code { (s) } }
                        td {
                            @if mine.is_empty() { "none" }
                            @for a in &mine { (a.kind) " " (a.records) @if a.capped { "+" } br; }
                        }
                        td { (mine.iter().map(|a| a.last_received_at).max().map_or("-".into(), time)) }
                        td { (ok) " / " (no) }
                    }
                }
            }
            h2 { "Refusals in the last hour, by source and code" }
            @match &figures.letters {
                Err(e) => p.failed { "The database did not answer: " (e) },
                Ok(by_code) if by_code.is_empty() => p { "None." },
                Ok(by_code) => {
                    table {
                        tr { th { "source" } th { "code" } th { "dead letters" } }
                        @for (source, code, n) in by_code {
                            tr { td { (source) } td { a href={"/admin/dead-letters?source=" (encoded(source)) "&code=" (encoded(code))} { (code) } } td { (n) } }
                        }
                    }
                    @if by_code.iter().map(|(_, _, n)| n).sum::<i64>() > OVERVIEW_CAP { p { "(the first " (OVERVIEW_CAP) " counted)" } }
                },
            }
            h2 { "Publisher" }
            (fields(&state.publisher.status()))
            h2 { "Spool" }
            @match &state.spool {
                Some(spool) => (fields(&spool.status())),
                None => p { "Off." },
            }
            h2 { "Partitions" }
            @match &figures.partitions {
                Err(e) => p.failed { "The database did not answer: " (e) },
                Ok(list) if list.is_empty() => p { "None (SQLite keeps unpartitioned tables; `ringback maintain` deletes by age)." },
                Ok(list) => table {
                    tr { th { "table" } th { "monthly partitions" } th { "oldest" } th { "newest" } }
                    @for t in list { tr { td { (t.table) } td { (t.months) } td { (t.oldest.as_deref().unwrap_or("-")) } td { (t.newest.as_deref().unwrap_or("-")) } } }
                },
            }
            p { "Database figures as of " (figures.age().as_secs()) " s ago (computed at most every " (OVERVIEW_FOR.as_secs()) " s, for every viewer). More: " a href="/readyz" { "/readyz" } " and " a href="/metrics" { "/metrics" } " on this listener." }
        },
    )
}

#[derive(Deserialize)]
struct CallQuery {
    id: Option<String>,
}

fn kafka(state: OnKafka) -> Markup {
    match state {
        OnKafka::Published => html! { "on Kafka" },
        OnKafka::Pending => html! { span.pending { "not on Kafka yet" } },
        OnKafka::Failed => html! { span.failed { "never on Kafka (failed)" } },
    }
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn timeline(t: &Timeline) -> Markup {
    html! {
        h2 { "Events (" (t.events.len()) ")" }
        table {
            tr { th { "occurred" } th { "event" } th { "detail" } th { "source" } th { "Kafka" } }
            @for e in &t.events {
                tr.event {
                    td { (time(e.occurred_at)) }
                    td.type { (e.event_type) }
                    td { @for (k, v) in &e.detail { code { (k) } " " (v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())) br; } }
                    td { (e.source) }
                    td { (kafka(e.kafka)) }
                }
            }
        }
        h2 { "CDR (" (t.cdrs.len()) ")" }
        @for c in &t.cdrs {
            table.cdr {
                tr { th { "numbers" } td { (c.caller_num) " → " (c.callee_num) } }
                tr { th { "answered" } td { (if c.answered { "yes" } else { "no" }) } }
                tr { th { "started / answered / ended" } td { (c.started_at.map_or("-".into(), time)) " / " (c.answered_at.map_or("-".into(), time)) " / " (c.ended_at.map_or("-".into(), time)) } }
                tr { th { "ring / talk / billable" } td { (c.ring_seconds.unwrap_or(0)) " s / " (c.talk_seconds.unwrap_or(0)) " s / " (c.billable_minutes.unwrap_or(0)) " min" } }
                @if let Some(code) = c.ul_fail_reason {
                    tr { th { "release point" } td { (code) " " (c.ul_fail_reason_meaning.as_deref().unwrap_or("")) } }
                }
                tr { th { "icid" } td { (c.icid.as_deref().unwrap_or("-")) } }
                tr { th { "Kafka" } td { (kafka(c.kafka)) } }
            }
        }
        h2 { "Dead letters (" (t.dead_letters.len()) ")" }
        table {
            tr { th { "received" } th { "code" } th { "field" } th { "request" } th { "" } }
            @for l in &t.dead_letters {
                tr.letter {
                    td { (time(l.received_at)) }
                    td { (l.code) }
                    td { (l.field.as_deref().unwrap_or("-")) }
                    td { (l.request_id.as_deref().unwrap_or("-")) }
                    td { a href={"/admin/dead-letters/" (l.id)} { "detail" } }
                }
            }
        }
    }
}

async fn calls(req: HttpRequest, data: AdminData, q: web::Query<CallQuery>) -> HttpResponse {
    let (admin, csrf) = match signed_in(&req, &data) {
        Ok(signed_in) => signed_in,
        Err(answer) => return *answer,
    };
    let id = q.id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let found = match id {
        Some(id) => Some(admin.calls.timeline(id).await),
        None => None,
    };
    page(
        "Calls",
        Some(&csrf),
        html! {
            form method="get" action="/admin/calls" {
                label { "Session id, icid, call connection, server call or correlation id " input type="search" name="id" value=(id.unwrap_or("")) size="60"; }
                " " button { "Show" }
            }
            @match &found {
                None => {},
                Some(Err(e)) => p.failed { "The database did not answer: " (crate::error::error_chain(e)) },
                Some(Ok(t)) if t.is_empty() => p { "Nothing stored names " code { (t.id) } "." },
                Some(Ok(t)) => (timeline(t)),
            }
        },
    )
}

#[derive(Deserialize)]
struct EventsQuery {
    q: Option<String>,
}

/// Records by id (a UUID), phone number (`+…`, the last week) or dedupe key / event id.
async fn events(req: HttpRequest, data: AdminData, q: web::Query<EventsQuery>) -> HttpResponse {
    let (admin, csrf) = match signed_in(&req, &data) {
        Ok(signed_in) => signed_in,
        Err(answer) => return *answer,
    };
    let q = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let what = q.map(|q| {
        if let Ok(id) = q.parse::<Uuid>() {
            crate::store::calls::Find::Id(id)
        } else if q.starts_with('+') && q[1..].bytes().all(|b| b.is_ascii_digit()) {
            let until = chrono::Utc::now();
            crate::store::calls::Find::Number {
                number: q.to_owned(),
                since: until - chrono::Duration::days(7),
                until,
            }
        } else {
            crate::store::calls::Find::Key {
                key: q.to_owned(),
                sources: admin.sources.clone(),
            }
        }
    });
    let found = match &what {
        Some(what) => Some(admin.calls.find(what).await),
        None => None,
    };
    page(
        "Events",
        Some(&csrf),
        html! {
            form method="get" action="/admin/events" {
                label { "Record id, event id or dedupe key, or phone number " input type="search" name="q" value=(q.unwrap_or("")) size="60"; }
                " " button { "Find" }
            }
            @match &found {
                None => {},
                Some(Err(e)) => p.failed { "The database did not answer: " (crate::error::error_chain(e)) },
                Some(Ok(list)) if list.is_empty() => p { "No record found." },
                Some(Ok(list)) => table {
                    tr { th { "occurred" } th { "kind" } th { "source" } th { "belongs to" } th { "Kafka" } th { "as received" } }
                    @for f in list {
                        tr.record {
                            td { (time(f.occurred_at)) }
                            td { (f.kind) }
                            td { (f.source) }
                            td {
                                @match &f.belongs_to {
                                    Some(call) if matches!(f.kind, "call-status" | "cdr" | "call-events") => a href={"/admin/calls?id=" (encoded(call))} { (call) },
                                    Some(other) => (other),
                                    None => "-",
                                }
                            }
                            td { (kafka(f.kafka)) }
                            td { pre { (serde_json::to_string_pretty(&f.raw).unwrap_or_default()) } }
                        }
                    }
                },
            }
        },
    )
}

#[derive(Deserialize)]
struct LettersQuery {
    source: Option<String>,
    code: Option<String>,
    request_id: Option<String>,
    /// `datetime-local` inputs (`2026-12-05T07:40`), read as UTC.
    since: Option<String>,
    until: Option<String>,
}

/// A `datetime-local` value (minutes or seconds) as a UTC instant.
fn utc_local(value: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    let v = value?.trim();
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(v, f).ok())
        .map(|t| t.and_utc())
}

async fn letters(req: HttpRequest, data: AdminData, q: web::Query<LettersQuery>) -> HttpResponse {
    let (admin, csrf) = match signed_in(&req, &data) {
        Ok(signed_in) => signed_in,
        Err(answer) => return *answer,
    };
    let q = q.into_inner();
    let some = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let filter = Filter {
        source: some(q.source.clone()),
        code: some(q.code.clone()),
        request_id: some(q.request_id.clone()),
        ..Filter::default()
    };
    // Letters are paged oldest first: by default the last week's.
    let until = utc_local(q.until.as_deref());
    let since = utc_local(q.since.as_deref())
        .unwrap_or_else(|| until.unwrap_or_else(chrono::Utc::now) - chrono::Duration::days(7));
    let found = admin
        .letters
        .page(
            &Filter {
                since: Some(since),
                until,
                ..filter
            },
            None,
            200,
        )
        .await;
    let local = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
    page(
        "Dead letters",
        Some(&csrf),
        html! {
            form method="get" action="/admin/dead-letters" {
                label { "source " input name="source" value=(q.source.unwrap_or_default()); }
                " " label { "code " input name="code" value=(q.code.unwrap_or_default()); }
                " " label { "request id " input name="request_id" value=(q.request_id.unwrap_or_default()); }
                " " label { "received from " input type="datetime-local" name="since" value=(local(since)); }
                " " label { "to " input type="datetime-local" name="until" value=(until.map(local).unwrap_or_default()); }
                " (UTC) " button { "Filter" }
            }
            p { "Oldest first, at most 200; without a start, the week before the end (or now)." }
            @match &found {
                Err(e) => p.failed { "The database did not answer: " (crate::error::error_chain(e)) },
                Ok(list) => table {
                    tr { th { "received" } th { "source" } th { "code" } th { "field" } th { "request" } th { "outcome" } }
                    @for l in list {
                        tr.letter {
                            td { a href={"/admin/dead-letters/" (l.id)} { (time(l.received_at)) } }
                            td { (l.source) }
                            td { (l.code) }
                            td { (l.field.as_deref().unwrap_or("-")) }
                            td { (l.request_id.as_deref().unwrap_or("-")) }
                            td { (l.reprocess_outcome.as_deref().unwrap_or("-")) }
                        }
                    }
                },
            }
        },
    )
}

async fn letter(req: HttpRequest, data: AdminData, id: web::Path<String>) -> HttpResponse {
    let (admin, csrf) = match signed_in(&req, &data) {
        Ok(signed_in) => signed_in,
        Err(answer) => return *answer,
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return not_found();
    };
    letter_page(admin, &csrf, id, None).await
}

#[derive(Deserialize)]
struct ReprocessForm {
    /// Missing is refused like wrong (403), not a 400 of the form parser.
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dry_run: Option<String>,
}

/// The letter page's reprocess and dry-run buttons: the letter is run through the current
/// parser (`dead-letters reprocess --id ID --again`), and its page shows what became of it.
async fn reprocess(
    req: HttpRequest,
    data: AdminData,
    state: web::Data<crate::ingest::AppState>,
    id: web::Path<String>,
    form: web::Form<ReprocessForm>,
) -> HttpResponse {
    let Some(admin) = on_admin(&req, &data) else {
        return not_found();
    };
    let csrf = match session(&req, admin) {
        Some((_, csrf)) if crate::auth::constant_time_eq(csrf.as_bytes(), form.csrf.as_bytes()) => {
            csrf
        }
        _ => return csrf_refused(),
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return not_found();
    };
    let dry_run = form.dry_run.is_some();
    let result = match super::reprocess_one(admin, &state, id, dry_run).await {
        Ok(a) => html! {
            div.result.ok {
                strong { (if a.dry_run { "Dry run: it would be " } else { "Reprocessed: " }) (a.outcome) }
                @if let Some(code) = &a.code { " (" (code) ": " (a.detail.as_deref().unwrap_or("")) ")" }
                @if !a.records.is_empty() {
                    br; "Records: "
                    @for r in &a.records { a href={"/admin/events?q=" (r)} { code { (r) } } " " }
                }
                @if a.dry_run { br; "Nothing was committed or recorded." }
            }
        },
        Err(e) => {
            let (_, code, message) = e.parts();
            html! { div.result.failed { "Not reprocessed (" (code) "): " (message) } }
        }
    };
    letter_page(admin, &csrf, id, Some(result)).await
}

fn csrf_refused() -> HttpResponse {
    HttpResponse::Forbidden().json(serde_json::json!({"error": {
        "code": "csrf", "message": "the form's CSRF token does not match the session"
    }}))
}

async fn letter_page(admin: &Admin, csrf: &str, id: Uuid, result: Option<Markup>) -> HttpResponse {
    let found = admin.letters.one(id).await;
    page(
        "Dead letter",
        Some(csrf),
        html! {
            @if let Some(result) = result { (result) }
            @match &found {
                Err(e) => p.failed { "The database did not answer: " (crate::error::error_chain(e)) },
                Ok(None) => p { "No dead letter " code { (id) } "." },
                Ok(Some(l)) => {
                    table {
                        tr { th { "id" } td { code { (l.id) } } }
                        tr { th { "received" } td { (time(l.received_at)) } }
                        tr { th { "source" } td { (l.source) } }
                        tr { th { "request id" } td { (l.request_id.as_deref().unwrap_or("-")) } }
                        tr { th { "scope" } td { (l.scope) @if let Some(i) = l.record_index { " (record " (i) ")" } } }
                        tr { th { "code" } td { (l.code) } }
                        tr { th { "detail" } td { (l.detail) } }
                        tr { th { "field" } td { (l.field.as_deref().unwrap_or("-")) } }
                        tr { th { "reprocessed" } td.outcome {
                            (l.reprocess_outcome.as_deref().unwrap_or("-"))
                            @if let Some(at) = l.reprocessed_at { " at " (time(at)) }
                            @if let Some(code) = &l.reprocess_code { " (" (code) ")" }
                        } }
                        @if let Some(records) = l.reprocess_records.as_ref().filter(|r| !r.is_empty()) {
                            tr { th { "became" } td { @for r in records { a href={"/admin/events?q=" (r)} { code { (r) } } " " } } }
                        }
                    }
                    @if l.body.is_some() && matches!(l.reprocess_outcome.as_deref(), None | Some("refused")) {
                        form.reprocess method="post" action={"/admin/dead-letters/" (l.id) "/reprocess"} {
                            input type="hidden" name="csrf" value=(csrf);
                            button name="dry_run" value="1" { "Dry run" }
                            " "
                            button.reprocess { "Reprocess" }
                        }
                    }
                    h2 { "Headers (secrets redacted)" }
                    pre { (serde_json::to_string_pretty(&l.headers).unwrap_or_default()) }
                    h2 { "Body" }
                    pre.body { (pretty_body(l.body.as_deref())) }
                },
            }
        },
    )
}

/// The body as pretty JSON when it is JSON, else as text.
fn pretty_body(body: Option<&[u8]>) -> String {
    let Some(body) = body else {
        return "(not kept)".into();
    };
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// The console's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/", web::get().to(overview))
        .route("/admin/login", web::post().to(login))
        .route("/admin/logout", web::post().to(logout))
        .route("/admin/calls", web::get().to(calls))
        .route("/admin/events", web::get().to(events))
        .route("/admin/dead-letters", web::get().to(letters))
        .route("/admin/dead-letters/{id}", web::get().to(letter))
        .route(
            "/admin/dead-letters/{id}/reprocess",
            web::post().to(reprocess),
        );
}
