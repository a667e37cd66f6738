//! Step 14 — hardened: what steps 01 to 13 simplified about connections,
//! now that strangers on the Internet are the clients.
//!
//! Four ideas, in order:
//! - a permit per connection ([`Server::serve_until_shutdown`]): step 01
//!   accepted every connection; beyond `--max-connections`, new ones now
//!   wait in the kernel's backlog instead of exhausting file descriptors;
//! - deadlines for what clients send ([`builder`], [`Connection`]): step
//!   01 waited for a request head forever. Each head has
//!   `--header-read-timeout` from its first byte (a slowloris client, one
//!   byte at a time, is cut off: the kit's `head_clock`), an idle
//!   keep-alive connection `--keep-alive`, and a connection that asks
//!   nothing at all is closed; a head over 64 KiB is a `431`;
//! - a graceful shutdown (the `drain` of [`Server::serve_until_shutdown`]):
//!   on SIGTERM, stop accepting, let what is in flight finish (hyper-util's
//!   graceful shutdown: idle HTTP/1.1 connections closed, HTTP/2 clients
//!   told with GOAWAY, WebSockets given the same grace), then exit;
//! - one request's trouble stays its own ([`Hardened`]): a panic in its
//!   code is one `500` and a log line, not a dropped connection; a body
//!   over `--max-request-body` is a `413`, counted while it streams; a
//!   malformed one is the client's `400`, not the upstream's `502`.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response, StatusCode, header};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use kit::answer::{Answer, Handler};
use kit::config::{Limits, Timeouts};
use kit::{head_clock::HeadClock, head_size::READ_BUFFER, head_size::refuse_big_head};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};
use workshop::body::{Body, BodyFault, LimitedBody, holding, text};
use workshop::http2::{Scheme, handshake};
use workshop::listen_and_serve::{ClientAddr, accept};
use workshop::websocket::keep_while_open;

/// A socket to accept on, and its TLS, if any.
pub struct Bound {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// The connections' permits, and how many connections are open now (step
/// 15 shows it; the accept loop's permit, taken before it accepts, is not
/// a connection yet).
#[derive(Clone)]
pub struct OpenConnections {
    permits: Arc<Semaphore>,
    max: usize,
    count: Arc<AtomicUsize>,
}

impl OpenConnections {
    pub fn now(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// A connection's hold on the server, from its permit: both released
    /// when the connection (and its tunnels, if any) are done.
    fn hold(&self, permit: OwnedSemaphorePermit) -> Arc<Held> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let (_permit, count) = (permit, self.count.clone());
        Arc::new(Held { _permit, count })
    }
}

/// A permit, counted as an open connection until dropped.
struct Held {
    _permit: OwnedSemaphorePermit,
    count: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The server loop of step 01, hardened.
pub struct Server {
    timeouts: Timeouts,
    grace: Duration,
    open: OpenConnections,
}

impl Server {
    pub fn new(timeouts: Timeouts, limits: Limits, grace: Duration) -> Server {
        let max = limits.max_connections;
        let open = OpenConnections {
            permits: Arc::new(Semaphore::new(max)),
            max,
            count: Arc::default(),
        };
        Server {
            timeouts,
            grace,
            open,
        }
    }

    pub fn open_connections(&self) -> OpenConnections {
        self.open.clone()
    }

