//! The admin API: `/admin/api/…`, read-only JSON about calls, records and dead letters for
//! operators and support tools, the same answers `ringback calls show`, `events find` and
//! `dead-letters list|show` give. Served only on the admin listener (`http.admin_addr`) and only
//! with a token (`http.admin_token_env` / `_file`) sent as `Authorization: Bearer …`. Its
//! queries run on a pool of their own (two read-only connections, each statement bounded:
//! [`crate::store::connect_admin`]), are capped and paginated, so operators cannot hold the
//! ingest path's connections or slow its database for long.
//!
//! | route | answers |
//! |---|---|
//! | `GET /admin/api/calls/{id}` | the call's timeline (`calls show`) |
//! | `GET /admin/api/events?id=…\|key=…\|number=…[&since=…&until=…]` | records (`events find`) |
//! | `GET /admin/api/dead-letters?source=&code=&request_id=&since=&until=&after=&limit=` | a page of letters, oldest first, with the cursor of the next |
//! | `GET /admin/api/dead-letters/{id}` | one letter whole: body, headers, outcome |
//! | `POST /admin/api/dead-letters/{id}/reprocess[?dry_run=true]` | the letter run again through its source's current parser (`dead-letters reprocess --id`), its records committed, the outcome recorded |
//!
//! Errors: `{"error": {"code", "message"}}` with 400 `invalid_query`, 401 `unauthorized`,
//! 404 `not_found`, 405 `method_not_allowed` (with `Allow`), 409 `not_reprocessable` (the
//! letter has an outcome other than `refused`, kept no body, or another reprocessor holds it),
//! 429 `too_many_attempts` (with `Retry-After`: [`Attempts`]), 503 `store_unavailable`.
//!
//! Reprocessing is the one write. It needs no CSRF token here: a browser never attaches an
//! `Authorization` header by itself; the console's form, which rides on a cookie, does.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use uuid::Uuid;

pub mod console;

use crate::auth::Secret;
use crate::store::calls::{Calls, Find};
use crate::store::dead_letters::{DeadLetters, Filter};

/// Letters one page holds at most.
const MAX_PAGE: u32 = 500;

/// What the admin API serves from; `None` in the app data when it is off.
pub struct Admin {
    pub calls: Calls,
    pub letters: DeadLetters,
    pub token: Secret,
    /// The admin listener's port: the API answers nowhere else.
    pub port: u16,
    /// The configured sources, for lookups by dedupe key.
    pub sources: Vec<String>,
    /// The console's open sessions.
    pub sessions: console::Sessions,
    /// Wrong tokens per address.
    pub attempts: Attempts,
    /// The overview's database figures, shared for a few seconds.
    pub overview: console::OverviewCache,
}

/// Wrong admin tokens (API or console login) per peer address: after [`Attempts::MOST`] in a
/// minute, that address is answered 429 `too_many_attempts` until the minute ends, right token
/// or not. The token has at least 16 bytes, so guessing is hopeless anyway; this keeps a
/// guesser from costing a MAC per try and makes one visible in the access log. Other addresses
/// are not held up (an operator is not locked out by someone else's guessing), and the table is
/// bounded: when full, windows that ended are dropped, then the oldest.
#[derive(Default)]
pub struct Attempts(
    std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
);

impl Attempts {
    pub const MOST: u32 = 10;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
    const ADDRESSES: usize = 4096;

    /// Seconds until `ip` may try again, when it has used up its attempts.
    fn blocked(&self, ip: Option<std::net::IpAddr>) -> Option<u64> {
        let ip = ip?;
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (start, n) = map.get(&ip)?;
        let left = Self::WINDOW.checked_sub(start.elapsed())?;
        (*n >= Self::MOST).then(|| left.as_secs().max(1))
    }

    fn failed(&self, ip: Option<std::net::IpAddr>) {
        let Some(ip) = ip else { return };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| start.elapsed() < Self::WINDOW);
            if map.len() >= Self::ADDRESSES {
                if let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(ip).or_insert((std::time::Instant::now(), 0));
        if entry.0.elapsed() >= Self::WINDOW {
            *entry = (std::time::Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// The admin API's state in the app data (one per process, shared by the workers).
pub type AdminData = web::Data<Option<Admin>>;

/// Why an admin request was refused.
#[derive(Debug)]
enum AdminError {
    Unauthorized,
    NotFound(String),
    Invalid(String),
    Conflict(String),
    TooManyAttempts(u64),
    Store(String),
}

impl AdminError {
    fn respond(self) -> HttpResponse {
        let retry_after = match self {
            Self::TooManyAttempts(secs) => Some(secs),
            _ => None,
        };
        let (status, code, message) = self.parts();
        let mut res = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Some(secs) = retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({"error": {"code": code, "message": message}}))
    }

    /// Its status, code and message.
    fn parts(self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as Authorization: Bearer …".to_owned(),
            ),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid_query", m),
            Self::Conflict(m) => (StatusCode::CONFLICT, "not_reprocessable", m),
            Self::TooManyAttempts(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many wrong tokens from this address; try again in {secs} s"),
            ),
            Self::Store(m) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m),
        }
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(crate::error::error_chain(&e))
    }
}

