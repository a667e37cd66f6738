//! The demo origin: the upstream every step forwards to.
//!
//! `cargo run --bin origin` runs it alone; a step started without
//! `--upstream` runs it in-process; the tests run it too. It speaks HTTP/1.1
//! and HTTP/2 without TLS (h2c) on the same port, and each endpoint shows one
//! thing a proxy can get wrong:
//!
//! | path | what it answers |
//! |---|---|
//! | `/` | hello, and this list |
//! | `/echo`, `/echo/...` | JSON: method, path, query, version, headers in order as received, body length and sha256, trailers |
//! | `/headers?add=Name:Value` | repeated response headers (two `Set-Cookie`, two `X-Order`), plus any added |
//! | `/stream?n=&interval_ms=` | `n` chunks, one every `interval_ms` (the first at once) |
//! | `/sse?n=&interval_ms=` | server-sent events, same pacing |
//! | `/big?mb=` or `?bytes=`, `&id=` | deterministic bytes, streamed with a `Content-Length`; with `id`, `/progress?id=` tells how many were handed to the socket |
//! | `/upload` | reads the whole body, answers its length and sha256 |
//! | `/slow?ms=` | answers after `ms` milliseconds |
//! | `/status/NNN` | that status |
//! | `/trailers` | a chunked body with announced trailers; `X-Received-TE` says which `TE` arrived |
//! | `/truncated?bytes=&promised=` | promises `promised` bytes, sends `bytes`, then breaks the connection |
//! | `/ws` | WebSocket echo: text, binary, pings; the 101 carries `X-Origin-Upgrade` |
//! | `/chat`, `/chat/ws` | a tiny browser chat: the page opens a WebSocket back to where it came from (through the proxy), every message goes to everyone |
//! | `/upgrade-echo` | `Upgrade: echo`: after the 101, echoes bytes until the client half-closes, then says `bye` |
//! | `/grpc` | gRPC-like: echoes the body, ends with `grpc-status` trailers and the names of the request's trailers |
//! | `/stream-state?id=&wait_for=` | how `/stream?id=` ended: `running`, `finished` or `cancelled` (waits up to 5 s for `wait_for`) |
//! | `/slides/` | the talk itself (see `deck`), to show it through the proxy at the end |

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, channel::Channel};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::{debug, warn};

use crate::body::{Body, boxed, empty, full, text};

/// A running origin. Dropping it leaves it running: it lives as long as the
/// process, which is what both a step and a test want.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Origin {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many bytes `/big?id=ID` has handed to its connection so far.
    pub fn progress(&self, id: &str) -> u64 {
        self.state.progress(id)
    }
}

#[derive(Default)]
struct State {
    /// Bytes sent per `/big?id=`: lets a test see whether a proxy lets the
    /// origin run ahead of a client that does not read.
    progress: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// How each `/stream?id=` is going: lets a test see whether a proxy
    /// cancels the upstream request when its client goes away.
    streams: Mutex<HashMap<String, watch::Sender<StreamState>>>,
    /// The one chat room of `/chat`: every message to every member.
    chat: std::sync::OnceLock<broadcast::Sender<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StreamState {
    Running,
    Finished,
    Cancelled,
}

impl StreamState {
    fn name(self) -> &'static str {
        match self {
            StreamState::Running => "running",
            StreamState::Finished => "finished",
            StreamState::Cancelled => "cancelled",
        }
    }
}

impl State {
    fn progress(&self, id: &str) -> u64 {
        let map = self
            .progress
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        map.get(id).map_or(0, |sent| sent.load(Ordering::Relaxed))
    }

    fn stream(&self, id: &str) -> watch::Sender<StreamState> {
        let mut map = self
            .streams
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if map.len() >= 4096 {
            map.clear();
        }
        map.entry(id.to_owned())
            .or_insert_with(|| watch::channel(StreamState::Running).0)
            .clone()
    }

    fn track(&self, id: &str) -> Arc<AtomicU64> {
        let mut map = self
            .progress
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Bounded: a long-running origin must not grow with every id it sees.
        if map.len() >= 4096 {
            map.clear();
        }
        map.entry(id.to_owned()).or_default().clone()
    }
}

