//! Test support shared by the integration test binaries: a fresh database per test
//! (PostgreSQL or SQLite) and the real application started on port 0.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::Utc;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod disk;
pub mod kafka;
pub mod lazyfs;
pub mod pg_cluster;
pub mod proxy;
pub mod server;
pub mod tls;

use ringback::auth::aksk::{self, DigestVariant};
use ringback::config::{Config, DatabaseConfig};
use ringback::startup::Application;
use ringback::store::{self, Store};

/// The PostgreSQL server tests create their databases on. Configured and unreachable means the
/// test fails: nothing passes by skipping.
pub fn pg_admin_url() -> String {
    std::env::var("RINGBACK_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database of its own for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub pool: AnyPool,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
    /// The spool directory of the app stopped on this database (`stop_keep_db`): the next
    /// `start_app` on it takes it, so the restart is the same replica (same spool, same
    /// identity on the outbox), as a real restart is.
    spool_dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        sqlx::any::install_default_drivers();
        let (url, pg_name, dir) = match backend {
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("ringback_t_{}", Uuid::new_v4().simple());
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is unreachable: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .expect("CREATE DATABASE");
                pool.close().await;
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&name);
                (url.to_string(), Some(name), None)
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/ringback.db?mode=rwc", dir.path().display());
                (url, None, Some(dir))
            }
        };
        // Creates the file (SQLite) and the schema.
        let store = store::connect(&DatabaseConfig {
            url: url.clone(),
            ..DatabaseConfig::default()
        })
        .await
        .expect("connecting the test store");
        store.migrate().await.expect("migrations");
        store.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("test pool");
        Self {
            backend,
            url,
            pool,
            pg_name,
            _dir: dir,
            spool_dir: None,
        }
    }

    /// The same database for a second app (another replica): dropping it drops nothing.
    pub fn shared(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            pool: self.pool.clone(),
            pg_name: None,
            _dir: None,
            spool_dir: None,
        }
    }

    pub fn database_config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            max_connections: 4,
            ..DatabaseConfig::default()
        }
    }

    /// A store of the test's database (the real implementation).
    pub async fn store(&self) -> Arc<dyn Store> {
        store::connect(&self.database_config()).await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar_i64(&format!("SELECT COUNT(*) FROM {table}"))
            .await
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn rows(&self, sql: &str) -> Vec<AnyRow> {
        sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement (test setup such as failure-injecting triggers).
    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn drop_db(self) {
        self.pool.close().await;
        if let Some(name) = self.pg_name {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&pg_admin_url())
                .await
                .unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&pool)
                .await;
        }
    }
}

pub const APP_KEY: &str = "ka4kESI5s3YyurL1wpx63s9YnEm2";
pub const APP_SECRET: &str = "test-app-secret-16";
pub const PUBLIC_URL: &str = "https://callbacks.example.com/hooks/hw";

/// The running application.
pub struct TestApp {
    pub address: String,
    /// The admin listener (`http.admin_addr`), when the test set one.
    pub admin_address: Option<String>,
    pub db: TestDb,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    /// The publisher's state, and its fault injection.
    pub publisher: ringback::publish::PublisherHandle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _secret: tempfile::NamedTempFile,
    /// Where the app's spool is (`spool/spool.db`): each app has its own.
    pub spool_dir: tempfile::TempDir,
}

/// Settings every test app gets: a signed source `hw` (AKSK, secret in a file) and an open
/// source `open`.
pub fn base_config(db: &TestDb, secret_path: &std::path::Path) -> Config {
    if std::env::var_os("TEST_LOG").is_some() {
        ringback::telemetry::init(&Default::default());
    }
    let mut config = Config::from_toml(&format!(
        r#"
        [http]
        addr = "127.0.0.1:0"
        workers = 2
        shutdown_timeout = "5s"

        [kafka]
        brokers = ""

        [sources.hw]
        kind = "huawei-voicecall"
        auth = "aksk"
        app_key = "{APP_KEY}"
        app_secret_file = "{}"
        public_url = "{PUBLIC_URL}"

        [sources.open]
        kind = "huawei-voicecall"
        auth = "none"
        "#,
        secret_path.display()
    ))
    .unwrap();
    config.database = db.database_config();
    config
}

/// Wraps the test database's real store in one of the test's own.
pub type WrapStore = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store>>;

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}, None).await
}

