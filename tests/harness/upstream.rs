//! HTTP/1.1 as bytes on the wire: a buffered connection that reads one part
//! of a message at a time, every read under a timeout ([`Wire`]), and a
//! scripted upstream built on it ([`Scripted`]) that answers the exact bytes
//! a check chooses and records every request it receives.
//!
//! hyper would hide what the HTTP/1.1 checks look at (how a body is framed,
//! a second request where the client sent one), so both sides speak raw
//! bytes here. Only 127.0.0.1 and port 0.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::outcome::{Failure, OrFail, fail, within};

/// The longest any single read waits for its bytes.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message head either side reads.
const MAX_HEAD: usize = 64 * 1024;
/// The largest body either side keeps in memory.
const MAX_BODY: usize = 16 << 20;

/// A TCP connection with a read buffer: bytes read past the current message
/// stay for the next one, so pipelined messages are read one by one.
pub struct Wire {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// A request or response head: the start line and the header lines, in
/// order, names as sent.
#[derive(Debug, Clone)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Every value of `name` (case-insensitive), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// `Transfer-Encoding` present, with `chunked` as the last coding.
    pub fn is_chunked(&self) -> bool {
        self.all("transfer-encoding")
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .next_back()
            .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
    }

    /// The `Content-Length`, if any; an unreadable one is a failure.
    pub fn content_length(&self) -> Result<Option<u64>, Failure> {
        let values = self.all("content-length");
        let Some(first) = values.first() else {
            return Ok(None);
        };
        ensure_same(&values)?;
        first
            .trim()
            .parse()
            .map(Some)
            .or_fail(&format!("Content-Length: {first:?} is not a number"))
    }
}

