//! A TCP proxy of the tests' own, between a client and a server (a service and its
//! PostgreSQL), that can stop passing bytes: on every connection (a database that
//! hangs), or only on the connections that issued `LISTEN "..."` (a listening connection
//! silently dropped by a firewall, while the others work). Stopped bytes are held, not
//! dropped, and pass on when the gate opens again; no connection is closed. Or it can
//! sever the connections open now for good (a black-holed connection: nothing ever
//! passes again, nothing fails), while new ones pass; delay every read (a slow server);
//! or close every connection that has anything to pass (a failing one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which connections hold their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Every connection, old and new.
    Closed,
    /// Only the connections whose client sent `LISTEN`.
    ClosedToListeners,
    /// Every read passes this long after it came (a slow network or server).
    Delayed(std::time::Duration),
    /// Every connection that has anything to pass is closed instead (a server that
    /// fails every request).
    Resetting,
}

/// A running gate; its task ends when the runtime does.
pub struct TcpGate {
    pub addr: SocketAddr,
    gate: watch::Sender<Gate>,
    /// Connections accepted before this many severings pass nothing any more.
    severed: Arc<AtomicU64>,
}

impl TcpGate {
    /// Listens on a port of 127.0.0.1 and passes each connection on to `target`.
    pub async fn start(target: SocketAddr) -> TcpGate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (gate, _) = watch::channel(Gate::Open);
        let gates = gate.clone();
        let severed = Arc::new(AtomicU64::new(0));
        let severings = Arc::clone(&severed);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut = Cut {
                    born: severings.load(Ordering::SeqCst),
                    severed: Arc::clone(&severings),
                };
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let listening = Arc::new(AtomicBool::new(false));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pass(
                    client_read,
                    server_write,
                    gates.subscribe(),
                    Arc::clone(&listening),
                    cut.clone(),
                    true,
                ));
                tokio::spawn(pass(
                    server_read,
                    client_write,
                    gates.subscribe(),
                    listening,
                    cut,
                    false,
                ));
            }
        });
        TcpGate {
            addr,
            gate,
            severed,
        }
    }

    /// The connections open now pass nothing more, ever; new ones pass.
    pub fn sever(&self) {
        self.severed.fetch_add(1, Ordering::SeqCst);
    }

    /// A gate in front of the server of `url` (`postgres://user@host:port/db`), and the
    /// URL that goes through it.
    pub async fn in_front_of(url: &str) -> (TcpGate, String) {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (user, rest) = rest.split_once('@').expect("a user");
        let (host, path) = rest.split_once('/').expect("a database");
        let target = host.parse().expect("host:port of an IP address");
        let gate = TcpGate::start(target).await;
        let through = format!("{scheme}://{user}@{}/{path}", gate.addr);
        (gate, through)
    }

    pub fn set(&self, gate: Gate) {
        self.gate.send_replace(gate);
    }
}

/// When a connection was accepted, against the gate's severings.
#[derive(Clone)]
struct Cut {
    born: u64,
    severed: Arc<AtomicU64>,
}

/// Copies one direction of a connection, holding the bytes while the gate says so, and
/// for good once the connection is severed.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: watch::Receiver<Gate>,
    listening: Arc<AtomicBool>,
    cut: Cut,
    from_client: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if from_client && buf[..n].windows(8).any(|w| w == b"LISTEN \"") {
            listening.store(true, Ordering::Relaxed);
        }
        let held = |g: &Gate| match g {
            Gate::Open | Gate::Delayed(_) | Gate::Resetting => false,
            Gate::Closed => true,
            Gate::ClosedToListeners => listening.load(Ordering::Relaxed),
        };
        if cut.severed.load(Ordering::SeqCst) > cut.born {
            // Held for good: the connection stays open and silent.
            std::future::pending::<()>().await;
        }
        if gate.wait_for(|g| !held(g)).await.is_err() {
            return;
        }
        let now = *gate.borrow();
        match now {
            Gate::Resetting => return,
            Gate::Delayed(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
