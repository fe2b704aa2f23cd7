//! A TCP proxy in front of the real PostgreSQL, for outages a test can switch on and off
//! without stopping the server the other tests share: `down` drops every connection and
//! refuses new ones (a crash, a failover); `stall` keeps connections open and forwards nothing
//! (a hung server, a full disk). Both directions are forwarded again once `up`.
//! `blackhole` is a network path that stops carrying packets, with no RST: every connection
//! hangs and new ones are never answered; after `up`, new connections work but the old ones
//! stay silent for good (a firewall or NAT that forgot them, a failover to another address):
//! a client must notice by its own timeouts and replace them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const UP: u8 = 0;
const DOWN: u8 = 1;
const STALL: u8 = 2;
const BLACKHOLE: u8 = 3;

/// Each forwarded connection's "dead" flag: set, it never carries a byte again.
type Connections = Arc<Mutex<Vec<Arc<AtomicBool>>>>;

pub struct Proxy {
    pub port: u16,
    state: Arc<AtomicU8>,
    connections: Connections,
    /// Added to every answer (server to client), in milliseconds: `latency`.
    delay_ms: Arc<AtomicU64>,
    /// Where new connections go (`repoint` moves it, as a DNS name or a virtual IP is moved).
    upstream: Arc<Mutex<String>>,
    /// Bumped on `down`: every connection of an earlier epoch closes.
    epoch: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(AtomicU8::new(UP));
        let (epoch, _) = watch::channel(0u64);
        let connections: Connections = Arc::default();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let upstream = Arc::new(Mutex::new(upstream.to_owned()));
        let task = tokio::spawn({
            let (state, epoch, connections) = (state.clone(), epoch.clone(), connections.clone());
            let (upstream, delay_ms) = (upstream.clone(), delay_ms.clone());
            async move {
                // Connections accepted into a black hole: held open, never answered.
                let mut swallowed = Vec::new();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        break;
                    };
                    match state.load(Ordering::SeqCst) {
                        DOWN => {
                            drop(client);
                            continue;
                        }
                        BLACKHOLE => {
                            swallowed.push(client);
                            continue;
                        }
                        _ => {}
                    }
                    let to = upstream.lock().unwrap().clone();
                    let Ok(server) = TcpStream::connect(&to).await else {
                        continue;
                    };
                    // As the endpoints do (PostgreSQL's walsender and libpq clients): without
                    // it Nagle's algorithm holds each small write about 40 ms, which a
                    // synchronous standby's acknowledgements pay on every commit.
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let dead = Arc::new(AtomicBool::new(false));
                    connections.lock().unwrap().push(dead.clone());
                    let (state, closed) = (state.clone(), epoch.subscribe());
                    let delay = delay_ms.clone();
                    tokio::spawn(forward(client, server, state, dead, delay, closed));
                }
            }
        });
        Self {
            port,
            state,
            connections,
            delay_ms,
            upstream,
            epoch,
            task,
        }
    }

    /// Holds every answer `delay` before passing it on (`Duration::ZERO`: none), a latency
    /// spike on the path.
    pub fn latency(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sends new connections to `upstream` (`host:port`) from now on.
    pub fn repoint(&self, upstream: &str) {
        *self.upstream.lock().unwrap() = upstream.to_owned();
    }

    /// Carries nothing, answers nothing, resets nothing: see the module's notes. The
    /// connections open now stay silent even after `up`.
    pub fn blackhole(&self) {
        self.state.store(BLACKHOLE, Ordering::SeqCst);
        for dead in self.connections.lock().unwrap().drain(..) {
            dead.store(true, Ordering::SeqCst);
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn down(&self) {
        self.state.store(DOWN, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Keeps connections open and forwards nothing.
    pub fn stall(&self) {
        self.state.store(STALL, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.state.store(UP, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.epoch.send_modify(|e| *e += 1);
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    state: Arc<AtomicU8>,
    dead: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    mut closed: watch::Receiver<u64>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                mut to: tokio::net::tcp::OwnedWriteHalf,
                state: Arc<AtomicU8>,
                dead: Arc<AtomicBool>,
                delay_ms: Option<Arc<AtomicU64>>| async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = from.read(&mut buf).await;
            if dead.load(Ordering::SeqCst) {
                // Swallowed, both ways, for good, an end of stream too: the sockets stay open.
                std::future::pending::<()>().await;
            }
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(ms) = delay_ms.as_ref().map(|d| d.load(Ordering::SeqCst)) {
                if ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
            }
            // Stalled: hold what was read until the proxy is up again (or dropped).
            while state.load(Ordering::SeqCst) == STALL {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if state.load(Ordering::SeqCst) == DOWN || to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let up = pump(cr, sw, state.clone(), dead.clone(), None);
    let down = pump(sr, cw, state, dead, Some(delay_ms));
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = closed.changed() => {}
    }
}
