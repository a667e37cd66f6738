//! One body type for every step.
//!
//! hyper is generic over the body type, which is precise but noisy in a talk:
//! a response that streams from the upstream (`Incoming`) and a 502 page
//! (`Full<Bytes>`) are different types. Boxing both into one [`Body`] lets a
//! handler return either. The cost is one allocation per body, which a real
//! proxy can afford too (hyper's own examples do the same).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::{Frame, SizeHint};

/// Any error a body may fail with: hyper's, an I/O error, a timeout...
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any request body a proxy can pass on: chunks of [`Bytes`], an error it
/// can box. hyper's `Incoming` is one; step 14 wraps it in a counting one.
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

/// The body of every request and response the steps build.
///
/// `Unsync` because hyper only needs bodies to be `Send`, and some bodies
/// (streams holding a receiver) are not `Sync`.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Box any body whose chunks are [`Bytes`].
pub fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body held entirely in memory.
pub fn full(data: impl Into<Bytes>) -> Body {
    boxed(Full::new(data.into()))
}

/// A body with no bytes at all.
pub fn empty() -> Body {
    boxed(Empty::<Bytes>::new())
}

/// A body that counts the bytes that go through it and calls `done` with
/// the count when it is dropped: at its end, or when the client goes away.
/// What must last as long as a response hangs on it: an app's activity
/// (step 13), the end of a request for the head deadline (step 14), the
/// access log's line (step 15).
// ANCHOR: when_dropped
pub fn when_dropped(body: Body, done: impl FnOnce(u64) + Send + 'static) -> Body {
    boxed(WhenDropped {
        body,
        sent: 0,
        done: Some(done),
    })
}
// ANCHOR_END: when_dropped

/// A body that keeps `value` alive for as long as it is not dropped.
pub fn holding<T: Send + 'static>(body: Body, value: T) -> Body {
    when_dropped(body, move |_| drop(value))
}

struct WhenDropped<D: FnOnce(u64)> {
    body: Body,
    sent: u64,
    done: Option<D>,
}

// `done` is never pinned (only called, once, by value): moving it is fine.
impl<D: FnOnce(u64)> Unpin for WhenDropped<D> {}

// ANCHOR: when_dropped
impl<D: FnOnce(u64)> Drop for WhenDropped<D> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.sent);
        }
    }
}
// ANCHOR_END: when_dropped

impl<D: FnOnce(u64)> hyper::body::Body for WhenDropped<D> {
    type Data = Bytes;
    type Error = BoxError;

    // ANCHOR: when_dropped
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.sent += data.len() as u64;
        }
        polled
    }
    // ANCHOR_END: when_dropped

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body counted while it streams, never buffered: past `limit`
/// bytes it fails (whoever reads it gets an error, never the excess), and
/// its [`BodyFaults`] say so (step 14 answers 413). A body the client
/// broke (malformed chunks, a connection cut mid-way) is said there too:
/// the client's fault, a 400, where the upstream's send would make a 502.
pub struct LimitedBody<B> {
    inner: B,
    seen: u64,
    limit: u64,
    faults: BodyFaults,
}

/// What went wrong with a request body, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// Longer than the limit: cut there.
    OverLimit,
    /// The client's bytes were not a body (or stopped short).
    Broken,
}

/// A [`LimitedBody`]'s fault, read by whoever answers the request.
#[derive(Debug, Clone, Default)]
pub struct BodyFaults(Arc<AtomicU8>);

impl BodyFaults {
    pub fn get(&self) -> Option<BodyFault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(BodyFault::OverLimit),
            2 => Some(BodyFault::Broken),
            _ => None,
        }
    }

    fn set(&self, fault: BodyFault) {
        let code = match fault {
            BodyFault::OverLimit => 1,
            BodyFault::Broken => 2,
        };
        self.0.store(code, Ordering::Relaxed);
    }
}

impl<B> LimitedBody<B> {
    /// `inner`, cut after `limit` bytes; the faults say if it was, or if
    /// the client broke it.
    pub fn new(inner: B, limit: u64) -> (LimitedBody<B>, BodyFaults) {
        let faults = BodyFaults::default();
        let body = LimitedBody {
            inner,
            seen: 0,
            limit,
            faults: faults.clone(),
        };
        (body, faults)
    }
}

impl<B: RequestBody> hyper::body::Body for LimitedBody<B> {
    type Data = Bytes;
    type Error = BoxError;

    // ANCHOR: limited
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.limit {
                        self.faults.set(BodyFault::OverLimit);
                        return Poll::Ready(Some(Err("the request body is over the limit".into())));
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => self.faults.set(BodyFault::Broken),
            _ => {}
        }
        polled.map(|frame| frame.map(|frame| frame.map_err(Into::into)))
    }
    // ANCHOR_END: limited

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a response the proxy made itself (with [`text`]), not one that
/// came from an upstream: step 15 tells them apart.
#[derive(Debug, Clone, Copy)]
pub struct MadeByProxy;

/// A short plain-text answer, the way every step reports a problem:
/// the status line says what kind, the one-line body says what happened.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = message.into();
    message.push('\n');
    let mut response = Response::new(full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.extensions_mut().insert(MadeByProxy);
    response
}
