//! Step 04 — copy the headers, both ways.
//!
//! Until now the request went upstream as it came (headers and all, by
//! accident) and the upstream's headers were dropped on the way back: no
//! `Content-Type`, no `Set-Cookie`. Here the proxy builds each message anew
//! and copies the headers explicitly: a proxy *decides* what crosses (the
//! next steps remove some and add others).
//!
//! One trap: a header name can appear several times (`Set-Cookie` on almost
//! every login response). `HeaderMap::insert` keeps only the last value;
//! `append` keeps them all, in order.

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use crate::body::{Body, BoxError, boxed};
use crate::round_trip::{Upstream, bad_gateway, upstream_uri};

// ANCHOR: copy_headers
/// Copies every header line of `from` into `to`, repeated names included.
pub fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    // EXERCISE: copy every (name, value) pair with append, so that repeated headers stay repeated and in order
    for (name, value) in from {
        to.append(name, value.clone());
    }
    // END EXERCISE
}
// ANCHOR_END: copy_headers

// ANCHOR: round_trip
/// Sends a new request built from `request` upstream, and answers with a new
/// response built from the upstream's: status, headers, streaming body.
pub async fn round_trip<B>(upstream: &Upstream, request: Request<B>) -> Response<Body>
where
    // Any request body that yields bytes: `Incoming` as it came, or a body
    // a later step wraps around it.
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // ANCHOR: build_request
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::new(boxed(body));
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = upstream_uri(&upstream.uri, &parts.uri);
    copy_headers(&parts.headers, outgoing.headers_mut());
    // ANCHOR_END: build_request

    // ANCHOR: build_response
    let response = match upstream.client.request(outgoing).await {
        Ok(response) => response,
        Err(err) => return bad_gateway(&upstream.uri, &err),
    };
    let (parts, body) = response.into_parts();
    let mut answer = Response::new(boxed(body));
    *answer.status_mut() = parts.status;
    copy_headers(&parts.headers, answer.headers_mut());
    answer
    // ANCHOR_END: build_response
}
// ANCHOR_END: round_trip
