//! Step 11: rules from a routes file choose where each request goes, in
//! mu-dispatcher's order, and the file is reloaded while the proxy runs.
//! Each check writes its own routes file, with the demo origin of this test
//! process as the upstream, and starts the step with `--routes`.

use std::net::SocketAddr;

use http::{HeaderName, HeaderValue, Method, Request};
use workshop::body::empty;

use crate::ensure;
use crate::harness::client::{Reply, excerpt, fetch};
use crate::harness::folder::FileIn;
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

use super::forwarding::echoed;
use super::websocket::{echo, open_at, open_h2};

/// The step with `--routes` (`{origin}` in `text` is the demo origin):
/// it says it has its rules, and watches the file, before a check changes
/// it.
async fn routed(ctx: &Ctx, text: &str) -> Result<(Proxy, FileIn), Failure> {
    let file = FileIn::new(
        "routes",
        "routes.toml",
        &text.replace("{origin}", &ctx.origin.to_string()),
    )?;
    let proxy = ctx
        .spawn_ready(&["--routes", &file.arg()], "routes:", "--routes FILE")
        .await?;
    Ok((proxy, file))
}

/// `method path` with these headers (Host defaults to the proxy's address).
async fn ask(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, Failure> {
    let mut request = Request::new(empty());
    *request.method_mut() = Method::from_bytes(method.as_bytes()).or_fail("a method")?;
    *request.uri_mut() = path.parse().or_fail("a path")?;
    request.headers_mut().insert(
        http::header::HOST,
        HeaderValue::from_str(&addr.to_string()).or_fail("host")?,
    );
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).or_fail("a header name")?;
        let value = HeaderValue::from_str(value).or_fail("a header value")?;
        request.headers_mut().insert(name, value);
    }
    fetch(addr, request).await
}

/// The path (and query) the origin saw, or what came instead.
fn seen(reply: &Reply) -> String {
    match reply.json() {
        Ok(echo) => match echo["query"].as_str() {
            Some(query) if !query.is_empty() => {
                format!("{}?{query}", echo["path"].as_str().unwrap_or("?"))
            }
            _ => echo["path"].as_str().unwrap_or("?").to_string(),
        },
        Err(_) => format!("a {} {:?}", reply.status, excerpt(&reply.text())),
    }
}

/// Asks, and checks the origin saw `expected` (path and query).
async fn expect_forward(
    proxy: &Proxy,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    expected: &str,
    why: &str,
) -> Outcome {
    let reply = ask(proxy.addr, method, path, headers).await?;
    let got = seen(&reply);
    ensure!(
        got == expected,
        "{method} {path} {headers:?} should reach the origin as {expected} ({why}); it got {got}"
    );
    Ok(())
}

pub async fn routes_by_path(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(
        &ctx,
        r#"
[[rules]]
path = "/widgets/*rest"
forward = "http://{origin}/echo/w"

[[rules]]
path = "/q/*rest"
forward = "http://{origin}/echo/q?sta=tic"

[[rules]]
path = "/exact"
forward = "http://{origin}/echo/exact-target"
"#,
    )
    .await?;
    for (path, expected) in [
        ("/widgets", "/echo/w"),
        ("/widgets/", "/echo/w/"),
        ("/widgets/a%2Fb/c?x=1", "/echo/w/a%2Fb/c?x=1"),
        ("/q/x?us=er", "/echo/q/x?sta=tic&us=er"),
        ("/exact", "/echo/exact-target"),
        ("/widgets/../exact", "/echo/exact-target"),
    ] {
        expect_forward(
            &proxy,
            "GET",
            path,
            &[],
            expected,
            "the rest `*rest` captured joined to the upstream's path with one slash, escapes kept, \
             queries merged, `..` resolved before matching",
        )
        .await?;
    }
    let reply = ask(proxy.addr, "GET", "/widgets/a?x=1", &[]).await?;
    let echo = reply.json()?;
    ensure!(
        echoed(&echo, "x-rewrite-url") == ["/widgets/a?x=1"],
        "the upstream should get X-Rewrite-URL: /widgets/a?x=1 (the target as the client sent it), got {:?}",
        echoed(&echo, "x-rewrite-url")
    );
    // Over HTTP/2 the target is `:path`: the same X-Rewrite-URL.
    let mut h2 = crate::harness::client::connect_h2(proxy.addr).await?;
    let request = crate::harness::client::h2_request(&proxy.addr.to_string(), "/widgets/a?x=1");
    let echo = crate::harness::client::fetch_h2(&mut h2, request)
        .await?
        .json()?;
    ensure!(
        echoed(&echo, "x-rewrite-url") == ["/widgets/a?x=1"],
        "over HTTP/2 too, X-Rewrite-URL is the target as sent (/widgets/a?x=1), got {:?}",
        echoed(&echo, "x-rewrite-url")
    );
    let reply = ask(proxy.addr, "DELETE", "/widgetsx/1", &[]).await?;
    ensure!(
        reply.status == 404
            && reply.text().contains("DELETE")
            && reply.text().contains("/widgetsx/1"),
        "no rule matches DELETE /widgetsx/1: expected a 404 naming the method and the path, got {} {:?}",
        reply.status,
        excerpt(&reply.text())
    );
    Ok(())
}

