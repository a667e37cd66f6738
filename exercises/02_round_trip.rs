//! Step 02 — RoundTrip: forward the request, answer with the upstream's
//! status.
//!
//! A reverse proxy is a server whose handler is a client. The request that
//! arrived says `GET /echo` (origin-form); to send it on, the proxy gives it
//! an absolute URI (`http://upstream/echo`) so the client knows where to
//! connect. The client's `Host` header is kept: the upstream sees the name the
//! user typed.
//!
//! This first version holds both bodies in memory (`collect`), the simplest
//! thing that works for small pages. Step 03 fixes it.
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 02`.
//! This file is generated from `solutions/02_round_trip.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/02_round_trip.rs solutions/02_round_trip.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::pin::Pin;

use http::uri::{Parts, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tracing::warn;

use crate::body::{Body, BoxError, full, text};

/// Where requests go, and the client that takes them there.
///
/// The hyper-util client keeps a pool of idle connections per upstream, the
/// equivalent of Go's `http.DefaultTransport`: a request reuses a connection
/// instead of paying for a new TCP handshake. Cloning it shares that pool
/// (step 11 points clones at other upstreams).
///
/// `T` is the client: hyper-util's, over plain TCP, until step 17, whose
/// client adds TLS, groups of servers, and HTTP/2 upstreams of its own.
#[derive(Clone)]
pub struct Upstream<T = Client<HttpConnector, Body>> {
    pub uri: Uri,
    pub client: T,
}

/// What the proxy asks of a client: send a request, get the response's
/// head (its body streams after). hyper-util's client is one, whatever its
/// connector.
pub trait HttpClient: Clone + Send + Sync + 'static {
    fn request(&self, request: Request<Body>) -> ResponseFuture;
}

/// A response on its way: owns what it needs, so the client is not borrowed
/// while it waits.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

impl<C: Connect + Clone + Send + Sync + 'static> HttpClient for Client<C, Body> {
    fn request(&self, request: Request<Body>) -> ResponseFuture {
        // hyper-util's own method (inherent methods come first).
        let response = Client::request(self, request);
        Box::pin(async move { Ok(response.await?) })
    }
}

impl Upstream {
    pub fn new(uri: Uri) -> Upstream {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Upstream { uri, client }
    }
}

// ANCHOR: upstream_uri
/// The URI to send upstream: the upstream's scheme and authority, the
/// request's path and query. (Step 06 also joins the upstream's own path.)
/// The request's URI is taken, not borrowed: its path moves, uncopied.
pub fn upstream_uri(upstream: &Uri, request: Uri) -> Uri {
    // TODO: the URI to send: the upstream's scheme and authority, the request's path and query (`/` if it has none). Trap: keeping the path but losing the query: `/echo?x=1` must arrive as `/echo?x=1`
    todo!(
        "the URI to send: the upstream's scheme and authority, the request's path and query (`/` if it has none). Trap: keeping the path but losing the query: `/echo?x=1` must arrive as `/echo?x=1`"
    )
}
// ANCHOR_END: upstream_uri

// ANCHOR: bad_gateway
/// The answer when the upstream cannot be reached or fails mid-way: a 502
/// that says which upstream and why, immediately. Never a panic, never a
/// hang: the client can retry or give up.
pub fn bad_gateway(upstream: &Uri, err: &dyn std::error::Error) -> Response<Body> {
    // The client error says "client error (Connect)"; its source says why.
    let mut reason = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    warn!("upstream {upstream} failed: {reason}");
    text(
        StatusCode::BAD_GATEWAY,
        format!("502 Bad Gateway: upstream {upstream} failed: {reason}"),
    )
}
// ANCHOR_END: bad_gateway

// ANCHOR: round_trip
/// Sends `request` to the upstream and answers with its status and body.
pub async fn round_trip(upstream: &Upstream, request: Request<Incoming>) -> Response<Body> {
    // TODO: send the request to the upstream, its body read whole first, and answer with the upstream's status and body; an upstream that fails is a 502 naming it. Trap: unwrapping an error: with the upstream down, the client must get that 502 at once, not a panic or a hang
    todo!(
        "send the request to the upstream, its body read whole first, and answer with the upstream's status and body; an upstream that fails is a 502 naming it. Trap: unwrapping an error: with the upstream down, the client must get that 502 at once, not a panic or a hang"
    )
}
// ANCHOR_END: round_trip