fn ensure_same(values: &[&str]) -> Result<(), Failure> {
    if values
        .windows(2)
        .any(|pair| pair[0].trim() != pair[1].trim())
    {
        return Err(fail(format!(
            "several Content-Length headers that differ: {values:?}"
        )));
    }
    Ok(())
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        let _ = stream.set_nodelay(true);
        Wire {
            stream,
            buffer: Vec::new(),
        }
    }

    pub async fn connect(addr: SocketAddr) -> Result<Wire, Failure> {
        let stream = within(5, "the TCP connection", async {
            TcpStream::connect(addr)
                .await
                .or_fail(&format!("connecting to {addr}"))
        })
        .await?;
        Ok(Wire::new(stream))
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        within(10, "the peer to take our bytes", async {
            self.stream
                .write_all(bytes)
                .await
                .or_fail("writing (the peer closed the connection?)")
        })
        .await
    }

    /// Reads more bytes into the buffer: `false` when the peer closed.
    async fn fill(&mut self, waiting_for: &str) -> Result<bool, Failure> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk)).await {
            Err(_) => Err(fail(format!(
                "timed out after {} s waiting for {waiting_for}",
                READ_TIMEOUT.as_secs()
            ))),
            // A reset is a close too: the peer is gone either way.
            Ok(Ok(0)) | Ok(Err(_)) => Ok(false),
            Ok(Ok(n)) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// Reads a message head (up to the empty line). `None` when the peer
    /// closed before sending a byte of it.
    pub async fn head(&mut self, waiting_for: &str) -> Result<Option<Head>, Failure> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head: Vec<u8> = self.buffer.drain(..end + 4).collect();
                return parse_head(&head[..end]).map(Some);
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(fail(format!(
                    "no end of head within {MAX_HEAD} bytes, starting {:?}",
                    excerpt(&self.buffer)
                )));
            }
            if !self.fill(waiting_for).await? {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(fail(format!(
                        "the connection closed in the middle of {waiting_for}, after {:?}",
                        excerpt(&self.buffer)
                    )))
                };
            }
        }
    }

    /// Exactly `length` bytes.
    pub async fn exact(&mut self, length: u64, waiting_for: &str) -> Result<Vec<u8>, Failure> {
        let length = usize::try_from(length)
            .ok()
            .filter(|&length| length <= MAX_BODY)
            .or_fail(&format!(
                "{waiting_for}: {length} bytes is more than a check keeps"
            ))?;
        while self.buffer.len() < length {
            if !self.fill(waiting_for).await? {
                return Err(fail(format!(
                    "the connection closed after {} of the {length} bytes of {waiting_for}",
                    self.buffer.len()
                )));
            }
        }
        Ok(self.buffer.drain(..length).collect())
    }

    /// One line, without its CRLF.
    async fn line(&mut self, waiting_for: &str) -> Result<String, Failure> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(fail(format!(
                    "{waiting_for}: a line longer than {MAX_HEAD} bytes"
                )));
            }
            if !self.fill(waiting_for).await? {
                return Err(fail(format!(
                    "the connection closed in the middle of {waiting_for}"
                )));
            }
        }
    }

    /// A chunked body, decoded; chunk extensions and trailers are read and
    /// dropped.
    pub async fn chunked(&mut self, waiting_for: &str) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let size_line = self.line(waiting_for).await?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| {
                fail(format!(
                    "{waiting_for}: expected a chunk size in hex, got the line {:?}",
                    excerpt(size_line.as_bytes())
                ))
            })?;
            if size == 0 {
                // Trailer lines, up to the empty line.
                while !self.line(waiting_for).await?.is_empty() {}
                return Ok(body);
            }
            if body.len() as u64 + size > MAX_BODY as u64 {
                return Err(fail(format!(
                    "{waiting_for}: a chunked body over {MAX_BODY} bytes"
                )));
            }
            body.extend(self.exact(size, waiting_for).await?);
            let end = self.line(waiting_for).await?;
            if !end.is_empty() {
                return Err(fail(format!(
                    "{waiting_for}: a chunk of {size} bytes is not followed by CRLF but by {:?}",
                    excerpt(end.as_bytes())
                )));
            }
        }
    }

    /// Everything until the peer closes.
    pub async fn until_close(&mut self, waiting_for: &str) -> Result<Vec<u8>, Failure> {
        while self.fill(waiting_for).await? {
            if self.buffer.len() > MAX_BODY {
                return Err(fail(format!(
                    "{waiting_for}: more than {MAX_BODY} bytes before the close"
                )));
            }
        }
        Ok(std::mem::take(&mut self.buffer))
    }

    /// Waits up to `seconds` for the peer to close: `Ok(true)` if it did
    /// with nothing more sent, `Ok(false)` if still open; bytes that arrive
    /// instead are a failure naming them.
    pub async fn closes_within(&mut self, seconds: u64) -> Result<bool, Failure> {
        let mut chunk = [0u8; 4096];
        loop {
            if !self.buffer.is_empty() {
                return Err(fail(format!(
                    "unexpected bytes after the response: {:?}",
                    excerpt(&self.buffer)
                )));
            }
            match tokio::time::timeout(Duration::from_secs(seconds), self.stream.read(&mut chunk))
                .await
            {
                Err(_) => return Ok(false),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(true),
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn parse_head(bytes: &[u8]) -> Result<Head, Failure> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            fail(format!(
                "a header line without a colon: {line:?} (after the start line {start_line:?})"
            ))
        })?;
        // RFC 9112 §5.1: no whitespace between a field name and its colon
        // (a classic way to hide `Transfer-Encoding` from one parser).
        if name.is_empty() || name.ends_with([' ', '\t']) {
            return Err(fail(format!(
                "an invalid header name {name:?} (whitespace before the colon?) in {line:?}"
            )));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        start_line,
        headers,
    })
}

/// The first 120 bytes, readable, for failure messages.
pub fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned()
}

// --- the scripted upstream ---------------------------------------------------

/// A request as the scripted upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: Head,
    pub body: Vec<u8>,
    /// It came with both `Content-Length` and `Transfer-Encoding`: two
    /// framings, the very ambiguity request smuggling feeds on.
    pub ambiguous: bool,
}

