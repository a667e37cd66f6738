//! Step 08: every chunk passes at once, a client that leaves cancels the
//! upstream request, an upstream that dies mid-body is never passed off as
//! complete, a silent upstream gets a 504 and a streaming one is never cut.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::ensure;
use crate::harness::client::{excerpt, get, get_request, send};
use crate::harness::upstream::Wire;
use crate::harness::{Ctx, OrFail, Outcome, fail, within};

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn sse_flushed(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let response = send(
        proxy.addr,
        get_request(proxy.addr, "/sse?n=4&interval_ms=500"),
    )
    .await?;
    let mut body = response.into_body();
    // Each event says when the origin sent it: compare with its arrival.
    let mut delays = Vec::new();
    within(10, "four server-sent events", async {
        while let Some(frame) = body.frame().await {
            let frame = frame.or_fail("reading the event stream")?;
            if let Ok(data) = frame.into_data() {
                let now = unix_ms();
                for line in String::from_utf8_lossy(&data).lines() {
                    if let Some(sent) = line
                        .split("sent at ")
                        .nth(1)
                        .and_then(|rest| rest.trim_end_matches(" ms").parse::<u128>().ok())
                    {
                        delays.push(now.saturating_sub(sent));
                    }
                }
            }
        }
        Ok(())
    })
    .await?;
    ensure!(delays.len() == 4, "expected 4 events, got {}", delays.len());
    let worst = delays.iter().max().copied().unwrap_or(0);
    ensure!(
        worst < 300,
        "the origin sends an event every 500 ms; one reached the client {worst} ms after it was sent \
         (all delays: {delays:?} ms): events are held back, not passed on as they arrive"
    );
    Ok(())
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

pub async fn client_gone_cancels_upstream(ctx: Ctx) -> Outcome {
    let id = unique("cancel");
    let proxy = ctx.proxy().await?;
    // A raw connection, so that closing it is exactly what the proxy sees.
    let mut client = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let request =
        format!("GET /stream?n=1000&interval_ms=50&id={id} HTTP/1.1\r\nHost: cancel\r\n\r\n");
    client
        .write_all(request.as_bytes())
        .await
        .or_fail("sending the request")?;
    within(5, "the first chunk of /stream", async {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("chunk 1 of") {
            let n = client.read(&mut buffer).await.or_fail("reading")?;
            ensure!(n > 0, "the connection closed before the first chunk");
            seen.extend_from_slice(&buffer[..n]);
        }
        Ok(())
    })
    .await?;
    drop(client);
    let gone = Instant::now();
    // The origin answers when the stream is cancelled (or after 5 s).
    let state = ctx
        .ask_origin(&proxy, &format!("/stream-state?id={id}&wait_for=cancelled"))
        .await?;
    let took = gone.elapsed();
    ensure!(
        state.trim() == "cancelled" && took <= Duration::from_secs(1),
        "the client went away, but after {} ms the origin's stream was still {:?}: when hyper drops \
         the response body, the upstream request must be dropped with it (no task left copying for nobody)",
        took.as_millis(),
        state.trim()
    );
    Ok(())
}

pub async fn upstream_dies_mid_body(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    // Raw bytes: the point is how the response ends on the wire.
    let mut wire = Wire::connect(proxy.addr).await?;
    wire.write(b"GET /truncated?bytes=100000&promised=200000 HTTP/1.1\r\nHost: truncated\r\n\r\n")
        .await?;
    // The one failure this check accepts is the honest one: the head of the
    // origin's 200, then a body that stops short of its own framing when the
    // connection ends. A refused connection, no answer, another status or a
    // complete-looking body all fail.
    let head = wire.head("the response head").await?.ok_or_else(|| {
        fail(
            "the proxy closed the connection without a response: the origin sent its 200 head \
             and 100000 bytes before dying, and the client should get them, then an abort",
        )
    })?;
    ensure!(
        head.start_line.starts_with("HTTP/1.1 200"),
        "the origin answered 200 and broke off mid-body; the client got `{}`: was the body \
         collected before answering?",
        head.start_line
    );
    let body = wire
        .until_close("the end of the connection after the truncated body")
        .await?;
    let (framing, complete) = if head.is_chunked() {
        ("chunked", chunked_body_is_complete(&body))
    } else if let Some(length) = head.content_length()? {
        (
            "Content-Length",
            u64::try_from(body.len()).is_ok_and(|got| got >= length),
        )
    } else {
        // Ended by the close: the client cannot tell a cut body from a whole one.
        ("neither Content-Length nor chunks", true)
    };
    ensure!(
        !complete,
        "the origin promised 200000 bytes and died after 100000, yet the client got a response \
         that looks complete ({} bytes framed by {framing}): a truncated body must abort the \
         client connection, never end like a whole one",
        body.len()
    );
    Ok(())
}

/// Whether `bytes` hold a whole chunked body: chunks, the last `0` chunk
/// and the empty line after its trailers.
fn chunked_body_is_complete(mut bytes: &[u8]) -> bool {
    loop {
        let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size_line = String::from_utf8_lossy(&bytes[..end]);
        let size = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return false;
        };
        bytes = &bytes[end + 2..];
        if size == 0 {
            // Trailer lines, then the empty line.
            return bytes.windows(2).any(|w| w == b"\r\n")
                && (bytes.starts_with(b"\r\n") || bytes.windows(4).any(|w| w == b"\r\n\r\n"));
        }
        if bytes.len() < size + 2 {
            return false;
        }
        bytes = &bytes[size + 2..];
    }
}

