//! Step 05: connection-specific headers stay on their connection, both ways.

use crate::ensure;
use crate::harness::client::get;
use crate::harness::{Ctx, Outcome};

use super::forwarding::{echo_with, echoed, echoed_headers};

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub async fn hop_by_hop_request_stripped(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(
        proxy.addr,
        "/echo",
        &[
            // Two lines, odd spacing and case: every token counts.
            ("connection", "X-Secret-A ,  x-secret-b"),
            ("connection", "X-SECRET-C"),
            ("x-secret-a", "1"),
            ("x-secret-b", "1"),
            ("x-secret-c", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic d29ya3Nob3A6cHJveHk="),
            ("upgrade", "websocket"),
            ("trailer", "x-checksum"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await?;
    let leaked: Vec<String> = echoed_headers(&echo)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| HOP_BY_HOP.contains(&name.as_str()) || name.starts_with("x-secret"))
        .collect();
    ensure!(
        leaked.is_empty(),
        "the upstream received hop-by-hop headers {leaked:?}: remove the fixed list and every header \
         named by any token of any Connection line (trimmed, any case)"
    );
    ensure!(
        echoed(&echo, "x-end-to-end") == ["kept"],
        "an end-to-end header (X-End-To-End) was removed too: strip only what is hop-by-hop"
    );
    Ok(())
}

pub async fn hop_by_hop_response_stripped(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let reply = get(
        proxy.addr,
        "/headers?add=Connection:X-Secret&add=X-Secret:1&add=Keep-Alive:timeout%3D5\
         &add=Proxy-Authenticate:Basic&add=Upgrade:foo&add=Trailer:X-Nothing&add=X-End-To-End:kept",
    )
    .await?;
    let leaked: Vec<&str> = [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
        "trailer",
    ]
    .into_iter()
    .filter(|name| !reply.header_values(name).is_empty())
    .collect();
    ensure!(
        leaked.is_empty(),
        "the client received the upstream's hop-by-hop headers {leaked:?}: strip them from responses too"
    );
    ensure!(
        reply.header_values("x-end-to-end") == ["kept"],
        "the end-to-end response header X-End-To-End did not arrive: strip only what is hop-by-hop"
    );
    Ok(())
}

pub async fn te_trailers_only(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(proxy.addr, "/echo", &[("te", "trailers, deflate;q=0.5")]).await?;
    let te = echoed(&echo, "te");
    ensure!(
        te == ["trailers"],
        "the client sent TE: trailers, deflate;q=0.5; the upstream should get exactly TE: trailers, got {te:?}"
    );
    let echo = echo_with(proxy.addr, "/echo", &[("te", "deflate")]).await?;
    let te = echoed(&echo, "te");
    ensure!(
        te.is_empty(),
        "the client sent TE: deflate (no trailers); the upstream should get no TE at all, got {te:?}"
    );
    Ok(())
}

pub async fn trailers_plural_kept(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(proxy.addr, "/echo", &[("trailers", "kept")]).await?;
    ensure!(
        echoed(&echo, "trailers") == ["kept"],
        "`Trailers` (plural) is an ordinary end-to-end header and must reach the upstream: \
         only `Trailer` (singular) is hop-by-hop (RFC 2616's list had the typo)"
    );
    let reply = get(proxy.addr, "/headers?add=Trailers:kept").await?;
    ensure!(
        reply.header_values("trailers") == ["kept"],
        "the response header `Trailers` (plural) must reach the client: only `Trailer` is hop-by-hop"
    );
    Ok(())
}

pub async fn empty_connection_header(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(
        proxy.addr,
        "/echo",
        &[
            ("connection", ""),
            ("connection", "X-Gone"),
            ("x-gone", "1"),
            ("x-kept", "1"),
        ],
    )
    .await?;
    let connection = echoed(&echo, "connection");
    let gone = echoed(&echo, "x-gone");
    ensure!(
        connection.is_empty() && gone.is_empty(),
        "with an empty Connection line next to `Connection: X-Gone`, the upstream got Connection {connection:?} \
         and X-Gone {gone:?}: read every line, skip empty tokens (Go's CVE-2021-33197)"
    );
    ensure!(
        echoed(&echo, "x-kept") == ["1"],
        "X-Kept was not named by Connection and must reach the upstream"
    );
    Ok(())
}
