//! Real clients: hyper over a fresh TCP connection, and raw TCP for exact
//! bytes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use workshop::body::{Body, empty};

use super::outcome::{Failure, OrFail, fail, within};

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; a failure quotes the start of what came instead.
    pub fn json(&self) -> Result<serde_json::Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|_| {
            fail(format!(
                "expected the demo origin's JSON, got a {} response starting with {:?} — is the request forwarded to --upstream?",
                self.status,
                excerpt(&self.text())
            ))
        })
    }

    /// Every value of a response header, in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        values(&self.headers, name)
    }
}

pub fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect()
}

/// The first 200 characters, for failure messages.
pub fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Opens an HTTP/1.1 connection to `addr`; the connection is driven by a
/// background task until the returned sender is dropped.
pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>, Failure> {
    let stream = within(5, "the TCP connection to the proxy", async {
        TcpStream::connect(addr)
            .await
            .or_fail(&format!("connecting to {addr}"))
    })
    .await?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .or_fail("HTTP/1.1 handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A GET request for `path` with a `Host` header naming `addr`.
pub fn get_request(addr: SocketAddr, path: &str) -> Request<Body> {
    let mut request = Request::new(empty());
    *request.uri_mut() = path.parse().unwrap_or_default();
    request.headers_mut().insert(
        header::HOST,
        addr.to_string()
            .parse()
            .expect("an address is a valid header value"),
    );
    request
}

/// A request for the proxy's own API (`/_proxy/…`), with `token` if any.
pub fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Request<Body> {
    let mut request = Request::new(empty());
    *request.method_mut() =
        http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET);
    *request.uri_mut() = path.parse().unwrap_or_default();
    if let Ok(host) = header::HeaderValue::from_str(&addr.to_string()) {
        request.headers_mut().insert(header::HOST, host);
    }
    if let Some(token) = token
        && let Ok(value) = header::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    request
}

/// Sends `request` on a new connection; the response body is left to read.
pub async fn send(addr: SocketAddr, request: Request<Body>) -> Result<Response<Incoming>, Failure> {
    send_within(addr, request, 10).await
}

/// [`send`], waiting at most `seconds` for the response head (an upload is
/// answered only once it has all gone through).
pub async fn send_within(
    addr: SocketAddr,
    request: Request<Body>,
    seconds: u64,
) -> Result<Response<Incoming>, Failure> {
    let mut sender = connect(addr).await?;
    within(seconds, "the response headers", async {
        sender
            .send_request(request)
            .await
            .or_fail("sending the request (the proxy closed the connection?)")
    })
    .await
}

/// Sends `request` on a new connection and reads the whole response.
pub async fn fetch(addr: SocketAddr, request: Request<Body>) -> Result<Reply, Failure> {
    let response = send(addr, request).await?;
    read(response).await
}

/// Reads a response to the end (at most 10 s).
pub async fn read(response: Response<Incoming>) -> Result<Reply, Failure> {
    let (parts, body) = response.into_parts();
    let body = within(10, "the response body", async {
        body.collect()
            .await
            .map(|collected| collected.to_bytes())
            .or_fail("reading the response body (the proxy cut it?)")
    })
    .await?;
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// GET `path` on a new connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Reply, Failure> {
    fetch(addr, get_request(addr, path)).await
}

/// What came back on a raw connection.
pub struct RawAnswer {
    pub bytes: Vec<u8>,
    /// The peer closed (or reset) the connection; `false` means it was still
    /// open when we stopped waiting.
    pub closed: bool,
}

impl RawAnswer {
    pub fn status_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        text.lines().next().unwrap_or("").to_string()
    }
}

/// Writes `bytes` on a new connection, then reads until the peer closes or
/// `wait` passes.
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> Result<RawAnswer, Failure> {
    let mut stream = TcpStream::connect(addr)
        .await
        .or_fail(&format!("connecting to {addr}"))?;
    // A peer that answers early and closes makes the rest of the write fail:
    // that is a closed connection, not a harness error.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => {
                return Ok(RawAnswer {
                    bytes: answer,
                    closed: false,
                });
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Ok(RawAnswer {
                    bytes: answer,
                    closed: true,
                });
            }
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.len() > 1 << 20 {
                    return Ok(RawAnswer {
                        bytes: answer,
                        closed: false,
                    });
                }
            }
        }
    }
}

/// Opens an HTTP/2 connection with prior knowledge (h2c) to `addr`.
pub async fn connect_h2(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http2::SendRequest<Body>, Failure> {
    let stream = within(5, "the TCP connection to the proxy", async {
        TcpStream::connect(addr)
            .await
            .or_fail(&format!("connecting to {addr}"))
    })
    .await?;
    h2_over(stream).await
}

/// The HTTP/2 handshake over any connection (plain TCP, or TLS).
pub async fn h2_over<I>(io: I) -> Result<hyper::client::conn::http2::SendRequest<Body>, Failure>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = within(5, "the HTTP/2 handshake", async {
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(io),
        )
        .await
        .or_fail("HTTP/2 handshake (does the proxy speak HTTP/2?)")
    })
    .await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// An HTTP/2 request: absolute URI (it becomes `:scheme` and `:authority`).
pub fn h2_request(authority: &str, path: &str) -> Request<Body> {
    let mut request = Request::new(empty());
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = format!("http://{authority}{path}")
        .parse()
        .unwrap_or_default();
    request
}

/// Sends an HTTP/2 request on `sender` and reads the whole response.
pub async fn fetch_h2(
    sender: &mut hyper::client::conn::http2::SendRequest<Body>,
    request: Request<Body>,
) -> Result<Reply, Failure> {
    let response = within(10, "the HTTP/2 response headers", async {
        sender
            .send_request(request)
            .await
            .or_fail("sending the HTTP/2 request (refused or reset?)")
    })
    .await?;
    read(response).await
}

/// Sends an HTTP/2 request and reads its body and trailers to the end.
pub async fn fetch_h2_with_trailers(
    sender: &mut hyper::client::conn::http2::SendRequest<Body>,
    request: Request<Body>,
) -> Result<(StatusCode, Bytes, HeaderMap), Failure> {
    let response = within(10, "the HTTP/2 response headers", async {
        sender
            .send_request(request)
            .await
            .or_fail("sending the HTTP/2 request")
    })
    .await?;
    let status = response.status();
    let collected = within(10, "the body and its trailers", async {
        response
            .into_body()
            .collect()
            .await
            .or_fail("reading the body")
    })
    .await?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Ok((status, collected.to_bytes(), trailers))
}
