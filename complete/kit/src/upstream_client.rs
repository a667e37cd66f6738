//! Step 17's client: connections of its own to every upstream, through
//! hyper's `client::conn` (what hyper-util's pool is built on), so that
//! it costs a request less and an HTTP/2 request's `:authority` is the
//! client's host.
//!
//! Why not hyper-util's pool, as steps 02 to 16 do:
//! - HTTP/2: RFC 9113 §8.3.1 says that an intermediary forwarding a request
//!   over HTTP/2 builds `:authority` from the original request, and sends
//!   no `host` that differs (a strict server refuses the request).
//!   hyper-util's client takes `:authority` *and* the address it connects
//!   to from one URI, the upstream's.
//! - HTTP/1.1: its checkout, its waiters and the task it spawns per
//!   request to put a connection back once its response has been read:
//!   without them, step 17 takes 79.0k instructions a request instead of
//!   84.3k (cachegrind, the benchmark's config).
//!
//! Here, each upstream address has a list of connections, opened with the
//! kit's connector (groups, TLS), then hyper's handshake. HTTP/2 multiplexes
//! every request on one, made once for all the requests that arrive while
//! it is being made (`connecting_to`). HTTP/1.1 carries one exchange at a time:
//! a request takes a connection that is ready, and files it back as soon as
//! the response's head is in; it is ready again once that response's body
//! has been read to its end, which hyper says (`is_ready`), so nothing has
//! to wait for it.
//!
//! Kit of step 17: steps 02 to 16 take any [`HttpClient`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::Either;
use futures_util::future::{BoxFuture, Shared};
use futures_util::{FutureExt, TryFutureExt};
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;
use tracing::debug;
use workshop::body::{Body, BoxError};
use workshop::round_trip::{HttpClient, ResponseFuture};

use crate::connector::UpstreamConnector;
use crate::upstream_groups::SingleUse;

/// A connection idle this long closes (hyper-util's pool waits as long),
/// at the next sweep (every 30 s) or when a request looks for one.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most an HTTP/1.1 connection reads into memory at once. hyper grows a
/// connection's read buffer while an answer fills it, up to 400 KiB by
/// default, and an idle connection in the pool keeps what it grew to: after
/// `bench/compare.py`'s 1 MiB answers (8 connections), step 17 stayed at
/// 13.3 MiB resident with hyper's default, 11.6 MiB with this (12.8 with
/// 256 KiB). The price: passing on a MiB of an answer takes 38,000
/// instructions instead of 14,000 (callgrind, three 64 MiB answers), about
/// 1% of the CPU a MiB costs (the kernel's copies are the rest: 635 ms of
/// CPU a GiB with hyper's default, 628 with this, one run of each; at 64
/// KiB, 10% more). It bounds an upstream's response head too: a bigger one
/// is a 502 (nginx: 4 or 8 KiB).
const MAX_READ_BUFFER: usize = 128 * 1024;

/// Tries for one request: reused connections found closed, then a new one.
const MAX_ATTEMPTS: usize = 8;

/// The upstream's protocol decides how connections are shared: every
/// upstream speaks HTTP/1.1 unless `--upstream-http2` says they all speak
/// HTTP/2. (Cloned for every request by step 11: an `Arc` inside.)
#[derive(Clone)]
pub struct UpstreamClient {
    upstreams: Arc<Upstreams>,
}

impl UpstreamClient {
    /// HTTP/1.1 connections, over a connector that offers `http/1.1` by ALPN.
    pub fn http1(connector: UpstreamConnector) -> UpstreamClient {
        UpstreamClient::new(connector, false)
    }

    /// HTTP/2 connections, over a connector that offers `h2`; on plain TCP
    /// they speak HTTP/2 with prior knowledge (h2c).
    pub fn http2(connector: UpstreamConnector) -> UpstreamClient {
        UpstreamClient::new(connector, true)
    }

    fn new(connector: UpstreamConnector, http2: bool) -> UpstreamClient {
        let upstreams = Arc::new(Upstreams {
            connector,
            http2,
            filed: Mutex::default(),
        });
        close_idle_connections(Arc::downgrade(&upstreams));
        UpstreamClient { upstreams }
    }
}