/// Starts the app with `tweak` applied to its config, and optionally a store of the test's
/// own wrapping (to inject failures and delays).
pub async fn spawn_app_with(
    backend: Backend,
    tweak: impl FnOnce(&mut Config),
    store: Option<WrapStore>,
) -> TestApp {
    start_app(TestDb::new(backend).await, tweak, store).await
}

/// Starts the app on an existing test database (to restart it on the same data).
pub async fn start_app(
    db: TestDb,
    tweak: impl FnOnce(&mut Config),
    store: Option<WrapStore>,
) -> TestApp {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{APP_SECRET}\n")).unwrap();
    let mut config = base_config(&db, secret.path());
    let mut db = db;
    let spool_dir = db
        .spool_dir
        .take()
        .unwrap_or_else(|| tempfile::tempdir().unwrap());
    config.spool.path = spool_dir.path().join("spool.db");
    tweak(&mut config);
    let app = match store {
        None => Application::build(config).await.expect("build"),
        Some(wrap) => {
            let inner = db.store().await;
            Application::build_with_store(config, wrap(inner))
                .await
                .expect("build")
        }
    };
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin_address = app.admin_port().map(|p| format!("http://127.0.0.1:{p}"));
    let publisher = app.publisher();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        admin_address,
        db,
        client: reqwest::Client::new(),
        shutdown,
        publisher,
        task,
        _secret: secret,
        spool_dir,
    }
}

/// A fresh, valid X-AKSK header for `url`.
pub fn x_aksk(url: &str) -> String {
    x_aksk_at(
        url,
        &Uuid::new_v4().simple().to_string(),
        Utc::now(),
        APP_SECRET,
    )
}

pub fn x_aksk_at(url: &str, nonce: &str, created: chrono::DateTime<Utc>, secret: &str) -> String {
    aksk::header_value(
        APP_KEY,
        secret.as_bytes(),
        url,
        nonce,
        &created.format(aksk::CREATED_FORMAT).to_string(),
        DigestVariant::Newline,
    )
}

impl TestApp {
    /// Posts `body` to source `hw`, signed as Huawei signs.
    pub async fn post_signed(&self, body: impl Into<String>) -> reqwest::Response {
        self.post_with("hw", body, &[("x-aksk", x_aksk(PUBLIC_URL))])
            .await
    }

    /// Posts `body` to `/hooks/<source>` as JSON, with extra headers.
    pub async fn post_with(
        &self,
        source: &str,
        body: impl Into<String>,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/hooks/{source}", self.address))
            .header("content-type", "application/json;charset=UTF-8")
            .header(
                "authorization",
                r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#,
            )
            .body(body.into());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("request")
    }

    /// The value of an unlabelled metric (or the first series of a labelled one) in `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                // A bare name matches its first series; `name{labels}` that series exactly.
                let series = l.rsplit_once(' ').map_or(*l, |(s, _)| s);
                series == name || (!name.contains('{') && series.split('{').next() == Some(name))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// `GET /readyz` until its status word is `want` (or 10 s pass): it answers from the
    /// background health check (every second), so it follows the database within seconds.
    /// Returns the last answer, status code and body.
    pub async fn readyz_until(&self, want: &str) -> (u16, serde_json::Value) {
        let mut last = (0, serde_json::Value::Null);
        for _ in 0..100 {
            let res = self
                .client
                .get(format!("{}/readyz", self.address))
                .send()
                .await
                .expect("readyz");
            last = (res.status().as_u16(), res.json().await.unwrap_or_default());
            if last.1["status"] == want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        last
    }

    /// Stops the app gracefully and removes its database.
    pub async fn stop(self) {
        self.stop_keep_db().await.drop_db().await;
    }

    /// Stops the app gracefully and hands back its database.
    pub async fn stop_keep_db(self) -> TestDb {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        let mut db = self.db;
        db.spool_dir = Some(self.spool_dir);
        db
    }
}

/// `host:port` of a database URL.
pub fn pg_host_port(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}

/// Reads a fixture from `tests/fixtures/`.
pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Declares `async fn $name(backend: Backend)` tests once, run against both stores.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
    };
}

/// Parsed records as the rows of a submission (what `Store::commit` and the batcher take).
pub fn rows(records: &[ringback::domain::Record]) -> Vec<ringback::domain::Row> {
    ringback::domain::Row::records(records.iter().cloned())
}