pub async fn routes_methods_and_captures(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(
        &ctx,
        r#"
[[rules]]
methods = ["POST"]
path = "/items/:id"
forward = "http://{origin}/echo/created-{id}"

[[rules]]
methods = ["GET", "HEAD"]
path = "/items/:id"
forward = "http://{origin}/echo/item-{id}"

[[rules]]
host = "{sub}.example.com"
path = "/*rest"
forward = "http://{origin}/echo/sub-{sub}"
"#,
    )
    .await?;
    expect_forward(
        &proxy,
        "GET",
        "/items/42",
        &[],
        "/echo/item-42",
        "GET matches the GET rule, `:id` captured",
    )
    .await?;
    expect_forward(
        &proxy,
        "POST",
        "/items/7",
        &[],
        "/echo/created-7",
        "POST matches the POST rule first in the file",
    )
    .await?;
    let reply = ask(proxy.addr, "PUT", "/items/7", &[]).await?;
    ensure!(
        reply.status == 404,
        "PUT /items/7: neither rule takes PUT, expected 404, got {}",
        reply.status
    );
    expect_forward(
        &proxy,
        "GET",
        "/x/y",
        &[("host", "Shop.Example.COM:8443")],
        "/echo/sub-shop/x/y",
        "`{sub}.example.com` captures one label, case and port ignored",
    )
    .await?;
    let reply = ask(proxy.addr, "GET", "/x", &[("host", "a?b=c&.example.com")]).await?;
    ensure!(
        reply.status == 404,
        "Host: a?b=c&.example.com: a captured label is letters, digits and `-`, or a client \
         writes into the forward URL; expected 404, got {} {:?}",
        reply.status,
        seen(&reply)
    );
    Ok(())
}

pub async fn routes_host_wildcard(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(
        &ctx,
        r#"
[[rules]]
host = "api.example.com"
path = "/*rest"
forward = "http://{origin}/echo/api"

[[rules]]
host = "*.example.com"
path = "/*rest"
forward = "http://{origin}/echo/wild"
"#,
    )
    .await?;
    for (host, expected) in [
        ("api.example.com", "/echo/api/x"),
        ("example.com", "/echo/wild/x"),
        ("a.b.example.com:8080", "/echo/wild/x"),
    ] {
        expect_forward(
            &proxy,
            "GET",
            "/x",
            &[("host", host)],
            expected,
            "`api.example.com` exactly; `*.example.com` the apex and every subdomain",
        )
        .await?;
    }
    let reply = ask(proxy.addr, "GET", "/x", &[("host", "badexample.com")]).await?;
    ensure!(
        reply.status == 404,
        "Host: badexample.com is not under example.com: expected 404, got {}",
        reply.status
    );
    Ok(())
}

