//! Step 04 — the headers, both ways: what crosses is a decision.
//!
//! Until now the request went upstream with its whole head (by accident:
//! step 03 reused it) and the upstream's headers were dropped on the way
//! back: no `Content-Type`, no `Set-Cookie`. Go's proxy copies every header
//! line into a message of its own, because Go's server owns the map it
//! writes (`rw.Header()`). In Rust the proxy owns both heads: it passes them
//! on, and *decides* what does not cross. The request's version and
//! extensions belong to the client's connection, the response's extensions
//! to the upstream's. The next steps edit the headers where they are:
//! remove some (05), add others (06).
//!
//! Why not build new messages and copy the lines across? A copy is where
//! lines get lost: `HeaderMap::insert` keeps only a name's last value, so
//! two `Set-Cookie` would become one (Go's `Set` versus `Add`). And it is
//! work on every request: two new maps and a clone per line, 4,000 of the
//! 69,000 instructions step 17 spends on a small request, and 6 of its 54
//! allocations (callgrind, `bench/compare.py`'s config), where hyper reuses
//! the maps it parsed into.

use bytes::Bytes;
use http::{Extensions, Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::body::{Body, BoxError, boxed};
use crate::round_trip::{HttpClient, Upstream, bad_gateway, upstream_uri};

// ANCHOR: round_trip
/// Sends the client's request upstream, and answers with the upstream's
/// response, each without what belongs to the other connection.
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
/// The client's request, for the upstream: its method, headers and body
/// (a stream), its path under the upstream's address.
pub fn outgoing_request<B>(upstream: &Uri, request: Request<B>) -> Request<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // EXERCISE: the upstream gets the client's method, every header line as it came (a name sent twice arrives twice, in order), the path under the upstream's address and the body as a stream, but nothing of the client's connection: its version becomes the default (the upstream connection has its own), its extensions stay here. Trap: the client's version kept: an HTTP/2 client's request then asks the upstream connection for HTTP/2, and step 09's clients get 502s (step 04's checks cannot see it: their clients speak HTTP/1.1)
    let (mut parts, body) = request.into_parts();
    parts.uri = upstream_uri(upstream, parts.uri);
    // The upstream connection speaks its own version (step 09 chooses it),
    // and what the server noted (`ClientAddr`) stays on our side.
    parts.version = Version::default();
    parts.extensions = Extensions::new();
    Request::from_parts(parts, boxed(body))
    // END EXERCISE
}
// ANCHOR_END: build_request

// ANCHOR: build_response
/// The upstream's response, for the client: its status, headers and body
/// (a stream), without what hyper noted about the upstream's connection.
pub fn client_response(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    // The version may stay: hyper answers each client in the client's own
    // version, whatever the upstream spoke (an HTTP/2 upstream: step 09).
    parts.extensions = Extensions::new();
    Response::from_parts(parts, boxed(body))
}
// ANCHOR_END: build_response
