//! Step 01 — ListenAndServe.
//!
//! Go's `http.ListenAndServe` hides three things that a Rust program writes
//! out: an accept loop, one task per connection, and a *service* (a function
//! from request to response) that hyper calls for every request on that
//! connection. This step answers every request itself, with a page that
//! describes what arrived: the raw material a proxy works with.

use std::convert::Infallible;
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::body::{Body, text};

/// The client's address, stored in each request's extensions by [`serve`]:
/// the handler only sees the request, yet later steps need to know who asked
/// (step 06 puts it in `X-Forwarded-For`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The largest request head (request line and headers) a client may send.
const MAX_REQUEST_HEAD: usize = 64 * 1024;

// ANCHOR: accept
/// The next connection, and who opened it.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Small writes go out at once instead of waiting for the
                // previous one to be acknowledged (Nagle's algorithm): a
                // proxy forwards many small chunks (step 08 tells the story).
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(err) => {
                // Usually "too many open files": wait a little instead of
                // spinning, and keep the connections we already have.
                warn!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
// ANCHOR_END: accept

// ANCHOR: serve
/// Accepts connections forever and serves each on its own task with
/// `handler`, which turns a request into a response.
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        // EXERCISE: serve every connection that arrives, each alongside the others, forever. Trap: serving a connection before accepting the next: a client that sends half a request blocks everyone
        let (stream, peer) = accept(&listener).await;
        // One task per connection: a slow client never holds up the others.
        tokio::spawn(serve_connection(stream, peer, handler.clone()));
        // END EXERCISE
    }
}
// ANCHOR_END: serve

// ANCHOR: serve_connection
/// Serves the requests of one connection until the client closes it.
async fn serve_connection<H, F>(stream: TcpStream, peer: SocketAddr, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // The service: what hyper calls for each request on this connection.
    // ANCHOR: service
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        let response = handler(request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    // ANCHOR_END: service
    // EXERCISE: answer every request of this connection with the service (keep-alive included), refuse a head over MAX_REQUEST_HEAD with 431, and log how the connection ended. Trap: keeping hyper's default limit: a 120 KiB head is then served instead of refused
    // ANCHOR: connection
    // hyper reads requests off the connection, calls the service, writes
    // the responses, and handles keep-alive between them. A request head
    // over the limit gets `431` and a closed connection: without a limit,
    // hyper's read buffer (~400 KiB) is the only bound; nginx allows 8 KiB
    // a line.
    if let Err(err) = http1::Builder::new()
        .max_header_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        debug!("connection from {peer} ended: {err}");
    }
    // ANCHOR_END: connection
    // END EXERCISE
}
// ANCHOR_END: serve_connection

// ANCHOR: describe
/// The whole application of step 01: say what arrived.
pub async fn describe_request(request: Request<Incoming>) -> Response<Body> {
    // EXERCISE: answer with a text page that shows the method, the path and query, the version and every header line as received. Trap: printing the path alone: the query (`?x=1`) is part of what a proxy forwards
    let mut page = String::new();
    // ANCHOR: describe_page
    if let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>() {
        let _ = writeln!(page, "client: {peer}");
    }
    let _ = writeln!(
        page,
        "request: {} {} {:?}",
        request.method(),
        request.uri(),
        request.version()
    );
    let _ = writeln!(page, "headers, as received:");
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        let _ = writeln!(page, "  {name}: {value}");
    }
    text(StatusCode::OK, page.trim_end())
    // ANCHOR_END: describe_page
    // END EXERCISE
}
// ANCHOR_END: describe