/// What the scripted upstream sends back for one request.
pub struct Reply {
    pub bytes: Vec<u8>,
    /// Close the connection after `bytes` (ends a close-delimited body).
    pub close: bool,
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A raw TCP upstream on 127.0.0.1:0: reads each request (head, then a body
/// framed by `Transfer-Encoding: chunked` or `Content-Length`), records it,
/// and writes the bytes its script returns. It accepts at most
/// `max_connections`; it stops when dropped.
pub struct Scripted {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    problems: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl Scripted {
    pub async fn start(
        max_connections: usize,
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Result<Scripted, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .or_fail("binding the scripted upstream")?;
        let addr = listener.local_addr().or_fail("its address")?;
        let seen = Arc::<Mutex<Vec<Seen>>>::default();
        let problems = Arc::<Mutex<Vec<String>>>::default();
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(accept(
            listener,
            max_connections,
            stopped,
            Arc::new(script),
            seen.clone(),
            problems.clone(),
        ));
        Ok(Scripted {
            addr,
            seen,
            problems,
            stop: Some(stop),
            server,
        })
    }

    /// The requests received so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    /// What went wrong reading requests (a malformed forwarded request).
    pub fn problems(&self) -> Vec<String> {
        lock(&self.problems).clone()
    }

    /// Stops accepting and waits (at most `seconds`) until every connection
    /// has ended: then [`seen`](Self::seen) and [`problems`](Self::problems)
    /// are complete. Close the client side first (drop the proxy), so that
    /// each connection ends at once.
    pub async fn finish(&mut self, seconds: u64) -> Result<(), Failure> {
        let Some(stop) = self.stop.take() else {
            return Ok(()); // asked to stop already
        };
        let _ = stop.send(());
        let server = &mut self.server;
        within(
            seconds,
            "the scripted upstream's connections to end",
            async { server.await.or_fail("the scripted upstream's task") },
        )
        .await
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every
        // connection task.
        self.server.abort();
    }
}

async fn accept(
    listener: TcpListener,
    max_connections: usize,
    mut stopped: oneshot::Receiver<()>,
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    let mut connections = JoinSet::new();
    for _ in 0..max_connections {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = &mut stopped => break,
        };
        connections.spawn(serve(
            Wire::new(stream),
            script.clone(),
            seen.clone(),
            problems.clone(),
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve(
    mut wire: Wire,
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    let problem = |what: String| lock(&problems).push(what);
    loop {
        let head = match wire.head("the next request").await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(failure) => {
                // An idle pooled connection times out here too: only a
                // request cut in the middle is a problem.
                if !wire.buffer.is_empty() {
                    problem(format!("reading a request head: {failure:?}"));
                }
                return;
            }
        };
        let ambiguous =
            !head.all("transfer-encoding").is_empty() && !head.all("content-length").is_empty();
        let waiting_for = format!("the body of `{}`", head.start_line);
        let body = if head.is_chunked() {
            wire.chunked(&waiting_for).await
        } else {
            match head.content_length() {
                Ok(Some(length)) => wire.exact(length, &waiting_for).await,
                Ok(None) => Ok(Vec::new()),
                Err(failure) => Err(failure),
            }
        };
        let body = match body {
            Ok(body) => body,
            Err(failure) => {
                problem(format!("{waiting_for}: {failure:?}"));
                lock(&seen).push(Seen {
                    head,
                    body: Vec::new(),
                    ambiguous,
                });
                return;
            }
        };
        let request = Seen {
            head,
            body,
            ambiguous,
        };
        let reply = script(&request);
        lock(&seen).push(request);
        if wire.write(&reply.bytes).await.is_err() {
            return;
        }
        // A strict server closes after an ambiguous request: whatever
        // follows on this connection cannot be trusted.
        if reply.close || ambiguous {
            wire.shutdown().await;
            return;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// An address nothing listens on, kept so while the value lives: a socket
/// bound there that never listens, so a connection is refused at once. (A
/// listener bound, noted and closed freed its port, and a demo origin that
/// another check started on port 0 once took it: a 502 check got a 404.)
pub struct DeadAddress {
    addr: SocketAddr,
    _held: tokio::net::TcpSocket,
}

impl DeadAddress {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl std::fmt::Display for DeadAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// See [`DeadAddress`]. No `SO_REUSEADDR` on the socket: no other socket
/// can bind its port while it is held.
pub async fn dead_address() -> Result<DeadAddress, Failure> {
    let socket = tokio::net::TcpSocket::new_v4().or_fail("a socket")?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .or_fail("binding")?;
    let addr = socket.local_addr().or_fail("local address")?;
    Ok(DeadAddress {
        addr,
        _held: socket,
    })
}
