//! Step 10: WebSocket (and any HTTP/1.1 upgrade) through the proxy; a
//! switch nobody asked for is refused.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::ensure;
use crate::harness::client::get;
use crate::harness::raw::read_response;
use crate::harness::upstream::{Reply, Scripted};
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

type Socket = WebSocketStream<TcpStream>;

/// Opens a WebSocket to the origin's echo through the proxy.
async fn open(proxy: &Proxy) -> Result<(Socket, http::HeaderMap), Failure> {
    open_at(proxy.addr, "/ws").await
}

/// Opens a WebSocket at `path` through the proxy at `addr`.
pub async fn open_at(addr: SocketAddr, path: &str) -> Result<(Socket, http::HeaderMap), Failure> {
    let tcp = TcpStream::connect(addr).await.or_fail("connecting")?;
    let url = format!("ws://{addr}{path}");
    within(10, "the WebSocket handshake", async {
        let (socket, response) = tokio_tungstenite::client_async(url, tcp).await.map_err(|err| {
            fail(format!(
                "the WebSocket handshake through the proxy failed ({err}): an upgrade request needs \
                 `Connection: upgrade` and `Upgrade: websocket` to reach the upstream, and the 101 to come back"
            ))
        })?;
        Ok((socket, response.headers().clone()))
    })
    .await
}

/// An HTTP/2 WebSocket (RFC 8441: CONNECT with `:protocol websocket`, on
/// one stream) at `path` through the proxy at `addr`, accepted with 200.
pub async fn open_h2(
    addr: SocketAddr,
    path: &str,
) -> Result<WebSocketStream<TokioIo<Upgraded>>, Failure> {
    let mut h2 = crate::harness::client::connect_h2(addr).await?;
    let mut request = crate::harness::client::h2_request(&addr.to_string(), path);
    *request.method_mut() = http::Method::CONNECT;
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    request.headers_mut().insert(
        "sec-websocket-version",
        http::HeaderValue::from_static("13"),
    );
    let mut response = within(10, "the answer to the extended CONNECT", async {
        h2.send_request(request).await.map_err(|err| {
            fail(format!(
                "an HTTP/2 extended CONNECT (RFC 8441) was refused ({err}): the proxy must advertise \
                 SETTINGS_ENABLE_CONNECT_PROTOCOL and accept `:protocol websocket`"
            ))
        })
    })
    .await?;
    ensure!(
        response.status() == 200,
        "an HTTP/2 WebSocket to {path} is accepted with 200 (the stream becomes the tunnel), got {}",
        response.status()
    );
    let upgraded = within(10, "the tunnel", async {
        hyper::upgrade::on(&mut response)
            .await
            .or_fail("taking the stream as a tunnel")
    })
    .await?;
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

/// Sends `text` and expects it back (the origin's echo) within 10 s.
pub async fn echo<S>(socket: &mut WebSocketStream<S>, text: &str, what: &str) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    socket
        .send(Message::text(text))
        .await
        .or_fail(&format!("sending text over {what}"))?;
    let reply = next(socket).await?;
    ensure!(
        reply == Message::text(text),
        "sent `{text}` over {what}, expected it back, got {reply:?}"
    );
    Ok(())
}

/// The next data or control message, at most 10 s away.
async fn next<S>(socket: &mut WebSocketStream<S>) -> Result<Message, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within(10, "a WebSocket message", async {
        match socket.next().await {
            Some(message) => message.or_fail("reading the WebSocket"),
            None => Err(fail("the WebSocket ended")),
        }
    })
    .await
}

pub async fn websocket_echo(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let (mut socket, _) = open(&proxy).await?;
    socket
        .send(Message::text("hello"))
        .await
        .or_fail("sending text")?;
    let reply = next(&mut socket).await?;
    ensure!(
        reply == Message::text("hello"),
        "sent text `hello`, got {reply:?}"
    );
    let bytes = vec![0u8, 1, 2, 255];
    socket
        .send(Message::binary(bytes.clone()))
        .await
        .or_fail("sending binary")?;
    let reply = next(&mut socket).await?;
    ensure!(
        reply == Message::binary(bytes),
        "sent 4 binary bytes, got {reply:?}"
    );
    Ok(())
}

