//! Step 02: the request goes upstream; the answer carries its status.

use crate::ensure;
use crate::harness::client::{excerpt, fetch, get, get_request};
use crate::harness::{Ctx, OrFail, Outcome, fail};

/// The `headers` array of the origin's echo, as (name, value) pairs.
pub fn echoed_headers(echo: &serde_json::Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|pair| {
                    Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn echoed(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echoed_headers(echo)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .collect()
}

/// GETs `path` with extra header lines (repeats allowed) and returns the
/// origin's echo of what it received.
pub async fn echo_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<serde_json::Value, crate::harness::Failure> {
    let mut request = get_request(addr, path);
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).or_fail("header name")?;
        let value = http::HeaderValue::from_str(value).or_fail("header value")?;
        if name == http::header::HOST {
            request.headers_mut().insert(name, value);
        } else {
            request.headers_mut().append(name, value);
        }
    }
    fetch(addr, request).await?.json()
}

pub async fn forwards_to_upstream(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = get(proxy.addr, "/echo?x=1").await?.json()?;
    ensure!(
        echo["method"] == "GET" && echo["path"] == "/echo" && echo["query"] == "x=1",
        "the origin should see GET /echo?x=1, it saw {} {}?{}",
        echo["method"],
        echo["path"],
        echo["query"]
    );
    Ok(())
}

pub async fn upstream_status(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let reply = get(proxy.addr, "/status/418").await?;
    ensure!(
        reply.status == 418,
        "the origin answered 418 I'm a teapot, the client got {}: is the upstream's status copied?",
        reply.status
    );
    Ok(())
}

pub async fn keeps_client_host(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut request = get_request(proxy.addr, "/echo");
    request
        .headers_mut()
        .insert("host", "workshop.example:8080".parse().or_fail("host")?);
    let echo = fetch(proxy.addr, request).await?.json()?;
    let host = echoed(&echo, "host");
    ensure!(
        host == ["workshop.example:8080"],
        "the client sent Host: workshop.example:8080, the origin saw {host:?}"
    );
    Ok(())
}

pub async fn request_headers_forwarded(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut request = get_request(proxy.addr, "/echo");
    for value in ["one", "two"] {
        request
            .headers_mut()
            .append("x-multi", value.parse().or_fail("header")?);
    }
    let echo = fetch(proxy.addr, request).await?.json()?;
    let multi = echoed(&echo, "x-multi");
    ensure!(
        multi == ["one", "two"],
        "the client sent X-Multi: one and X-Multi: two, the origin saw {multi:?}: \
         repeated headers must stay repeated and in order (append, not insert)"
    );
    Ok(())
}

pub async fn upstream_down_502(ctx: Ctx) -> Outcome {
    let dead = crate::harness::upstream::dead_address().await?;
    let upstream = format!("http://{dead}");
    let proxy = ctx.spawn(&["--upstream", &upstream]).await?;
    let reply = get(proxy.addr, "/echo").await.map_err(|failure| {
        fail(format!(
            "with the upstream down, the client should get a 502, not {failure} — a panic or a hang?\nproxy stderr:\n{}",
            excerpt(&proxy.stderr())
        ))
    })?;
    ensure!(
        reply.status == 502,
        "with the upstream down, expected 502 Bad Gateway, got {}",
        reply.status
    );
    ensure!(
        reply.text().contains(&dead.to_string()),
        "the 502 body should name the upstream ({dead}) so the operator knows which one; got {:?}",
        excerpt(&reply.text())
    );
    Ok(())
}

pub async fn starts_origin_without_upstream(ctx: Ctx) -> Outcome {
    let proxy = ctx.spawn(&[]).await?;
    let echo = get(proxy.addr, "/echo").await?.json()?;
    ensure!(
        echo["path"] == "/echo",
        "without --upstream the step should forward to its own demo origin; /echo answered {echo}"
    );
    Ok(())
}
