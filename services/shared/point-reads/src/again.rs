//! A database restart (a crash, a failover) cuts every pooled connection at once, and
//! the pools hand them out without a ping (a round trip per query saved): the next use
//! of each fails. Such a failure means only that the connection is gone, not that the
//! work failed, when nothing was done on it yet (a read, or the start of a
//! transaction): [`again_while_lost`] runs it again, on a connection of its pool that is
//! alive or new (a new one waits, within the pool's acquire timeout, for the database
//! to accept it). A restart then costs the requests of its moments a wait, not an error.

use std::future::Future;
use std::time::{Duration, Instant};

/// Whether `e` says the connection is gone (cut by the server or the network, or the
/// server shutting down or starting up) rather than that the statement failed.
pub fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        // 57P01-57P03: shutting down, crashed, starting up; class 08: connection exception.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}

/// The first pause before running an operation again; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Runs `op` until it succeeds, fails otherwise than by `lost`, or `budget` is spent.
/// Only for operations that did nothing when their connection was lost: a read, or the
/// start of a transaction, never a statement that may have committed.
pub async fn again_while_lost<T, E, Fut>(
    budget: Duration,
    lost: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + budget;
    let mut pause = FIRST_PAUSE;
    loop {
        match op().await {
            Err(e) if lost(&e) && Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_lost_connections_are_tried_again_and_only_within_the_budget() {
        let tries = std::cell::Cell::new(0);
        let ok: Result<u8, &str> = again_while_lost(
            Duration::from_secs(5),
            |e| *e == "lost",
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move { if n < 3 { Err("lost") } else { Ok(7) } }
            },
        )
        .await;
        assert_eq!((ok, tries.get()), (Ok(7), 3));

        tries.set(0);
        let refused: Result<u8, &str> = again_while_lost(
            Duration::from_secs(5),
            |e| *e == "lost",
            || {
                tries.set(tries.get() + 1);
                async { Err("refused") }
            },
        )
        .await;
        assert_eq!((refused, tries.get()), (Err("refused"), 1));

        let started = Instant::now();
        let gone: Result<u8, &str> = again_while_lost(
            Duration::from_millis(100),
            |e| *e == "lost",
            || async { Err("lost") },
        )
        .await;
        assert_eq!(gone, Err("lost"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_cut_connection_is_lost_a_refused_statement_is_not() {
        let cut = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(connection_lost(&cut));
        assert!(!connection_lost(&sqlx::Error::RowNotFound));
        assert!(!connection_lost(&sqlx::Error::PoolTimedOut));
    }
}
