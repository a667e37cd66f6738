//! Step 13's client: hyper-util's pool over the kit's connector for
//! HTTP/1.1 upstreams, and HTTP/2 connections of its own, so that the
//! request's `:authority` is the client's host.
//!
//! RFC 9113 §8.3.1: an intermediary that forwards a request over HTTP/2
//! builds `:authority` from the original request, and sends no `host` that
//! differs from it (a strict server refuses the request). hyper-util's
//! client takes `:authority` and the address it connects to from one URI,
//! the upstream's: steps 09 to 12 send the upstream's address as
//! `:authority` and the client's host as `host`. Here, an HTTP/2 upstream
//! gets one connection per address, opened with the kit's connector (groups,
//! TLS), then hyper's `client::conn::http2`; HTTP/2 multiplexes every
//! request on it, and each request carries the client's host in its URI.
//!
//! Kit of step 13: steps 02 to 12 take any [`HttpClient`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;
use tracing::debug;
use workshop::body::{Body, BoxError};
use workshop::round_trip::{HttpClient, ResponseFuture};

use crate::connector::UpstreamConnector;
use crate::upstream_groups::SingleUse;

/// The upstream's protocol decides the client: every upstream speaks
/// HTTP/1.1 unless `--upstream-http2` says they all speak HTTP/2. (In an
/// `Arc`: step 11 clones its clients for every request.)
#[derive(Clone)]
pub enum UpstreamClient {
    /// hyper-util's pool of HTTP/1.1 connections.
    Http1(Arc<Client<UpstreamConnector, Body>>),
    /// One HTTP/2 connection per upstream address.
    Http2(Arc<Http2Upstreams>),
}

impl UpstreamClient {
    /// hyper-util's pool, over a connector that offers `http/1.1` by ALPN.
    pub fn http1(connector: UpstreamConnector) -> UpstreamClient {
        UpstreamClient::Http1(Arc::new(
            Client::builder(TokioExecutor::new()).build(connector),
        ))
    }

    /// The kit's HTTP/2 connections, over a connector that offers `h2`.
    pub fn http2(connector: UpstreamConnector) -> UpstreamClient {
        UpstreamClient::Http2(Arc::new(Http2Upstreams::new(connector)))
    }
}

impl HttpClient for UpstreamClient {
    fn request(&self, request: Request<Body>) -> ResponseFuture {
        match self {
            UpstreamClient::Http1(client) => HttpClient::request(&**client, request),
            UpstreamClient::Http2(upstreams) => {
                let upstreams = upstreams.clone();
                Box::pin(async move { Ok(upstreams.send(request).await?) })
            }
        }
    }
}

/// Where a connection goes: `https` or `http`, and host and port.
type Address = (Scheme, Authority);

/// HTTP/2 connections, one per upstream address.
pub struct Http2Upstreams {
    connector: UpstreamConnector,
    // Locked only to look up or file a connection: never across an await.
    open: Arc<Mutex<HashMap<Address, SendRequest<Body>>>>,
}

impl Http2Upstreams {
    /// `connector` must offer only `h2` by ALPN; on plain TCP the
    /// connection speaks HTTP/2 with prior knowledge (h2c).
    pub fn new(connector: UpstreamConnector) -> Http2Upstreams {
        Http2Upstreams {
            connector,
            open: Arc::default(),
        }
    }

    /// Sends `request`, whose URI is the upstream's address and the path,
    /// with its `Host` as `:authority`.
    async fn send(&self, mut request: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        let (Some(scheme), Some(authority)) = (request.uri().scheme(), request.uri().authority())
        else {
            return Err(UpstreamError::connect("the upstream URI has no address"));
        };
        let address = (scheme.clone(), authority.clone());
        host_as_authority(&mut request);
        let (mut sender, reused) = self.connection_to(&address).await?;
        let mut failed = match sender.try_send_request(request).await {
            Ok(response) => return Ok(response),
            Err(failed) => failed,
        };
        // A reused connection may have closed meanwhile (the upstream's
        // GOAWAY, its idle timeout). If the request never left, it goes
        // once more on a new connection, as hyper-util's client does.
        match (reused, failed.take_message()) {
            (true, Some(request)) => {
                self.forget(&address);
                let (mut sender, _) = self.connection_to(&address).await?;
                sender
                    .send_request(request)
                    .await
                    .map_err(UpstreamError::http2)
            }
            _ => Err(UpstreamError::http2(failed.into_error())),
        }
    }

    /// The open connection to `address` (`true`: reused), or a new one.
    async fn connection_to(
        &self,
        address: &Address,
    ) -> Result<(SendRequest<Body>, bool), UpstreamError> {
        if let Some(sender) = self.reusable(address) {
            return Ok((sender, true));
        }
        // Requests that find no connection at the same time each open one:
        // the last filed stays, the others serve their own request and
        // close. (Simpler than making them wait for one connect.)
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
        if address.0 == Scheme::HTTPS && !connected.is_negotiated_h2() {
            return Err(UpstreamError::connect(
                "the upstream did not choose HTTP/2 (ALPN h2) for its TLS connection",
            ));
        }
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(UpstreamError::http2)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!("HTTP/2 upstream connection: {err}");
            }
        });
        // A group's connection made to another server than the one asked
        // (its retry) serves this request only, never filed under the
        // first's address: see `upstream_groups`.
        let mut extras = http::Extensions::new();
        connected.get_extras(&mut extras);
        if extras.get::<SingleUse>().is_none() {
            self.locked().insert(address.clone(), sender.clone());
        }
        Ok((sender, false))
    }

    /// The filed connection to `address`, if it still takes requests.
    fn reusable(&self, address: &Address) -> Option<SendRequest<Body>> {
        let mut open = self.locked();
        let sender = open.get(address)?;
        if sender.is_closed() {
            open.remove(address);
            return None;
        }
        Some(sender.clone())
    }

    fn forget(&self, address: &Address) {
        self.locked().remove(address);
    }

    /// The map, even if a thread panicked while holding it: no step
    /// leaves it half changed.
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<Address, SendRequest<Body>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

/// Why a request did not reach its HTTP/2 upstream: what failed, in the
/// words hyper-util's client uses (`bad_gateway` prints both alike), and
/// why in its source.
#[derive(Debug)]
pub struct UpstreamError {
    what: &'static str,
    cause: BoxError,
}

impl UpstreamError {
    fn connect(cause: impl Into<BoxError>) -> UpstreamError {
        UpstreamError {
            what: "client error (Connect)",
            cause: cause.into(),
        }
    }

    fn http2(cause: hyper::Error) -> UpstreamError {
        UpstreamError {
            what: "client error (SendRequest)",
            cause: cause.into(),
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