/// Binds `addr` and serves the origin on a background task.
pub async fn start(addr: &str) -> std::io::Result<Origin> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::default());
    tokio::spawn(accept_loop(listener, state.clone()));
    Ok(Origin { addr, state })
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, say: back off instead of spinning.
                warn!("origin: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(request, peer, &state).await) }
            });
            // `auto` reads the first bytes: the HTTP/2 preface means h2c,
            // anything else HTTP/1.1.
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                debug!("origin: connection from {peer} ended: {err}");
            }
        });
    }
}

async fn route(request: Request<Incoming>, peer: SocketAddr, state: &State) -> Response<Body> {
    let query = Query::parse(request.uri().query());
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/" => hello(),
        "/headers" => repeated_headers(&query),
        "/stream" => stream(&query, false, state),
        "/sse" => stream(&query, true, state),
        "/stream-state" => stream_state(&query, state).await,
        "/truncated" => truncated(&query),
        "/big" => big(&query, state),
        "/progress" => text(
            StatusCode::OK,
            state.progress(query.get("id").unwrap_or("")).to_string(),
        ),
        "/upload" => upload(request).await,
        "/slow" => slow(&query).await,
        "/trailers" => trailers(&request),
        "/grpc" => grpc(request).await,
        "/ws" => websocket_echo(request),
        "/chat" => chat_page(),
        "/chat/ws" => chat_room(request, state),
        "/upgrade-echo" => upgrade_echo(request),
        // The talk itself, so the closing demo can show it through the proxy.
        "/slides" => redirect("/slides/"),
        _ if path.starts_with("/slides/") => {
            crate::deck::respond(&crate::repo::root(), &path["/slides/".len()..])
        }
        _ if path == "/echo" || path.starts_with("/echo/") => echo(request, peer).await,
        _ => match path
            .strip_prefix("/status/")
            .and_then(|code| code.parse().ok())
        {
            Some(code) => status(code),
            None => text(
                StatusCode::NOT_FOUND,
                format!("the demo origin has no {path}; try /"),
            ),
        },
    }
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::MOVED_PERMANENTLY, format!("see {to}"));
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

fn hello() -> Response<Body> {
    text(
        StatusCode::OK,
        "hello from the workshop's demo origin\n\
         try: /echo /headers /stream?n=5&interval_ms=500 /sse /big?mb=10 \
         /upload (POST) /slow?ms=2000 /status/418 /trailers /ws /chat /slides/",
    )
}

/// Everything the origin saw, as JSON: what a proxy forwarded, exactly.
async fn echo(request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let received = match read_body(body).await {
        Ok(received) => received,
        Err(err) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {err}"),
            );
        }
    };
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        // Over HTTP/2, `:authority`; over HTTP/1.1, only an absolute-form target has one.
        "authority": parts.uri.authority().map_or("", |authority| authority.as_str()),
        "version": format!("{:?}", parts.version),
        "peer": peer.to_string(),
        "headers": header_pairs(&parts.headers),
        "body_length": received.length,
        "body_sha256": received.sha256,
        "trailers": header_pairs(&received.trailers),
    });
    json_response(&json)
}

/// Reads the whole body and answers its length and hash: shows a proxy
/// passes every byte of an upload, in order.
async fn upload(request: Request<Incoming>) -> Response<Body> {
    match read_body(request.into_body()).await {
        Ok(received) => json_response(&serde_json::json!({
            "length": received.length,
            "sha256": received.sha256,
        })),
        Err(err) => text(
            StatusCode::BAD_REQUEST,
            format!("reading the body failed: {err}"),
        ),
    }
}

struct Received {
    length: u64,
    sha256: String,
    trailers: HeaderMap,
}

/// Reads a body frame by frame, hashing as it goes: never holds it whole.
async fn read_body(mut body: Incoming) -> Result<Received, hyper::Error> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let mut trailers = HeaderMap::new();
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(data) => {
                length += data.len() as u64;
                hasher.update(&data);
            }
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    trailers.extend(more);
                }
            }
        }
    }
    Ok(Received {
        length,
        sha256: hex(&hasher.finalize()),
        trailers,
    })
}

