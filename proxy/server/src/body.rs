//! Reading a request body for the proxy: buffered when it fits both the comparison's
//! bound and the proxy's body budget (so that it can be retried, replayed to the other
//! side and fallen back on), otherwise streamed with the part already read in front.
//! Either way the body is held to the client's read deadline.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::forward::{BoxError, ProxyBody};
use crate::limits::{BodyError, Reservation, TimedRequest};

/// A whole request body held in memory, and the budget it holds.
pub struct Buffered {
    pub bytes: Bytes,
    pub reservation: Reservation,
}

/// Why a body is streamed rather than buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCause {
    /// Longer than the comparison's bound.
    TooLarge,
    /// The proxy's body budget had no room for it.
    OverBudget,
}

/// A request body after the proxy looked at it.
pub enum RequestBody {
    /// The whole body, at most the bound.
    Buffered(Buffered),
    /// Forwarded as a stream, never replayed.
    Streaming(ProxyBody, StreamCause),
}

/// The bytes already read (the buffered part, which holds its budget until sent, and
/// the chunk that did not fit), then the rest.
struct Prefixed {
    read: Option<(Bytes, Reservation)>,
    unfit: Option<Bytes>,
    rest: TimedRequest,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some((read, _reservation)) = self.read.take()
            && !read.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        if let Some(unfit) = self.unfit.take() {
            return Poll::Ready(Some(Ok(Frame::data(unfit))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.unfit.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let extra = self.read.as_ref().map_or(0, |(p, _)| p.len() as u64)
            + self.unfit.as_ref().map_or(0, |p| p.len() as u64);
        // The upper bound first: setting a lower bound above the upper one panics.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(extra));
        }
        hint.set_lower(rest.lower().saturating_add(extra));
        hint
    }
}

/// Reads up to `limit` bytes, each byte taken from `reservation`'s budget first; a
/// longer body, or one the budget cannot hold, becomes a stream.
pub async fn read(
    mut body: TimedRequest,
    limit: usize,
    mut reservation: Reservation,
) -> Result<RequestBody, BodyError> {
    if body.size_hint().lower() > limit as u64 {
        return Ok(RequestBody::Streaming(body.boxed(), StreamCause::TooLarge));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match e.downcast::<BodyError>() {
            Ok(own) => *own,
            Err(other) => BodyError::Client(other),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let needed = buf.len() + data.len();
        let cause = if needed > limit {
            Some(StreamCause::TooLarge)
        } else if needed > buf.capacity() {
            // Grow as a vector grows (doubling), with the budget covering what is
            // allocated, not only what is filled.
            let capacity = needed.max(buf.capacity() * 2).min(limit);
            if reservation.cover(capacity) {
                buf.reserve_exact(capacity - buf.len());
                None
            } else {
                Some(StreamCause::OverBudget)
            }
        } else {
            None
        };
        if let Some(cause) = cause {
            // The chunk in hand goes on as it is: no copy grows past the budget.
            let stream = Prefixed {
                read: Some((Bytes::from(buf), reservation)),
                unfit: Some(data),
                rest: body,
            };
            return Ok(RequestBody::Streaming(stream.boxed(), cause));
        }
        buf.extend_from_slice(&data);
    }
    Ok(RequestBody::Buffered(Buffered {
        bytes: Bytes::from(buf),
        reservation,
    }))
}
