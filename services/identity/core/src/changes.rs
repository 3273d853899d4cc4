//! Following the change log (`WatchMemberChanges`): where a watch starts, and the next
//! changes after a cursor, waited for. A cursor is the number of the last change the
//! follower has; numbers have no gaps, so a change missing after the cursor was pruned
//! (the follower fell behind the retention) and the watch ends rather than skip it.

use std::time::Duration;

use identity_store::{ChangeRow, Store};
use tokio::sync::watch;

use crate::{CoreError, Identity};

/// The most changes one read of the log returns.
const BATCH: i64 = 500;

/// How often a follower reads the log when nothing woke it: the floor under the
/// wake-ups (PostgreSQL's notifications, this process's own commits).
const POLL_SQLITE: Duration = Duration::from_millis(250);
const POLL_POSTGRES: Duration = Duration::from_secs(1);

/// How long one read of the log may take: a database that hangs ends the watch (the
/// follower resumes elsewhere) instead of holding it forever.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a follower's cursor cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Changes after the cursor were pruned: read the members afresh, then watch from
    /// now.
    #[error("changes after {cursor} are no longer kept (the oldest kept is {first_kept})")]
    Expired { cursor: i64, first_kept: i64 },
    /// Beyond the last change written (a cursor from another database?).
    #[error("change {cursor} has not been written (the last is {last})")]
    Ahead { cursor: i64, last: i64 },
    #[error("a cursor is never negative")]
    Negative,
}

/// A follower of the change log, at its cursor.
pub struct ChangeWatch {
    store: Store,
    cursor: i64,
    woken: watch::Receiver<u64>,
    poll: Duration,
}

impl Identity {
    /// Starts following the log after change `after`: `None` from now on (the last
    /// change written), `Some(0)` from the first change ever (if still kept).
    pub async fn watch_changes(&self, after: Option<i64>) -> Result<ChangeWatch, CoreError> {
        let store = self.inner.store.clone();
        // Subscribed before the bounds are read: nothing committed in between is missed.
        let woken = store.watch_changes();
        let bounds = store.change_bounds().await?;
        let cursor = match after {
            None => bounds.last,
            Some(n) if n < 0 => return Err(CoreError::Cursor(CursorError::Negative)),
            Some(n) if n > bounds.last => {
                return Err(CoreError::Cursor(CursorError::Ahead {
                    cursor: n,
                    last: bounds.last,
                }));
            }
            Some(n) if n + 1 < bounds.first => {
                return Err(CoreError::Cursor(CursorError::Expired {
                    cursor: n,
                    first_kept: bounds.first,
                }));
            }
            Some(n) => n,
        };
        let poll = match store.backend() {
            identity_store::Backend::Sqlite => POLL_SQLITE,
            identity_store::Backend::Postgres => POLL_POSTGRES,
        };
        Ok(ChangeWatch {
            store,
            cursor,
            woken,
            poll,
        })
    }

    /// Drops the changes older than `retention`, by the system clock that stamped them
    /// (not the flows' clock); how many.
    pub async fn prune_changes(&self, retention: Duration) -> Result<u64, CoreError> {
        Ok(self.inner.store.prune_changes(retention).await?)
    }
}

impl ChangeWatch {
    /// The number of the last change returned (or the start).
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The next changes after the cursor, in order, waiting until there is one; the
    /// cursor moves past them.
    pub async fn next(&mut self) -> Result<Vec<ChangeRow>, CoreError> {
        loop {
            // Marked seen before reading: a change committed during the read wakes the
            // next wait.
            self.woken.borrow_and_update();
            let changes =
                tokio::time::timeout(READ_TIMEOUT, self.store.changes_after(self.cursor, BATCH))
                    .await
                    .map_err(|_| {
                        CoreError::unavailable(format!(
                            "the change log did not answer within {READ_TIMEOUT:?}"
                        ))
                    })??;
            if let Some(first) = changes.first() {
                if first.seq != self.cursor + 1 {
                    return Err(CoreError::Cursor(CursorError::Expired {
                        cursor: self.cursor,
                        first_kept: first.seq,
                    }));
                }
                self.cursor = changes.last().map_or(self.cursor, |c| c.seq);
                return Ok(changes);
            }
            // A closed feed (the store is going away) leaves the polling.
            let _ = tokio::time::timeout(self.poll, self.woken.changed()).await;
        }
    }
}