pub async fn upstream_timeout_504(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-timeout", "1"])
        .await?;
    let started = Instant::now();
    let reply = within(
        5,
        "a 504 after the 1 s --upstream-timeout",
        get(proxy.addr, "/slow?ms=10000"),
    )
    .await?;
    ensure!(
        reply.status == 504,
        "the origin takes 10 s to answer and --upstream-timeout is 1 s: expected 504 Gateway Timeout, got {}",
        reply.status
    );
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "the 504 came after {} ms, before the 1 s deadline",
        started.elapsed().as_millis()
    );
    ensure!(
        reply.text().contains(&ctx.origin.to_string()),
        "the 504 body should name the upstream; got {:?}",
        excerpt(&reply.text())
    );
    Ok(())
}

pub async fn timeout_spares_streams(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-timeout", "1"])
        .await?;
    let reply = within(
        10,
        "a 1.5 s stream",
        get(proxy.addr, "/stream?n=4&interval_ms=500"),
    )
    .await?;
    ensure!(
        reply.status == 200 && reply.text().ends_with("chunk 4 of 4\n"),
        "a stream that keeps sending for 1.5 s was cut by the 1 s --upstream-timeout (got {} {:?}): \
         the deadline is for the response head, not the whole body",
        reply.status,
        excerpt(&reply.text())
    );
    Ok(())
}

pub async fn timeout_spares_uploads(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-timeout", "1"])
        .await?;
    // A client that uploads 4 chunks over 1.5 s: the scripted pace of a
    // slow uplink, not a wait for some event.
    let (mut sender, body) =
        http_body_util::channel::Channel::<bytes::Bytes, std::io::Error>::new(1);
    tokio::spawn(async move {
        for _ in 0..4 {
            if sender
                .send_data(bytes::Bytes::from(vec![b'u'; 1000]))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut request = get_request(proxy.addr, "/upload");
    *request.method_mut() = http::Method::POST;
    *request.body_mut() = workshop::body::boxed(body);
    let response = crate::harness::client::send_within(proxy.addr, request, 10).await?;
    let reply = crate::harness::client::read(response).await?;
    ensure!(
        reply.status == 200 && reply.json()?["length"] == 4000,
        "an upload that takes 2 s went through a proxy with --upstream-timeout 1 and got {} {:?}: \
         the deadline must start once the request is sent (a slow upload is not the upstream's fault)",
        reply.status,
        excerpt(&reply.text())
    );
    Ok(())
}
