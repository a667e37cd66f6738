//! Step 13 — the complete proxy: steps 01 to 12 behind one config file,
//! hardened where the earlier steps deliberately simplified.
//!
//! What each simplification became, in this file:
//! - step 01 accepted every connection, forever: [`serve_until_shutdown`]
//!   takes a permit per connection (beyond the limit, new connections wait
//!   in the kernel's backlog instead of exhausting file descriptors), and
//!   stops on a signal without dropping a request in flight (hyper-util's
//!   graceful shutdown: idle HTTP/1.1 connections closed, HTTP/2 clients
//!   told with GOAWAY, requests, streams and tunnels given a grace period);
//! - step 01 waited for a request head forever: each head has
//!   `header_read` from its first byte (a slowloris client is cut off: the
//!   kit's `head_clock`), an idle keep-alive connection `keep_alive`
//!   ([`builder`]), and a connection that asks nothing within `header_read`
//!   is closed;
//! - a panic in one request's code took its connection down with it:
//!   [`answer_safely`] turns it into a `500` and a log line (Rust's panic
//!   message, on stderr, says where);
//! - the 502 and 504 of steps 02 and 08 named the upstream and the error:
//!   [`say_enough`] keeps that for the log and tells the client what
//!   failed in one plain sentence;
//! - nothing was logged per request: [`AccessLog`] writes one line each,
//!   when its response has been sent.
//! - steps 02 to 12 connected over plain TCP, to one server per upstream,
//!   for as long as the kernel let a connect wait:
//!   [`forward_with_deadlines`] plugs in the kit's connector (`connector`,
//!   `upstream_groups`): a deadline per connect, groups of servers, TLS for
//!   `https://`, idle tunnels closed.
//!
//! The config file is the kit's (`config`); what a request meets inside is
//! step 12's `apps_then_routes`, unchanged.
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 13`.
//! This file is generated from `solutions/13_complete.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/13_complete.rs solutions/13_complete.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::header;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};
use workshop::body::{Body, MadeByProxy, boxed, text};
use workshop::http2::{Scheme, handshake};
use workshop::listen_and_serve::{ClientAddr, accept};
use workshop::round_trip::Upstream;
use workshop::websocket::keep_while_open;

use crate::config::{LogFormat, Timeouts};
use crate::connector::upstream_connector;
use crate::head_clock::HeadClock;
use crate::metrics::{Answerer, Metrics, OpenConnection};
use crate::routing::Forward;
use crate::upstream_client::UpstreamClient;
use crate::upstream_groups::Groups;

