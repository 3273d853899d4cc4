//! A response body that streams to the client while keeping a bounded copy for the
//! shadow comparison. The copy is handed over when the body ends (or is dropped early,
//! marked incomplete), so the client never waits for the comparison.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

/// What the tee kept of a body.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// The body was longer than the bound: `bytes` holds only its start.
    pub truncated: bool,
    /// The body did not end normally (client gone, upstream error).
    pub incomplete: bool,
}

pub struct TeeBody<B> {
    inner: B,
    limit: usize,
    captured: Captured,
    done: Option<oneshot::Sender<Captured>>,
}

impl<B> TeeBody<B> {
    pub fn new(inner: B, limit: usize) -> (Self, oneshot::Receiver<Captured>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                inner,
                limit,
                captured: Captured::default(),
                done: Some(tx),
            },
            rx,
        )
    }

    fn finish(&mut self, incomplete: bool) {
        if let Some(tx) = self.done.take() {
            let mut captured = std::mem::take(&mut self.captured);
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
                    let room = this.limit.saturating_sub(this.captured.bytes.len());
                    if data.len() > room {
                        this.captured.truncated = true;
                    }
                    this.captured
                        .bytes
                        .extend_from_slice(&data[..data.len().min(room)]);
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

    #[tokio::test]
    async fn streams_everything_and_keeps_a_bounded_copy() {
        let (tee, rx) = TeeBody::new(Full::new(Bytes::from_static(b"0123456789")), 4);
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
        let (tee, rx) = TeeBody::new(Full::new(Bytes::from_static(b"abc")), 64);
        drop(tee);
        assert!(rx.await.unwrap().incomplete);
    }
}
