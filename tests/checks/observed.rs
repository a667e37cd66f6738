//! Step 15: observed. Errors say enough to the client and the rest to the
//! log, every request has its access log line, Prometheus can scrape the
//! counts: each set by a flag (the config file's `[log]` and `admin_token`
//! from step 17 on).

use std::net::SocketAddr;

use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use workshop::body::empty;

use crate::ensure;
use crate::harness::client::{excerpt, get};
use crate::harness::folder::FileIn;
use crate::harness::upstream::dead_address;
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

/// The step with `flags` and routes where `/dead/…` goes to `dead` and the
/// rest to the demo origin.
async fn with_dead_route(
    ctx: &Ctx,
    dead: SocketAddr,
    flags: &[&str],
) -> Result<(Proxy, FileIn), Failure> {
    let rules = format!(
        "[[rules]]\npath = \"/dead/*rest\"\nforward = \"http://{dead}\"\n\n\
         [[rules]]\npath = \"/*rest\"\nforward = \"http://{}\"\n",
        ctx.origin
    );
    let routes = FileIn::new("routes", "routes.toml", &rules)?;
    let path = routes.arg();
    let mut args = vec!["--routes", path.as_str()];
    args.extend_from_slice(flags);
    let proxy = ctx.spawn_ready(&args, "routes:", "--routes FILE").await?;
    Ok((proxy, routes))
}

/// A 502 or 504 tells the client what failed in one sentence, without the
/// upstream's address; the log has the details. (Steps 02 and 08 named
/// the upstream in the body: a choice for a workshop, not for production.)
pub async fn errors_say_enough(ctx: Ctx) -> Outcome {
    let dead = dead_address().await?;
    let (proxy, _routes) = with_dead_route(&ctx, dead.addr(), &["--upstream-timeout", "1"]).await?;
    let reply = get(proxy.addr, "/dead/x").await?;
    let body = reply.text();
    ensure!(
        reply.status == StatusCode::BAD_GATEWAY
            && !body.contains(&dead.port().to_string())
            && !body.contains("127.0.0.1")
            && body.lines().count() == 1,
        "a 502 should say what failed in one plain sentence, without the upstream's address \
         ({dead}) or the error's details; got {:?}",
        excerpt(&body)
    );
    let slow = get(proxy.addr, "/slow?ms=5000").await?;
    let body = slow.text();
    ensure!(
        slow.status == StatusCode::GATEWAY_TIMEOUT
            && !body.contains(&ctx.origin.to_string())
            && body.lines().count() == 1,
        "a 504 (--upstream-timeout 1, an upstream taking 5 s) should say so in one plain sentence, \
         without the upstream's address; got {} {:?}",
        slow.status,
        excerpt(&body)
    );
    proxy
        .stderr_until(
            "a log line with the upstream's address",
            |log| log.contains(&dead.to_string()),
            5,
        )
        .await?;
    Ok(())
}

/// One access log line per request, in JSON when asked: method, host,
/// target, status, the bytes of the body, how long it took.
pub async fn access_log_lines(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let flags = ["--access-log", "stdout", "--log-format", "json"];
    let mut args = vec!["--upstream", upstream.as_str()];
    args.extend_from_slice(&flags);
    let proxy = ctx.spawn_ready(&args, "routes:", &flags.join(" ")).await?;
    let (_, json, line) = logged_json(&proxy, "/big?bytes=1234").await?;
    ensure!(
        json["method"] == "GET"
            && json["host"] == "logged.example"
            && json["target"] == "/big?bytes=1234"
            && json["status"] == 200
            && json["bytes"] == 1234
            && json["ms"].is_number(),
        "the access log line should say method, host, target, status, bytes (1234) and ms; got {line}"
    );
    // A stream without Content-Length, 3 chunks 300 ms apart: the line
    // counts what was sent and the time it took, so it is written at the end.
    let (reply, json, line) = logged_json(&proxy, "/stream?n=3&interval_ms=300").await?;
    let sent = reply.body.len();
    ensure!(
        json["status"] == 200
            && json["bytes"] == sent
            && json["ms"].as_f64().is_some_and(|ms| ms >= 500.0),
        "a streamed response (no Content-Length, {sent} bytes in 3 chunks over 600 ms) should \
         be logged once it is over, with the {sent} bytes sent and at least 600 ms: a line \
         written at the response head knows neither; got {line}"
    );
    Ok(())
}

/// GETs `target` (Host `logged.example`) through `proxy`, which logs JSON
/// to its stdout: the reply, and its access log line parsed and as written.
async fn logged_json(
    proxy: &Proxy,
    target: &str,
) -> Result<(crate::harness::client::Reply, serde_json::Value, String), Failure> {
    let mut request = Request::new(empty());
    *request.uri_mut() = target.parse().or_fail("a target")?;
    request.headers_mut().insert(
        http::header::HOST,
        "logged.example".parse().or_fail("a host")?,
    );
    let reply = crate::harness::client::fetch(proxy.addr, request).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "GET {target}: got {}",
        reply.status
    );
    let lines = proxy
        .stdout_until(|lines| lines.iter().any(|line| line.contains(target)), 10)
        .await?;
    let line = lines
        .iter()
        .find(|line| line.contains(target))
        .or_fail("the access log line")?
        .clone();
    let json = serde_json::from_str(&line).map_err(|err| {
        fail(format!(
            "with --log-format json, a log line should be JSON ({err}): {line}"
        ))
    })?;
    Ok((reply, json, line))
}