/// What the server loop needs from the config.
#[derive(Debug, Clone, Copy)]
pub struct Hardening {
    pub header_read: Duration,
    pub keep_alive: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

/// A socket to accept on, and its TLS, if any.
pub struct Bound {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

// ANCHOR: serve_until_shutdown
/// Serves every listener until `shutdown` completes, then stops accepting,
/// lets the connections finish what they are doing (at most `grace`), and
/// returns how many were still open when the grace ran out.
pub async fn serve_until_shutdown<H, F>(
    listeners: Vec<Bound>,
    hardening: Hardening,
    metrics: Arc<Metrics>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> usize
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // Shared by the accept loops, which make a watcher per connection.
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop, mut stopped) = watch::channel(false);
    // One permit per open connection, shared by every listener.
    let permits = Arc::new(Semaphore::new(hardening.max_connections));
    let protocol = Arc::new(Protocol {
        builder: builder(hardening.keep_alive),
        header_read: hardening.header_read,
    });
    // One loop for every listener: a permit, then whichever accepts first
    // (a loop per listener would hold a permit each while it waits).
    let accepting_graceful = graceful.clone();
    let (accepting_permits, accepting_metrics) = (permits.clone(), metrics.clone());
    let accepting = tokio::spawn(async move {
        let (graceful, permits, metrics) =
            (accepting_graceful, accepting_permits, accepting_metrics);
        // The listeners live in this task: when it ends, they close.
        let listeners = listeners;
        loop {
            // TODO: race stopped.changed() (break) against "a permit (permits.clone().acquire_owned()), then accept_any(&listeners)" so that beyond the limit connections wait in the backlog; break if the permit is an Err; then clone the listener's tls, protocol and handler, and spawn serve_connection with a graceful.watcher() and open = Arc::new((permit, metrics.connection_opened()))
            todo!(
                "race stopped.changed() (break) against \"a permit (permits.clone().acquire_owned()), then accept_any(&listeners)\" so that beyond the limit connections wait in the backlog; break if the permit is an Err; then clone the listener's tls, protocol and handler, and spawn serve_connection with a graceful.watcher() and open = Arc::new((permit, metrics.connection_opened()))"
            )
        }
        // The listeners are dropped here: new connections are refused.
    });
    shutdown.await;
    let _ = stop.send(true);
    let _ = accepting.await;
    info!(
        "shutting down: no new connections; in-flight requests have {:?}",
        hardening.grace
    );
    // The accept loop is done: its handle was the only other one.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return permits_in_use(&permits, hardening.max_connections);
    };
    // ANCHOR: drain
    // Every connection is told: HTTP/1.1 closes once its response is sent
    // (at once if idle), HTTP/2 sends GOAWAY and finishes its streams.
    // Then the tunnels (a WebSocket keeps its connection's permit).
    let open = permits_in_use(&permits, hardening.max_connections);
    let everything = async {
        graceful.shutdown().await;
        let all = u32::try_from(hardening.max_connections).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
    };
    match tokio::time::timeout(hardening.grace, everything).await {
        Ok(()) => {
            info!("every connection finished ({open} were open)");
            0
        }
        Err(_) => {
            let left = permits_in_use(&permits, hardening.max_connections);
            warn!(
                "{left} connection(s) still open after {:?}: they end with the process",
                hardening.grace
            );
            left
        }
    }
    // ANCHOR_END: drain
}
// ANCHOR_END: serve_until_shutdown

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

fn permits_in_use(permits: &Semaphore, max: usize) -> usize {
    max.saturating_sub(permits.available_permits())
}

// ANCHOR: builder
/// Step 09's builder (HTTP/1.1 and HTTP/2, request heads bounded), with
/// hyper's head deadline. hyper starts it when it starts waiting for a
/// head, idle time included: so it is the keep-alive deadline, and each
/// head's own (`header_read`, from its first byte) is the kit's HeadClock.
/// (hyper's deadline needs a timer: without one, it is silently off.)
pub fn builder(keep_alive: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = workshop::http2::builder();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(keep_alive);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    builder
}
// ANCHOR_END: builder

/// One connection: its TLS handshake (bounded), then HTTP, watched by the
/// graceful shutdown. Its permit goes back when it closes, or when its last
/// tunnel does.
async fn serve_connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    protocol: Arc<Protocol>,
    handler: H,
    graceful: hyper_util::server::graceful::Watcher,
    open: Open,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let connection = Connection {
        peer,
        handler,
        graceful,
        open,
    };
    match tls {
        None => connection.serve(stream, "http", &protocol).await,
        // Step 09's handshake, bounded in time.
        Some(tls) => match handshake(&tls, stream).await {
            Ok(stream) => connection.serve(stream, "https", &protocol).await,
            Err(err) => debug!("TLS handshake with {peer} failed: {err}"),
        },
    }
}

/// How connections speak: step 09's builder with its deadlines, and the
/// time a connection has to send its first request.
pub struct Protocol {
    pub builder: auto::Builder<TokioExecutor>,
    pub header_read: Duration,
}

/// A connection's permit, and its count in the metrics: both held until
/// the connection, and its tunnels if any, are done.
type Open = Arc<(OwnedSemaphorePermit, OpenConnection)>;

/// What serving one connection needs, once its bytes are HTTP.
struct Connection<H> {
    peer: SocketAddr,
    handler: H,
    graceful: hyper_util::server::graceful::Watcher,
    open: Open,
}

