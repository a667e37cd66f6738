//! One body type for every step.
//!
//! hyper is generic over the body type, which is precise but noisy in a talk:
//! a response that streams from the upstream (`Incoming`) and a 502 page
//! (`Full<Bytes>`) are different types. Boxing both into one [`Body`] lets a
//! handler return either. The cost is one allocation per body, which a real
//! proxy can afford too (hyper's own examples do the same).

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Any error a body may fail with: hyper's, an I/O error, a timeout...
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any request body a proxy can pass on: chunks of [`Bytes`], an error it
/// can box. hyper's `Incoming` is one; step 13 wraps it in a counting one.
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

/// Marks a response the proxy made itself (with [`text`]), not one that
/// came from an upstream: step 13 tells them apart.
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