impl HttpClient for UpstreamClient {
    fn request(&self, request: Request<Body>) -> ResponseFuture {
        // `send`'s own future, boxed as it is: an `async` block around it
        // would hold the request once more, and make the box too big for
        // the allocator's fast path (glibc's, up to 1,032 bytes).
        let sent = Upstreams::send(self.upstreams.clone(), request);
        Box::pin(sent.map_err(BoxError::from))
    }
}

/// Where a connection goes: `https` or `http`, and host and port.
type Address = (Scheme, Authority);

/// One connection: hyper's handle on it (its task, spawned, drives it).
enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

impl Sender {
    /// Whether it takes a request now: an HTTP/1.1 connection once the last
    /// response was read to its end, an HTTP/2 one as long as it is open.
    fn is_ready(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_ready(),
            Sender::Http2(sender) => !sender.is_closed(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// hyper's own future, not an `async fn` around it: that would hold
    /// the request twice (its argument, and hyper's future), and make each
    /// request's boxed future too big for the allocator's fast path.
    fn try_send(
        &mut self,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<Body>>>> + use<> {
        match self {
            Sender::Http1(sender) => Either::Left(sender.try_send_request(request)),
            Sender::Http2(sender) => Either::Right(sender.try_send_request(request)),
        }
    }

    /// Another handle on an HTTP/2 connection; an HTTP/1.1 one is not
    /// shared.
    fn share(&self) -> Option<Sender> {
        match self {
            Sender::Http1(_) => None,
            Sender::Http2(sender) => Some(Sender::Http2(sender.clone())),
        }
    }
}

/// A connection taken for a request.
struct Taken {
    sender: Sender,
    /// Filed before: it may have closed since it was last used.
    reused: bool,
    /// A group's retry, to another server than its address says: it serves
    /// this request only, never filed (see `upstream_groups`).
    single_use: bool,
}

/// A connection in the list, and since when it has been idle.
struct Filed {
    sender: Sender,
    at: Instant,
}

impl Filed {
    /// Closed, or idle for `IDLE_TIMEOUT`. An HTTP/1.1 connection whose
    /// response is still being read is busy: its idle time starts again.
    fn is_stale(&mut self) -> bool {
        if self.sender.is_closed() {
            return true;
        }
        if !self.sender.is_ready() {
            self.at = Instant::now();
            return false;
        }
        self.at.elapsed() > IDLE_TIMEOUT
    }
}

/// Each upstream address's connections, in a list searched in order: a
/// proxy has a handful of upstream addresses, and comparing two costs less
/// than hashing one (http's `Authority` hashes byte by byte, lowercased,
/// with SipHash).
#[derive(Default)]
struct Filing {
    lists: Vec<ToAddress>,
}

/// One address's connections. Its list holds its busy HTTP/1.1 connections
/// too (their responses still being read): a request looks past them.
struct ToAddress {
    address: Address,
    filed: VecDeque<Filed>,
    /// HTTP/2: the connect under way, which every request that finds no
    /// connection awaits, instead of opening one each (a stampede).
    connecting: Option<Connecting>,
}

/// A connect that several requests await: its HTTP/2 connection, and
/// whether it is single-use (a group's retry).
type Connecting =
    Shared<BoxFuture<'static, Result<(http2::SendRequest<Body>, bool), UpstreamError>>>;

impl Filing {
    /// The connections to `address` (an empty list the first time).
    fn list_for(&mut self, address: &Address) -> &mut ToAddress {
        // The same bytes first, as nearly always: `Authority`'s `==`
        // ignores case, byte by byte.
        let same = |to: &&ToAddress| {
            let (scheme, authority) = &to.address;
            scheme == &address.0
                && (authority.as_str() == address.1.as_str() || authority == &address.1)
        };
        let index = match self.lists.iter().position(|to| same(&to)) {
            Some(index) => index,
            None => {
                self.lists.push(ToAddress {
                    address: address.clone(),
                    filed: VecDeque::new(),
                    connecting: None,
                });
                self.lists.len() - 1
            }
        };
        &mut self.lists[index]
    }
}

/// Every upstream address's connections.
struct Upstreams {
    connector: UpstreamConnector,
    http2: bool,
    // Locked only to take or file a connection: never across an await.
    filed: Mutex<Filing>,
}

impl Upstreams {
    /// Sends `request`, whose URI is the upstream's address and the path.
    async fn send(
        self: Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (Some(scheme), Some(authority)) = (request.uri().scheme(), request.uri().authority())
        else {
            return Err(UpstreamError::connect("the upstream URI has no address"));
        };
        let address = (scheme.clone(), authority.clone());
        match self.http2 {
            true => host_as_authority(&mut request),
            false => origin_form(&mut request),
        }
        // A reused connection may have closed meanwhile (the upstream's
        // idle timeout, its GOAWAY, its restart). If the request never
        // left, it goes again on another connection, as hyper-util's client
        // does: each failed one is dropped, and a new connection ends it.
        let mut request = request;
        for _ in 0..MAX_ATTEMPTS {
            let mut taken = self.connection_to(&address).await?;
            let mut failed = match taken.sender.try_send(request).await {
                Ok(response) => return Ok(self.file(&address, taken, response)),
                Err(failed) => failed,
            };
            match (taken.reused, failed.take_message()) {
                (true, Some(unsent)) => {
                    self.forget(&address, &taken.sender);
                    request = unsent;
                }
                _ => return Err(UpstreamError::send(failed.into_error())),
            }
        }
        Err(UpstreamError::connect(
            "every kept-alive connection to the upstream had closed",
        ))
    }

    /// A filed connection to `address` that is ready, or a new one.
    async fn connection_to(self: &Arc<Self>, address: &Address) -> Result<Taken, UpstreamError> {
        if let Some(sender) = self.take_ready(address) {
            return Ok(Taken {
                sender,
                reused: true,
                single_use: false,
            });
        }
        if !self.http2 {
            // Boxed: connecting (TLS and all) makes a future of kilobytes,
            // which every request would otherwise carry for this rare path.
            return Box::pin(self.open(address)).await;
        }
        let (sender, single_use) = self.connecting_to(address).await?;
        Ok(Taken {
            sender: Sender::Http2(sender),
            reused: false,
            single_use,
        })
    }

    /// HTTP/2: the connect to `address` under way, or a new one. Its
    /// connection is filed as soon as it is made (every request shares
    /// it); a failed connect fails every request that awaited it, at once.
    fn connecting_to(self: &Arc<Self>, address: &Address) -> Connecting {
        let mut filing = self.locked();
        let to = filing.list_for(address);
        if let Some(connecting) = &to.connecting {
            return connecting.clone();
        }
        let (upstreams, address) = (self.clone(), address.clone());
        // Driven by whoever awaits it: if they all leave, the next request
        // takes it up where it was.
        let connecting = async move {
            let opened = upstreams.open(&address).await;
            let mut filing = upstreams.locked();
            let to = filing.list_for(&address);
            to.connecting = None;
            let Taken {
                sender: Sender::Http2(sender),
                single_use,
                ..
            } = opened?
            else {
                return Err(UpstreamError::connect("not an HTTP/2 connection"));
            };
            if !single_use {
                let shared = Sender::Http2(sender.clone());
                let filed = Filed {
                    sender: shared,
                    at: Instant::now(),
                };
                to.filed = VecDeque::from([filed]);
            }
            Ok((sender, single_use))
        };
        let connecting = connecting.boxed().shared();
        to.connecting = Some(connecting.clone());
        connecting
    }

    // ANCHOR: take_ready
    /// The last filed connection to `address` that takes a request now (the
    /// others idle out): an HTTP/1.1 one leaves the list, an HTTP/2 one is
    /// shared. Closed or long idle ones are dropped on the way.
    fn take_ready(&self, address: &Address) -> Option<Sender> {
        let mut filed = self.locked();
        let list = &mut filed.list_for(address).filed;
        // Bounded: each turn drops a connection or moves past one.
        for index in (0..list.len()).rev() {
            let candidate = &mut list[index];
            if candidate.is_stale() {
                list.remove(index);
                continue;
            }
            if candidate.sender.is_ready() {
                if let Some(shared) = candidate.sender.share() {
                    candidate.at = Instant::now();
                    return Some(shared);
                }
                return list.remove(index).map(|filed| filed.sender);
            }
            // An HTTP/1.1 connection whose response is still being read.
        }
        None
    }
    // ANCHOR_END: take_ready

    /// Drops an HTTP/2 connection that failed a request from the list (the
    /// address's only one: requests in flight on it keep it until they
    /// end). HTTP/1.1 ones are out of the list while in use.
    fn forget(&self, address: &Address, failed: &Sender) {
        if let Sender::Http2(_) = failed {
            self.locked().list_for(address).filed.clear();
        }
    }

    /// Hands the response back, and files its HTTP/1.1 connection: it
    /// takes the next request once this response has been read. Not a
    /// connection switched to another protocol (a WebSocket's), nor a
    /// single-use one.
    fn file(
        &self,
        address: &Address,
        taken: Taken,
        response: Response<Incoming>,
    ) -> Response<Incoming> {
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (Sender::Http1(_), false, false) = (&taken.sender, switched, taken.single_use) {
            let filed = Filed {
                sender: taken.sender,
                at: Instant::now(),
            };
            self.locked().list_for(address).filed.push_back(filed);
        }
        response
    }

    /// A new connection to `address`: the kit's connector (groups, TLS),
    /// then hyper's handshake; a task of its own drives it.
    async fn open(&self, address: &Address) -> Result<Taken, UpstreamError> {
        let uri = Uri::builder()
            .scheme(address.0.clone())
            .authority(address.1.clone())
            .path_and_query("/")
            .build()
            .map_err(UpstreamError::connect)?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(UpstreamError::connect)?;
        let io = connector.call(uri).await.map_err(UpstreamError::connect)?;
        let connected = io.connected();
        let mut extras = http::Extensions::new();
        connected.get_extras(&mut extras);
        let single_use = extras.get::<SingleUse>().is_some();
        let sender = match self.http2 {
            true => {
                if address.0 == Scheme::HTTPS && !connected.is_negotiated_h2() {
                    return Err(UpstreamError::connect(
                        "the upstream did not choose HTTP/2 (ALPN h2) for its TLS connection",
                    ));
                }
                let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::send)?;
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        debug!("HTTP/2 upstream connection: {err}");
                    }
                });
                Sender::Http2(sender)
            }
            false => {
                let (sender, connection) = http1::Builder::new()
                    .max_buf_size(MAX_READ_BUFFER)
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::send)?;
                // Upgrades (step 10's WebSockets) hand the connection over.
                tokio::spawn(async move {
                    if let Err(err) = connection.with_upgrades().await {
                        debug!("HTTP/1.1 upstream connection: {err}");
                    }
                });
                Sender::Http1(sender)
            }
        };
        Ok(Taken {
            sender,
            reused: false,
            single_use,
        })
    }

    /// The lists, even if a thread panicked while holding them: no step
    /// leaves them half changed.
    fn locked(&self) -> std::sync::MutexGuard<'_, Filing> {
        self.filed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every 30 s, closes the connections idle for `IDLE_TIMEOUT` (dropping
/// hyper's handle ends its task, which closes it), and forgets closed ones.
/// Ends with the client.
fn close_idle_connections(upstreams: Weak<Upstreams>) {
    // No runtime (a unit test): nothing to sweep.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        every.tick().await;
        loop {
            every.tick().await;
            let Some(upstreams) = upstreams.upgrade() else {
                return;
            };
            let mut filed = upstreams.locked();
            for to in &mut filed.lists {
                to.filed.retain_mut(|kept| !kept.is_stale());
            }
            filed
                .lists
                .retain(|to| !to.filed.is_empty() || to.connecting.is_some());
        }
    });
}