impl<H, F> Connection<H>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    async fn serve<I>(self, io: I, scheme: &'static str, protocol: &Protocol)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            handler,
            graceful,
            open,
        } = self;
        let asked = Arc::new(AtomicBool::new(false));
        let asked_here = asked.clone();
        // Each HTTP/1.1 head, timed from its first byte.
        let clock = HeadClock::new(protocol.header_read);
        let io = clock.clocked(io);
        let service = service_fn(move |mut request: Request<Incoming>| {
            asked_here.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ClientAddr(peer));
            request.extensions_mut().insert(Scheme(scheme));
            // A WebSocket outlives its HTTP connection: it keeps the permit.
            let switching = request.headers().contains_key(header::UPGRADE)
                || request.method() == http::Method::CONNECT;
            if switching {
                keep_while_open(&mut request, open.clone());
            }
            // Frames of HTTP/2 or of a tunnel are not heads to time.
            let timed = request.version() < http::Version::HTTP_2 && !switching;
            let done = clock.request_started(timed);
            // On the heap: the future of the whole pipeline is 12 KB, and
            // hyper moves the service's future (a copy each time). Boxed,
            // what moves is a pointer: 120k → 86k instructions a request.
            let answer = Box::pin(handler(request));
            async move {
                // The next head can start once this response is done.
                let response = answer.await.map(|body| {
                    boxed(body.map_frame(move |frame| {
                        let _done = &done;
                        frame
                    }))
                });
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = protocol
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        // hyper's head deadline starts once hyper-util has told HTTP/1.1
        // from HTTP/2, which waits for bytes; an HTTP/2 connection has no
        // head deadline at all. So: no first request within header_read,
        // and the connection is closed, whatever it sent.
        let no_request = async {
            tokio::time::sleep(protocol.header_read).await;
            if asked.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            ended = graceful.watch(connection) => {
                if let Err(err) = ended {
                    debug!("connection from {peer} ended: {err}");
                }
            }
            () = no_request => debug!("{peer} asked nothing within {:?}: closed", protocol.header_read),
        }
    }
}

// ANCHOR: answer_safely
/// Runs one request's code; if it panics, the client gets a `500` and the
/// log a line. Other requests and connections never notice. (A panic while
/// a response body streams is hyper's to catch: it closes that connection.)
pub async fn answer_safely<F>(answer: F) -> Response<Body>
where
    F: Future<Output = Response<Body>>,
{
    match AssertUnwindSafe(answer).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|what| what.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            warn!("a request's code panicked: {what}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: the proxy failed on this request",
            )
        }
    }
}
// ANCHOR_END: answer_safely

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
    Response::from_parts(parts, workshop::body::full(format!("{plain}\n")))
}
// ANCHOR_END: say_enough

/// Where access log lines go: a thread writes them, so that a slow disk
/// never holds a response.
#[derive(Clone)]
pub struct AccessLog {
    lines: mpsc::Sender<String>,
    format: LogFormat,
}

/// What a line says about one request, known when it arrives.
pub struct Arrival {
    pub started: Instant,
    pub at: SystemTime,
    pub client: Option<SocketAddr>,
    pub method: http::Method,
    pub host: String,
    pub target: String,
    pub version: http::Version,
}

impl Arrival {
    /// Nothing known (never used for a line).
    fn none() -> Arrival {
        Arrival {
            started: Instant::now(),
            at: SystemTime::now(),
            client: None,
            method: http::Method::GET,
            host: String::new(),
            target: String::new(),
            version: http::Version::HTTP_11,
        }
    }
}

impl<B> From<&Request<B>> for Arrival {
    fn from(request: &Request<B>) -> Arrival {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| {
                request
                    .uri()
                    .authority()
                    .map(|authority| authority.as_str())
            })
            .unwrap_or("-");
        Arrival {
            started: Instant::now(),
            at: SystemTime::now(),
            client: request.extensions().get::<ClientAddr>().map(|addr| addr.0),
            method: request.method().clone(),
            host: host.to_string(),
            target: request
                .uri()
                .path_and_query()
                .map_or("/".to_string(), |target| target.to_string()),
            version: request.version(),
        }
    }
}