/// `/_proxy/metrics`, with the admin token: Prometheus' text format, with
/// requests by rule and status class, the 502s the proxy made, the open
/// connections and the apps by state; `401` without the token; no access
/// log line for it.
pub async fn metrics_need_token(ctx: Ctx) -> Outcome {
    let dead = dead_address().await?;
    let flags = [
        "--admin-token",
        "m3trics",
        "--access-log",
        "stdout",
        "--log-format",
        "json",
    ];
    let (proxy, _routes) = with_dead_route(&ctx, dead.addr(), &flags).await?;
    let ok = get(proxy.addr, "/echo").await?;
    let down = get(proxy.addr, "/dead/x").await?;
    ensure!(
        ok.status == StatusCode::OK && down.status == StatusCode::BAD_GATEWAY,
        "expected 200 and 502 first, got {} and {}",
        ok.status,
        down.status
    );
    let scrape = |token: Option<&str>| {
        let mut request = Request::new(empty());
        *request.uri_mut() = http::Uri::from_static("/_proxy/metrics");
        if let Ok(host) = proxy.addr.to_string().parse() {
            request.headers_mut().insert(http::header::HOST, host);
        }
        if let Some(token) = token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        crate::harness::client::fetch(proxy.addr, request)
    };
    let refused = scrape(None).await?;
    ensure!(
        refused.status == StatusCode::UNAUTHORIZED,
        "/_proxy/metrics without the token should be 401, got {}",
        refused.status
    );
    let metrics = scrape(Some("m3trics")).await?;
    let text = metrics.text();
    let has = |start: &str, end: &str| {
        text.lines()
            .any(|line| line.starts_with(start) && line.ends_with(end))
    };
    let expected = [
        // Named by the rule's line in the file.
        ("proxy_requests_total{rule=\"line ", "class=\"2xx\"} 1"),
        ("proxy_requests_total{rule=\"line ", "class=\"5xx\"} 1"),
        ("proxy_upstream_errors_total{status=\"502\"}", " 1"),
        ("proxy_request_duration_seconds_count", " 2"),
        ("proxy_open_connections", ""),
        ("proxy_apps{state=\"asleep\"}", " 0"),
    ];
    for (start, end) in expected {
        ensure!(
            metrics.status == StatusCode::OK && has(start, end),
            "/_proxy/metrics with the token should have a line `{start}…{end}`; got {}:\n{text}",
            metrics.status
        );
    }
    // Both requests have their access line, the scrapes none.
    proxy
        .stdout_until(
            |lines| lines.iter().any(|line| line.contains("/dead/x")),
            10,
        )
        .await?;
    ensure!(
        !proxy
            .stdout()
            .iter()
            .any(|line| line.contains("/_proxy/metrics")),
        "the access log should have no line for /_proxy/metrics"
    );
    Ok(())
}

/// A client that leaves before its answer came still has its access log
/// line, with status 499 (nginx's "client closed request") and no bytes.
pub async fn client_left_is_499(ctx: Ctx) -> Outcome {
    // An upstream that reads a request and never answers; it says when one
    // came, and keeps the connection until the check ends.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .or_fail("binding")?;
    let upstream_addr = upstream.local_addr().or_fail("its address")?;
    let (arrived, has_arrived) = tokio::sync::oneshot::channel();
    let silent = tokio::spawn(async move {
        let Ok((mut tcp, _)) = upstream.accept().await else {
            return;
        };
        let mut head = [0u8; 1024];
        let _ = tcp.read(&mut head).await;
        let _ = arrived.send(());
        // Held open (until the check drops this task), never answered.
        let _ = tcp.read(&mut head).await;
        std::future::pending::<()>().await;
    });
    let upstream = format!("http://{upstream_addr}");
    let flags = ["--access-log", "stdout", "--log-format", "json"];
    let mut args = vec!["--upstream", upstream.as_str()];
    args.extend_from_slice(&flags);
    let proxy = ctx.spawn_ready(&args, "routes:", &flags.join(" ")).await?;
    let mut client = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    client
        .write_all(b"GET /never-answered HTTP/1.1\r\nhost: left.example\r\n\r\n")
        .await
        .or_fail("sending")?;
    within(10, "the request to reach the upstream", async {
        has_arrived.await.or_fail("the upstream's task")
    })
    .await?;
    // The client leaves before any answer.
    drop(client);
    let lines = proxy
        .stdout_until(
            |lines| lines.iter().any(|line| line.contains("/never-answered")),
            10,
        )
        .await
        .map_err(|failure| {
            fail(format!(
                "a client that left before its answer should still have its access log line \
                 ({failure})"
            ))
        })?;
    silent.abort();
    let line = lines
        .iter()
        .find(|line| line.contains("/never-answered"))
        .or_fail("the access log line")?;
    let json: serde_json::Value = serde_json::from_str(line).or_fail("a JSON line")?;
    ensure!(
        json["status"] == 499 && json["bytes"] == 0,
        "a client that left before its answer should be logged with status 499 and 0 bytes \
         (nginx's \"client closed request\"); got {line}"
    );
    Ok(())
}
