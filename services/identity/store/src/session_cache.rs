//! Live sessions as introspection (`VerifyAccessToken`) and, while migrating, the access
//! check read them, kept in memory: on PostgreSQL only, and only while this process
//! hears every end of a session, its own and every other replica's (`LISTEN
//! identity_session_ends`, see `signals`). A session ended, or whose access token was
//! replaced by a refresh, is forgotten when its transaction commits here and when the
//! notification arrives elsewhere; a lost listener forgets everything and stops the
//! cache until it listens again. A read that raced an end is not kept (the generation
//! moved meanwhile). Entries live at most `MAX_AGE` besides, and the cache holds at most
//! `MAX_ENTRIES`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What introspection and the access check need of a live session (not ended, its
/// member not withdrawn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub member_id: i64,
    /// The `jti` of its current access token.
    pub access_jti: String,
    pub access_expires_at: i64,
    pub created_at: i64,
    pub refresh_expires_at: i64,
    /// Its legacy row while migrating (a refresh replaces it, and forgets the entry).
    pub legacy_session_id: Option<i64>,
}

impl LiveSession {
    /// The session if it is live: not ended, its member not withdrawn.
    pub fn of(session: &crate::SessionRow, member: &crate::MemberRow) -> Option<Self> {
        (!session.is_ended() && !member.is_withdrawn() && session.member_id == member.id).then(
            || LiveSession {
                member_id: session.member_id,
                access_jti: session.access_jti.clone(),
                access_expires_at: session.access_expires_at,
                created_at: session.created_at,
                refresh_expires_at: session.refresh_expires_at,
                legacy_session_id: session.legacy_session_id,
            },
        )
    }

    /// The session's row, named `id` (live: not ended).
    pub fn row(&self, id: &str) -> crate::SessionRow {
        crate::SessionRow {
            id: id.to_owned(),
            member_id: self.member_id,
            access_jti: self.access_jti.clone(),
            created_at: self.created_at,
            access_expires_at: self.access_expires_at,
            refresh_expires_at: self.refresh_expires_at,
            ended_at: None,
            legacy_session_id: self.legacy_session_id,
        }
    }
}

const MAX_AGE: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 100_000;

/// Sessions whose cached state no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnds {
    All,
    Some(Vec<String>),
}

impl SessionEnds {
    /// The payload of a notification (at most `limit` bytes; every session beyond).
    pub(crate) fn payload(&self, limit: usize) -> String {
        match self {
            SessionEnds::Some(ids) => {
                let joined = ids.join(",");
                if joined.len() <= limit && !joined.is_empty() {
                    joined
                } else {
                    "*".to_owned()
                }
            }
            SessionEnds::All => "*".to_owned(),
        }
    }

    pub(crate) fn parse(payload: &str) -> Self {
        if payload == "*" || payload.is_empty() {
            SessionEnds::All
        } else {
            SessionEnds::Some(payload.split(',').map(str::to_owned).collect())
        }
    }
}

/// The sessions a transaction ends, forgotten when it commits.
#[derive(Debug, Default)]
pub(crate) struct PendingEnds {
    all: bool,
    ids: Vec<String>,
}

impl PendingEnds {
    pub(crate) fn note(&mut self, id: &str) {
        if !self.all && !self.ids.iter().any(|i| i == id) {
            self.ids.push(id.to_owned());
        }
    }

    pub(crate) fn note_all(&mut self) {
        self.all = true;
        self.ids.clear();
    }

    pub(crate) fn take(&mut self) -> Option<SessionEnds> {
        if std::mem::take(&mut self.all) {
            Some(SessionEnds::All)
        } else if self.ids.is_empty() {
            None
        } else {
            Some(SessionEnds::Some(std::mem::take(&mut self.ids)))
        }
    }
}

#[derive(Default)]
struct Entries {
    /// Whether every end of a session reaches this process (listening).
    trusted: bool,
    /// Moves on every end heard and every change of trust.
    generation: u64,
    sessions: HashMap<String, (LiveSession, Instant)>,
}

/// The cache as metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCacheState {
    /// Whether it serves (PostgreSQL, listening).
    pub trusted: bool,
    pub entries: usize,
    /// Look-ups answered from memory, and those that read the database, since start.
    pub hits: u64,
    pub misses: u64,
}

