//! Step 03 — stream the bodies: the `io.Copy` of Rust.
//!
//! In hyper a body is not a byte array but a stream of *frames* (data, or
//! trailers at the end). A proxy that hands the incoming stream straight to
//! the other side moves each frame as it arrives: a 1 GiB upload goes through
//! in a few MiB of memory (hyper's buffers), the first bytes of a slow response reach the
//! client at once, and a client that stops reading stops the upstream too
//! (hyper only polls the body when the socket can take more: backpressure
//! for free).
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 03`.
//! This file is generated from `solutions/03_stream_body.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/03_stream_body.rs solutions/03_stream_body.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::{Body, boxed};
use crate::round_trip::{Upstream, bad_gateway, upstream_uri};

// ANCHOR: round_trip
/// Sends `request` upstream; both bodies stream, frame by frame.
pub async fn round_trip(upstream: &Upstream, request: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    parts.uri = upstream_uri(&upstream.uri, parts.uri);
    // TODO: send the request upstream and answer with the upstream's status and body, each body passed on frame by frame as it arrives (a 502 if the upstream fails). Trap: reading a body whole before passing it on, as step 02 did: memory grows with the body and the first bytes come last
    todo!(
        "send the request upstream and answer with the upstream's status and body, each body passed on frame by frame as it arrives (a 502 if the upstream fails). Trap: reading a body whole before passing it on, as step 02 did: memory grows with the body and the first bytes come last"
    )
}
// ANCHOR_END: round_trip
