//! TLS to the database and to the brokers, against real servers: a PostgreSQL of the test's own
//! with SSL on, and Tansu with a TLS listener, both with certificates made by openssl here.

#[path = "common/mod.rs"]
mod common;

use common::tls::{Certs, TlsPostgres};
use ringback::config::DatabaseConfig;
use ringback::startup::check;

fn pg_url(port: u16, host: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{port}/postgres?{query}")
}

/// `pg_url` with `sslmode` and `sslrootcert`.
fn pg_tls_url(port: u16, host: &str, mode: &str, ca: &std::path::Path) -> String {
    pg_url(
        port,
        host,
        &format!("sslmode={mode}&sslrootcert={}", ca.display()),
    )
}

/// `sslmode=verify-full` with the right CA connects over TLS (the server says so), migrates
/// and commits; with a CA that did not sign the server's certificate, or a host name the
/// certificate does not carry, it fails and says why.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_verify_full_needs_the_right_ca_and_name() {
    let certs = Certs::new();
    let pg = TlsPostgres::start(&certs);
    let ca = certs.path("ca.pem");
    let good = pg_tls_url(pg.port, "localhost", "verify-full", &ca);
    let said = check::database(&good)
        .await
        .expect("verify-full with the right CA");
    assert!(said.ends_with(", TLS"), "{said}");

    // The whole store over it: migrations and a commit.
    let store = ringback::store::connect(&DatabaseConfig {
        url: good.clone(),
        ..DatabaseConfig::default()
    })
    .await
    .expect("store over TLS");
    store.migrate().await.expect("migrations over TLS");
    store.ping().await.unwrap();
    store.close().await;

    let wrong = pg_tls_url(
        pg.port,
        "localhost",
        "verify-full",
        &certs.path("wrong-ca.pem"),
    );
    let err = check::database(&wrong).await.unwrap_err();
    assert!(err.starts_with("TLS: "), "{err}");
    assert!(err.contains("not signed by a CA of sslrootcert"), "{err}");

    // The certificate names localhost, not 127.0.0.1: verify-full checks the name.
    let other_name = pg_tls_url(pg.port, "127.0.0.1", "verify-full", &ca);
    let err = check::database(&other_name).await.unwrap_err();
    assert!(
        err.starts_with("TLS: ") && err.contains("does not name this host"),
        "{err}"
    );

    // verify-ca checks the CA only; require encrypts without checking.
    let verify_ca = pg_tls_url(pg.port, "127.0.0.1", "verify-ca", &ca);
    assert!(check::database(&verify_ca)
        .await
        .unwrap()
        .ends_with(", TLS"));
    let require = pg_url(pg.port, "127.0.0.1", "sslmode=require");
    assert!(check::database(&require).await.unwrap().ends_with(", TLS"));
    let disable = pg_url(pg.port, "127.0.0.1", "sslmode=disable");
    assert!(check::database(&disable)
        .await
        .unwrap()
        .ends_with(", no TLS"));
}

