//! Step 03: bodies stream, in both directions, in bounded memory.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use workshop::origin::{pattern_body, pattern_matches};

use crate::ensure;
use crate::harness::client::{excerpt, get_request, read, send, send_within};
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// What a streaming proxy needs: its code, its buffers, a few frames in
/// flight. Collecting 1 GiB needs a thousand times more.
const RSS_LIMIT_MIB: f64 = 32.0;

pub async fn request_body_intact(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    upload(&proxy, MIB + 7, 20).await
}

pub async fn response_body_intact(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    download(&proxy, 3 * MIB + 5, 20).await
}

pub async fn upload_1gib_bounded(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    upload(&proxy, GIB, 60).await?;
    bounded_memory(&proxy, "a 1 GiB upload")
}

pub async fn download_1gib_bounded(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    download(&proxy, GIB, 60).await?;
    bounded_memory(&proxy, "a 1 GiB download")
}

pub async fn first_bytes_early(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    // The origin sends chunk 1 at once and chunk 2 after 30 s.
    let path = "/stream?n=2&interval_ms=30000";
    let first = within(5, "the first chunk", async {
        let response = send(proxy.addr, get_request(proxy.addr, path)).await?;
        let mut body = response.into_body();
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(String::from_utf8_lossy(&data).into_owned());
                    }
                }
                Some(Err(err)) => return Err(fail(format!("reading the body: {err}"))),
                None => return Err(fail("the body ended before its first chunk")),
            }
        }
    })
    .await
    .map_err(|failure| {
        fail(format!(
            "the origin sent its first chunk at once and pauses 30 s before the next, \
             but the client got nothing within 5 s: is the response body collected \
             before it is sent on? ({failure})"
        ))
    })?;
    ensure!(
        first.starts_with("chunk 1 of 2"),
        "expected the origin's first chunk, got {:?}",
        excerpt(&first)
    );
    Ok(())
}

pub async fn slow_client_backpressure(ctx: Ctx) -> Outcome {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "backpressure-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let proxy = ctx.proxy().await?;
    // Ask for 1 GiB, then read nothing at all.
    let mut client = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let request = format!("GET /big?mb=1024&id={id} HTTP/1.1\r\nHost: backpressure\r\n\r\n");
    client
        .write_all(request.as_bytes())
        .await
        .or_fail("sending the request")?;

    // Watch the origin until it stops sending: its count must stay small.
    let sent = within(30, "the origin to stop sending", async {
        let mut last = u64::MAX;
        let mut unchanged_since = tokio::time::Instant::now();
        loop {
            let sent = ctx.origin_progress(&proxy, &id).await?;
            if sent != last {
                last = sent;
                unchanged_since = tokio::time::Instant::now();
            } else if unchanged_since.elapsed() >= Duration::from_secs(1) {
                return Ok(sent);
            }
            // Polling an observed value, not waiting for an event we could
            // be told about: the origin has no way to say "I am blocked".
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    ensure!(
        sent > 0,
        "the request never reached the origin (is it forwarded?)"
    );
    ensure!(
        sent < 64 * MIB,
        "the client read nothing, yet the origin sent {} MiB before stopping: \
         the proxy reads the upstream faster than the client takes it \
         (a collected body, or an unbounded buffer). Backpressure means the \
         upstream waits for the client.",
        sent / MIB
    );
    drop(client);
    Ok(())
}

/// POSTs `length` pattern bytes to `/upload` and checks what the origin got.
async fn upload(proxy: &Proxy, length: u64, seconds: u64) -> Outcome {
    let expected = pattern_sha256(length).await?;
    let mut request = get_request(proxy.addr, "/upload");
    *request.method_mut() = Method::POST;
    *request.body_mut() = pattern_body(length);
    request.headers_mut().insert(
        header::CONTENT_LENGTH,
        length.to_string().parse().or_fail("content-length")?,
    );
    let response = send_within(proxy.addr, request, seconds).await?;
    let reply = read(response).await?;
    let answer = reply.json()?;
    ensure!(
        answer["length"] == length && answer["sha256"] == expected.as_str(),
        "sent {length} bytes, the origin received {} with sha256 {} (expected {expected}): the request body was altered",
        answer["length"],
        answer["sha256"]
    );
    Ok(())
}

/// GETs `length` pattern bytes from `/big` and checks every byte.
async fn download(proxy: &Proxy, length: u64, seconds: u64) -> Outcome {
    let path = format!("/big?bytes={length}");
    within(seconds, "the whole download", async {
        let response = send(proxy.addr, get_request(proxy.addr, &path)).await?;
        ensure!(
            response.status() == 200,
            "expected 200, got {}",
            response.status()
        );
        check_pattern(response.into_body(), length).await
    })
    .await
}

async fn check_pattern(mut body: Incoming, length: u64) -> Outcome {
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            fail(format!(
                "the body broke after {offset} of {length} bytes: {err}"
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            ensure!(
                pattern_matches(offset, &data),
                "the response body differs from the origin's at some byte after offset {offset}"
            );
            offset += data.len() as u64;
        }
    }
    ensure!(
        offset == length,
        "the origin sent {length} bytes, the client received {offset}"
    );
    Ok(())
}

fn bounded_memory(proxy: &Proxy, what: &str) -> Outcome {
    let peak = proxy.peak_rss_mib()?;
    ensure!(
        peak < RSS_LIMIT_MIB,
        "{what} went through, but the proxy's peak RSS was {peak:.0} MiB (limit {RSS_LIMIT_MIB} MiB): \
         did you collect the body instead of streaming it?"
    );
    Ok(())
}

/// The sha256 of the first `length` pattern bytes, computed once per length.
async fn pattern_sha256(length: u64) -> Result<String, Failure> {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(u64, String)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((_, hash)) = lock(cache).iter().find(|(l, _)| *l == length) {
        return Ok(hash.clone());
    }
    let mut body = pattern_body(length);
    let mut hasher = Sha256::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.or_fail("pattern")?.into_data() {
            hasher.update(&data);
        }
    }
    let hash: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    lock(cache).push((length, hash.clone()));
    Ok(hash)
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