pub async fn routes_accept_order(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(
        &ctx,
        r#"
[accept]
image = ["image/*"]
json = ["application/json", "application/vnd.api+json"]
html = ["text/html"]

[[rules]]
path = "/*rest"
accept = ["image"]
forward = "http://{origin}/echo/image"

[[rules]]
path = "/*rest"
accept = ["json"]
forward = "http://{origin}/echo/json"

[[rules]]
path = "/*rest"
accept = ["html"]
forward = "http://{origin}/echo/html"
"#,
    )
    .await?;
    for (accept, expected, why) in [
        (
            Some("*/*"),
            "/echo/image/a",
            "`*/*` takes any group: the first rule in the file wins",
        ),
        (None, "/echo/image/a", "no Accept is `*/*`"),
        (
            Some("image/png;q=0.5, application/json"),
            "/echo/json/a",
            "the best quality group first: json (q=1) before image (q=0.5), whatever the file order",
        ),
        (
            Some("text/html, application/xhtml+xml, */*;q=0.8"),
            "/echo/html/a",
            "a browser: its html group first",
        ),
        (
            Some("image/webp;q=0, application/vnd.api+json;q=0.9"),
            "/echo/json/a",
            "q=0 is not acceptable; parameters and the group's other members count",
        ),
        (
            Some("image/*"),
            "/echo/image/a",
            "`image/*` from the client matches a group of images",
        ),
        (
            Some("*/*, image/*;q=0"),
            "/echo/json/a",
            "`*/*` takes everything but what q=0 refuses: not the image rule",
        ),
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        expect_forward(&proxy, "GET", "/a", &headers, expected, why).await?;
    }
    let reply = ask(proxy.addr, "GET", "/a", &[("accept", "text/plain")]).await?;
    ensure!(
        reply.status == 404,
        "Accept: text/plain matches no group: expected 404, got {}",
        reply.status
    );
    Ok(())
}

pub async fn routes_fallback_layer(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(
        &ctx,
        r#"
[accept]
json = ["application/json"]
html = ["text/html"]

[[rules]]
path = "/*rest"
layer = "fallback"
accept = ["json"]
respond = { status = 404, body = '{"error":"no route"}', headers = { "content-type" = "application/json" } }

[[rules]]
path = "/*rest"
layer = "fallback"
accept = ["html"]
respond = { status = 410, body = "<h1>gone</h1>", headers = { "content-type" = "text/html", "x-from" = "fallback" } }

[[rules]]
path = "/app/*rest"
forward = "http://{origin}/echo/app"
"#,
    )
    .await?;
    expect_forward(
        &proxy,
        "GET",
        "/app/x",
        &[("accept", "application/json")],
        "/echo/app/x",
        "a main rule matches: the fallback rules, first in the file, wait their turn",
    )
    .await?;
    let reply = ask(
        proxy.addr,
        "GET",
        "/other",
        &[("accept", "application/json")],
    )
    .await?;
    ensure!(
        reply.status == 404
            && reply.text() == r#"{"error":"no route"}"#
            && reply.header_values("content-type") == ["application/json"],
        "no main rule for /other: the JSON fallback should answer 404 {{\"error\":\"no route\"}} as \
         application/json, got {} {:?} {:?}",
        reply.status,
        reply.header_values("content-type"),
        excerpt(&reply.text())
    );
    let reply = ask(proxy.addr, "GET", "/other", &[("accept", "text/html")]).await?;
    ensure!(
        reply.status == 410
            && reply.text() == "<h1>gone</h1>"
            && reply.header_values("x-from") == ["fallback"],
        "for a browser, the HTML fallback: expected 410 <h1>gone</h1> with X-From, got {} {:?}",
        reply.status,
        excerpt(&reply.text())
    );
    ensure!(
        reply.header_values("vary") == ["Accept"],
        "the fallback chose by Accept: the response needs Vary: Accept, got {:?}",
        reply.header_values("vary")
    );
    Ok(())
}

pub async fn routes_vary_accept(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(
        &ctx,
        r#"
[accept]
json = ["application/json"]

[[rules]]
path = "/json/*rest"
accept = ["json"]
forward = "http://{origin}"

[[rules]]
path = "/plain/*rest"
forward = "http://{origin}"
"#,
    )
    .await?;
    let json = [("accept", "application/json")];
    let reply = ask(proxy.addr, "GET", "/json/echo", &json).await?;
    ensure!(
        reply.header_values("vary") == ["Accept"],
        "a rule that chose by Accept: the response needs Vary: Accept, got {:?}",
        reply.header_values("vary")
    );
    let reply = ask(
        proxy.addr,
        "GET",
        "/json/headers?add=Vary:accept-encoding,%20accept",
        &json,
    )
    .await?;
    ensure!(
        reply.header_values("vary") == ["accept-encoding, accept"],
        "the upstream's Vary already names accept: it stays as it is, got {:?}",
        reply.header_values("vary")
    );
    let reply = ask(proxy.addr, "GET", "/json/echo", &[("accept", "text/plain")]).await?;
    ensure!(
        reply.status == 404 && reply.header_values("vary") == ["Accept"],
        "no rule for text/plain, but JSON would have found one: the 404 needs Vary: Accept, got \
         {} {:?}",
        reply.status,
        reply.header_values("vary")
    );
    let reply = ask(proxy.addr, "GET", "/plain/echo", &json).await?;
    ensure!(
        reply.header_values("vary").is_empty(),
        "a rule without accept does not depend on it: no Vary, got {:?}",
        reply.header_values("vary")
    );
    Ok(())
}

