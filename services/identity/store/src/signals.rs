//! What a commit tells the rest of this process and the other replicas: that the member
//! change log grew (followers wake up) and that sessions ended (the session cache
//! forgets them). Within the process, the committing transaction signals directly; on
//! PostgreSQL, its `NOTIFY`s reach every replica's listener, one connection per process
//! started on first need. A listener proves its connection every second by hearing its
//! own heartbeat back; one that loses its connection, or stops hearing itself, says so
//! (the session cache stops trusting itself, followers read the log) and listens again.

use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::session_cache::{SessionCache, SessionEnds};

/// PostgreSQL's channel of change log commits (payload: the last number written).
pub(crate) const MEMBER_CHANGES: &str = "identity_member_changes";
/// PostgreSQL's channel of ended sessions (payload: their ids, or `*` for all).
pub(crate) const SESSION_ENDS: &str = "identity_session_ends";
/// PostgreSQL's channel of the listeners' heartbeats (payload: the process's own mark).
const HEARTBEATS: &str = "identity_listener_heartbeats";

pub(crate) struct Signals {
    /// Moves on each change this process committed or PostgreSQL announced.
    pub(crate) changes: watch::Sender<u64>,
    pub(crate) sessions: SessionCache,
    listening: Once,
    /// Ends the listener when the last handle of the store is gone.
    stop: Arc<Notify>,
}

impl Signals {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            changes: watch::Sender::new(0),
            sessions: SessionCache::default(),
            listening: Once::new(),
            stop: Arc::new(Notify::new()),
        })
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Starts listening on PostgreSQL at `url`, once.
    pub(crate) fn listen_once(self: &Arc<Self>, url: &str) {
        self.listening.call_once(|| {
            tokio::spawn(listen(
                url.to_owned(),
                Arc::downgrade(self),
                Arc::clone(&self.stop),
            ));
        });
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// How often the listener proves its connection works: it notifies itself, through
/// another connection, and must hear it back.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Not hearing its own heartbeat this long, the listener takes its connection for lost
/// (a connection a firewall dropped without a word delivers nothing and fails nothing).
const HEARTBEAT_LOST: Duration = Duration::from_secs(3);

/// Listens until the store is gone; after a lost connection, listens again a second
/// later (the waiters poll meanwhile, the session cache is off).
async fn listen(url: String, signals: Weak<Signals>, stop: Arc<Notify>) {
    let lost = |signals: &Weak<Signals>| {
        if let Some(s) = signals.upgrade() {
            s.sessions.trust(false);
            s.changed();
        }
    };
    // This process's heartbeats, told apart from other replicas'.
    let me = format!("{:016x}", {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    loop {
        let session = async {
            if let Err(e) = listen_once(&url, &signals, &me).await {
                tracing::warn!(error = %e, "change and session notifications lost");
            }
        };
        tokio::select! {
            () = stop.notified() => return,
            () = session => {}
        }
        lost(&signals);
        if signals.strong_count() == 0 {
            return;
        }
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One listening connection, for as long as it proves to work. The session cache is
/// trusted from the first heartbeat heard back (every end committed after it is heard;
/// what ended before is in the database the cache reads) until the connection fails or
/// a heartbeat is not heard back in time.
async fn listen_once(url: &str, signals: &Weak<Signals>, me: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut listener = sqlx::postgres::PgListener::connect(url)
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    listener
        .listen_all([MEMBER_CHANGES, SESSION_ENDS, HEARTBEATS])
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let mut beats = sqlx::postgres::PgConnection::connect(url)
        .await
        .map_err(|e| format!("cannot send heartbeats: {e}"))?;
    // The notifications, read by a task of their own (a read is not cancelled halfway
    // by the heartbeat's timer), until the connection is lost.
    let (heard_tx, mut heard) = tokio::sync::mpsc::channel(1024);
    let reader = tokio::spawn(async move {
        while let Ok(Some(n)) = listener.try_recv().await {
            if heard_tx.send(n).await.is_err() {
                return;
            }
        }
    });
    let _reader = tokio_util::task::AbortOnDropHandle::new(reader);
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    let mut last_heard = tokio::time::Instant::now();
    let mut trusted = false;
    loop {
        tokio::select! {
            n = heard.recv() => {
                let Some(n) = n else {
                    return Err("the listening connection was lost".into());
                };
                let Some(s) = signals.upgrade() else { return Ok(()) };
                match n.channel() {
                    SESSION_ENDS => s.sessions.forget(&SessionEnds::parse(n.payload())),
                    HEARTBEATS => {
                        if n.payload() == me {
                            last_heard = tokio::time::Instant::now();
                            if !trusted {
                                trusted = true;
                                s.sessions.trust(true);
                                s.changed();
                            }
                        }
                    }
                    _ => s.changed(),
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > HEARTBEAT_LOST {
                    return Err(format!("no heartbeat heard back for {HEARTBEAT_LOST:?}"));
                }
                let sent = tokio::time::timeout(
                    HEARTBEAT_EVERY,
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(HEARTBEATS)
                        .bind(me)
                        .execute(&mut beats),
                )
                .await;
                if !matches!(sent, Ok(Ok(_))) {
                    return Err("cannot send a heartbeat".into());
                }
            }
        }
    }
}