/// The admin API of this request: on the admin listener, with the token. Anywhere else it does
/// not exist (404), so the hooks listener reveals nothing of it.
fn admitted<'a>(req: &HttpRequest, data: &'a AdminData) -> Result<&'a Admin, AdminError> {
    let not_here = || AdminError::NotFound("no such route".into());
    let admin = data.get_ref().as_ref().ok_or_else(not_here)?;
    if req.app_config().local_addr().port() != admin.port {
        return Err(not_here());
    }
    let ip = req.peer_addr().map(|a| a.ip());
    if let Some(secs) = admin.attempts.blocked(ip) {
        return Err(AdminError::TooManyAttempts(secs));
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AdminError::Unauthorized)?;
    if !admin.token.matches(token.trim().as_bytes()) {
        admin.attempts.failed(ip);
        return Err(AdminError::Unauthorized);
    }
    Ok(admin)
}

fn json(value: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(value)
}

async fn call(req: HttpRequest, data: AdminData, id: web::Path<String>) -> HttpResponse {
    let run = async {
        let admin = admitted(&req, &data)?;
        let timeline = admin.calls.timeline(&id).await?;
        if timeline.is_empty() {
            return Err(AdminError::NotFound(format!("nothing stored names {id}")));
        }
        Ok(json(&timeline))
    };
    run.await.unwrap_or_else(AdminError::respond)
}

#[derive(Deserialize)]
struct EventsQuery {
    id: Option<Uuid>,
    key: Option<String>,
    number: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

/// A query string that did not parse is a 400 `invalid_query` in the API's error format.
type Query<T> = Result<web::Query<T>, actix_web::Error>;

fn parsed<T>(query: Query<T>) -> Result<T, AdminError> {
    query
        .map(web::Query::into_inner)
        .map_err(|e| AdminError::Invalid(e.to_string()))
}

async fn events(req: HttpRequest, data: AdminData, query: Query<EventsQuery>) -> HttpResponse {
    let run = async {
        let admin = admitted(&req, &data)?;
        let q = parsed(query)?;
        let what = match (q.id, q.key, q.number) {
            (Some(id), None, None) => Find::Id(id),
            (None, Some(key), None) => Find::Key {
                key,
                sources: admin.sources.clone(),
            },
            (None, None, Some(number)) => {
                let until = q.until.unwrap_or_else(Utc::now);
                Find::Number {
                    number,
                    since: q.since.unwrap_or(until - Duration::days(7)),
                    until,
                }
            }
            _ => {
                return Err(AdminError::Invalid(
                    "give exactly one of id, key, number".into(),
                ))
            }
        };
        let found = admin.calls.find(&what).await?;
        Ok(json(&serde_json::json!({ "records": found })))
    };
    run.await.unwrap_or_else(AdminError::respond)
}

#[derive(Deserialize)]
struct LettersQuery {
    source: Option<String>,
    code: Option<String>,
    request_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// The cursor the previous page gave: `<received_at>,<id>`.
    after: Option<String>,
    limit: Option<u32>,
}

fn cursor(after: &str) -> Result<(DateTime<Utc>, Uuid), AdminError> {
    let bad = || AdminError::Invalid("after: expected the cursor a page gave".into());
    let (at, id) = after.split_once(',').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

async fn letters(req: HttpRequest, data: AdminData, query: Query<LettersQuery>) -> HttpResponse {
    let run = async {
        let admin = admitted(&req, &data)?;
        let q = parsed(query)?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AdminError::Invalid(format!("limit: 1 to {MAX_PAGE}")));
        }
        let after = q.after.as_deref().map(cursor).transpose()?;
        let filter = Filter {
            source: q.source,
            code: q.code,
            request_id: q.request_id,
            since: q.since,
            until: q.until,
            ..Filter::default()
        };
        let page = admin.letters.page(&filter, after, limit).await?;
        let next = (page.len() as u32 == limit)
            .then(|| page.last())
            .flatten()
            .map(|l| {
                format!(
                    "{},{}",
                    l.received_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    l.id
                )
            });
        Ok(json(
            &serde_json::json!({ "dead_letters": page, "next": next }),
        ))
    };
    run.await.unwrap_or_else(AdminError::respond)
}

