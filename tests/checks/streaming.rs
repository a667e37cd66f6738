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
    let request = get_request(proxy.addr, "/truncated?bytes=100000&promised=200000");
    // A connection closed before any answer is an abort too.
    let Ok(response) = send(proxy.addr, request).await else {
        return Ok(());
    };
    let status = response.status();
    ensure!(
        status == 200,
        "the origin answered 200 and broke off mid-body; the client got {status}: \
         was the body collected before answering?"
    );
    let body = within(10, "the end of the body", async {
        Ok(response.into_body().collect().await)
    })
    .await?;
    match body {
        Err(_) => Ok(()),
        Ok(collected) => Err(fail(format!(
            "the origin promised 200000 bytes and died after 100000, yet the client got a clean response \
             of {} bytes: a truncated body must abort the client connection, never end like a complete one",
            collected.to_bytes().len()
        ))),
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
