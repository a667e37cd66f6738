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
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 04`.
//! This file is generated from `solutions/04_copy_headers.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/04_copy_headers.rs solutions/04_copy_headers.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri};
use hyper::body::Incoming;

use crate::body::{Body, BoxError, boxed};
use crate::round_trip::{HttpClient, Upstream, bad_gateway, upstream_uri};

// ANCHOR: copy_headers
/// Copies every header line of `from` into `to`, repeated names included.
pub fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    // TODO: every header line of `from` ends up in `to`: a name sent twice arrives twice, in the same order. Trap: a copy that replaces a name's earlier values, so two Set-Cookie become one
    todo!(
        "every header line of `from` ends up in `to`: a name sent twice arrives twice, in the same order. Trap: a copy that replaces a name's earlier values, so two Set-Cookie become one"
    )
}
// ANCHOR_END: copy_headers

// ANCHOR: round_trip
/// Sends a new request built from `request` upstream, and answers with a new
/// response built from the upstream's.
pub async fn round_trip<B, T: HttpClient>(
    upstream: &Upstream<T>,
    request: Request<B>,
) -> Response<Body>
where
    // Any request body that yields bytes: `Incoming` as it came, or a body
    // a later step wraps around it.
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let outgoing = outgoing_request(&upstream.uri, request);
    match upstream.client.request(outgoing).await {
        Ok(response) => client_response(response),
        Err(err) => bad_gateway(&upstream.uri, &*err),
    }
}
// ANCHOR_END: round_trip

// ANCHOR: build_request
/// A new request for the upstream: the client's method, its path under the
/// upstream's address, its headers, its body as a stream.
pub fn outgoing_request<B>(upstream: &Uri, request: Request<B>) -> Request<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::new(boxed(body));
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = upstream_uri(upstream, &parts.uri);
    copy_headers(&parts.headers, outgoing.headers_mut());
    outgoing
}
// ANCHOR_END: build_request

// ANCHOR: build_response
/// A new response for the client: the upstream's status, its headers, its
/// body as a stream.
pub fn client_response(response: Response<Incoming>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let mut answer = Response::new(boxed(body));
    *answer.status_mut() = parts.status;
    // HTTP/2 from an HTTP/2 upstream (step 09): hyper still answers an
    // HTTP/1.1 client in HTTP/1.1, and step 07 knows how the body ends.
    *answer.version_mut() = parts.version;
    copy_headers(&parts.headers, answer.headers_mut());
    answer
}
// ANCHOR_END: build_response