pub async fn routes_header_changes(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(
        &ctx,
        r#"
[[rules]]
path = "/*rest"
forward = "http://{origin}"
request_headers = { set = { "x-from-rule" = "yes", "x-forwarded-host" = "spoofed" }, remove = ["cookie"] }
response_headers = { set = { "cache-control" = "no-store" }, remove = ["x-order"] }
"#,
    )
    .await?;
    let reply = ask(
        proxy.addr,
        "GET",
        "/echo",
        &[
            ("cookie", "secret=1"),
            ("host", "app.test"),
            ("connection", "x-from-rule, x-rewrite-url"),
        ],
    )
    .await?;
    let echo = reply.json()?;
    ensure!(
        echoed(&echo, "x-rewrite-url") == ["/echo"],
        "a client named X-Rewrite-URL in Connection: the proxy adds it after stripping, so it \
         stays; got {:?}",
        echoed(&echo, "x-rewrite-url")
    );
    ensure!(
        echoed(&echo, "x-from-rule") == ["yes"] && echoed(&echo, "cookie").is_empty(),
        "the rule sets X-From-Rule and removes Cookie on the way up; the origin saw X-From-Rule \
         {:?} and Cookie {:?}",
        echoed(&echo, "x-from-rule"),
        echoed(&echo, "cookie")
    );
    ensure!(
        echoed(&echo, "x-forwarded-host") == ["app.test"],
        "X-Forwarded handling applies after a rule's changes: X-Forwarded-Host must be the client's \
         Host, got {:?}",
        echoed(&echo, "x-forwarded-host")
    );
    let reply = ask(proxy.addr, "GET", "/headers", &[]).await?;
    ensure!(
        reply.header_values("cache-control") == ["no-store"]
            && reply.header_values("x-order").is_empty(),
        "the rule sets Cache-Control and removes X-Order on the way back; got Cache-Control {:?}, \
         X-Order {:?}",
        reply.header_values("cache-control"),
        reply.header_values("x-order")
    );
    Ok(())
}

pub async fn routes_websocket(ctx: Ctx) -> Outcome {
    // GET only: an HTTP/2 WebSocket (a CONNECT) must count as the GET it
    // stands for.
    let (proxy, _file) = routed(
        &ctx,
        r#"
[[rules]]
methods = ["GET"]
path = "/live/*rest"
forward = "http://{origin}/"
"#,
    )
    .await?;
    let (mut socket, _) = open_at(proxy.addr, "/live/ws").await?;
    echo(&mut socket, "routed", "a WebSocket through a routed rule").await?;
    // RFC 8441 over h2c, through the same GET-only rule.
    let mut socket = open_h2(proxy.addr, "/live/ws").await.map_err(|failure| {
        fail(format!(
            "an HTTP/2 WebSocket (extended CONNECT) to /live/ws under a GET-only rule: rules see \
             the GET it stands for ({failure})"
        ))
    })?;
    echo(
        &mut socket,
        "routed over h2",
        "an HTTP/2 WebSocket through a routed rule",
    )
    .await?;
    Ok(())
}

/// How many times the proxy has logged a reload.
fn reloads(text: &str) -> usize {
    text.matches("routes reloaded").count()
}

/// Waits for the proxy to log one more reload than `before`.
async fn next_reload(proxy: &Proxy, before: usize) -> Result<String, Failure> {
    proxy
        .stderr_until(
            "a `routes reloaded` log line",
            |text| reloads(text) > before,
            5,
        )
        .await
        .map_err(|failure| {
            fail(format!(
                "the routes file changed, but the proxy logged no `routes reloaded` within 5 s \
                 ({failure}): watch the file's folder (editors rename a new file over the old), \
                 and log each reload"
            ))
        })
}

fn answer(body: &str) -> String {
    format!("[[rules]]\npath = \"/*rest\"\nrespond = {{ status = 200, body = \"{body}\" }}\n")
}