    // ANCHOR: serve_until_shutdown
    /// Serves every listener until `shutdown` completes, then stops
    /// accepting, lets the connections finish what they are doing (at most
    /// the grace period), and returns how many were still open then.
    pub async fn serve_until_shutdown(
        self,
        listeners: Vec<Bound>,
        answer: Handler,
        shutdown: impl Future<Output = ()>,
    ) -> usize {
        let graceful = GracefulShutdown::new();
        let (stop, mut stopped) = watch::channel(false);
        let protocol = Arc::new(Protocol {
            builder: builder(),
            header_read: self.timeouts.header_read,
            keep_alive: self.timeouts.keep_alive,
        });
        // One loop for every listener: a permit, then whichever accepts
        // first (a loop per listener would hold a permit each while it
        // waits). The listeners live in it: when it ends, they close.
        let open = self.open.clone();
        let accepting = async move {
            let listeners = listeners;
            loop {
                // EXERCISE: take a connection only once a permit is free (beyond the limit, connections wait in the kernel's backlog, unanswered), from whichever listener has one, and serve it on a task of its own that holds the permit until the connection is done; stop when `stopped` changes. Trap: waiting for the permit in the connection's own task holds a socket and a task for every client that waits
                // ANCHOR: permit_then_accept
                let accepted = tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = async {
                        let permit = open.permits.clone().acquire_owned().await;
                        (permit, accept_any(&listeners).await)
                    } => accepted,
                };
                let (Ok(permit), (stream, peer, tls)) = accepted else {
                    break;
                };
                let connection = Connection {
                    peer,
                    answer: answer.clone(),
                    graceful: graceful.watcher(),
                    held: open.hold(permit),
                };
                tokio::spawn(connection.serve(stream, tls, protocol.clone()));
                // ANCHOR_END: permit_then_accept
                // END EXERCISE
            }
            graceful
        };
        let accepting = tokio::spawn(accepting);
        shutdown.await;
        let _ = stop.send(true);
        let Ok(graceful) = accepting.await else {
            return self.open.now();
        };
        info!(
            "shutting down: no new connections; in-flight requests have {:?}",
            self.grace
        );
        // ANCHOR: drain
        // Every connection is told: HTTP/1.1 closes once its response is
        // sent (at once if idle), HTTP/2 sends GOAWAY and finishes its
        // streams. Then the tunnels (a WebSocket keeps its permit).
        let open = self.open.now();
        let everything = async {
            graceful.shutdown().await;
            let all = u32::try_from(self.open.max).unwrap_or(u32::MAX);
            let _ = self.open.permits.acquire_many(all).await;
        };
        if tokio::time::timeout(self.grace, everything).await.is_ok() {
            info!("every connection finished ({open} were open)");
            return 0;
        }
        let left = self.open.now();
        warn!(
            "{left} connection(s) still open after {:?}: they end with the process",
            self.grace
        );
        left
        // ANCHOR_END: drain
    }
    // ANCHOR_END: serve_until_shutdown
}

/// The next connection on any of `listeners` (step 01's accept on each),
/// with the listener's TLS.
async fn accept_any(listeners: &[Bound]) -> (TcpStream, SocketAddr, Option<TlsAcceptor>) {
    let each = listeners.iter().map(|bound| {
        Box::pin(async move {
            let (stream, peer) = accept(&bound.listener).await;
            (stream, peer, bound.tls.clone())
        })
    });
    futures_util::future::select_all(each).await.0
}

// ANCHOR: builder
/// Step 09's builder without hyper's head deadline (it counts idle time:
/// the kit's HeadClock keeps both), and with hyper's default read buffer
/// again: step 09's 64 KiB bounded heads but also cut every upload into
/// 64 KiB reads; `speak` refuses heads over 64 KiB.
pub fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = workshop::http2::builder();
    builder.http1().header_read_timeout(None);
    builder.http1().max_buf_size(READ_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    builder
}
// ANCHOR_END: builder

/// How connections speak: step 09's builder, the time a head has from its
/// first byte, and an idle connection between requests.
struct Protocol {
    builder: auto::Builder<TokioExecutor>,
    header_read: Duration,
    keep_alive: Duration,
}

/// One connection, and what serving it needs.
pub struct Connection {
    peer: SocketAddr,
    answer: Handler,
    graceful: Watcher,
    /// Held until the connection, and its tunnels if any, are done.
    held: Arc<Held>,
}

impl Connection {
    /// Its TLS handshake (step 09's, bounded), then HTTP.
    async fn serve(self, stream: TcpStream, tls: Option<TlsAcceptor>, protocol: Arc<Protocol>) {
        match tls {
            None => self.speak(stream, "http", &protocol).await,
            Some(tls) => match handshake(&tls, stream).await {
                Ok(stream) => self.speak(stream, "https", &protocol).await,
                Err(err) => debug!("TLS handshake with {} failed: {err}", self.peer),
            },
        }
    }

