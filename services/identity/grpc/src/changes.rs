//! `WatchMemberChanges`: the change log as a server stream. Each change is read from
//! the log only when the client can take it (HTTP/2 flow control pulls the stream), so
//! a slow client holds one batch, never a backlog; the stream ends when the server
//! shuts down (UNAVAILABLE: the client resumes elsewhere with its cursor).

use std::collections::VecDeque;
use std::pin::Pin;

use futures_util::Stream;
use identity_core::{ChangeRow, ChangeWatch};
use identity_proto::identity::v1 as pb;
use tokio::sync::watch;
use tonic::Status;

use crate::convert;

/// The stream of changes a call receives.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::MemberChange, Status>> + Send>>;

struct Following {
    watch: ChangeWatch,
    /// This stream's place among the replica's followers, given back when it ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
    read: VecDeque<ChangeRow>,
    stopping: watch::Receiver<bool>,
    ended: bool,
}

/// The changes after the watch's cursor, as they come, until the call is cancelled,
/// the server stops (`stopping` turns true) or the log fails.
pub fn follow(
    watch: ChangeWatch,
    permit: tokio::sync::OwnedSemaphorePermit,
    stopping: watch::Receiver<bool>,
) -> ChangeStream {
    let state = Following {
        watch,
        _permit: permit,
        read: VecDeque::new(),
        stopping,
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        if s.ended {
            return None;
        }
        if s.read.is_empty() {
            let next = tokio::select! {
                next = s.watch.next() => Some(next),
                _ = s.stopping.wait_for(|stop| *stop) => None,
            };
            match next {
                Some(Ok(changes)) => s.read.extend(changes),
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(convert::status(e)), s));
                }
                None => {
                    s.ended = true;
                    let status = Status::unavailable(
                        "the server is shutting down: resume after the last seq you received",
                    );
                    return Some((Err(status), s));
                }
            }
        }
        let change = s.read.pop_front()?;
        Some((Ok(convert::member_change(&change)), s))
    }))
}