async fn letter(req: HttpRequest, data: AdminData, id: web::Path<String>) -> HttpResponse {
    let run = async {
        let admin = admitted(&req, &data)?;
        let id: Uuid = id
            .parse()
            .map_err(|_| AdminError::NotFound(format!("no dead letter {id}: not an id")))?;
        let letter = admin
            .letters
            .one(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no dead letter {id}")))?;
        let mut value =
            serde_json::to_value(&letter).map_err(|e| AdminError::Store(e.to_string()))?;
        value["body"] = match &letter.body {
            None => serde_json::Value::Null,
            Some(b) => String::from_utf8_lossy(b).into_owned().into(),
        };
        Ok(json(&value))
    };
    run.await.unwrap_or_else(AdminError::respond)
}

/// What reprocessing one letter from the API or the console made of it.
#[derive(Debug, serde::Serialize)]
pub struct ReprocessAnswer {
    pub id: Uuid,
    /// Nothing was committed or recorded.
    pub dry_run: bool,
    /// `committed`, `duplicate`, `partial` or `refused` (a dry run's records all count as new).
    pub outcome: &'static str,
    /// Why it is still (partly) refused.
    pub code: Option<String>,
    pub detail: Option<String>,
    /// The ids of the records it became.
    pub records: Vec<Uuid>,
}

/// Reprocesses dead letter `id` as `dead-letters reprocess --id ID --again` would, through
/// this process's batch path (dedupe, outbox, the spool when the database is away). A letter
/// already reprocessed is taken again only while it is still `refused`.
async fn reprocess_one(
    admin: &Admin,
    state: &crate::ingest::AppState,
    id: Uuid,
    dry_run: bool,
) -> Result<ReprocessAnswer, AdminError> {
    use crate::ingest::reprocess::{claimant, Reprocess};
    let letters = state
        .store
        .dead_letters()
        .ok_or_else(|| AdminError::NotFound("this store keeps no dead letters".into()))?;
    let letter = admin
        .letters
        .one(id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no dead letter {id}")))?;
    let filter = Filter {
        ids: vec![id],
        ..Filter::default()
    };
    let run = Reprocess {
        letters: &letters,
        sources: &state.sources,
        batcher: (!dry_run).then_some(&state.batcher),
        claimant: claimant("admin:"),
        lease: std::time::Duration::from_secs(300),
        again: true,
    };
    let mut finished = None;
    let report = run
        .run(&filter, |_, f| finished = Some(f.clone()))
        .await
        .map_err(|e| AdminError::Store(format!("{e:#}")))?;
    let Some(f) = finished else {
        let why = if report.unknown_source > 0 {
            format!("its source {:?} is no longer configured", letter.source)
        } else if report.held_elsewhere > 0 {
            "another reprocessor holds it; try again in a moment".to_owned()
        } else if letter.body.is_none() {
            "its body was not kept (an authentication failure, or too large or slow to read)"
                .to_owned()
        } else {
            format!(
                "it was reprocessed already: {}",
                letter.reprocess_outcome.as_deref().unwrap_or("?")
            )
        };
        return Err(AdminError::Conflict(format!("dead letter {id}: {why}")));
    };
    Ok(ReprocessAnswer {
        id,
        dry_run,
        outcome: f.outcome.as_str(),
        code: f.code,
        detail: f.detail,
        records: f.records,
    })
}

#[derive(Deserialize)]
struct ReprocessQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn reprocess(
    req: HttpRequest,
    data: AdminData,
    state: web::Data<crate::ingest::AppState>,
    id: web::Path<String>,
    query: Query<ReprocessQuery>,
) -> HttpResponse {
    let run = async {
        let admin = admitted(&req, &data)?;
        let dry_run = parsed(query)?.dry_run;
        let id: Uuid = id
            .parse()
            .map_err(|_| AdminError::NotFound(format!("no dead letter {id}: not an id")))?;
        let answer = reprocess_one(admin, &state, id, dry_run).await?;
        Ok(json(&answer))
    };
    run.await.unwrap_or_else(AdminError::respond)
}

/// The admin API's routes (they answer 404 unless the API is on and the request came in on
/// the admin listener).
pub fn routes(cfg: &mut web::ServiceConfig) {
    console::routes(cfg);
    // Any other method: 405 with `Allow`, in the API's error format.
    fn only(allow: &'static str) -> actix_web::Route {
        web::to(move || async move {
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, allow))
                .json(serde_json::json!({"error": {
                    "code": "method_not_allowed",
                    "message": format!("this resource answers {allow}")
                }}))
        })
    }
    let get_only = || only("GET");
    cfg.service(
        web::scope("/admin/api")
            .service(
                web::resource("/calls/{id}")
                    .route(web::get().to(call))
                    .default_service(get_only()),
            )
            .service(
                web::resource("/events")
                    .route(web::get().to(events))
                    .default_service(get_only()),
            )
            .service(
                web::resource("/dead-letters")
                    .route(web::get().to(letters))
                    .default_service(get_only()),
            )
            .service(
                web::resource("/dead-letters/{id}")
                    .route(web::get().to(letter))
                    .default_service(get_only()),
            )
            .service(
                web::resource("/dead-letters/{id}/reprocess")
                    .route(web::post().to(reprocess))
                    .default_service(only("POST")),
            ),
    );
}
