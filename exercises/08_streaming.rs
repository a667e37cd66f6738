//! Step 08 — streaming: nothing buffered, nothing left behind.
//!
//! Since step 03 the bodies stream, and hyper gives most of what a streaming
//! proxy needs by construction. This step makes it explicit and closes the
//! remaining gaps:
//! - **no added latency**: small writes go out at once (`TCP_NODELAY`), on
//!   the upstream connections too; Nagle's algorithm would hold a small
//!   chunk back until the previous one is acknowledged;
//! - **cancellation and backpressure**, hyper's by construction: when the
//!   client goes away, hyper drops the response body, which drops the
//!   upstream response, which closes that connection (the upstream stops
//!   working for nobody); and hyper polls a body only when the socket can
//!   take more, so a slow client slows the upstream;
//! - **honest failure**: an upstream that dies mid-body makes the body
//!   return an error, and hyper then *aborts* the client connection instead
//!   of ending the response cleanly: a truncated file must never look
//!   complete;
//! - **a deadline**: an upstream that does not answer gets `504 Gateway
//!   Timeout` after `--upstream-timeout`. Like Go's `ResponseHeaderTimeout`
//!   the clock starts once the request body is sent (a slow upload is not
//!   the upstream's fault) and stops at the response head (a stream that
//!   keeps sending is never cut). Unlike Go's, a request without a body
//!   starts it at once, connecting included: learning when hyper has
//!   written its head would cost a wake-up.
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 08`.
//! This file is generated from `solutions/08_streaming.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/08_streaming.rs solutions/08_streaming.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tracing::warn;

use crate::body::{Body, text};
use crate::round_trip::Upstream;

/// How long the proxy waits for an upstream's response head.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct Options {
    /// Seconds to wait for the upstream's response head before answering
    /// 504; a response that is streaming is never cut.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    pub upstream_timeout: Duration,
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(Duration::from_secs_f64(seconds)),
        _ => Err("expected a positive number of seconds, like 30 or 0.5".into()),
    }
}

// ANCHOR: nodelay
/// The upstream client of step 02, with `TCP_NODELAY` on its connections.
pub fn streaming_upstream(uri: Uri) -> Upstream {
    let mut connector = HttpConnector::new();
    // TODO: small writes leave for the upstream at once, never held back until the previous one is acknowledged. Trap: counting on step 01: it did that for the client's connections only; the upstream's are opened by `connector`, where Nagle's algorithm is on by default
    todo!(
        "small writes leave for the upstream at once, never held back until the previous one is acknowledged. Trap: counting on step 01: it did that for the client's connections only; the upstream's are opened by `connector`, where Nagle's algorithm is on by default"
    );
    let client = Client::builder(TokioExecutor::new()).build(connector);
    Upstream { uri, client }
}
// ANCHOR_END: nodelay

// ANCHOR: sent
/// Wraps the request body so that `sent` fires once it has all gone
/// upstream: that is when the upstream's time to answer starts. A request
/// without a body has nothing to send: its time starts at once (connecting
/// to the upstream included, which step 17 bounds on its own: sooner, by
/// default).
pub fn notice_when_sent<B: hyper::body::Body>(
    request: Request<B>,
) -> (Request<WhenSent<B>>, oneshot::Receiver<()>) {
    let (tx, sent) = oneshot::channel();
    // No body (a GET): sent already. Were it told only when hyper drops
    // the empty body, the request would be woken, and every layer of it
    // polled, for nothing: 2,000 instructions a request in step 17.
    let tx = match request.body().is_end_stream() {
        true => {
            let _ = tx.send(());
            None
        }
        false => Some(tx),
    };
    let request = request.map(|body| WhenSent { body, sent: tx });
    (request, sent)
}
// ANCHOR_END: sent

/// A body that passes every frame through, and says when it is done.
pub struct WhenSent<B> {
    body: B,
    sent: Option<oneshot::Sender<()>>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for WhenSent<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        // hyper stops polling once `is_end_stream` says so: check both.
        if (matches!(poll, Poll::Ready(None)) || self.body.is_end_stream())
            && let Some(sent) = self.sent.take()
        {
            let _ = sent.send(());
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// ANCHOR: deadline
/// Waits for `round_trip`: as long as it takes while the request body is
/// going up, then at most `timeout` for the response head; past it, `504`.
///
/// `round_trip` resolves as soon as the response head arrives (its body is
/// still a stream), so the deadline never cuts a long download. A caller
/// whose future is big passes it pinned (`pin!(future)`): moved in here,
/// it would be held twice, and copied (step 11 does).
pub async fn with_deadline(
    timeout: Duration,
    sent: oneshot::Receiver<()>,
    upstream: &Uri,
    round_trip: impl Future<Output = Response<Body>>,
) -> Response<Body> {
    let mut round_trip = std::pin::pin!(round_trip);
    // An upstream may answer before the upload ends (a 413, a redirect).
    tokio::select! {
        response = &mut round_trip => return response,
        // Sent, or dropped: either way no more body is coming.
        _ = sent => {}
    }
    // TODO: the response `round_trip` gives within `timeout`, unchanged; past it, 504 Gateway Timeout with a body naming `upstream` and the delay, the upstream request abandoned. Trap: a 502 as for an unreachable upstream, or a bare status: the client must learn that it was slowness, and whose
    todo!(
        "the response `round_trip` gives within `timeout`, unchanged; past it, 504 Gateway Timeout with a body naming `upstream` and the delay, the upstream request abandoned. Trap: a 502 as for an unreachable upstream, or a bare status: the client must learn that it was slowness, and whose"
    )
}
// ANCHOR_END: deadline