    // ANCHOR: head_deadlines
    async fn speak<I>(self, io: I, scheme: &'static str, protocol: &Protocol)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            answer,
            graceful,
            held,
        } = self;
        let asked = Arc::new(AtomicBool::new(false));
        let asked_here = asked.clone();
        // Each HTTP/1.1 head, timed from its first byte; the wait for the
        // next one, from the end of the last response.
        let clock = HeadClock::new(protocol.header_read, protocol.keep_alive);
        let io = clock.clocked(io);
        // A head over 64 KiB: 431 (hyper's buffer stops only those over ~400 KiB).
        let answer = move |request: Request<Incoming>| match refuse_big_head(&request) {
            None => answer(request),
            Some(too_big) => Box::pin(std::future::ready(too_big)),
        };
        let service = service_fn(move |mut request: Request<Incoming>| {
            asked_here.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ClientAddr(peer));
            request.extensions_mut().insert(Scheme(scheme));
            // ANCHOR: switching
            // A WebSocket outlives its HTTP connection: it keeps the permit.
            let tunnel = request.method() == http::Method::CONNECT;
            let switching = tunnel || request.headers().contains_key(header::UPGRADE);
            if switching {
                keep_while_open(&mut request, held.clone());
            }
            // HTTP/2 frames are not heads to time; nor are a tunnel's
            // bytes, but only once the switch is answered.
            let timed = request.version() < http::Version::HTTP_2;
            let done = clock.request_started(timed);
            let answering = answer(request);
            async move {
                let response = answering.await;
                let status = response.status();
                if status == StatusCode::SWITCHING_PROTOCOLS || (tunnel && status.is_success()) {
                    done.switched();
                }
                // The next head can start once this response is done.
                Ok::<_, std::convert::Infallible>(response.map(|body| holding(body, done)))
            }
            // ANCHOR_END: switching
        });
        let connection = protocol
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        // ANCHOR: no_request
        // HeadClock starts a head at its first byte: a connection silent
        // from the start would only meet keep_alive. So: no first request
        // within header_read, and the connection is closed, whatever it
        // sent. Once one came, the timer is no longer polled: polling it at
        // every wake of the select cost 240 instructions a request.
        let mut deadline = std::pin::pin!(tokio::time::sleep(protocol.header_read));
        let no_request = std::future::poll_fn(|cx| match asked.load(Ordering::Relaxed) {
            true => std::task::Poll::Pending,
            false => deadline.as_mut().poll(cx),
        });
        tokio::select! {
            ended = graceful.watch(connection) => {
                if let Err(err) = ended {
                    debug!("connection from {peer} ended: {err}");
                }
            }
            () = no_request => debug!("{peer} asked nothing within {:?}: closed", protocol.header_read),
        }
        // ANCHOR_END: no_request
    }
    // ANCHOR_END: head_deadlines
}

// ANCHOR: hardened
/// A request path whose requests cannot take the proxy down with them:
/// the request path of step 14, wrapped around step 13's.
pub struct Hardened<S> {
    pub inner: S,
    /// Bytes; `None`: counted, never cut.
    pub max_request_body: Option<u64>,
}

// ANCHOR: limit_then_answer
impl<S: Answer<LimitedBody<Incoming>>> Answer<Incoming> for Hardened<S> {
    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let limit = self.max_request_body.unwrap_or(u64::MAX);
        let announced = request.body().size_hint().exact(); // hyper's Content-Length
        if announced.is_some_and(|length| length > limit) {
            return refused(BodyFault::OverLimit, limit);
        }
        let (parts, body) = request.into_parts();
        let (body, faults) = LimitedBody::new(body, limit);
        let response = answer_safely(self.inner.answer(Request::from_parts(parts, body))).await;
        // Cut at the limit or broken before the upstream answered: the client's
        // fault, not a 502 (an answer that came first passes, its body cut off).
        match faults.get() {
            Some(fault) => refused(fault, limit),
            None => response,
        }
    }
}
// ANCHOR_END: limit_then_answer
// ANCHOR_END: hardened

// ANCHOR: answer_safely
/// Runs one request's code; if it panics, the client gets a `500` and the
/// log a line. Other requests and connections never notice. (A panic while
/// a response body streams is hyper's to catch: it closes that connection.)
pub fn answer_safely(
    answer: impl Future<Output = Response<Body>>,
) -> impl Future<Output = Response<Body>> {
    AssertUnwindSafe(answer).catch_unwind().map(|outcome| {
        outcome.unwrap_or_else(|panic| {
            let what = panic.downcast_ref::<&str>().map(|what| what.to_string());
            let what = what.or_else(|| panic.downcast_ref::<String>().cloned());
            warn!("a request's code panicked: {}", what.unwrap_or_default());
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: the proxy failed on this request",
            )
        })
    })
}
// ANCHOR_END: answer_safely

/// `413 Content Too Large`, or `400 Bad Request` for a body the client broke.
fn refused(fault: BodyFault, limit: u64) -> Response<Body> {
    match fault {
        BodyFault::OverLimit => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("413 Content Too Large: request bodies stop at {limit} bytes"),
        ),
        BodyFault::Broken => text(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the request body was malformed, or cut short",
        ),
    }
}
