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
//!
//! Errors: `{"error": {"code", "message"}}` with 400 `invalid_query`, 401 `unauthorized`,
//! 404 `not_found`, 405 `method_not_allowed` (with `Allow: GET`), 503 `store_unavailable`.

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
}

/// The admin API's state in the app data (one per process, shared by the workers).
pub type AdminData = web::Data<Option<Admin>>;

/// Why an admin request was refused.
#[derive(Debug)]
enum AdminError {
    Unauthorized,
    NotFound(String),
    Invalid(String),
    Store(String),
}

impl AdminError {
    fn respond(self) -> HttpResponse {
        let (status, code, message) = match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as Authorization: Bearer …".to_owned(),
            ),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid_query", m),
            Self::Store(m) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m),
        };
        let mut res = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({"error": {"code": code, "message": message}}))
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
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AdminError::Unauthorized)?;
    if !admin.token.matches(token.trim().as_bytes()) {
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
        let filter = Filter {
            ids: vec![id],
            ..Filter::default()
        };
        let letter = admin
            .letters
            .page(&filter, None, 1)
            .await?
            .pop()
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

/// The admin API's routes (they answer 404 unless the API is on and the request came in on
/// the admin listener).
pub fn routes(cfg: &mut web::ServiceConfig) {
    console::routes(cfg);
    // Any other method: 405 with `Allow`, in the API's error format.
    fn get_only() -> actix_web::Route {
        web::to(|| async {
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "GET"))
                .json(serde_json::json!({"error": {
                    "code": "method_not_allowed",
                    "message": "the admin API answers GET"
                }}))
        })
    }
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
            ),
    );
}
