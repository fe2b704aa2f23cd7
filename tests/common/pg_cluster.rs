//! PostgreSQL clusters of a test's own, for a real failover: a primary made with `initdb`, a
//! standby streaming from it made with `pg_basebackup -R`, promoted with `pg_ctl promote`.
//! They run as the `postgres` user (PostgreSQL refuses root) from Debian's binaries, on loopback
//! ports of their own, in temporary directories removed on drop (each cluster stopped first),
//! so the machine's own cluster, which the other tests share, is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Cluster {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// Debian's PostgreSQL binaries (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let version = std::fs::read_dir(root)
        .expect("Debian's PostgreSQL under /usr/lib/postgresql")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .expect("a PostgreSQL version");
    root.join(version).join("bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory the `postgres` user owns.
fn postgres_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ringback-pg-")
        .tempdir()
        .unwrap();
    let status = Command::new("chown")
        .args(["postgres:postgres", dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "chown postgres");
    dir
}

impl Cluster {
    fn run(&self, program: &str, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    /// Settings of this cluster's own, appended last so they win over copied ones.
    fn configure(&self, extra: &str) {
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n\
             shared_buffers = 32MB\nmax_connections = 60\n{extra}\n",
            self.port,
            self.dir.path().display()
        );
        let path = self.dir.path().join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
    }

    /// A new primary, started.
    pub fn primary() -> Self {
        let c = Self {
            port: free_port(),
            dir: postgres_dir(),
            bin: bin_dir(),
        };
        c.run(
            "initdb",
            &[
                "-D",
                &c.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        c.configure("");
        c.start();
        c
    }

    /// A standby streaming from `primary` (`pg_basebackup -R`), started; its replication
    /// connection goes to `via` (a proxy's port in front of the primary) when given.
    pub fn standby_of(primary: &Cluster, via: Option<u16>) -> Self {
        let c = Self {
            port: free_port(),
            dir: postgres_dir(),
            bin: primary.bin.clone(),
        };
        let port = primary.port.to_string();
        c.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &c.data(),
                "-R",
                "-X",
                "stream",
            ],
        );
        c.configure("");
        if let Some(port) = via {
            // After the line `-R` wrote: the later one wins.
            let auto = c.dir.path().join("data/postgresql.auto.conf");
            let mut text = std::fs::read_to_string(&auto).unwrap();
            text.push_str(&format!(
                "primary_conninfo = 'host=127.0.0.1 port={port} user=postgres'\n"
            ));
            std::fs::write(&auto, text).unwrap();
        }
        c.start();
        c
    }

    pub fn start(&self) {
        let log = self.dir.path().join("log").to_str().unwrap().to_owned();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "start"]);
    }

    /// Stops the server the way a crash does: no shutdown checkpoint, backends killed.
    pub fn crash(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }

    pub fn promote(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-w", "promote"]);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` in `database` (psql, as the cluster's superuser).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-d",
                database,
            ])
            .args(["-XAtqc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Makes every commit wait for the standby (`synchronous_standby_names = '*'`,
    /// `synchronous_commit = on`), and waits until the standby streams synchronously.
    pub fn make_synchronous(&self) {
        self.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
        for _ in 0..100 {
            if self.psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            ) == "1"
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the standby never became synchronous");
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub fn wait_caught_up(&self, standby: &Cluster) {
        let lsn = self.psql("postgres", "SELECT pg_current_wal_lsn()");
        for _ in 0..200 {
            let caught_up = standby.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            );
            if caught_up == "t" {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the standby did not catch up");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}