/// Response headers a proxy must copy with `append`, not `insert`.
fn repeated_headers(query: &Query) -> Response<Body> {
    let mut response = text(StatusCode::OK, "two Set-Cookie and two X-Order headers");
    let headers = response.headers_mut();
    for (name, value) in [
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; Path=/"),
        ("x-order", "first"),
        ("x-order", "second"),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    for added in query.all("add") {
        let Some((name, value)) = added.split_once(':') else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("add={added}: expected Name:Value"),
            );
        };
        match (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value.trim()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("add={added}: not a valid header"),
                );
            }
        }
    }
    response
}

/// `n` chunks with a pause between them: shows whether a proxy passes each
/// chunk on as it arrives or waits for the end.
fn stream(query: &Query, server_sent_events: bool, state: &State) -> Response<Body> {
    let count = query.number("n", 5).min(10_000);
    let interval = Duration::from_millis(query.number("interval_ms", 500).min(600_000));
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(1);
    let progress = query.get("id").map(|id| state.stream(id));
    let report = move |outcome: StreamState| {
        if let Some(progress) = &progress {
            progress.send_replace(outcome);
        }
    };
    tokio::spawn(async move {
        for i in 1..=count {
            if i > 1 {
                tokio::time::sleep(interval).await;
            }
            let chunk = if server_sent_events {
                // The send time lets a client measure what a proxy adds.
                let sent_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis());
                format!("id: {i}\ndata: event {i} of {count}, sent at {sent_ms} ms\n\n")
            } else {
                format!("chunk {i} of {count}\n")
            };
            // The client (or the proxy) went away: stop producing.
            if sender.send_data(Bytes::from(chunk)).await.is_err() {
                report(StreamState::Cancelled);
                return;
            }
        }
        // Wait until hyper has taken the last chunk: a body dropped before
        // that was cancelled, not finished.
        match sender.send_trailers(HeaderMap::new()).await {
            Ok(()) => report(StreamState::Finished),
            Err(_) => report(StreamState::Cancelled),
        }
    });
    let mut response = Response::new(boxed(body));
    let content_type = if server_sent_events {
        "text/event-stream"
    } else {
        "text/plain; charset=utf-8"
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A large deterministic body, produced as fast as the connection takes it.
fn big(query: &Query, state: &State) -> Response<Body> {
    const MAX: u64 = 64 << 30;
    let length = match query.get("bytes") {
        Some(_) => query.number("bytes", 0),
        None => query.number("mb", 1) << 20,
    }
    .min(MAX);
    let sent = match query.get("id") {
        Some(id) => state.track(id),
        None => Arc::default(),
    };
    let mut response = Response::new(boxed(Pattern {
        offset: 0,
        length,
        sent,
    }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Answers how `/stream?id=` went; with `wait_for`, first waits (at most
/// 5 s) for that state, so that a test needs no polling loop.
async fn stream_state(query: &Query, state: &State) -> Response<Body> {
    let Some(id) = query.get("id") else {
        return text(StatusCode::BAD_REQUEST, "stream-state needs ?id=");
    };
    let mut progress = state.stream(id).subscribe();
    if let Some(wanted) = query.get("wait_for") {
        let reached = progress.wait_for(|now| now.name() == wanted);
        let _ = tokio::time::timeout(Duration::from_secs(5), reached).await;
    }
    let now = *progress.borrow();
    text(StatusCode::OK, now.name())
}

/// A WebSocket echo: the handshake by hand (it is only headers), then
/// tokio-tungstenite on the upgraded connection.
fn websocket_echo(mut request: Request<Incoming>) -> Response<Body> {
    let asks_websocket = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|protocol| protocol.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = request
        .headers()
        .get("sec-websocket-key")
        .filter(|_| asks_websocket)
    else {
        return text(StatusCode::BAD_REQUEST, "/ws expects a WebSocket handshake");
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return debug!("origin: WebSocket upgrade failed: {err}"),
        };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            let echoed = match message {
                Message::Text(_) | Message::Binary(_) => socket.send(message).await,
                // tungstenite queues the pong; flushing sends it.
                Message::Ping(_) => socket.flush().await,
                // tungstenite answers the close; the stream then ends.
                _ => Ok(()),
            };
            if echoed.is_err() {
                break;
            }
        }
    });
    switching_protocols("websocket", &[("sec-websocket-accept", &accept)])
}

/// The chat page: it connects back to the host it was loaded from, so
/// through a proxy it tests the proxy's WebSocket support.
fn chat_page() -> Response<Body> {
    let mut response = Response::new(full(CHAT_PAGE));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

const CHAT_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>workshop chat</title>
<style>body{font:16px sans-serif;max-width:40em;margin:2em auto}#log{border:1px solid #ccc;height:20em;overflow:auto;padding:.5em}input{width:80%}</style>
<h1>workshop chat</h1>
<p id="state">connecting…</p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" autofocus><button>send</button></form>
<script>
const log = (line) => { const p = document.createElement("div"); p.textContent = line; document.getElementById("log").append(p); };
const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat/ws");
socket.onopen = () => document.getElementById("state").textContent = "connected to " + location.host;
socket.onclose = () => document.getElementById("state").textContent = "closed";
socket.onmessage = (event) => log(event.data);
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const text = document.getElementById("text");
  if (text.value) { socket.send(text.value); text.value = ""; }
};
</script>
"#;

/// A member of the chat room: what it says goes to everyone, what anyone
/// says comes to it.
fn chat_room(mut request: Request<Incoming>, state: &State) -> Response<Body> {
    let Some(key) = request.headers().get("sec-websocket-key") else {
        return text(
            StatusCode::BAD_REQUEST,
            "/chat/ws expects a WebSocket handshake",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let room = state.chat.get_or_init(|| broadcast::channel(64).0).clone();
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let mut heard = room.subscribe();
        loop {
            tokio::select! {
                said = socket.next() => match said {
                    Some(Ok(Message::Text(text))) => {
                        let _ = room.send(text.as_str().chars().take(1000).collect());
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
                line = heard.recv() => match line {
                    Ok(line) => {
                        if socket.send(Message::text(line)).await.is_err() {
                            break;
                        }
                    }
                    // A slow member misses lines rather than slowing the room.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    switching_protocols("websocket", &[("sec-websocket-accept", &accept)])
}

/// A bare upgrade to a made-up protocol: echoes bytes until the client
/// half-closes, then sends `bye` and closes. Shows that a proxy passes a
/// half-close on while the other direction keeps working.
fn upgrade_echo(mut request: Request<Incoming>) -> Response<Body> {
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
            let _ = writer.write_all(b"bye\n").await;
        }
        let _ = writer.shutdown().await;
    });
    switching_protocols("echo", &[])
}

fn switching_protocols(protocol: &'static str, extra: &[(&'static str, &str)]) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(protocol));
    headers.insert("x-origin-upgrade", HeaderValue::from_static(protocol));
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

/// Answers like a gRPC server: the body back, then the status in trailers.
/// The request's trailers are named in one, to show they arrived.
async fn grpc(request: Request<Incoming>) -> Response<Body> {
    let mut body = request.into_body();
    let mut received = Vec::new();
    let mut request_trailers = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame.map(|frame| frame.into_data()) {
            Ok(Ok(data)) if received.len() < (1 << 20) => received.extend_from_slice(&data),
            Ok(Ok(_)) => return text(StatusCode::PAYLOAD_TOO_LARGE, "at most 1 MiB"),
            Ok(Err(frame)) => {
                if let Ok(trailers) = frame.into_trailers() {
                    request_trailers.extend(trailers.keys().map(|name| name.to_string()));
                }
            }
            Err(err) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body failed: {err}"),
                );
            }
        }
    }
    let (mut sender, response_body) = Channel::<Bytes, Infallible>::new(2);
    tokio::spawn(async move {
        let _ = sender.send_data(Bytes::from(received)).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("OK"));
        if let Ok(names) = HeaderValue::try_from(request_trailers.join(", ")) {
            trailers.insert("x-request-trailers", names);
        }
        let _ = sender.send_trailers(trailers).await;
    });
    let mut response = Response::new(boxed(response_body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    // An HTTP/1.1 client gets trailers only if they are announced.
    headers.insert(
        header::TRAILER,
        HeaderValue::from_static("grpc-status, grpc-message, x-request-trailers"),
    );
    response
}

/// Promises `promised` bytes, sends `bytes` of them and breaks the
/// connection: an upstream that crashed mid-response.
fn truncated(query: &Query) -> Response<Body> {
    let promised = query.number("promised", 200_000);
    let sent = query.number("bytes", 100_000).min(promised);
    let (mut sender, body) = Channel::<Bytes, std::io::Error>::new(1);
    tokio::spawn(async move {
        let _ = sender
            .send_data(Bytes::from(vec![b'x'; sent as usize]))
            .await;
        // Scripted: the head and the first bytes leave, then the crash.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // An error instead of the rest: hyper closes the connection
        // without ending the message.
        sender.abort(std::io::Error::other("the origin crashed mid-body"));
    });
    let mut response = Response::new(boxed(body));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(promised));
    response
}

