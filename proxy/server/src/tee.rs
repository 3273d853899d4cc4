//! A response body that streams to the client while keeping a bounded copy for the
//! shadow comparison. The copy is handed over when the body ends (or is dropped early,
//! marked incomplete), so the client never waits for the comparison. The copy's bytes
//! are taken from the proxy's body budget; what the budget cannot hold is not kept
//! (the copy is then marked truncated, and not compared).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::limits::Reservation;

/// What the tee kept of a body.
#[derive(Debug)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// The body was longer than the bound (or the budget): `bytes` holds only its start.
    pub truncated: bool,
    /// The body did not end normally (client gone, upstream error, deadline).
    pub incomplete: bool,
    /// The budget could not hold the whole body (so `truncated` too).
    pub over_budget: bool,
    /// The budget `bytes` hold until the comparison is done.
    pub reservation: Reservation,
}

pub struct TeeBody<B> {
    inner: B,
    limit: usize,
    captured: Option<Captured>,
    done: Option<oneshot::Sender<Captured>>,
}

impl<B> TeeBody<B> {
    pub fn new(
        inner: B,
        limit: usize,
        reservation: Reservation,
    ) -> (Self, oneshot::Receiver<Captured>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                inner,
                limit,
                captured: Some(Captured {
                    bytes: Vec::new(),
                    truncated: false,
                    incomplete: false,
                    over_budget: false,
                    reservation,
                }),
                done: Some(tx),
            },
            rx,
        )
    }

    fn keep(&mut self, data: &[u8]) {
        let Some(captured) = self.captured.as_mut() else {
            return;
        };
        if captured.truncated {
            return;
        }
        let room = self.limit.saturating_sub(captured.bytes.len());
        let take = data.len().min(room);
        let needed = captured.bytes.len() + take;
        if needed > captured.bytes.capacity() {
            let capacity = needed.max(captured.bytes.capacity() * 2).min(self.limit);
            if !captured.reservation.cover(capacity) {
                (captured.truncated, captured.over_budget) = (true, true);
                return;
            }
            captured
                .bytes
                .reserve_exact(capacity - captured.bytes.len());
        }
        captured.bytes.extend_from_slice(&data[..take]);
        if take < data.len() {
            captured.truncated = true;
        }
    }

    fn finish(&mut self, incomplete: bool) {
        if let (Some(tx), Some(mut captured)) = (self.done.take(), self.captured.take()) {
            captured.incomplete = incomplete;
            let _ = tx.send(captured);
        }
    }
}

impl<B> Drop for TeeBody<B> {
    fn drop(&mut self) {
        self.finish(true);
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.keep(data);
                }
                // A sender that knows the length stops polling after the last frame.
                if this.inner.is_end_stream() {
                    this.finish(false);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(true);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(false);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn budget(bytes: usize) -> Reservation {
        crate::limits::BodyBudget::new(bytes).reservation()
    }

    #[tokio::test]
    async fn streams_everything_and_keeps_a_bounded_copy() {
        let (tee, rx) = TeeBody::new(
            Full::new(Bytes::from_static(b"0123456789")),
            4,
            budget(1024),
        );
        let all = tee.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"0123456789");
        let c = rx.await.unwrap();
        assert_eq!(
            (c.bytes.as_slice(), c.truncated, c.incomplete),
            (&b"0123"[..], true, false)
        );
    }

    #[tokio::test]
    async fn a_dropped_body_is_reported_incomplete() {
        let (tee, rx) = TeeBody::new(Full::new(Bytes::from_static(b"abc")), 64, budget(64));
        drop(tee);
        assert!(rx.await.unwrap().incomplete);
    }

    #[tokio::test]
    async fn what_the_budget_cannot_hold_is_streamed_but_not_kept() {
        let budget = crate::limits::BodyBudget::new(3);
        let (tee, rx) = TeeBody::new(
            Full::new(Bytes::from_static(b"0123456789")),
            64,
            budget.reservation(),
        );
        let all = tee.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"0123456789");
        let c = rx.await.unwrap();
        assert!(c.truncated && c.over_budget && c.bytes.is_empty());
        assert_eq!(budget.in_use(), 0);
        drop(c);
        assert_eq!(budget.in_use(), 0);
    }
}