/// `ringback check-config --connect` and `serve` name the failing step for an operator.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_names_the_failing_step() {
    let certs = Certs::new();
    let pg = TlsPostgres::start(&certs);
    let run = |url: String, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ringback"))
            .args(args)
            .env("RINGBACK__DATABASE__URL", url)
            .env("RINGBACK__KAFKA__BROKERS", "")
            .env("RINGBACK__HTTP__ADDR", "127.0.0.1:0")
            .env("RINGBACK_CONFIG", "/dev/null")
            .output()
            .unwrap()
    };
    let wrong = pg_tls_url(
        pg.port,
        "localhost",
        "verify-full",
        &certs.path("wrong-ca.pem"),
    );
    let out = run(wrong.clone(), &["check-config", "--connect"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("database      FAILED: TLS: "), "{stdout}");

    let out = run(wrong, &["serve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("connecting to the database: TLS: ") && stderr.contains("sslrootcert"),
        "{stderr}"
    );

    let good = pg_tls_url(pg.port, "localhost", "verify-full", &certs.path("ca.pem"));
    let out = run(good, &["check-config", "--connect"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("database      ok: PostgreSQL"), "{stdout}");
    assert!(stdout.contains(", TLS"), "{stdout}");

    let refused = "postgres://postgres@127.0.0.1:1/postgres".to_owned();
    let out = run(refused, &["check-config", "--connect"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED: TCP: "), "{stdout}");
    let unknown = "postgres://postgres@no-such-host.invalid:5432/postgres".to_owned();
    let out = run(unknown, &["check-config", "--connect"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED: DNS: "), "{stdout}");
}

mod kafka {
    use std::time::Duration;

    use ringback::config::KafkaConfig;
    use ringback::publish::topics;

    use crate::common::kafka::consume_with;
    use crate::common::tls::{Certs, TlsTansu};
    use crate::common::{fixture, start_app, Backend, TestDb};

    const TIMEOUT: Duration = Duration::from_secs(20);

    fn kafka_config(bootstrap: &str, client: &[(&str, String)]) -> KafkaConfig {
        let mut kafka = KafkaConfig {
            brokers: bootstrap.into(),
            ..KafkaConfig::default()
        };
        kafka.new_topics.partitions = 2;
        kafka.new_topics.replication_factor = 1;
        kafka.new_topics.retention = Some(Duration::from_secs(7 * 86_400));
        for (k, v) in client {
            kafka.client.insert(k.to_string(), v.clone());
        }
        kafka
    }

    async fn check(kafka: &KafkaConfig) -> anyhow::Result<topics::BrokerCheck> {
        check_within(kafka, TIMEOUT).await
    }

    async fn check_within(
        kafka: &KafkaConfig,
        timeout: Duration,
    ) -> anyhow::Result<topics::BrokerCheck> {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || {
            topics::check(kafka.brokers.real().unwrap(), &kafka, timeout)
        })
        .await
        .unwrap()
    }

    /// Publishes one signed fee push through an app using `kafka`, and reads it back with a
    /// consumer speaking `settings`.
    async fn publishes_through(kafka: &KafkaConfig, settings: &[(&str, String)]) {
        let app = start_app(
            TestDb::new(Backend::Postgres).await,
            |c| c.kafka = kafka.clone(),
            None,
        )
        .await;
        assert_eq!(
            app.post_signed(fixture("huawei/fee.json")).await.status(),
            200
        );
        let got = consume_with(
            kafka.brokers.real().unwrap(),
            settings,
            "ringback.cdr",
            TIMEOUT,
            |ids| !ids.is_empty(),
        )
        .await;
        assert_eq!(got.len(), 1, "the CDR reached Kafka over TLS");
        assert_eq!(got[0].headers["ce_type"], "io.ringback.cdr.v1");
        app.stop().await;
    }

    /// Kafka over TLS to a real broker: topics created (then found existing), a record
    /// published and consumed, all through TLS; a wrong CA is refused and named as TLS.
    #[tokio::test(flavor = "multi_thread")]
    async fn tls_to_a_real_broker_and_a_wrong_ca_refused() {
        let certs = Certs::for_names("DNS:localhost,IP:127.0.0.1");
        let broker = TlsTansu::start(&certs, false);
        let ssl = [
            ("security.protocol", "SSL".to_owned()),
            (
                "ssl.ca.location",
                certs.path("ca.pem").display().to_string(),
            ),
        ];
        let kafka = kafka_config(&broker.bootstrap, &ssl);
        let created = topics::create(&broker.bootstrap, &kafka, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(created.len(), 6);
        assert!(
            created.iter().all(|t| t.outcome == "created"),
            "{created:?}"
        );
        let again = topics::create(&broker.bootstrap, &kafka, TIMEOUT)
            .await
            .unwrap();
        assert!(again.iter().all(|t| t.outcome == "exists"), "{again:?}");
        let found = check(&kafka).await.unwrap();
        assert!(found.missing.is_empty());
        assert!(found.present.iter().all(|(_, partitions)| *partitions == 2));

        publishes_through(&kafka, &ssl).await;

        let wrong = kafka_config(
            &broker.bootstrap,
            &[
                ("security.protocol", "SSL".to_owned()),
                (
                    "ssl.ca.location",
                    certs.path("wrong-ca.pem").display().to_string(),
                ),
            ],
        );
        let err = format!("{:#}", check(&wrong).await.unwrap_err());
        assert!(err.contains("TLS: "), "{err}");
        assert!(err.contains("certificate verify failed"), "{err}");
        // Plaintext to a TLS port is not mistaken for a working broker either.
        let plain = kafka_config(&broker.bootstrap, &[]);
        assert!(check(&plain).await.is_err());
    }

    /// SASL_SSL as managed clusters require it, the secrets through `kafka.client_env`: the
    /// producer takes the settings (librdkafka built with OpenSSL and SASL), the client gets
    /// through TLS to a real broker's SASL handshake, and the broker's refusal is named as
    /// authentication. Tansu 0.6.0 offers SCRAM-SHA-256/512 and OAUTHBEARER (not PLAIN) and
    /// stores no SCRAM user of its own, so every login is refused: a successful SASL login is
    /// not tested here (see the docs/operations/deploy.md).
    #[tokio::test(flavor = "multi_thread")]
    async fn sasl_ssl_settings_are_taken_and_a_refused_login_is_named() {
        let certs = Certs::for_names("DNS:localhost,IP:127.0.0.1");
        let broker = TlsTansu::start(&certs, true);
        std::env::set_var("RINGBACK_TEST_KAFKA_USER", "ringback");
        std::env::set_var("RINGBACK_TEST_KAFKA_PASSWORD", "s3cret");
        let ca = certs.path("ca.pem").display().to_string();
        for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
            let mut kafka = kafka_config(
                &broker.bootstrap,
                &[
                    ("security.protocol", "SASL_SSL".to_owned()),
                    ("sasl.mechanism", mechanism.to_owned()),
                    ("ssl.ca.location", ca.clone()),
                ],
            );
            kafka
                .client_env
                .insert("sasl.username".into(), "RINGBACK_TEST_KAFKA_USER".into());
            kafka.client_env.insert(
                "sasl.password".into(),
                "RINGBACK_TEST_KAFKA_PASSWORD".into(),
            );
            let _producer =
                ringback::publish::kafka::producer(kafka.brokers.real().unwrap(), &kafka)
                    .unwrap_or_else(|e| {
                        panic!("{mechanism}: the producer refuses the settings: {e}")
                    });
            // A refused login fails only when the request times out: a short one.
            let refused = check_within(&kafka, Duration::from_secs(4)).await;
            let err = format!("{:#}", refused.unwrap_err());
            assert!(err.contains("authentication: "), "{mechanism}: {err}");
            eprintln!("{mechanism}: {err}");

            // A missing secret is named before anything connects.
            let mut missing = kafka.clone();
            missing
                .client_env
                .insert("sasl.password".into(), "RINGBACK_TEST_NOT_SET".into());
            let err = format!("{:#}", check(&missing).await.unwrap_err());
            assert!(
                err.contains("kafka.client_env.sasl.password: environment variable RINGBACK_TEST_NOT_SET is not set"),
                "{err}"
            );
        }
    }
}
