//! What a commit tells the rest of this process and the other replicas: that the member
//! change log grew (followers wake up) and that sessions ended (the session cache
//! forgets them). Within the process, the committing transaction signals directly; on
//! PostgreSQL, its `NOTIFY`s reach every replica's listener, one connection per process
//! started on first need. A listener that loses its connection says so (the session
//! cache stops trusting itself, followers read the log) and listens again.

use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::session_cache::{SessionCache, SessionEnds};

/// PostgreSQL's channel of change log commits (payload: the last number written).
pub(crate) const MEMBER_CHANGES: &str = "identity_member_changes";
/// PostgreSQL's channel of ended sessions (payload: their ids, or `*` for all).
pub(crate) const SESSION_ENDS: &str = "identity_session_ends";

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

/// Listens on both channels until the store is gone; after a lost connection, listens
/// again a second later (the waiters poll meanwhile, the session cache is off).
async fn listen(url: String, signals: Weak<Signals>, stop: Arc<Notify>) {
    let lost = |signals: &Weak<Signals>| {
        if let Some(s) = signals.upgrade() {
            s.sessions.trust(false);
            s.changed();
        }
    };
    loop {
        let session = async {
            let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for change and session notifications");
                    return;
                }
            };
            if let Err(e) = listener.listen_all([MEMBER_CHANGES, SESSION_ENDS]).await {
                tracing::warn!(error = %e, "cannot listen for change and session notifications");
                return;
            }
            // From here on every end is heard: the cache may serve (what ended before
            // is in the database it reads).
            match signals.upgrade() {
                Some(s) => {
                    s.sessions.trust(true);
                    s.changed();
                }
                None => return,
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let Some(s) = signals.upgrade() else { return };
                        if n.channel() == SESSION_ENDS {
                            s.sessions.forget(&SessionEnds::parse(n.payload()));
                        } else {
                            s.changed();
                        }
                    }
                    // The connection was lost: notifications may have been missed.
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "change and session notifications lost");
                        break;
                    }
                }
            }
            lost(&signals);
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