async fn slow(query: &Query) -> Response<Body> {
    let ms = query.number("ms", 1000).min(600_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(StatusCode::OK, format!("answered after {ms} ms"))
}

fn status(code: u16) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(code) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{code} is not a status code"),
        );
    };
    // 1xx, 204 and 304 never have a body.
    if status.is_informational() || code == 204 || code == 304 {
        let mut response = Response::new(empty());
        *response.status_mut() = status;
        return response;
    }
    text(status, format!("status {code}"))
}

/// A chunked body followed by trailers it announced in `Trailer`.
fn trailers(request: &Request<Incoming>) -> Response<Body> {
    // Which TE arrived: a proxy must pass `TE: trailers` and nothing else.
    let received_te = request
        .headers()
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(1);
    tokio::spawn(async move {
        let mut hasher = Sha256::new();
        for line in ["the body comes first,\n", "then the trailers.\n"] {
            hasher.update(line);
            if sender.send_data(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        let mut trailers = HeaderMap::new();
        if let Ok(digest) = HeaderValue::try_from(hex(&hasher.finalize())) {
            trailers.insert("x-body-sha256", digest);
        }
        trailers.insert("x-origin-status", HeaderValue::from_static("done"));
        let _ = sender.send_trailers(trailers).await;
    });
    let mut response = Response::new(boxed(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::TRAILER,
        HeaderValue::from_static("x-body-sha256, x-origin-status"),
    );
    if let Ok(received_te) = HeaderValue::try_from(received_te) {
        headers.insert("x-received-te", received_te);
    }
    response
}

// --- the deterministic bytes of `/big` -------------------------------------

/// The byte at `offset` of every `/big` body is `offset % 251`: anyone can
/// check a body without keeping a copy. The block repeats every 251 × 256
/// bytes, so a whole block can be sent (or compared) at once.
const PATTERN_BLOCK: usize = 251 * 256;

fn pattern_block() -> &'static [u8] {
    static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| (0..PATTERN_BLOCK).map(|i| (i % 251) as u8).collect())
}

/// Does `chunk`, found at `offset` of a `/big` body, hold the right bytes?
pub fn pattern_matches(offset: u64, chunk: &[u8]) -> bool {
    let block = pattern_block();
    let mut start = (offset % PATTERN_BLOCK as u64) as usize;
    let mut rest = chunk;
    while !rest.is_empty() {
        let take = rest.len().min(PATTERN_BLOCK - start);
        if rest[..take] != block[start..start + take] {
            return false;
        }
        rest = &rest[take..];
        start = 0;
    }
    true
}

/// A body of `length` pattern bytes, the same as `/big` sends: what a test
/// uploads when it needs a big body it can check without keeping a copy.
pub fn pattern_body(length: u64) -> Body {
    boxed(Pattern {
        offset: 0,
        length,
        sent: Arc::default(),
    })
}

struct Pattern {
    offset: u64,
    length: u64,
    sent: Arc<AtomicU64>,
}

impl hyper::body::Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let remaining = self.length - self.offset;
        if remaining == 0 {
            return Poll::Ready(None);
        }
        // `offset` is always a multiple of the block, so each frame is a
        // cheap slice of the one shared block.
        let take = remaining.min(PATTERN_BLOCK as u64) as usize;
        let chunk = Bytes::from_static(&pattern_block()[..take]);
        self.offset += take as u64;
        self.sent.fetch_add(take as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset == self.length
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length - self.offset)
    }
}

// --- small helpers ----------------------------------------------------------

fn json_response(json: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(format!("{json:#}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn header_pairs(headers: &HeaderMap) -> Vec<[String; 2]> {
    headers
        .iter()
        .map(|(name, value)| {
            [
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The query string, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
        Query(pairs.into_owned().collect())
    }

    fn get<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.all(key).next()
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, key: &str, default: u64) -> u64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}
