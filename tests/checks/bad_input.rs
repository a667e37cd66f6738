//! Bad input from the network: a clear 4xx or a closed connection, never a
//! request forwarded, never a hang, and the proxy keeps serving.

use std::time::Duration;

use crate::ensure;
use crate::harness::client::{excerpt, get, raw_exchange};
use crate::harness::{Ctx, Outcome};

pub async fn malformed_request_line(ctx: Ctx) -> Outcome {
    rejected(
        ctx,
        b"GET\x01/ HTTP/1.1 extra\r\nHost: x\r\n\r\n".to_vec(),
        "a malformed request line",
    )
    .await
}

pub async fn header_without_colon(ctx: Ctx) -> Outcome {
    rejected(
        ctx,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nNo colon on this line\r\n\r\n".to_vec(),
        "a header line without a colon",
    )
    .await
}

pub async fn huge_headers(ctx: Ctx) -> Outcome {
    let mut request = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 100 * 1024));
    request.extend_from_slice(b"\r\n\r\n");
    rejected(ctx, request, "100 KiB of headers").await
}

pub async fn head_over_limit_431(ctx: Ctx) -> Outcome {
    // 64 KiB is the limit; a head a little over it, sent in one write, may
    // fit in one read of the server's buffer, which a buffer-size limit
    // alone does not catch (hyper-util's `auto` builder has no exact one).
    for size_kib in [65, 80, 120] {
        let proxy = ctx.proxy().await?;
        let mut request = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', size_kib * 1024));
        request.extend_from_slice(b"\r\n\r\n");
        let answer = raw_exchange(proxy.addr, &request, Duration::from_secs(5)).await?;
        let status_line = answer.status_line();
        ensure!(
            status_line.starts_with("HTTP/1.1 431"),
            "sent a request head of {size_kib} KiB in one write (the limit is 64 KiB): expected \
             `431 Request Header Fields Too Large`, got {:?}{}",
            excerpt(&status_line),
            if answer.bytes.is_empty() {
                " (the connection closed without an answer)"
            } else {
                ""
            }
        );
        keeps_serving(proxy.addr, &format!("a {size_kib} KiB head")).await?;
    }
    Ok(())
}

pub async fn garbage_bytes(ctx: Ctx) -> Outcome {
    // Deterministic "random" bytes: the same input every run.
    let mut state = 0x2545_f491_u32;
    let garbage = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    rejected(ctx, garbage, "4 KiB of random bytes").await
}

/// Sends `bytes`, expects a 4xx or a close, then a normal request to work.
async fn rejected(ctx: Ctx, bytes: Vec<u8>, what: &str) -> Outcome {
    let proxy = ctx.proxy().await?;
    let answer = raw_exchange(proxy.addr, &bytes, Duration::from_secs(5)).await?;
    let status_line = answer.status_line();
    let is_4xx = status_line.starts_with("HTTP/1.1 4") || status_line.starts_with("HTTP/1.0 4");
    ensure!(
        answer.bytes.is_empty() || is_4xx,
        "sent {what}: expected a 4xx or a closed connection, got {:?}",
        excerpt(&status_line)
    );
    ensure!(
        answer.closed || is_4xx,
        "sent {what}: the connection stayed open with no answer for 5 s"
    );
    keeps_serving(proxy.addr, what).await
}

/// After `what`, a normal request still gets its 200.
async fn keeps_serving(addr: std::net::SocketAddr, what: &str) -> Outcome {
    let reply = get(addr, "/echo").await.map_err(|failure| {
        crate::harness::fail(format!(
            "after {what}, a normal request failed: the proxy must keep serving ({failure})"
        ))
    })?;
    ensure!(
        reply.status == 200,
        "after {what}, a normal request got {}",
        reply.status
    );
    Ok(())
}