impl AccessLog {
    /// Lines to `write` (stdout, a file: buffered), in `format`, by a
    /// thread of its own. The first line of a burst wakes it; it waits 50 ms
    /// more, then writes what came in one go (nginx's `access_log …
    /// flush=`): the other requests never wake it, and a disk that cannot
    /// keep up never holds a request.
    pub fn start(mut write: impl std::io::Write + Send + 'static, format: LogFormat) -> AccessLog {
        // Room for 50 ms at 300 000 requests a second; beyond, lines are lost.
        let (lines, mut queue) = mpsc::channel::<String>(16384);
        tokio::task::spawn_blocking(move || {
            // `None`: every sender is gone, the proxy is stopping.
            while let Some(first) = queue.blocking_recv() {
                let _ = writeln!(write, "{first}");
                std::thread::sleep(Duration::from_millis(50));
                // Bounded: at most what the queue holds.
                for _ in 0..16384 {
                    let Ok(line) = queue.try_recv() else { break };
                    let _ = writeln!(write, "{line}");
                }
                let _ = write.flush();
            }
        });
        AccessLog { lines, format }
    }

    // ANCHOR: access_log
    /// The response, whose body, once sent (or abandoned), writes the line:
    /// its status, its bytes, how long it all took.
    pub fn when_sent(&self, arrival: Arc<Arrival>, response: Response<Body>) -> Response<Body> {
        let (log, status) = (self.clone(), response.status());
        response.map(|body| {
            boxed(OnDrop::new(body, move |sent| {
                log.write(&arrival, status, sent)
            }))
        })
    }
    // ANCHOR_END: access_log

    fn write(&self, arrival: &Arrival, status: StatusCode, bytes: u64) {
        let took = arrival.started.elapsed();
        let line = match self.format {
            LogFormat::Common => {
                use std::fmt::Write as _;
                // One string, written into: no piece formatted apart. The
                // time is formatted once a second, the milliseconds as
                // integers: those two took half the CPU of the line.
                let mut line = String::with_capacity(128);
                let _ = match arrival.client {
                    Some(addr) => write!(line, "{}", addr.ip()),
                    None => write!(line, "-"),
                };
                let micros = took.as_micros();
                let _ = write!(
                    line,
                    " - - [{}] \"{} {} {}\" {} {bytes} \"{}\" {}.{:03}ms",
                    SecondStamp::of(arrival.at),
                    arrival.method,
                    quoted(&arrival.target),
                    version_name(arrival.version),
                    status.as_u16(),
                    quoted(&arrival.host),
                    micros / 1000,
                    micros % 1000,
                );
                line
            }
            LogFormat::Json => serde_json::json!({
                "time": humantime::format_rfc3339_millis(arrival.at).to_string(),
                "client": arrival.client.map_or("-".to_string(), |addr| addr.ip().to_string()),
                "method": arrival.method.as_str(),
                "host": arrival.host,
                "target": arrival.target,
                "status": status.as_u16(),
                "bytes": bytes,
                "ms": took.as_secs_f64() * 1000.0,
            })
            .to_string(),
        };
        // A full queue (the disk cannot keep up): the line is dropped, the
        // request is not held.
        let _ = self.lines.try_send(line);
    }
}

/// A request not answered yet: if its future is dropped first (the client
/// left, an HTTP/2 stream was reset, the grace ran out), the access log and
/// the metrics still get it, with status 499 (nginx's "client closed
/// request").
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

    /// Not a request to log (the proxy's own endpoints).
    pub fn forget(&mut self) {
        self.arrival = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(arrival) = self.arrival.take() {
            let left = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
            self.metrics
                .count(Answerer::Proxy, left, arrival.started.elapsed());
            if let Some(log) = &self.log {
                log.write(&arrival, left, 0);
            }
        }
    }
}

/// `at` in RFC 3339, to the second, as text: formatted once a second per
/// thread (nginx caches its time strings the same way), copied otherwise.
struct SecondStamp(std::rc::Rc<str>);

impl SecondStamp {
    fn of(at: SystemTime) -> SecondStamp {
        thread_local! {
            static LAST: std::cell::RefCell<(u64, std::rc::Rc<str>)> =
                std::cell::RefCell::new((u64::MAX, "".into()));
        }
        let second = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        LAST.with_borrow_mut(|(last, text)| {
            if *last != second {
                *text = humantime::format_rfc3339_seconds(at).to_string().into();
                *last = second;
            }
            SecondStamp(text.clone())
        })
    }
}

