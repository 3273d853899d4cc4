//! The bounds every client and upstream is held to, as small pieces the request path
//! composes:
//!
//! - [`BodyBudget`]: the bytes of bodies the whole proxy holds in memory at once
//!   (buffered requests, captured answers, replays). A reservation is returned when its
//!   bytes are dropped; what does not fit is streamed, never held.
//! - [`Deadline`]: a point in time that a body must finish by, armed only when the body
//!   first has to wait (most bodies of the member API arrive with their head, and then no
//!   timer is ever registered).
//! - [`TimedRequest`]: a client's request body held to its read deadline (`408`).
//! - [`Served`]: the answer's body held to the route's deadline, as Istio's `timeout`
//!   covers the whole answer, and counted as in flight on its connection until it is
//!   done (for the idle watchdog in `serve`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::forward::{BoxError, ProxyBody};

/// Bytes of bodies held in memory by the whole proxy, against a limit that a reload
/// may change.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        })
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit in force.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }
}

/// Bytes taken from the budget, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Reservation {
    /// Takes `more` bytes; false (and nothing taken) when the budget has no room.
    pub fn grow(&mut self, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        let ok = self.budget.take(more);
        if ok {
            self.bytes += more;
        }
        ok
    }

    /// Makes the reservation cover at least `total` bytes.
    pub fn cover(&mut self, total: usize) -> bool {
        self.grow(total.saturating_sub(self.bytes))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// A moment a body must be done by. The timer is registered only when the body first
/// waits, so bodies that are complete when first polled cost no timer.
pub struct Deadline {
    at: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    pub fn at(at: Instant) -> Self {
        Self { at, sleep: None }
    }

    /// Whether the moment has passed; arms a wake-up for it otherwise.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let at = tokio::time::Instant::from_std(self.at);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client did not send the whole body within the read deadline.
    #[error("request body not received within the read timeout")]
    Timeout,
    /// The client's connection failed or the body was malformed.
    #[error("request body unreadable: {0}")]
    Client(#[source] BoxError),
}

/// A client's request body, held to its read deadline. Once the deadline has passed it
/// yields an error, and `timed_out` tells anyone who forwarded it that the client, not
/// the upstream, was at fault.
pub struct TimedRequest {
    inner: Incoming,
    deadline: Deadline,
    timed_out: Arc<AtomicBool>,
}

impl TimedRequest {
    pub fn new(inner: Incoming, deadline: Instant) -> Self {
        Self {
            inner,
            deadline: Deadline::at(deadline),
            timed_out: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Set once the body timed out.
    pub fn timed_out_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.timed_out)
    }
}

impl Body for TimedRequest {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending if this.deadline.poll_expired(cx) => {
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyError::Timeout))))
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

/// Requests of one client connection: how many are in flight (their answers not yet
/// finished) and how many have started, for the idle watchdog.
#[derive(Debug, Default)]
pub struct ConnActivity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// The connection speaks HTTP/2 (seen on its first request).
    http2: std::sync::atomic::AtomicBool,
}

impl ConnActivity {
    /// A request of `version` starts; it is in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Whether the connection speaks HTTP/2 (as far as its requests have shown).
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// (requests in flight, requests started so far).
    pub fn state(&self) -> (usize, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.started.load(Ordering::Relaxed),
        )
    }
}

/// One request in flight on its connection.
#[derive(Debug)]
pub struct InFlight(Arc<ConnActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The body of an answer as the client receives it: ended with an error (the stream
/// reset, the connection closed) if it is not done by the route's deadline; in flight
/// on its connection until dropped.
pub struct Served {
    inner: ProxyBody,
    deadline: Option<Deadline>,
    _in_flight: Option<InFlight>,
}

impl Served {
    pub fn new(inner: ProxyBody, deadline: Option<Instant>, in_flight: Option<InFlight>) -> Self {
        Self {
            inner,
            deadline: deadline.map(Deadline::at),
            _in_flight: in_flight,
        }
    }
}

/// The answer was not done by the route's deadline.
#[derive(Debug, thiserror::Error)]
#[error("answer not complete within the route's timeout")]
pub struct AnswerTimeout;

impl Body for Served {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending if this.deadline.as_mut().is_some_and(|d| d.poll_expired(cx)) => {
                Poll::Ready(Some(Err(Box::new(AnswerTimeout))))
            }
            other => other,
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
    use http_body_util::BodyExt;
    use std::time::Duration;

    #[test]
    fn reservations_return_their_bytes_and_never_pass_the_limit() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        assert!(a.grow(60));
        let mut b = budget.reservation();
        assert!(!b.grow(41), "over the limit");
        assert_eq!(budget.in_use(), 60);
        assert!(b.cover(40));
        assert!(b.cover(10), "already covered");
        assert_eq!((budget.in_use(), b.bytes()), (100, 40));
        drop(a);
        assert_eq!(budget.in_use(), 40);
        budget.set_limit(30);
        assert!(!b.grow(1));
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    /// A body that never ends.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stalled_answer_ends_at_its_deadline_and_leaves_flight() {
        let activity = Arc::new(ConnActivity::default());
        let served = Served::new(
            Stalled.boxed(),
            Some(Instant::now() + Duration::from_millis(50)),
            Some(activity.begin(http::Version::HTTP_11)),
        );
        assert_eq!(activity.state(), (1, 1));
        let error = served.collect().await.err().unwrap();
        assert!(error.is::<AnswerTimeout>(), "{error}");
        assert_eq!(activity.state(), (0, 1));
    }

    #[tokio::test]
    async fn a_complete_answer_registers_no_timer() {
        let mut deadline = Deadline::at(Instant::now() + Duration::from_secs(5));
        assert!(deadline.sleep.is_none());
        let served = Served::new(
            crate::forward::full(Bytes::from_static(b"ok")),
            Some(Instant::now() + Duration::from_secs(5)),
            None,
        );
        assert_eq!(&served.collect().await.unwrap().to_bytes()[..], b"ok");
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(!deadline.poll_expired(&mut cx));
        assert!(deadline.sleep.is_some());
    }

    fn futures_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