pub async fn routes_reload_on_change(ctx: Ctx) -> Outcome {
    let (proxy, file) = routed(&ctx, &answer("one")).await?;
    let reply = ask(proxy.addr, "GET", "/", &[]).await?;
    ensure!(
        reply.text() == "one",
        "the rules answer `one`, got {:?}",
        excerpt(&reply.text())
    );
    for (body, how, write) in [
        (
            "two",
            "renamed over the old one",
            FileIn::replace as fn(&FileIn, &str) -> Outcome,
        ),
        ("three", "rewritten in place", FileIn::rewrite),
    ] {
        let before = reloads(&proxy.stderr());
        write(&file, &answer(body))?;
        next_reload(&proxy, before).await?;
        let reply = ask(proxy.addr, "GET", "/", &[]).await?;
        ensure!(
            reply.text() == body,
            "the file was {how} to answer `{body}` and the proxy logged a reload, but it answers {:?}",
            excerpt(&reply.text())
        );
    }
    Ok(())
}

pub async fn routes_reload_on_sighup(ctx: Ctx) -> Outcome {
    let (proxy, _file) = routed(&ctx, &answer("one")).await?;
    let pid = proxy.pid().or_fail("the proxy's pid")?;
    let before = reloads(&proxy.stderr());
    let sent = tokio::process::Command::new("kill")
        .args(["-s", "HUP", &pid.to_string()])
        .status()
        .await
        .or_fail("sending SIGHUP")?;
    ensure!(sent.success(), "could not send SIGHUP to {pid}");
    proxy
        .stderr_until("a reload after SIGHUP", |text| reloads(text) > before, 5)
        .await
        .map_err(|failure| {
            fail(format!(
                "SIGHUP should reload the routes (and log `routes reloaded`), the way daemons \
                 reread their configuration ({failure})"
            ))
        })?;
    let reply = ask(proxy.addr, "GET", "/", &[]).await?;
    ensure!(
        reply.text() == "one",
        "after SIGHUP the rules answer `one`, got {:?}",
        excerpt(&reply.text())
    );
    Ok(())
}

pub async fn routes_invalid_keeps_old(ctx: Ctx) -> Outcome {
    let (proxy, file) = routed(&ctx, &answer("old")).await?;
    // Line 3, column 11: the accept group nobody defined.
    file.replace(
        "[[rules]]\npath = \"/*rest\"\naccept = [\"nope\"]\nrespond = { status = 200 }\n",
    )?;
    let logged = proxy
        .stderr_until(
            "a log line saying the new file was refused",
            |text| text.contains("routes.toml:3:11"),
            5,
        )
        .await
        .map_err(|failure| {
            fail(format!(
                "an invalid routes file (an unknown accept group on line 3, column 11) should be \
                 refused with a log line naming routes.toml:3:11 ({failure})"
            ))
        })?;
    ensure!(
        reloads(&logged) == 0,
        "the invalid file was logged as reloaded:\n{}",
        excerpt(&logged)
    );
    let reply = ask(proxy.addr, "GET", "/", &[]).await?;
    ensure!(
        reply.status == 200 && reply.text() == "old",
        "after an invalid file, the old rules stay in force (`old`), got {} {:?}",
        reply.status,
        excerpt(&reply.text())
    );
    // An empty file (an editor halfway through a save) is refused too.
    file.rewrite("")?;
    proxy
        .stderr_until(
            "a log line refusing the empty file",
            |text| text.contains("no [[rules]]"),
            5,
        )
        .await
        .map_err(|failure| {
            fail(format!(
                "an empty routes file should be refused (a proxy with no rules answers 404 to \
                 everything), with a log line saying `no [[rules]]` ({failure})"
            ))
        })?;
    let reply = ask(proxy.addr, "GET", "/", &[]).await?;
    ensure!(
        reply.text() == "old",
        "after an empty file, the old rules stay in force (`old`), got {} {:?}",
        reply.status,
        excerpt(&reply.text())
    );
    file.replace(&answer("fixed"))?;
    next_reload(&proxy, 0).await?;
    let reply = ask(proxy.addr, "GET", "/", &[]).await?;
    ensure!(
        reply.text() == "fixed",
        "once fixed, the file is used: expected `fixed`, got {:?}",
        excerpt(&reply.text())
    );
    Ok(())
}