impl std::fmt::Display for SecondStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `HTTP/1.1`, `HTTP/2.0`: the version as the log's request line spells it
/// (http's `{:?}`, as nginx does).
fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// What a client sent, fit to stand between quotes in a log line: a `"`
/// or a control character cannot forge a field. Borrowed when there is
/// nothing to escape, as nearly always.
fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let escaped = |c: char| c == '"' || c == '\\' || c.is_control();
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut quoted = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => {
                let _ = write!(quoted, "\\x{:02x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    std::borrow::Cow::Owned(quoted)
}

/// A body that counts what went through it and calls `done` with the
/// count when it is dropped: at its end, or when the client goes away.
struct OnDrop<B, D: FnOnce(u64)> {
    body: B,
    sent: u64,
    done: Option<D>,
}

impl<B, D: FnOnce(u64)> OnDrop<B, D> {
    fn new(body: B, done: D) -> OnDrop<B, D> {
        OnDrop {
            body,
            sent: 0,
            done: Some(done),
        }
    }
}

impl<B, D: FnOnce(u64)> Drop for OnDrop<B, D> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.sent);
        }
    }
}

impl<B, D> hyper::body::Body for OnDrop<B, D>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    D: FnOnce(u64) + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, B::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

// ANCHOR: connect_deadline
/// Step 11's pipeline with the kit's clients: a deadline per connect, groups
/// of servers, TLS, HTTP/2 upstreams of its own, idle tunnels closed.
pub fn forward_with_deadlines(
    options: workshop::x_forwarded::Options,
    timeouts: &Timeouts,
    upstream_http2: bool,
    groups: Arc<ArcSwap<Groups>>,
    tls: rustls::ClientConfig,
) -> Forward<UpstreamClient> {
    let connector = |http2, idle| {
        upstream_connector(timeouts.connect, groups.clone(), tls.clone(), http2, idle)
    };
    let client = match upstream_http2 {
        true => UpstreamClient::http2(connector(true, None)),
        false => UpstreamClient::http1(connector(false, None)),
    };
    // Upgrades are HTTP/1.1 (step 10); their tunnels close when idle.
    let upgrades = UpstreamClient::http1(connector(false, Some(timeouts.tunnel_idle)));
    let upstream = |client| Upstream {
        uri: Uri::default(),
        client,
    };
    Forward {
        upstream: upstream(client),
        upgrades: upstream(upgrades),
        options: Arc::new(options),
        timeout: timeouts.response_head,
    }
}
// ANCHOR_END: connect_deadline

// ANCHOR: body_limit
/// A request body counted while it streams, never buffered: past `limit`
/// bytes it fails (the upstream gets a broken body, never the excess) and
/// `over` says so, for a 413.
pub struct LimitedBody {
    inner: Incoming,
    seen: u64,
    limit: u64,
    over: Arc<AtomicBool>,
}

/// The request with its body limited to `limit` bytes (`None`: counted
/// only), and the flag that says it went over; `None` when its
/// `Content-Length` is over the limit already (a 413 at once).
pub fn limit_body(
    request: Request<Incoming>,
    limit: Option<u64>,
) -> Option<(Request<LimitedBody>, Arc<AtomicBool>)> {
    let limit = limit.unwrap_or(u64::MAX);
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit) {
        return None;
    }
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let request = request.map(|inner| LimitedBody {
        inner,
        seen: 0,
        limit,
        over: flag,
    });
    Some((request, over))
}
// ANCHOR_END: body_limit

/// `413 Content Too Large`.
pub fn too_large(limit: u64) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("413 Content Too Large: request bodies stop at {limit} bytes"),
    )
}

impl hyper::body::Body for LimitedBody {
    type Data = bytes::Bytes;
    type Error = workshop::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.seen += data.len() as u64;
            if self.seen > self.limit {
                self.over.store(true, Ordering::Relaxed);
                return std::task::Poll::Ready(Some(Err(
                    "the request body is over the limit".into()
                )));
            }
        }
        polled.map(|frame| frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit on open files to the hard one: each connection
/// is a file, and the default soft limit (often 1024) is lower than what
/// a proxy is allowed.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => debug!("open files: {soft} → {hard}"),
            Err(err) => warn!("could not raise the open files limit from {soft}: {err}"),
        },
        Ok(_) => {}
        Err(err) => warn!("could not read the open files limit: {err}"),
    }
}
