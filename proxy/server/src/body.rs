//! Reading a request body for the proxy: buffered when it fits the bound (so that it can
//! be retried, replayed to the other side and fallen back on), otherwise streamed with
//! the part already read in front.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::forward::ProxyBody;

/// A request body after the proxy looked at it.
pub enum RequestBody {
    /// The whole body, at most the bound.
    Buffered(Bytes),
    /// Longer than the bound: forwarded as a stream, never replayed.
    Streaming(ProxyBody),
}

/// The bytes already read, then the rest of the stream.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower() + extra);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

/// Reads up to `limit` bytes; a longer body becomes a stream.
pub async fn read(mut body: Incoming, limit: usize) -> Result<RequestBody, hyper::Error> {
    if body.size_hint().lower() as usize > limit {
        return Ok(RequestBody::Streaming(body.boxed()));
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
            if buf.len() > limit {
                let stream = Prefixed {
                    prefix: Some(Bytes::from(buf)),
                    rest: body,
                };
                return Ok(RequestBody::Streaming(stream.boxed()));
            }
        }
    }
    Ok(RequestBody::Buffered(Bytes::from(buf)))
}