pub async fn routes_check_flag(ctx: Ctx) -> Outcome {
    let good = FileIn::new("routes", "routes.toml", &answer("ok"))?;
    let (code, stderr) = ctx
        .run_to_exit(&["--routes", &good.arg(), "--check"])
        .await?;
    ensure!(
        code == Some(0),
        "--routes GOOD --check should exit 0, got {code:?}; stderr: {}",
        excerpt(&stderr)
    );
    let bad = FileIn::new(
        "routes",
        "routes.toml",
        "[[rules]]\npath = \"widgets\"\nforward = \"http://127.0.0.1:9\"\n",
    )?;
    let (code, stderr) = ctx
        .run_to_exit(&["--routes", &bad.arg(), "--check"])
        .await?;
    ensure!(
        code == Some(2) && stderr.contains("routes.toml:2:8"),
        "--routes BAD --check (a path without its leading slash, line 2, column 8) should exit 2 \
         naming routes.toml:2:8, got {code:?}; stderr: {}",
        excerpt(&stderr)
    );
    let (code, stderr) = ctx
        .run_to_exit(&["--listen", "127.0.0.1:0", "--routes", &bad.arg()])
        .await?;
    ensure!(
        code == Some(2) && stderr.contains("routes.toml:2:8"),
        "started with an invalid routes file, the step should stop at once (exit 2, naming \
         routes.toml:2:8) rather than listen with no rules; got {code:?}; stderr: {}",
        excerpt(&stderr)
    );
    Ok(())
}

pub async fn routes_reload_under_load(ctx: Ctx) -> Outcome {
    let rules = colored_rules(&ctx);
    let (proxy, file) = routed(&ctx, &rules("blue")).await?;
    reloads_under_load(&proxy, |text| file.replace(text), rules).await
}

/// Rules that answer `color` (a slow path and a WebSocket path beside).
pub(super) fn colored_rules(ctx: &Ctx) -> impl Fn(&str) -> String {
    let origin = ctx.origin;
    move |color: &str| {
        format!(
            "[[rules]]\npath = \"/slow\"\nforward = \"http://{origin}/slow?ms=1500\"\n\n\
             [[rules]]\npath = \"/live/*rest\"\nforward = \"http://{origin}/\"\n\n\
             [[rules]]\npath = \"/*rest\"\nrespond = {{ status = 200, body = \"{color}\" }}\n"
        )
    }
}

/// Ten reloads (by `replace`, of `rules` blue and green) under four busy
/// keep-alive clients, a slow request and a WebSocket: nothing fails.
pub(super) async fn reloads_under_load(
    proxy: &Proxy,
    replace: impl Fn(&str) -> Outcome,
    rules: impl Fn(&str) -> String,
) -> Outcome {
    // A WebSocket and a slow request, open across every reload.
    let (mut socket, _) = open_at(proxy.addr, "/live/ws").await?;
    let slow = tokio::spawn(ask(proxy.addr, "GET", "/slow", &[]));

    // Four keep-alive clients asking all along; each stops when told.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (addr, mut stopped) = (proxy.addr, stopped.clone());
        clients.spawn(async move {
            let mut connection = crate::harness::client::connect(addr).await?;
            let (mut answers, mut seen) = (0u32, std::collections::BTreeSet::new());
            while !*stopped.borrow_and_update() && answers < 20_000 {
                let response = within(10, "an answer during reloads", async {
                    connection
                        .send_request(crate::harness::client::get_request(addr, "/color"))
                        .await
                        .or_fail("a request during a reload failed")
                })
                .await?;
                let reply = crate::harness::client::read(response).await?;
                ensure!(
                    reply.status == 200,
                    "a request during the reloads got {} {:?}",
                    reply.status,
                    excerpt(&reply.text())
                );
                seen.insert(reply.text());
                answers += 1;
            }
            Ok::<_, Failure>((answers, seen))
        });
    }
    // Ten reloads, each seen by the proxy before the next.
    for round in 0..10 {
        let before = reloads(&proxy.stderr());
        replace(&rules(if round % 2 == 0 { "green" } else { "blue" }))?;
        next_reload(proxy, before).await?;
    }
    let _ = stop.send(true);
    let mut total = 0;
    let mut colors = std::collections::BTreeSet::new();
    while let Some(client) = clients.join_next().await {
        let (answers, seen) = client.or_fail("a client task")??;
        total += answers;
        colors.extend(seen);
    }
    ensure!(
        colors.contains("green") && colors.contains("blue"),
        "{total} requests during 10 reloads saw only {colors:?}: they should see both rule sets"
    );
    let slow = slow.await.or_fail("the slow request")??;
    ensure!(
        slow.status == 200 && slow.text().starts_with("answered after"),
        "a request in flight across 10 reloads keeps the rules it started with (the origin's /slow), \
         got {} {:?}",
        slow.status,
        excerpt(&slow.text())
    );
    echo(
        &mut socket,
        "still here",
        "a WebSocket open across 10 reloads",
    )
    .await
}
