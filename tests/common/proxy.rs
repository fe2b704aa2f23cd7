//! A TCP proxy in front of the real PostgreSQL, for outages a test can switch on and off
//! without stopping the server the other tests share: `down` drops every connection and
//! refuses new ones (a crash, a failover); `stall` keeps connections open and forwards nothing
//! (a hung server, a full disk). Both directions are forwarded again once `up`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const UP: u8 = 0;
const DOWN: u8 = 1;
const STALL: u8 = 2;

pub struct Proxy {
    pub port: u16,
    state: Arc<AtomicU8>,
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
        let upstream = upstream.to_owned();
        let task = tokio::spawn({
            let (state, epoch) = (state.clone(), epoch.clone());
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        break;
                    };
                    if state.load(Ordering::SeqCst) == DOWN {
                        drop(client);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let (state, closed) = (state.clone(), epoch.subscribe());
                    tokio::spawn(forward(client, server, state, closed));
                }
            }
        });
        Self {
            port,
            state,
            epoch,
            task,
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
    mut closed: watch::Receiver<u64>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                mut to: tokio::net::tcp::OwnedWriteHalf,
                state: Arc<AtomicU8>| async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Stalled: hold what was read until the proxy is up again (or dropped).
            while state.load(Ordering::SeqCst) == STALL {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if state.load(Ordering::SeqCst) == DOWN || to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let up = pump(cr, sw, state.clone());
    let down = pump(sr, cw, state);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = closed.changed() => {}
    }
}