pub async fn websocket_with_upstream_http2(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-http2"])
        .await?;
    let (mut socket, _) = open(&proxy).await.map_err(|failure| {
        fail(format!(
            "with --upstream-http2 ({failure}): HTTP/2 has no Upgrade, so the upgrade must go \
             upstream over HTTP/1.1 (or be refused with a 502 that says why)"
        ))
    })?;
    socket
        .send(Message::text("over h1"))
        .await
        .or_fail("sending text")?;
    let reply = next(&mut socket).await?;
    ensure!(
        reply == Message::text("over h1"),
        "sent text `over h1` with --upstream-http2, got {reply:?}"
    );
    Ok(())
}

pub async fn websocket_1mib(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let (mut socket, _) = open(&proxy).await?;
    let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    socket
        .send(Message::binary(payload.clone()))
        .await
        .or_fail("sending 1 MiB")?;
    let reply = next(&mut socket).await?;
    ensure!(
        reply.clone().into_data().as_ref() == payload.as_slice(),
        "a 1 MiB binary message came back as {} bytes that differ",
        reply.len()
    );
    Ok(())
}

pub async fn websocket_fragmented(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let (mut socket, _) = open(&proxy).await?;
    // One text message in two frames: the proxy must not care.
    let first = Frame::message(&b"frag"[..], OpCode::Data(Data::Text), false);
    let last = Frame::message(&b"mented"[..], OpCode::Data(Data::Continue), true);
    socket
        .send(Message::Frame(first))
        .await
        .or_fail("sending a first fragment")?;
    socket
        .send(Message::Frame(last))
        .await
        .or_fail("sending the last fragment")?;
    let reply = next(&mut socket).await?;
    ensure!(
        reply == Message::text("fragmented"),
        "a text message sent in two fragments came back as {reply:?}"
    );
    Ok(())
}

pub async fn websocket_ping_close(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let (mut socket, _) = open(&proxy).await?;
    socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .or_fail("sending a ping")?;
    let reply = next(&mut socket).await?;
    ensure!(
        reply == Message::Pong(b"are you there".to_vec().into()),
        "a ping should come back as a pong with the same payload, got {reply:?}"
    );
    socket.close(None).await.or_fail("sending a close frame")?;
    let closed = within(10, "the close handshake", async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(_)) = message {
                return Ok(true);
            }
        }
        Ok(false)
    })
    .await?;
    ensure!(
        closed,
        "the upstream's close frame never came back through the proxy"
    );
    Ok(())
}

pub async fn upgrade_headers_pass(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let (_, headers) = open(&proxy).await?;
    ensure!(
        headers
            .get("x-origin-upgrade")
            .is_some_and(|value| value == "websocket"),
        "the origin's 101 carried X-Origin-Upgrade: websocket; the client's 101 had {headers:?}"
    );
    Ok(())
}

