//! `ringback check-config --connect`: one database connection and one metadata request to the
//! brokers, each failure named by the step that failed (DNS, TCP, TLS, authentication, a
//! missing database or topic), so an operator fixes the right thing first.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use crate::config::Config;
use crate::publish::topics;

/// How long each step may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of the report: what was checked, and what came of it.
#[derive(Debug)]
pub struct Finding {
    pub what: &'static str,
    pub result: Result<String, String>,
}

/// Runs every check; the caller prints the findings and fails if any failed.
pub async fn connect(config: &Config) -> Vec<Finding> {
    let mut findings = vec![Finding {
        what: "database",
        result: database(&config.database.url).await,
    }];
    let Some(brokers) = config.kafka.brokers.real().map(str::to_owned) else {
        let brokers = String::from(config.kafka.brokers.clone());
        findings.push(Finding {
            what: "kafka",
            result: Ok(format!("not checked (kafka.brokers = {brokers:?})")),
        });
        return findings;
    };
    let kafka = config.kafka.clone();
    let result =
        tokio::task::spawn_blocking(move || topics::check(&brokers, &kafka, CONNECT_TIMEOUT)).await;
    let result = match result {
        Ok(Ok(check)) if check.missing.is_empty() => Ok(format!(
            "{} broker(s); topics {}",
            check.brokers,
            check
                .present
                .iter()
                .map(|(t, p)| format!("{t} ({p} partitions)"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(Ok(check)) => Err(format!(
            "missing topic(s): {} (create them with `ringback topics create`)",
            check.missing.join(", ")
        )),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(e) => Err(format!("the check panicked: {e}")),
    };
    findings.push(Finding {
        what: "kafka",
        result,
    });
    findings
}

/// Opens one connection to the database and says what it is, or which step failed.
pub async fn database(url: &str) -> Result<String, String> {
    if url.starts_with("sqlite:") {
        return sqlite(url).await;
    }
    let options = PgConnectOptions::from_str(url).map_err(|e| format!("configuration: {e}"))?;
    let mut conn =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Err(_) => {
                return Err(format!(
                    "TCP: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(explain(&e)),
            Ok(Ok(conn)) => conn,
        };
    let row: (String, String, Option<bool>) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_user::text, \
         (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| explain(&e))?;
    let _ = conn.close().await;
    let (version, user, ssl) = row;
    Ok(format!(
        "PostgreSQL {version} as {user}, {}",
        if ssl == Some(true) { "TLS" } else { "no TLS" }
    ))
}

async fn sqlite(url: &str) -> Result<String, String> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    let options = SqliteConnectOptions::from_str(url).map_err(|e| format!("configuration: {e}"))?;
    let conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| format!("opening {url}: {e}"))?;
    let _ = conn.close().await;
    Ok("SQLite file opens".to_owned())
}

/// The step a connection failed at, and the driver's words.
pub fn explain(e: &sqlx::Error) -> String {
    match e {
        // rustls' verdicts reach sqlx as I/O errors of the handshake.
        sqlx::Error::Io(io) if tls_words(&io.to_string()) => tls(&io.to_string()),
        sqlx::Error::Io(io) => {
            let text = io.to_string();
            let lower = text.to_ascii_lowercase();
            if lower.contains("lookup") || lower.contains("resolve") || lower.contains("not known")
            {
                format!("DNS: {text}")
            } else {
                format!("TCP: {text}")
            }
        }
        sqlx::Error::Tls(e) => tls(&e.to_string()),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => format!("authentication: {}", db.message()),
            _ => format!("database: {}", db.message()),
        },
        sqlx::Error::Configuration(c) => format!("configuration: {c}"),
        other => format!("{other}"),
    }
}

fn tls_words(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["certificate", "tls", "ssl", "handshake"]
        .iter()
        .any(|w| lower.contains(w))
}

fn tls(text: &str) -> String {
    // OpenSSL's words (sqlx's native-tls), and rustls' should the stack change.
    let hint = if text.contains("unable to get local issuer") || text.contains("UnknownIssuer") {
        " (the server's certificate is not signed by a CA of sslrootcert)"
    } else if text.contains("mismatch") || text.contains("not valid for name") {
        " (the server's certificate does not name this host: verify-full checks it)"
    } else {
        ""
    };
    format!("TLS: {text}{hint}")
}
