//! Certificates made with the `openssl` command at test time, and a PostgreSQL server of the
//! test's own with SSL on (initdb into a temporary directory, run as the `postgres` user).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate it signed for `localhost` (not for 127.0.0.1); plus a second CA
/// that signed nothing (the "wrong CA").
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Self {
        Self::for_names("DNS:localhost")
    }

    /// Certificates whose server certificate carries `names` (`subjectAltName` syntax).
    pub fn for_names(names: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for ca in ["ca", "wrong-ca"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=ringback test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            );
        }
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            d.join("server.ext"),
            format!("subjectAltName={names}\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A PostgreSQL server with `ssl = on` and the certificate of [`Certs`], trust authentication,
/// on a free port; stopped when dropped.
pub struct TlsPostgres {
    pub port: u16,
    child: Child,
    _data: tempfile::TempDir,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str) -> Command {
    // initdb and postgres refuse to run as root (CI runs as root).
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program]);
    c
}

impl TlsPostgres {
    pub fn start(certs: &Certs) -> Self {
        let data = tempfile::Builder::new()
            .prefix("ringback-tls-pg")
            .tempdir()
            .unwrap();
        let pgdata = data.path().join("data");
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(data.path())
            .status()
            .unwrap();
        assert!(status.success());
        let out = as_postgres(&format!("{PG_BIN}/initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&pgdata)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The server reads its key as its own user, mode 0600.
        for f in ["server.pem", "server.key"] {
            std::fs::copy(certs.path(f), pgdata.join(f)).unwrap();
        }
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(pgdata.join("server.pem"))
            .arg(pgdata.join("server.key"))
            .status()
            .unwrap();
        assert!(status.success());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            pgdata.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let port = super::kafka::free_port();
        let child = as_postgres(&format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(&pgdata)
            .args(["-p", &port.to_string(), "-k"])
            .arg(data.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.pem",
                "-c",
                "ssl_key_file=server.key",
                "-c",
                "fsync=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "postgres did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Accepting TCP is not yet accepting logins: wait for pg_isready.
        while !Command::new(format!("{PG_BIN}/pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "postgres not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            port,
            child,
            _data: data,
        }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown. The child is runuser; its postgres child gets the signal too
        // through the process group only if sent there, so signal postgres by its pid file.
        let _ = Command::new("pkill")
            .args(["-INT", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Tansu behind a TLS terminator (socat): clients speak TLS to `bootstrap`, socat hands the
/// plain stream to Tansu, which advertises the TLS address, so every connection of a client
/// (bootstrap and leader) goes through TLS. Tansu 0.6.0 has no TLS listener of its own that
/// works: its `--cert` and `--key` cannot be given together (one clap group), and the broker
/// builds its TLS acceptor without using it (`_acceptor` in tansu-broker's `Broker::listen`).
/// With `authentication`, Tansu requires SASL (PLAIN, SCRAM-SHA-256/512).
pub struct TlsTansu {
    pub bootstrap: String,
    tansu: Child,
    socat: Child,
}

impl TlsTansu {
    pub fn start(certs: &Certs, authentication: bool) -> Self {
        let path = super::kafka::tansu_path();
        let (plain, tls) = (super::kafka::free_port(), super::kafka::free_port());
        let listener = format!("tcp://127.0.0.1:{plain}");
        let advertised = format!("tcp://127.0.0.1:{tls}");
        let mut tansu = Command::new(&path);
        tansu
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"]);
        if authentication {
            tansu.arg("--authentication");
        }
        let tansu = tansu
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let socat = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                certs.path("server.pem").display(),
                certs.path("server.key").display()
            ))
            .arg(format!("TCP:127.0.0.1:{plain}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting socat (apt-get install socat)");
        let started = Instant::now();
        for port in [plain, tls] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "port {port} did not open"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self {
            bootstrap: format!("127.0.0.1:{tls}"),
            tansu,
            socat,
        }
    }
}

impl Drop for TlsTansu {
    fn drop(&mut self) {
        for child in [&mut self.socat, &mut self.tansu] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