/// HTTP/1.1 sends the path alone (origin form, RFC 9112 §3.2.1) and the
/// host in `Host`: the client's (step 09 copies an HTTP/2 client's
/// `:authority` there), or else the upstream's, from its address.
fn origin_form(request: &mut Request<Body>) {
    if !request.headers().contains_key(HOST)
        && let Some(host) = upstream_host(request.uri())
    {
        request.headers_mut().insert(HOST, host);
    }
    // Moved out, not cloned: a clone of a path made from a string costs
    // an allocation.
    let uri = std::mem::take(request.uri_mut());
    let path = uri.into_parts().path_and_query;
    *request.uri_mut() = Uri::from(path.unwrap_or_else(|| PathAndQuery::from_static("/")));
}

/// `host:port`, or `host` alone when the port is the scheme's own (never
/// a `user@` of the address).
fn upstream_host(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let host = match uri.port_u16() {
        Some(port) if port != default => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    HeaderValue::try_from(host).ok()
}

// ANCHOR: host_as_authority
/// The request's `Host` (the client's, or the upstream's if the proxy
/// rewrote it) becomes its URI's authority, sent as `:authority`; no `host`
/// field goes with it.
fn host_as_authority(request: &mut Request<Body>) {
    let Some(host) = request.headers_mut().remove(HOST) else {
        return;
    };
    // Not an authority, or one with `user@` (never in `:authority`): the
    // upstream's address stays.
    let Ok(authority) = Authority::try_from(host.as_bytes()) else {
        return;
    };
    if authority.as_str().contains('@') {
        return;
    }
    let mut parts = request.uri().clone().into_parts();
    parts.authority = Some(authority);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}
// ANCHOR_END: host_as_authority

/// Why a request did not reach its upstream: what failed, in the
/// words hyper-util's client uses (`bad_gateway` prints both alike), and
/// why in its source.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    what: &'static str,
    /// Shared: one failed connect fails every request that awaited it.
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl UpstreamError {
    fn connect(cause: impl Into<BoxError>) -> UpstreamError {
        UpstreamError {
            what: "client error (Connect)",
            cause: Arc::from(cause.into()),
        }
    }

    fn send(cause: hyper::Error) -> UpstreamError {
        UpstreamError {
            what: "client error (SendRequest)",
            cause: Arc::new(cause),
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_becomes_the_authority() {
        let mut request = Request::builder()
            .uri("http://127.0.0.1:9000/echo?x=1")
            .header(HOST, "workshop.example:8080")
            .body(workshop::body::empty())
            .unwrap();
        host_as_authority(&mut request);
        assert_eq!(
            request.uri().to_string(),
            "http://workshop.example:8080/echo?x=1"
        );
        assert!(request.headers().get(HOST).is_none());
    }

    #[test]
    fn http1_sends_the_path_and_keeps_the_clients_host() {
        let mut request = Request::builder()
            .uri("http://127.0.0.1:9000/echo?x=1")
            .header(HOST, "workshop.example")
            .body(workshop::body::empty())
            .unwrap();
        origin_form(&mut request);
        assert_eq!(request.uri().to_string(), "/echo?x=1");
        assert_eq!(request.headers()[HOST], "workshop.example");
    }

    #[test]
    fn http1_without_a_host_names_the_upstream() {
        let mut request = Request::builder()
            .uri("https://upstream.example:443")
            .body(workshop::body::empty())
            .unwrap();
        origin_form(&mut request);
        assert_eq!(request.uri().to_string(), "/");
        assert_eq!(request.headers()[HOST], "upstream.example");
        let mut request = Request::builder()
            .uri("http://127.0.0.1:9000/")
            .body(workshop::body::empty())
            .unwrap();
        origin_form(&mut request);
        assert_eq!(request.headers()[HOST], "127.0.0.1:9000");
        let mut request = Request::builder()
            .uri("http://user:secret@upstream.example:8080/")
            .body(workshop::body::empty())
            .unwrap();
        origin_form(&mut request);
        assert_eq!(request.headers()[HOST], "upstream.example:8080");
    }

    #[test]
    fn user_info_never_becomes_the_authority() {
        let mut request = Request::builder()
            .uri("http://127.0.0.1:9000/")
            .header(HOST, "user@workshop.example")
            .body(workshop::body::empty())
            .unwrap();
        host_as_authority(&mut request);
        assert_eq!(request.uri().to_string(), "http://127.0.0.1:9000/");
    }

    #[test]
    fn an_odd_host_leaves_the_upstream_address() {
        let mut request = Request::builder()
            .uri("http://127.0.0.1:9000/")
            .header(HOST, "a b")
            .body(workshop::body::empty())
            .unwrap();
        host_as_authority(&mut request);
        assert_eq!(request.uri().to_string(), "http://127.0.0.1:9000/");
        assert!(request.headers().get(HOST).is_none());
    }
}