pub async fn upgrade_half_close(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut stream = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    stream
        .write_all(b"GET /upgrade-echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .or_fail("sending the upgrade request")?;
    let mut reader = BufReader::new(stream);
    let head = within(10, "the 101", read_response(&mut reader, false)).await?;
    ensure!(
        head.status == 101,
        "an `Upgrade: echo` request should be switched (101), got {}",
        head.status
    );
    let mut stream = reader.into_inner();
    stream
        .write_all(b"abc")
        .await
        .or_fail("writing after the switch")?;
    // Half-close: we send no more, but still read.
    stream.shutdown().await.or_fail("half-closing")?;
    let mut received = Vec::new();
    within(10, "the echo, then `bye`, then the close", async {
        stream.read_to_end(&mut received).await.or_fail("reading")
    })
    .await?;
    ensure!(
        received == b"abcbye\n",
        "after the switch the origin echoes, then answers our half-close with `bye`; we got {:?}: \
         a half-close must be passed on (shutdown the write half) while the other direction keeps working",
        String::from_utf8_lossy(&received)
    );
    Ok(())
}

pub async fn unasked_101_is_502(ctx: Ctx) -> Outcome {
    let upstream = Scripted::start(4, |_| Reply {
        bytes:
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_vec(),
        close: true,
    })
    .await?;
    let proxy = ctx
        .spawn(&["--upstream", &format!("http://{}", upstream.addr)])
        .await?;
    let reply = get(proxy.addr, "/plain").await?;
    ensure!(
        reply.status == 502,
        "the upstream answered 101 to a request that asked for no upgrade; expected 502, got {}",
        reply.status
    );
    Ok(())
}

/// A WebSocket handshake asking for `upgrade`, written by hand, and the
/// answer (a 101's head, or a refusal with its body).
async fn raw_upgrade(
    addr: SocketAddr,
    upgrade: &str,
) -> Result<crate::harness::raw::RawResponse, Failure> {
    let mut stream = TcpStream::connect(addr).await.or_fail("connecting")?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: {upgrade}\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .or_fail("sending the upgrade request")?;
    within(
        10,
        "the answer",
        read_response(&mut BufReader::new(stream), false),
    )
    .await
}

pub async fn wrong_protocol_101_is_502(ctx: Ctx) -> Outcome {
    let upstream = Scripted::start(4, |_| Reply {
        bytes: b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: something-else\r\n\r\n".to_vec(),
        close: true,
    })
    .await?;
    let proxy = ctx
        .spawn(&["--upstream", &format!("http://{}", upstream.addr)])
        .await?;
    let response = raw_upgrade(proxy.addr, "websocket").await?;
    ensure!(
        response.status == 502,
        "the client asked for websocket and the upstream switched to something-else; expected 502, got {}",
        response.status
    );
    Ok(())
}

pub async fn websocket_over_http2(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut socket = open_h2(proxy.addr, "/ws").await?;
    echo(
        &mut socket,
        "over HTTP/2",
        "a WebSocket over HTTP/2, bridged to the HTTP/1.1 origin",
    )
    .await
}

pub async fn websocket_chat_room(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let page = get(proxy.addr, "/chat").await?;
    ensure!(
        page.status == 200 && page.text().contains("/chat/ws"),
        "/chat should serve the chat page (which opens /chat/ws), got {}",
        page.status
    );
    let mut members = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
        let url = format!("ws://{}/chat/ws", proxy.addr);
        let (socket, _) = within(10, "joining the chat", async {
            tokio_tungstenite::client_async(url, tcp)
                .await
                .or_fail("the chat's WebSocket handshake")
        })
        .await?;
        members.push(socket);
    }
    members[0]
        .send(Message::text("hello, room"))
        .await
        .or_fail("saying something")?;
    let heard = next(&mut members[1]).await?;
    ensure!(
        heard == Message::text("hello, room"),
        "what one chat member says should reach the other through the proxy; got {heard:?}"
    );
    Ok(())
}

/// `Upgrade: foo/2, WebSocket, h2c`: the upstream is offered the list
/// without h2c, and may pick any of it; its choice (`websocket`, once) is
/// compared token by token, and is what the client's 101 says.
pub async fn upgrade_token_list(ctx: Ctx) -> Outcome {
    let upstream = Scripted::start(4, |_| Reply {
        bytes:
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_vec(),
        close: false,
    })
    .await?;
    let proxy = ctx
        .spawn(&["--upstream", &format!("http://{}", upstream.addr)])
        .await?;
    let response = raw_upgrade(proxy.addr, "foo/2, WebSocket, h2c").await?;
    ensure!(
        response.status == 101,
        "the client offered `foo/2, WebSocket, h2c` and the upstream switched to websocket, one \
         of them: expected 101, got {}",
        response.status
    );
    let said = response.header("upgrade").join(",").to_ascii_lowercase();
    ensure!(
        said.trim() == "websocket",
        "the client's 101 should name the protocol switched to (websocket), got `Upgrade: {said}`"
    );
    let offered: Vec<String> = upstream
        .seen()
        .iter()
        .flat_map(|seen| {
            seen.head
                .all("upgrade")
                .into_iter()
                .map(str::to_ascii_lowercase)
        })
        .collect();
    let offered = offered.join(",");
    ensure!(
        offered.contains("websocket") && offered.contains("foo/2") && !offered.contains("h2c"),
        "the upstream should be offered foo/2 and websocket, never h2c; it was offered `{offered}`"
    );
    Ok(())
}
