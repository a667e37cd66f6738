//! Step 06: the upstream learns who asked; requests land under the
//! upstream's base path and query.

use crate::ensure;
use crate::harness::client::get;
use crate::harness::{Ctx, OrFail, Outcome};

use super::forwarding::{echo_with, echoed};

pub async fn x_forwarded_for(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(proxy.addr, "/echo", &[("x-forwarded-for", "1.2.3.4")]).await?;
    let chain = echoed(&echo, "x-forwarded-for");
    ensure!(
        chain == ["1.2.3.4, 127.0.0.1"],
        "the client sent X-Forwarded-For: 1.2.3.4 from 127.0.0.1; the upstream should see \
         [\"1.2.3.4, 127.0.0.1\"] (one line, the client's address appended), got {chain:?}"
    );
    let echo = echo_with(
        proxy.addr,
        "/echo",
        &[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ],
    )
    .await?;
    let chain = echoed(&echo, "x-forwarded-for");
    ensure!(
        chain == ["1.1.1.1, 2.2.2.2, 127.0.0.1"],
        "two X-Forwarded-For lines (1.1.1.1, 2.2.2.2) should become one: \"1.1.1.1, 2.2.2.2, 127.0.0.1\", got {chain:?}"
    );
    Ok(())
}

pub async fn x_forwarded_host_proto(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(proxy.addr, "/echo", &[("host", "workshop.example:8080")]).await?;
    let (host, proto) = (
        echoed(&echo, "x-forwarded-host"),
        echoed(&echo, "x-forwarded-proto"),
    );
    ensure!(
        host == ["workshop.example:8080"] && proto == ["http"],
        "Host: workshop.example:8080 over plain HTTP should give X-Forwarded-Host: workshop.example:8080 \
         (port included) and X-Forwarded-Proto: http; got {host:?} and {proto:?}"
    );
    Ok(())
}

pub async fn x_forwarded_not_strippable(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(
        proxy.addr,
        "/echo",
        &[(
            "connection",
            "X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto",
        )],
    )
    .await?;
    let missing: Vec<&str> = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]
        .into_iter()
        .filter(|name| echoed(&echo, name).is_empty())
        .collect();
    ensure!(
        missing.is_empty(),
        "a client sent `Connection: X-Forwarded-For, ...` and the upstream got no {missing:?}: \
         add the X-Forwarded headers after removing the hop-by-hop ones"
    );
    Ok(())
}

pub async fn forwarded_header(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx.spawn(&["--upstream", &upstream, "--forwarded"]).await?;
    let echo = echo_with(proxy.addr, "/echo", &[("host", "workshop.example:8080")]).await?;
    let forwarded = echoed(&echo, "forwarded");
    ensure!(
        forwarded == ["for=127.0.0.1;host=\"workshop.example:8080\";proto=http"],
        "with --forwarded the upstream should get Forwarded: for=127.0.0.1;host=\"workshop.example:8080\";proto=http \
         (RFC 7239: a host with a port is quoted), got {forwarded:?}"
    );
    Ok(())
}

pub async fn no_x_forwarded_flag(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--no-x-forwarded"])
        .await?;
    let echo = echo_with(proxy.addr, "/echo", &[("x-forwarded-for", "1.2.3.4")]).await?;
    let sent: Vec<&str> = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]
        .into_iter()
        .filter(|name| !echoed(&echo, name).is_empty())
        .collect();
    ensure!(
        sent.is_empty(),
        "with --no-x-forwarded the upstream still got {sent:?}"
    );
    Ok(())
}

pub async fn rewrite_host_flag(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--rewrite-host"])
        .await?;
    let echo = echo_with(proxy.addr, "/echo", &[("host", "workshop.example:8080")]).await?;
    let (host, forwarded_host) = (echoed(&echo, "host"), echoed(&echo, "x-forwarded-host"));
    ensure!(
        host == [ctx.origin.to_string()] && forwarded_host == ["workshop.example:8080"],
        "with --rewrite-host the upstream should see Host: {} (its own authority) and X-Forwarded-Host: \
         workshop.example:8080 (the client's); got {host:?} and {forwarded_host:?}",
        ctx.origin
    );
    Ok(())
}

pub async fn upstream_base_path(ctx: Ctx) -> Outcome {
    // (base of --upstream, request path) → path the origin must see.
    let cases = [
        ("/echo/base", "/x", "/echo/base/x"),
        ("/echo/base/", "/x", "/echo/base/x"),
        ("/", "/echo/favicon.ico", "/echo/favicon.ico"),
        ("", "/echo/favicon.ico", "/echo/favicon.ico"),
        ("/echo/a%2Fb", "/c", "/echo/a%2Fb/c"),
        ("/echo/a%2Fb/", "/c%2Fd", "/echo/a%2Fb/c%2Fd"),
    ];
    for (base, path, expected) in cases {
        let upstream = format!("http://{}{base}", ctx.origin);
        let proxy = ctx.spawn(&["--upstream", &upstream]).await?;
        let reply = get(proxy.addr, path).await?;
        let seen = reply
            .json()
            .ok()
            .and_then(|echo| echo["path"].as_str().map(str::to_owned));
        ensure!(
            seen.as_deref() == Some(expected),
            "--upstream {upstream} and a request for {path} should reach the origin as {expected} \
             (one slash between, escapes kept as sent), got {} — is the upstream's base path joined?",
            seen.unwrap_or_else(|| format!("a {} that is not the origin's echo", reply.status))
        );
    }
    Ok(())
}

pub async fn upstream_query_merged(ctx: Ctx) -> Outcome {
    for (base_query, path, expected) in [
        ("?sta=tic", "/x?us=er", "sta=tic&us=er"),
        ("?sta=tic", "/x", "sta=tic"),
        ("", "/x?us=er", "us=er"),
    ] {
        let upstream = format!("http://{}/echo{base_query}", ctx.origin);
        let proxy = ctx.spawn(&["--upstream", &upstream]).await?;
        let echo = get(proxy.addr, path).await?.json()?;
        let query = echo["query"].as_str().or_fail("the echo has a query")?;
        ensure!(
            query == expected,
            "--upstream {upstream} and a request for {path} should send the query {expected:?}, got {query:?}"
        );
    }
    Ok(())
}