#[derive(Default)]
pub(crate) struct SessionCache {
    entries: RwLock<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SessionCache {
    /// A cached live session, if the cache is trusted and the entry young enough.
    pub(crate) fn get(&self, id: &str) -> Option<LiveSession> {
        let found = self.entries.read().ok().and_then(|g| {
            let (live, at) = g.sessions.get(id).filter(|_| g.trusted)?;
            (at.elapsed() < MAX_AGE).then(|| live.clone())
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn state(&self) -> SessionCacheState {
        let (trusted, entries) = self
            .entries
            .read()
            .map_or((false, 0), |g| (g.trusted, g.sessions.len()));
        SessionCacheState {
            trusted,
            entries,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The generation to hand back with what is read now; none while not trusted.
    pub(crate) fn generation(&self) -> Option<u64> {
        let g = self.entries.read().ok()?;
        g.trusted.then_some(g.generation)
    }

    /// Keeps what was read at `generation`, unless an end was heard since.
    pub(crate) fn keep(&self, generation: u64, id: &str, live: LiveSession) {
        let Ok(mut g) = self.entries.write() else {
            return;
        };
        if !g.trusted || g.generation != generation {
            return;
        }
        if g.sessions.len() >= MAX_ENTRIES {
            g.sessions.clear();
        }
        g.sessions.insert(id.to_owned(), (live, Instant::now()));
    }

    pub(crate) fn forget(&self, ends: &SessionEnds) {
        let Ok(mut g) = self.entries.write() else {
            return;
        };
        g.generation = g.generation.wrapping_add(1);
        match ends {
            SessionEnds::All => g.sessions.clear(),
            SessionEnds::Some(ids) => {
                for id in ids {
                    g.sessions.remove(id);
                }
            }
        }
    }

    /// Starts (listening) or stops (listener lost) trusting the cache; forgets
    /// everything either way.
    pub(crate) fn trust(&self, trusted: bool) {
        let Ok(mut g) = self.entries.write() else {
            return;
        };
        g.generation = g.generation.wrapping_add(1);
        g.sessions.clear();
        g.trusted = trusted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(jti: &str) -> LiveSession {
        LiveSession {
            member_id: 1,
            access_jti: jti.into(),
            access_expires_at: 10,
            created_at: 1,
            refresh_expires_at: 20,
            legacy_session_id: None,
        }
    }

    #[test]
    fn nothing_is_kept_or_served_untrusted() {
        let c = SessionCache::default();
        assert_eq!(c.generation(), None);
        c.keep(0, "s", live("a"));
        assert_eq!(c.get("s"), None);
    }

    #[test]
    fn a_read_that_raced_an_end_is_not_kept() {
        let c = SessionCache::default();
        c.trust(true);
        let before = c.generation().unwrap();
        c.forget(&SessionEnds::Some(vec!["other".into()]));
        c.keep(before, "s", live("a"));
        assert_eq!(c.get("s"), None);
        let now = c.generation().unwrap();
        c.keep(now, "s", live("a"));
        assert_eq!(c.get("s"), Some(live("a")));
        c.forget(&SessionEnds::Some(vec!["s".into()]));
        assert_eq!(c.get("s"), None);
        c.keep(c.generation().unwrap(), "s", live("b"));
        c.trust(false);
        assert_eq!(c.get("s"), None);
    }

    #[test]
    fn payloads_name_the_sessions_or_all() {
        let ends = SessionEnds::Some(vec!["a".into(), "b".into()]);
        assert_eq!(ends.payload(100), "a,b");
        assert_eq!(SessionEnds::parse("a,b"), ends);
        assert_eq!(ends.payload(2), "*");
        assert_eq!(SessionEnds::parse("*"), SessionEnds::All);
        let mut p = PendingEnds::default();
        p.note("a");
        p.note("a");
        assert_eq!(p.take(), Some(SessionEnds::Some(vec!["a".into()])));
        assert_eq!(p.take(), None);
        p.note("a");
        p.note_all();
        p.note("b");
        assert_eq!(p.take(), Some(SessionEnds::All));
    }
}
