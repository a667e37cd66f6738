//! Step 03 — stream the bodies: the `io.Copy` of Rust.
//!
//! In hyper a body is not a byte array but a stream of *frames* (data, or
//! trailers at the end). A proxy that hands the incoming stream straight to
//! the other side moves each frame as it arrives: a 1 GiB upload goes through
//! in a few MiB of memory (hyper's buffers), the first bytes of a slow response reach the
//! client at once, and a client that stops reading stops the upstream too
//! (hyper only polls the body when the socket can take more: backpressure
//! for free).

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::{Body, boxed};
use crate::round_trip::{Upstream, bad_gateway, upstream_uri};

// ANCHOR: round_trip
/// Sends `request` upstream; both bodies stream, frame by frame.
pub async fn round_trip(upstream: &Upstream, request: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    parts.uri = upstream_uri(&upstream.uri, parts.uri);
    // EXERCISE: send the request upstream and answer with the upstream's status and body, each body passed on frame by frame as it arrives (a 502 if the upstream fails). Trap: reading a body whole before passing it on, as step 02 did: memory grows with the body and the first bytes come last
    // ANCHOR: stream
    // No `collect()`: the incoming body *is* the outgoing body.
    let request = Request::from_parts(parts, boxed(body));
    let response = match upstream.client.request(request).await {
        Ok(response) => response,
        Err(err) => return bad_gateway(&upstream.uri, &err),
    };
    let status = response.status();
    let mut answer = Response::new(boxed(response.into_body()));
    *answer.status_mut() = status;
    answer
    // ANCHOR_END: stream
    // END EXERCISE
}
// ANCHOR_END: round_trip
