//! Step 15 — observed: telling the operator what happened, and the client
//! no more than it needs.
//!
//! Four ideas, in order:
//! - a request is over when its response has been sent, not when its head
//!   is ready: the access log's line ([`Observed::when_sent`]) is written
//!   when the body is done (or the client has gone), with the bytes
//!   really sent and the time it all took;
//! - a client that leaves before the answer is a request too: the line it
//!   never got is written when its future is dropped, with nginx's status
//!   499 ([`Unanswered`]);
//! - counting for Prometheus ([`Observed`]): by who answered (a rule of
//!   the routes, by its line; an app; the proxy) and by status class, a
//!   few labels known in advance: nothing is formatted per request;
//! - [`say_enough`]: the 502, 503 and 504 of steps 02, 08 and 12 named
//!   the upstream, the error, an app's stderr; the client now gets one
//!   plain sentence, and the log the details.
//!
//! The kit writes the lines (`access_log`: a thread, 50 ms of lines in one
//! write) and the metrics' text format (`metrics`, prometheus-client).
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 15`.
//! This file is generated from `solutions/15_observed.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/15_observed.rs solutions/15_observed.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use kit::access_log::{AccessLog, Arrival};
use kit::answer::{Answer, ForApp};
use kit::apps::Apps;
use kit::metrics::{Answerer, Metrics};
use tracing::warn;
use workshop::body::{Body, MadeByProxy, full, when_dropped};

use crate::hardened::OpenConnections;
use crate::routing::MatchedRule;

// ANCHOR: observed
/// A request path whose every request is logged and counted: the request
/// path of step 15, wrapped around step 14's.
pub struct Observed<S> {
    pub inner: S,
    pub log: Option<AccessLog>,
    pub metrics: Arc<Metrics>,
    /// Opens `/_proxy/metrics` to whoever has it.
    pub admin_token: Option<Arc<str>>,
    pub apps: Arc<Apps>,
    pub open_connections: OpenConnections,
}

impl<S: Answer<Incoming>> Answer<Incoming> for Observed<S> {
    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let arrival = Arrival::from(&request);
        // The proxy's own endpoints: no access line, no count.
        if let Some(token) = self.admin_token.as_deref()
            && arrival.target().starts_with("/_proxy/")
            && self.apps.find(Some(arrival.host())).is_none()
        {
            if request.uri().path() == "/_proxy/metrics" {
                let open = self.open_connections.now();
                return self.metrics.answer(open, &self.apps, token, &request);
            }
            // Boxed: inline, this rare path would make every request's
            // future as big as the pipeline's.
            return Box::pin(self.inner.answer(request)).await;
        }
        // A client that leaves before the answer still gets its line.
        let mut pending = Unanswered::new(arrival, self.log.clone(), self.metrics.clone());
        let arrival = pending.arrival();
        let response = self.inner.answer(request).await;
        // ANCHOR: answerer
        let answerer = match (
            response.extensions().get::<ForApp>(),
            response.extensions().get::<MatchedRule>(),
        ) {
            (Some(ForApp(app)), _) => Answerer::App(app.name.as_str().into()),
            (_, Some(MatchedRule(line))) => Answerer::Line(*line),
            _ => Answerer::Proxy,
        };
        let status = response.status();
        self.metrics
            .count(answerer, status, arrival.started.elapsed());
        let made_here = response.extensions().get::<MadeByProxy>().is_some();
        if made_here && matches!(status.as_u16(), 502 | 504) {
            self.metrics.upstream_error(status);
        }
        // ANCHOR_END: answerer
        let response = say_enough(response, &arrival.method, arrival.target()).await;
        match (&self.log, pending.answered()) {
            (Some(log), Some(arrival)) => Observed::<S>::when_sent(log, arrival, response),
            _ => response,
        }
    }
}
// ANCHOR_END: observed

impl<S> Observed<S> {
    // ANCHOR: when_sent
    /// The response, whose body, once sent (or abandoned), writes the
    /// line: its status, the bytes that went out, how long it all took.
    fn when_sent(
        log: &AccessLog,
        arrival: Arc<Arrival>,
        response: Response<Body>,
    ) -> Response<Body> {
        // TODO: have the access log's line written once this response is over, whichever way it ends: sent to its last byte, or abandoned by a client that left; it says the bytes handed to the connection. Trap: a line written now says nothing of a download that takes an hour, or dies half-way
        todo!(
            "have the access log's line written once this response is over, whichever way it ends: sent to its last byte, or abandoned by a client that left; it says the bytes handed to the connection. Trap: a line written now says nothing of a download that takes an hour, or dies half-way"
        )
    }
    // ANCHOR_END: when_sent
}

// ANCHOR: unanswered
/// A request not answered yet: if its future is dropped first (the client
/// left, an HTTP/2 stream was reset, the grace period ran out), the access
/// log and the metrics still get it, with status 499 (nginx's "client
/// closed request").
pub struct Unanswered {
    arrival: Option<Arc<Arrival>>,
    log: Option<AccessLog>,
    metrics: Arc<Metrics>,
}

impl Unanswered {
    pub fn new(arrival: Arrival, log: Option<AccessLog>, metrics: Arc<Metrics>) -> Unanswered {
        Unanswered {
            arrival: Some(Arc::new(arrival)),
            log,
            metrics,
        }
    }

    /// What the request said, to read while it is answered.
    pub fn arrival(&self) -> Arc<Arrival> {
        self.arrival
            .clone()
            .unwrap_or_else(|| Arc::new(Arrival::none()))
    }

    /// Answered: the line is the response's to write.
    pub fn answered(&mut self) -> Option<Arc<Arrival>> {
        self.arrival.take()
    }
}

// ANCHOR: unanswered_drop
impl Drop for Unanswered {
    fn drop(&mut self) {
        // Not answered: dropped first.
        if let Some(arrival) = self.arrival.take() {
            // TODO: the request whose client left before its answer is counted and logged all the same, as nginx does it: status 499, nothing sent, the time it had waited. Trap: this runs inside a drop, on whatever thread drops the future: it must not wait, and must not panic
            todo!(
                "the request whose client left before its answer is counted and logged all the same, as nginx does it: status 499, nothing sent, the time it had waited. Trap: this runs inside a drop, on whatever thread drops the future: it must not wait, and must not panic"
            )
        }
    }
}
// ANCHOR_END: unanswered_drop
// ANCHOR_END: unanswered

// ANCHOR: say_enough
/// A 502, 503 or 504 the proxy made itself names upstreams, addresses and
/// errors: useful in the log, not for the client. The client gets one
/// plain sentence; the log keeps the details, with the request.
pub async fn say_enough(
    response: Response<Body>,
    method: &http::Method,
    target: &str,
) -> Response<Body> {
    let plain = match response.status() {
        StatusCode::BAD_GATEWAY => {
            "502 Bad Gateway: the upstream could not be reached, or answered badly."
        }
        StatusCode::GATEWAY_TIMEOUT => "504 Gateway Timeout: the upstream did not answer in time.",
        StatusCode::SERVICE_UNAVAILABLE => {
            "503 Service Unavailable: this app could not start; try again in a moment."
        }
        _ => return response,
    };
    // ANCHOR: say_enough_swap
    if response.extensions().get::<MadeByProxy>().is_none() {
        return response; // the upstream's own 502: its business
    }
    let (mut parts, body) = response.into_parts();
    let details = match body.collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        Err(err) => err.to_string(),
    };
    warn!("{method} {target}: {details}");
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, full(format!("{plain}\n")))
    // ANCHOR_END: say_enough_swap
}
// ANCHOR_END: say_enough
