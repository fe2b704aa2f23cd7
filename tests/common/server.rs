//! ringback as a process of its own (the real binary), for the fault and fleet suites.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::kafka::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_ringback");

/// ringback, as its own process, on a fixed port (so a restart takes the same address).
pub struct Ringback {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra environment of every incarnation (settings of the test's own).
    env: Vec<(String, String)>,
    db: String,
    brokers: String,
    prefix: String,
    /// Peak resident memory of each incarnation, in KiB.
    peaks: Vec<u64>,
}

/// One worker, an open source `open`.
const CONFIG: &str = "[http]\nworkers = 1\n[log]\nlevel = \"warn,ringback=info\"\n\
                      [sources.open]\nkind = \"huawei-voicecall\"\nauth = \"none\"\n";

impl Ringback {
    /// One worker, an open source `open`.
    pub async fn start(db: &str, brokers: &str, prefix: &str) -> Self {
        Self::start_with(db, brokers, prefix, CONFIG, &[]).await
    }

    /// As [`start`](Self::start), its spool at `spool` (a filesystem of the test's).
    pub async fn start_spooled_at(
        db: &str,
        brokers: &str,
        prefix: &str,
        spool: &std::path::Path,
    ) -> Self {
        let spool = [("RINGBACK__SPOOL__PATH", spool.to_str().unwrap())];
        Self::start_with(db, brokers, prefix, CONFIG, &spool).await
    }

    /// With a configuration file of `config` and extra environment `env`.
    pub async fn start_with(
        db: &str,
        brokers: &str,
        prefix: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ringback.toml"), config).unwrap();
        let mut r = Self {
            child: None,
            port: free_port(),
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            db: db.to_owned(),
            brokers: brokers.to_owned(),
            prefix: prefix.to_owned(),
            peaks: Vec::new(),
        };
        r.spawn().await;
        r
    }

    pub async fn spawn(&mut self) {
        // Another server binary (an older build, to compare): it gets no spool settings.
        let other = std::env::var("RINGBACK_SERVER_BIN").ok();
        let mut command = Command::new(other.as_deref().unwrap_or(BIN));
        if other.is_none() {
            command
                .env("RINGBACK__SPOOL__PATH", self.dir.path().join("spool.db"))
                .env("RINGBACK__SPOOL__FALLBACK_AFTER", "500ms");
        }
        let child = command
            .args([
                "--config",
                self.dir.path().join("ringback.toml").to_str().unwrap(),
                "serve",
            ])
            .env("RINGBACK__HTTP__ADDR", format!("127.0.0.1:{}", self.port))
            .env("RINGBACK__DATABASE__URL", &self.db)
            .env("RINGBACK__DATABASE__ACQUIRE_TIMEOUT", "1s")
            .env("RINGBACK__KAFKA__BROKERS", &self.brokers)
            .env("RINGBACK__KAFKA__TOPIC_PREFIX", &self.prefix)
            .env("RINGBACK__KAFKA__MESSAGE_TIMEOUT", "5s")
            .env("RINGBACK__KAFKA__SWEEP_INTERVAL", "500ms")
            .env("RINGBACK__KAFKA__MAX_BACKOFF", "1s")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdout(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("starting ringback");
        self.child = Some(child);
        for _ in 0..400 {
            if reqwest::get(format!("{}/healthz", self.base()))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("ringback did not start");
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn target(&self) -> String {
        format!("{}/hooks/open", self.base())
    }

    pub fn record_peak(&mut self) {
        if let Some(child) = &self.child {
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
            if let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            {
                self.peaks.push(kib);
            }
        }
    }

    /// SIGTERM, and waits for the process to end (a graceful stop, as a rolling deploy does);
    /// [`spawn`](Self::spawn) starts it again on the same port and spool.
    ///
    /// A process still running 90 s after SIGTERM fails the test (it is killed first): its
    /// drain is bounded (`http.shutdown_timeout`, `kafka.shutdown_deadline`, closing the pool),
    /// and a shutdown that hangs is a bug (one did, on a connection abandoned mid-query).
    pub fn terminate(&mut self) {
        self.record_peak();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(90);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                if Instant::now() > until {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("ringback did not exit within 90 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill9(&mut self) {
        self.record_peak();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.base()))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Waits until nothing is spooled and nothing waits in the outbox; returns how long.
    pub async fn settle(&self, within: Duration) -> Duration {
        let started = Instant::now();
        while started.elapsed() < within {
            // No spool metric at all: an older server binary (RINGBACK_SERVER_BIN).
            let spool = self.metric("ringback_spool_entries").await;
            let spooled = spool.is_some_and(|n| n > 0.0)
                || (spool.is_none() && std::env::var_os("RINGBACK_SERVER_BIN").is_none());
            if !spooled && self.metric("ringback_outbox_pending").await == Some(0.0) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "not settled within {within:?}: spool {:?}, outbox {:?}",
            self.metric("ringback_spool_entries").await,
            self.metric("ringback_outbox_pending").await
        );
    }

    pub async fn stop(mut self) -> Vec<u64> {
        self.terminate();
        std::mem::take(&mut self.peaks)
    }
}

impl Drop for Ringback {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
