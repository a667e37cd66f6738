//! Step 13: the complete proxy, from a config file, hardened: a slow
//! client is cut off, a shutdown finishes what is in flight, a flood of
//! connections waits its turn, errors say enough and no more, every
//! request has its access log line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use workshop::body::empty;

use super::on_demand::{admin_request, ask_app, count_answers, logged, written_requests};
use crate::ensure;
use crate::harness::client::{connect_h2, excerpt, fetch, get, h2_request};
use crate::harness::folder::Folder;
use crate::harness::redis::RedisServer;
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

/// A config file in a folder of its own, removed with it.
struct ConfigFile {
    folder: Folder,
}

impl ConfigFile {
    /// `{origin}` in `text` is the demo origin's address.
    fn new(ctx: &Ctx, text: &str) -> Result<ConfigFile, Failure> {
        let file = ConfigFile {
            folder: Folder::new("config")?,
        };
        file.write(ctx, text)?;
        Ok(file)
    }

    fn write(&self, ctx: &Ctx, text: &str) -> Outcome {
        let text = text.replace("{origin}", &ctx.origin.to_string());
        self.folder.replace("proxy.toml", &text)
    }

    fn path(&self) -> PathBuf {
        self.folder.file("proxy.toml")
    }

    /// Writes another file beside the config (a certificate), and says where.
    fn beside(&self, name: &str, text: &str) -> Result<PathBuf, Failure> {
        self.folder.rewrite(name, text)?;
        Ok(self.folder.file(name))
    }
}

/// An address nothing listens on: bound, noted, closed.
async fn dead_address() -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .or_fail("binding")?;
    listener.local_addr().or_fail("local address")
}

const FORWARD_ALL: &str = "[[rules]]\npath = \"/*rest\"\nforward = \"http://{origin}\"\n";

/// The step with `--config` (and `--listen 127.0.0.1:0`).
async fn configured(ctx: &Ctx, text: &str) -> Result<(Proxy, ConfigFile), Failure> {
    configured_with(ctx, text, &[]).await
}

/// [`configured`], with more flags after `--config FILE`.
async fn configured_with(
    ctx: &Ctx,
    text: &str,
    flags: &[&str],
) -> Result<(Proxy, ConfigFile), Failure> {
    let file = ConfigFile::new(ctx, text)?;
    let path = file.path().display().to_string();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(flags);
    let proxy = ctx.spawn(&args).await?;
    proxy.stdout_line("routes:", 10).await.map_err(|failure| {
        fail(format!(
            "started with --config FILE, the step should print `routes: …` once it has them ({failure})"
        ))
    })?;
    Ok((proxy, file))
}

/// A client that sends its request head one byte every 40 ms is cut off
/// after `header_read` (1 s here), long before it is done; one that sends
/// nothing is closed as soon.
pub async fn slowloris_cut_off(ctx: Ctx) -> Outcome {
    let (proxy, _file) = configured(
        &ctx,
        &format!("[timeouts]\nheader_read = \"1s\"\n{FORWARD_ALL}"),
    )
    .await?;
    let mut tcp = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let head = b"GET /echo HTTP/1.1\r\nhost: slow.example\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // 25 bytes a second: this head would take about 4 s to send.
    let cut = within(10, "the proxy to cut the slow client off", async {
        for byte in head {
            if tcp.write_all(&[*byte]).await.is_err() {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        // All sent: was the connection closed before the end?
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        Ok(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"))
    })
    .await?;
    ensure!(
        cut,
        "a client sending its request head one byte at a time (4 s in all) should be cut off \
         after header_read (1 s), not served"
    );
    // A client that connects and sends nothing at all: the same.
    let mut silent = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let closed = within(5, "the proxy to close a silent connection", async {
        let mut answer = Vec::new();
        Ok(silent.read_to_end(&mut answer).await.is_ok())
    })
    .await?;
    ensure!(
        closed,
        "a connection that sends nothing should be closed after header_read"
    );
    // The proxy itself is fine.
    let reply = get(proxy.addr, "/echo").await?;
    ensure!(
        reply.status == StatusCode::OK,
        "the next client got {}",
        reply.status
    );
    Ok(())
}

/// SIGTERM while a slow request and a stream are in flight (on one HTTP/2
/// connection) and a WebSocket is open: the two finish, the WebSocket
/// keeps working through the grace period until it closes, new
/// connections are refused, the proxy exits 0.
pub async fn graceful_shutdown(ctx: Ctx) -> Outcome {
    let (mut proxy, _file) =
        configured(&ctx, &format!("[shutdown]\ngrace = \"20s\"\n{FORWARD_ALL}")).await?;
    let (mut socket, _) = super::websocket::open_at(proxy.addr, "/ws").await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let slow = h2.send_request(h2_request("slow.example", "/slow?ms=1500"));
    let stream = h2.send_request(h2_request("slow.example", "/stream?n=10&interval_ms=150"));
    let (slow, stream) = (tokio::spawn(slow), tokio::spawn(stream));
    // Once the stream has begun, both requests (sent in that order on
    // one connection) are the proxy's.
    let stream = within(10, "the stream's head", async {
        stream
            .await
            .or_fail("the stream's task")?
            .or_fail("the stream's response")
    })
    .await?;
    let pid = proxy.pid().or_fail("the proxy's pid")?;
    let sent = tokio::process::Command::new("kill")
        .args(["-s", "TERM", &pid.to_string()])
        .status()
        .await
        .or_fail("running kill")?;
    ensure!(sent.success(), "kill -s TERM {pid} failed");
    // Once it says so, the proxy takes no new connection (the grace is for
    // those it has).
    proxy
        .stderr_until(
            "`shutting down` in the log",
            |log| log.contains("shutting down"),
            10,
        )
        .await?;
    ensure!(
        TcpStream::connect(proxy.addr).await.is_err(),
        "during the grace period, new connections should be refused"
    );
    let slow = within(10, "the slow answer", async {
        slow.await
            .or_fail("the slow request's task")?
            .or_fail("the slow response")
    })
    .await?;
    ensure!(
        slow.status() == StatusCode::OK,
        "a request in flight at SIGTERM should be answered, got {}",
        slow.status()
    );
    let streamed = within(10, "the whole stream", async {
        stream
            .into_body()
            .collect()
            .await
            .or_fail("reading the stream")
    })
    .await?
    .to_bytes();
    ensure!(
        String::from_utf8_lossy(&streamed).lines().count() >= 10,
        "a stream in flight at SIGTERM should run to its end, got {:?}",
        excerpt(&String::from_utf8_lossy(&streamed))
    );
    // The WebSocket still works during the grace period; once it closes,
    // nothing holds the proxy.
    super::websocket::echo(&mut socket, "still here", "a WebSocket during the shutdown").await?;
    let _ = futures_util::SinkExt::close(&mut socket).await;
    drop(socket);
    let code = proxy.wait_for_exit(30).await?;
    ensure!(
        code == Some(0),
        "after a graceful shutdown the proxy should exit 0, got {code:?}"
    );
    let refused = TcpStream::connect(proxy.addr).await.is_err();
    ensure!(
        refused,
        "after the shutdown, nothing should accept connections at {}",
        proxy.addr
    );
    Ok(())
}

/// With `max_connections = 2`, a third connection waits (in the backlog)
/// until one of the two closes, then is served.
pub async fn connection_limit_waits(ctx: Ctx) -> Outcome {
    let (proxy, _file) = configured(
        &ctx,
        &format!("[limits]\nmax_connections = 2\n{FORWARD_ALL}"),
    )
    .await?;
    let first = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let second = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let mut third = tokio::spawn(raw_get(proxy.addr));
    // A second to see that the third is not served while two are open.
    let early = tokio::time::timeout(Duration::from_secs(1), &mut third).await;
    ensure!(
        early.is_err(),
        "with max_connections = 2 and two connections open, a third should wait, but it was served"
    );
    drop(first);
    let answer = within(10, "the third connection's answer", async {
        third.await.or_fail("the third connection's task")?
    })
    .await?;
    ensure!(
        answer.starts_with("HTTP/1.1 200"),
        "once a connection closed, the waiting one should be served, got {:?}",
        excerpt(&answer)
    );
    drop(second);
    Ok(())
}

async fn raw_get(addr: SocketAddr) -> Result<String, Failure> {
    let mut tcp = TcpStream::connect(addr).await.or_fail("connecting")?;
    tcp.write_all(b"GET /echo HTTP/1.1\r\nhost: flood.example\r\nconnection: close\r\n\r\n")
        .await
        .or_fail("sending")?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.or_fail("reading")?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A 502 or 504 tells the client what failed in one sentence, without the
/// upstream's address; the log has the details. (Steps 02 and 08 named
/// the upstream in the body: a choice for a workshop, not for production.)
pub async fn errors_say_enough(ctx: Ctx) -> Outcome {
    let dead = dead_address().await?;
    let (proxy, _file) = configured(
        &ctx,
        &format!(
            "[timeouts]\nresponse_head = \"1s\"\n\n[[rules]]\npath = \"/dead/*rest\"\nforward = \"http://{dead}\"\n\n{FORWARD_ALL}"
        ),
    )
    .await?;
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
        "a 504 (response_head = 1 s, an upstream taking 5 s) should say so in one plain sentence, \
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
    let (proxy, _file) = configured(
        &ctx,
        &format!("[log]\naccess = \"stdout\"\nformat = \"json\"\n{FORWARD_ALL}"),
    )
    .await?;
    let mut request = Request::new(empty());
    *request.uri_mut() = "/big?bytes=1234".parse().or_fail("a target")?;
    request.headers_mut().insert(
        http::header::HOST,
        "logged.example".parse().or_fail("a host")?,
    );
    let reply = crate::harness::client::fetch(proxy.addr, request).await?;
    ensure!(reply.status == StatusCode::OK, "got {}", reply.status);
    let lines = proxy
        .stdout_until(
            |lines| lines.iter().any(|line| line.contains("/big?bytes=1234")),
            10,
        )
        .await?;
    let line = lines
        .iter()
        .find(|line| line.contains("/big?bytes=1234"))
        .or_fail("the access log line")?;
    let json: serde_json::Value = serde_json::from_str(line).map_err(|err| {
        fail(format!(
            "with format = \"json\", a log line should be JSON ({err}): {line}"
        ))
    })?;
    ensure!(
        json["method"] == "GET"
            && json["host"] == "logged.example"
            && json["target"] == "/big?bytes=1234"
            && json["status"] == 200
            && json["bytes"] == 1234
            && json["ms"].is_number(),
        "the access log line should say method, host, target, status, bytes (1234) and ms; got {line}"
    );
    Ok(())
}

/// `--config FILE --check`: 0 for a good file, 2 naming file, line and
/// column for a bad one (an unknown key too); a broken edit while running
/// is refused and the config in force stays.
pub async fn config_file_checked(ctx: Ctx) -> Outcome {
    let good = ConfigFile::new(&ctx, FORWARD_ALL)?;
    let path = good.path().display().to_string();
    let (code, stderr) = ctx.run_to_exit(&["--config", &path, "--check"]).await?;
    ensure!(
        code == Some(0),
        "--check on a good config should exit 0, got {code:?}: {stderr}"
    );
    good.write(
        &ctx,
        &format!("{FORWARD_ALL}\n[timeouts]\nheader_reed = \"1s\"\n"),
    )?;
    let (code, stderr) = ctx.run_to_exit(&["--config", &path, "--check"]).await?;
    ensure!(
        code == Some(2) && stderr.contains("proxy.toml:6:1:") && stderr.contains("header_reed"),
        "--check on a config with an unknown key should exit 2 naming FILE:LINE:COLUMN and the \
         key; got {code:?}: {stderr}"
    );
    drop(good);
    let (proxy, file) = configured(&ctx, FORWARD_ALL).await?;
    file.write(
        &ctx,
        &format!("{FORWARD_ALL}\n[limits]\nmax_connections = \"many\"\n"),
    )?;
    proxy
        .stderr_until(
            "a log line saying the config was not reloaded, naming FILE:LINE:COLUMN",
            |log| log.contains("config not reloaded") && log.contains("proxy.toml:6:19:"),
            10,
        )
        .await?;
    let reply = get(proxy.addr, "/echo").await?;
    ensure!(
        reply.status == StatusCode::OK,
        "the config in force should stay, got {}",
        reply.status
    );
    Ok(())
}

/// `--version` says the version, and exits 0.
pub async fn version_flag(ctx: Ctx) -> Outcome {
    let binary = ctx.binary()?;
    let output = within(10, "--version", async {
        tokio::process::Command::new(binary)
            .arg("--version")
            .output()
            .await
            .or_fail("running --version")
    })
    .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version should print the version ({}) and exit 0, got {:?}",
        env!("CARGO_PKG_VERSION"),
        stdout
    );
    Ok(())
}

/// An upstream that never completes a connection (its accept queue is
/// full: the kernel drops our SYNs) is a 502 after `connect`, not a request
/// that waits forever.
pub async fn connect_timeout_502(ctx: Ctx) -> Outcome {
    let socket = tokio::net::TcpSocket::new_v4().or_fail("a socket")?;
    socket
        .bind("127.0.0.1:0".parse().or_fail("an address")?)
        .or_fail("binding")?;
    let listener = socket.listen(1).or_fail("listening")?;
    let full = listener.local_addr().or_fail("its address")?;
    // Fill its queue (nobody accepts): once a connect does not complete
    // within 200 ms, the next ones hang too.
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(full)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let (proxy, _file) = configured(
        &ctx,
        &format!(
            "[timeouts]\nconnect = \"1s\"\nresponse_head = \"60s\"\n\n[[rules]]\npath = \"/*rest\"\nforward = \"http://{full}\"\n"
        ),
    )
    .await?;
    let reply = within(10, "an answer (connect = 1 s)", get(proxy.addr, "/echo")).await?;
    ensure!(
        reply.status == StatusCode::BAD_GATEWAY,
        "an upstream that never completes the connection should be a 502 after `connect` \
         (1 s), got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    drop((fillers, listener));
    Ok(())
}

/// `/_proxy/metrics`, with the admin token: Prometheus' text format, with
/// requests by rule and status class, the 502s the proxy made, the open
/// connections and the apps by state; `401` without the token; no access
/// log line for it.
pub async fn metrics_need_token(ctx: Ctx) -> Outcome {
    let dead = dead_address().await?;
    let (proxy, _file) = configured(
        &ctx,
        &format!(
            "admin_token = \"m3trics\"\n\n[log]\naccess = \"stdout\"\nformat = \"json\"\n\n\
             [[rules]]\npath = \"/dead/*rest\"\nforward = \"http://{dead}\"\n\n{FORWARD_ALL}"
        ),
    )
    .await?;
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

/// An app's `Set-Cookie` for the apps' shared domain, or for a sibling, is
/// dropped (and logged); its cookies for its own host pass.
pub async fn apps_cookies_stay_home(ctx: Ctx) -> Outcome {
    let origin = env!("CARGO_BIN_EXE_origin");
    let (proxy, _file) = configured(
        &ctx,
        &format!(
            "[on_demand]\ndomain = \"localhost\"\n\n[[apps]]\nname = \"hello\"\n\
             command = [\"{origin}\", \"--listen\", \"127.0.0.1:{{port}}\"]\n\n{FORWARD_ALL}"
        ),
    )
    .await?;
    let mut request = Request::new(empty());
    *request.uri_mut() = "/headers?add=set-cookie:parent%3D5%3B%20Domain%3Dlocalhost\
        &add=set-cookie:own%3D2%3B%20Domain%3Dhello.localhost\
        &add=set-cookie:sibling%3D6%3B%20Domain%3D.docs.localhost"
        .parse()
        .or_fail("a target")?;
    request.headers_mut().insert(
        http::header::HOST,
        "hello.localhost".parse().or_fail("a host")?,
    );
    let reply = within(
        30,
        "the app's answer",
        crate::harness::client::fetch(proxy.addr, request),
    )
    .await?;
    let cookies: Vec<String> = reply
        .header_values("set-cookie")
        .iter()
        .map(|cookie| cookie.split('=').next().unwrap_or("").to_string())
        .collect();
    ensure!(
        reply.status == StatusCode::OK && cookies == ["a", "b", "own"],
        "hello.localhost may set cookies for itself only: expected a, b and own to pass, \
         parent (Domain=localhost) and sibling (Domain=.docs.localhost) to be dropped; got {} {cookies:?}",
        reply.status
    );
    proxy
        .stderr_until(
            "a log line about the dropped cookies",
            |log| log.contains("parent=") && log.contains("sibling=") && log.contains("dropped"),
            5,
        )
        .await?;
    Ok(())
}

/// Ten reloads of the config file under four busy keep-alive clients, a
/// slow request and a WebSocket: no request fails, both rule sets are seen.
pub async fn config_reload_under_load(ctx: Ctx) -> Outcome {
    let rules = super::routing::colored_rules(&ctx);
    let (proxy, file) = configured(&ctx, &rules("blue")).await?;
    super::routing::reloads_under_load(&proxy, |text| file.write(&ctx, text), rules).await
}

/// `[[tls]]`: the certificate a client gets is the one for the name it
/// asked for (SNI), `*.name` covering one label; another name gets the
/// listener's own (self-signed) certificate.
pub async fn certificates_by_name(ctx: Ctx) -> Outcome {
    let make = |name: &str| rcgen::generate_simple_self_signed(vec![name.to_string()]);
    let (a, b) = (
        make("a.example").or_fail("a certificate")?,
        make("b.example").or_fail("a certificate")?,
    );
    let file = ConfigFile::new(&ctx, FORWARD_ALL)?;
    let mut tls = String::new();
    for (name, hosts, certified) in [
        ("a", "\"a.example\"", &a),
        ("b", "\"*.b.example\", \"b.example\"", &b),
    ] {
        let cert = file.beside(&format!("{name}.pem"), &certified.cert.pem())?;
        let key = file.beside(
            &format!("{name}-key.pem"),
            &certified.signing_key.serialize_pem(),
        )?;
        tls.push_str(&format!(
            "[[tls]]\nhosts = [{hosts}]\ncert = {:?}\nkey = {:?}\n\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
    }
    file.write(
        &ctx,
        &format!("listen = [{{ address = \"127.0.0.1:0\", tls = \"self-signed\" }}]\n\n{tls}{FORWARD_ALL}"),
    )?;
    let path = file.path().display().to_string();
    let proxy = ctx.spawn(&["--config", &path]).await?;
    for (asked, expected) in [
        ("a.example", Some(&a)),
        ("b.example", Some(&b)),
        ("www.b.example", Some(&b)),
        ("c.example", None),
    ] {
        let tcp = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
        let url: http::Uri = format!("https://{asked}/").parse().or_fail("a URL")?;
        let tls = within(10, "the TLS handshake", async {
            workshop::tls::connect_tls(
                tcp,
                &url,
                Some(workshop::tls::Trust::Anything),
                &[b"http/1.1"],
            )
            .await
            .map_err(fail)
        })
        .await?;
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref().to_vec())
            .unwrap_or_default();
        let is = |certified: &rcgen::CertifiedKey<rcgen::KeyPair>| {
            presented == certified.cert.der().as_ref()
        };
        let right = match expected {
            Some(certified) => is(certified),
            None => !is(&a) && !is(&b) && !presented.is_empty(),
        };
        ensure!(
            right,
            "asking for {asked} (SNI), the client should get {}",
            match expected {
                Some(_) => "the [[tls]] certificate for that name",
                None => "the listener's own certificate (no [[tls]] entry covers it)",
            }
        );
    }
    Ok(())
}

/// `max_request_body`: a body announced bigger is a 413 at once; a chunked
/// one is counted while it streams and cut at the limit (a 413 too); one
/// under the limit goes through.
pub async fn request_body_limit_413(ctx: Ctx) -> Outcome {
    let (proxy, _file) = configured(
        &ctx,
        &format!("[limits]\nmax_request_body = 1024\n{FORWARD_ALL}"),
    )
    .await?;
    let post = |head: String, body: Vec<u8>| async move {
        let mut tcp = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
        let mut bytes = head.into_bytes();
        bytes.extend(body);
        // The proxy may answer and close before reading it all.
        let _ = tcp.write_all(&bytes).await;
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        Ok::<_, Failure>(String::from_utf8_lossy(&answer).into_owned())
    };
    let head = |extra: &str| {
        format!("POST /upload HTTP/1.1\r\nhost: big.example\r\nconnection: close\r\n{extra}\r\n")
    };
    let announced = within(
        10,
        "an answer",
        post(head("content-length: 2048\r\n"), vec![b'a'; 2048]),
    )
    .await?;
    let mut chunked = Vec::new();
    for _ in 0..4 {
        chunked.extend(b"3e8\r\n");
        chunked.extend(vec![b'b'; 1000]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let streamed = within(
        10,
        "an answer",
        post(head("transfer-encoding: chunked\r\n"), chunked),
    )
    .await?;
    let small = within(
        10,
        "an answer",
        post(head("content-length: 1000\r\n"), vec![b'c'; 1000]),
    )
    .await?;
    for (what, answer, status) in [
        ("announced as 2048 bytes", &announced, "413"),
        ("chunked, 4000 bytes", &streamed, "413"),
        ("of 1000 bytes", &small, "200"),
    ] {
        ensure!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "with max_request_body = 1024, a body {what} should get a {status}, got {:?}",
            excerpt(answer)
        );
    }
    Ok(())
}

/// A second upstream of our own, which answers every request with `name`
/// (keep-alive, HTTP/1.1); it stops when the check's runtime does.
async fn named_server(name: &'static str) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .or_fail("binding")?;
    let addr = listener.local_addr().or_fail("local address")?;
    tokio::spawn(async move {
        // Bounded: a check makes a few dozen connections at most.
        for _ in 0..1000 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(move |_request| async move {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(workshop::body::full(name)))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    Ok(addr)
}

/// `[upstreams.api]` with two servers: a rule forwarding to `http://api/`
/// sends the requests of one keep-alive client to each in turn.
pub async fn upstream_group_round_robin(ctx: Ctx) -> Outcome {
    let second = named_server("second server").await?;
    let (proxy, _file) = configured(
        &ctx,
        &format!(
            "[upstreams.api]\nservers = [\"{{origin}}\", \"{second}\"]\n\n\
             [[rules]]\npath = \"/*rest\"\nforward = \"http://api/\"\n"
        ),
    )
    .await?;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let reply = within(10, "an answer", get(proxy.addr, "/echo")).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "a group of two live servers should answer 200, got {} {}",
            reply.status,
            excerpt(&reply.text())
        );
        seen.push(reply.text() == "second server");
    }
    let alternates = seen.windows(2).all(|pair| pair[0] != pair[1]);
    ensure!(
        alternates,
        "round robin: requests should go to each server in turn, got (true = the second) {seen:?}"
    );
    Ok(())
}

/// A group whose first server is dead (connections refused): no request
/// fails, a POST's body included (a failed connect is made again to the
/// other server: nothing was sent); after `fail_after` failures the dead
/// server rests, and the log says so.
pub async fn upstream_group_dead_server(ctx: Ctx) -> Outcome {
    let dead = dead_address().await?;
    let (proxy, _file) = configured(
        &ctx,
        &format!(
            "[upstreams.api]\nservers = [\"{dead}\", \"{{origin}}\"]\nfail_after = 2\ncool_down = \"1h\"\n\n\
             [[rules]]\npath = \"/*rest\"\nforward = \"http://api/\"\n"
        ),
    )
    .await?;
    for i in 0..8 {
        let body = format!("upload number {i}");
        let mut request = Request::new(workshop::body::full(body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = "/echo".parse().or_fail("a path")?;
        if let Ok(host) = proxy.addr.to_string().parse() {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let reply = within(
            10,
            "an answer",
            crate::harness::client::fetch(proxy.addr, request),
        )
        .await?;
        // The origin answers with the SHA-256 of the body it received.
        let digest: String = {
            use sha2::Digest;
            sha2::Sha256::digest(body.as_bytes())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        };
        ensure!(
            reply.status == StatusCode::OK && reply.text().contains(&digest),
            "request {i}: with one dead server in a group of two, every request should be \
             answered by the live one, its body intact; got {} {}",
            reply.status,
            excerpt(&reply.text())
        );
    }
    let log = proxy
        .stderr_until(
            "the log saying the dead server rests",
            |log| log.contains(&dead.to_string()) && log.contains("skipped for"),
            10,
        )
        .await?;
    let retried = log.matches("instead").count();
    ensure!(
        retried == 2,
        "with fail_after = 2, the dead server should be tried twice (each connect made again \
         to the live one), then skipped: the log shows {retried} retries:\n{}",
        excerpt(&log)
    );
    Ok(())
}

/// `https://` upstreams are verified: against `[upstream_tls] ca` they
/// answer; against the system's roots, the same upstream (signed by a CA
/// they do not know) is a 502.
pub async fn https_upstream_verified(ctx: Ctx) -> Outcome {
    let ca_key = rcgen::KeyPair::generate().or_fail("a key")?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).or_fail("params")?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).or_fail("a CA")?;
    let leaf_key = rcgen::KeyPair::generate().or_fail("a key")?;
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .or_fail("params")?
        .signed_by(&leaf_key, &ca)
        .or_fail("a certificate")?;
    // The upstream: another instance of the step, on TLS, in front of the origin.
    let upstream_file = ConfigFile::new(&ctx, "")?;
    let cert = upstream_file.beside("leaf.pem", &leaf.pem())?;
    let key = upstream_file.beside("leaf-key.pem", &leaf_key.serialize_pem())?;
    let ca_file = upstream_file.beside("ca.pem", &ca.pem())?;
    upstream_file.write(
        &ctx,
        &format!(
            "listen = [{{ address = \"127.0.0.1:0\", tls = {{ cert = {:?}, key = {:?} }} }}]\n{FORWARD_ALL}",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )?;
    let path = upstream_file.path().display().to_string();
    let upstream = ctx.spawn(&["--config", &path]).await?;
    let port = upstream.addr.port();
    let forward =
        format!("[[rules]]\npath = \"/*rest\"\nforward = \"https://localhost:{port}/\"\n");
    let (trusting, _file) = configured(
        &ctx,
        &format!(
            "[upstream_tls]\nca = {:?}\n\n{forward}",
            ca_file.display().to_string()
        ),
    )
    .await?;
    let reply = within(10, "an answer", get(trusting.addr, "/echo")).await?;
    ensure!(
        reply.status == StatusCode::OK && reply.text().contains("/echo"),
        "forwarding to https://localhost:{port}/ with [upstream_tls] ca = its CA should reach \
         the origin, got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    // The same over HTTP/2: ALPN offers only `h2`, the kit's own client.
    let (over_h2, _file) = configured_with(
        &ctx,
        &format!(
            "[upstream_tls]\nca = {:?}\n\n{forward}",
            ca_file.display().to_string()
        ),
        &["--upstream-http2"],
    )
    .await?;
    let reply = within(10, "an answer", get(over_h2.addr, "/echo")).await?;
    ensure!(
        reply.status == StatusCode::OK && reply.text().contains("/echo"),
        "with --upstream-http2, https://localhost:{port}/ should be reached over HTTP/2 (ALPN h2), \
         got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    let (doubting, _file) = configured(&ctx, &forward).await?;
    let reply = within(10, "an answer", get(doubting.addr, "/echo")).await?;
    ensure!(
        reply.status == StatusCode::BAD_GATEWAY,
        "the same upstream, checked against the system's roots (which do not know its CA), \
         should be a 502, got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    Ok(())
}

/// `tunnel_idle`: a WebSocket busy for twice that long stays open (the idle
/// time starts again with each byte); silent, it is closed after it.
pub async fn tunnel_idle_closes(ctx: Ctx) -> Outcome {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (proxy, _file) = configured(
        &ctx,
        &format!("[timeouts]\ntunnel_idle = \"1s\"\n\n{FORWARD_ALL}"),
    )
    .await?;
    let (mut socket, _) = super::websocket::open_at(proxy.addr, "/ws").await?;
    // Pacing, not synchronisation: a message every 300 ms for 2 s.
    let busy = tokio::time::Instant::now();
    let mut last_byte = busy;
    for i in 0..20 {
        if busy.elapsed() >= Duration::from_secs(2) {
            break;
        }
        super::websocket::echo(&mut socket, &format!("message {i}"), "a busy WebSocket")
            .await
            .map_err(|failure| {
                fail(format!(
                    "with tunnel_idle = 1s, a WebSocket with a message every 300 ms must stay \
                     open ({failure})"
                ))
            })?;
        last_byte = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    within(
        10,
        "the silent WebSocket to be closed (tunnel_idle = 1s)",
        async {
            loop {
                match socket.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => continue,
                }
            }
        },
    )
    .await?;
    ensure!(
        last_byte.elapsed() >= Duration::from_millis(900),
        "the WebSocket was closed {:?} after its last message: before tunnel_idle (1 s)",
        last_byte.elapsed()
    );
    Ok(())
}

/// `header_read = 1s`, `keep_alive = 4s`: a keep-alive connection idle for
/// 2 s still serves (waiting is not a head); a head then sent a byte every
/// 40 ms on it is cut off after 1 s; a connection left idle is closed
/// after 4 s, not 1.
pub async fn keep_alive_apart_from_header_read(ctx: Ctx) -> Outcome {
    use crate::harness::raw::read_response;
    use tokio::io::BufReader;
    let (proxy, _file) = configured(
        &ctx,
        &format!("[timeouts]\nheader_read = \"1s\"\nkeep_alive = \"4s\"\n\n{FORWARD_ALL}"),
    )
    .await?;
    let request = b"GET /echo HTTP/1.1\r\nhost: keep.example\r\n\r\n";
    let (read, mut write) = TcpStream::connect(proxy.addr)
        .await
        .or_fail("connecting")?
        .into_split();
    let mut reader = BufReader::new(read);
    write.write_all(request).await.or_fail("sending")?;
    let first = within(10, "the first answer", read_response(&mut reader, false)).await?;
    ensure!(
        first.status == 200,
        "the first request got {}",
        first.status
    );
    // Pacing, not synchronisation: idle for twice header_read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    write.write_all(request).await.or_fail("sending")?;
    let second = within(10, "the second answer", read_response(&mut reader, false))
        .await
        .map_err(|failure| {
            fail(format!(
                "after 2 s idle (header_read = 1s, keep_alive = 4s), the keep-alive connection \
                 should still serve: the wait for a request is not a request head ({failure})"
            ))
        })?;
    ensure!(
        second.status == 200,
        "the second request got {}",
        second.status
    );
    // A slow head on the same connection: header_read counts from its first byte.
    let slow =
        b"GET /echo HTTP/1.1\r\nhost: slow.example\r\nx-padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let cut = within(10, "the proxy to cut the slow head off", async {
        for byte in slow {
            if write.write_all(&[*byte]).await.is_err() {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        Ok(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"))
    })
    .await?;
    ensure!(
        cut,
        "a second request head sent a byte every 40 ms (about 3 s in all) on a keep-alive \
         connection should be cut off after header_read (1 s), not served"
    );
    // A connection left idle after its answer: closed after keep_alive.
    let (read, mut write) = TcpStream::connect(proxy.addr)
        .await
        .or_fail("connecting")?
        .into_split();
    let mut reader = BufReader::new(read);
    write.write_all(request).await.or_fail("sending")?;
    let answer = within(10, "an answer", read_response(&mut reader, false)).await?;
    ensure!(answer.status == 200, "the request got {}", answer.status);
    let idle = tokio::time::Instant::now();
    let mut rest = Vec::new();
    within(
        10,
        "the idle connection to be closed (keep_alive = 4s)",
        async {
            let _ = reader.read_to_end(&mut rest).await;
            Ok(())
        },
    )
    .await?;
    ensure!(
        idle.elapsed() >= Duration::from_millis(3500) && rest.is_empty(),
        "an idle keep-alive connection should be closed after keep_alive (4 s), not before: \
         closed after {:?}",
        idle.elapsed()
    );
    Ok(())
}

/// Two instances of the step with one config: `head` (top-level keys),
/// `[state] redis` naming a redis-server of the check's own, then `apps`
/// (`{dir}` is a folder of the check's own, `{origin}` the demo origin).
struct Instances {
    redis: RedisServer,
    folder: Folder,
    a: Proxy,
    b: Proxy,
    _configs: [ConfigFile; 2],
}

async fn two_instances(ctx: &Ctx, head: &str, apps: &str) -> Result<Instances, Failure> {
    let redis = RedisServer::start().map_err(fail)?;
    let folder = Folder::new("shared")?;
    let apps = apps.replace("{dir}", &folder.path().display().to_string());
    let text = format!("{head}\n[state]\nredis = \"{}\"\n\n{apps}", redis.url);
    let (a, a_config) = configured_with(ctx, &text, &[]).await?;
    let (b, b_config) = configured_with(ctx, &text, &[]).await?;
    Ok(Instances {
        redis,
        folder,
        a,
        b,
        _configs: [a_config, b_config],
    })
}

/// `[state] redis`: two instances with the same config (an app started by
/// commands, its upstream the demo origin) share the app's state: 50 first
/// requests, one of two to each, are all answered, and the start command
/// ran once.
pub async fn apps_shared_start_once(ctx: Ctx) -> Outcome {
    // Half a second to start: requests come to both instances meanwhile.
    let apps = r#"[[apps]]
name = "hello"
start = "echo started >> {dir}/hello.starts; sleep 0.5"
stop = "true"
upstream = "http://{origin}"
"#;
    // Every field bound: what `..` leaves out is dropped at once (Redis too).
    let Instances {
        redis: _redis,
        folder,
        a,
        b,
        _configs,
    } = two_instances(&ctx, "", apps).await?;
    let starts = folder.file("hello.starts");
    let mut connections = Vec::new();
    for _ in 0..25 {
        connections.extend(written_requests(a.addr, "hello", 1).await?);
        connections.extend(written_requests(b.addr, "hello", 1).await?);
    }
    let answered = count_answers(connections, "HTTP/1.1 200").await?;
    ensure!(
        answered == 50,
        "50 first requests split across two instances sharing [state] redis should all be \
         answered 200, {answered} were"
    );
    let ran = std::fs::read_to_string(&starts)
        .unwrap_or_default()
        .lines()
        .count();
    ensure!(
        ran == 1,
        "two instances sharing [state] redis should start the app once for 50 first requests \
         split across them; its start command ran {ran} time(s)"
    );
    Ok(())
}

/// `[state] redis`: requests on one instance keep the app awake for both
/// (the other does not stop it after its own idle time); then, idle
/// everywhere, it is stopped once, and both know it.
pub async fn apps_shared_idle_stop_once(ctx: Ctx) -> Outcome {
    let apps = r#"[[apps]]
name = "hello"
start = "true"
stop = "echo stopped >> {dir}/hello.stops"
upstream = "http://{origin}"
idle = "2s"
"#;
    let head = r#"admin_token = "s3cret-token""#;
    let Instances {
        redis: _redis,
        folder,
        a,
        b,
        _configs,
    } = two_instances(&ctx, head, apps).await?;
    let stops = folder.file("hello.stops");
    // Woken through a: b's status API says so too.
    let reply = ask_app(a.addr, "hello", "/echo", 20).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "hello should answer 200, got {}",
        reply.status
    );
    within(5, "b's status API to show hello awake", async {
        // Bounded by `within`: a look every 50 ms.
        loop {
            let request = admin_request(b.addr, "GET", "/_proxy/apps", Some("s3cret-token"));
            let listed = fetch(b.addr, request).await?;
            let awake = listed.json().ok().is_some_and(|json| {
                json["apps"].as_array().is_some_and(|apps| {
                    apps.iter()
                        .any(|app| app["name"] == "hello" && app["state"] == "awake")
                })
            });
            if awake {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    // Served by b too: b's idle time starts now.
    let reply = ask_app(b.addr, "hello", "/echo", 20).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "hello should answer 200, got {}",
        reply.status
    );
    // Requests on a only, for twice the idle time (paced, 300 ms apart).
    for _ in 0..14 {
        let reply = ask_app(a.addr, "hello", "/echo", 20).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "with requests on one instance, hello should keep answering 200, got {}",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stopped = std::fs::read_to_string(&stops).unwrap_or_default();
    ensure!(
        stopped.is_empty(),
        "requests on one instance should keep the app awake; it was stopped after 4 s \
         (the other instance stopped it after its own idle time of 2 s)"
    );
    // No request anywhere: stopped, by one, and both say it is asleep.
    for proxy in [&a, &b] {
        logged(proxy, "hello: awake → ", 15).await?;
    }
    for proxy in [&a, &b] {
        logged(proxy, " → asleep", 15).await?;
    }
    let stopped = std::fs::read_to_string(&stops).unwrap_or_default();
    ensure!(
        stopped.lines().count() == 1,
        "idle on both instances, the app should be stopped once; its stop command ran {} time(s)",
        stopped.lines().count()
    );
    Ok(())
}

/// `[state] redis`: Redis killed while the app is awake: both instances
/// keep serving it; Redis back (empty): the instances tell it the app is
/// awake, and the idle stop is again one for both.
pub async fn apps_shared_redis_down(ctx: Ctx) -> Outcome {
    let apps = r#"[[apps]]
name = "hello"
start = "true"
stop = "echo stopped >> {dir}/hello.stops"
upstream = "http://{origin}"
idle = "3s"
"#;
    let Instances {
        mut redis,
        folder,
        a,
        b,
        _configs,
    } = two_instances(&ctx, "", apps).await?;
    let stops = folder.file("hello.stops");
    let answered = |proxy: &Proxy, when: &'static str| {
        let addr = proxy.addr;
        async move {
            let reply = ask_app(addr, "hello", "/echo", 20).await?;
            ensure!(
                reply.status == StatusCode::OK,
                "{when}, an awake app should be served (200), got {}",
                reply.status
            );
            Ok(())
        }
    };
    for proxy in [&a, &b] {
        answered(proxy, "with Redis up").await?;
    }
    redis.kill();
    for _ in 0..3 {
        for proxy in [&a, &b] {
            answered(proxy, "with Redis down").await?;
        }
    }
    redis.restart().map_err(fail)?;
    // Back and empty: the instances say what they have awake.
    within(
        10,
        "the instances to tell the new Redis that hello is awake",
        async {
            // Bounded by `within`: a look every 100 ms.
            loop {
                let state = redis
                    .ask("HGET reverse-proxy-workshop:app:hello state")
                    .map_err(fail)?;
                if state.contains("awake") {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await?;
    for proxy in [&a, &b] {
        logged(proxy, " → asleep", 20).await?;
    }
    let stopped = std::fs::read_to_string(&stops).unwrap_or_default();
    ensure!(
        stopped.lines().count() == 1,
        "with Redis back, the idle app should be stopped once for both instances; its stop \
         command ran {} time(s)",
        stopped.lines().count()
    );
    Ok(())
}

/// `[state] redis`: an instance killed while it starts the app (holding
/// the lock): a request on the other is answered once the lock has expired
/// (3 s unrenewed), by a start of its own.
pub async fn apps_shared_lock_holder_dies(ctx: Ctx) -> Outcome {
    // The first start hangs (until the check ends, 30 s at most); the next
    // one is quick.
    let apps = r#"[[apps]]
name = "hello"
start = "echo started >> {dir}/hello.starts; if [ $(wc -l < {dir}/hello.starts) -eq 1 ]; then i=0; while [ ! -e {dir}/release ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; fi"
stop = "true"
upstream = "http://{origin}"
start_timeout = "10s"
"#;
    let Instances {
        redis: _redis,
        folder,
        mut a,
        b,
        _configs,
    } = two_instances(&ctx, "", apps).await?;
    let (starts, release) = (folder.file("hello.starts"), folder.file("release"));
    let outcome = async {
        // a starts it, and hangs there holding the lock.
        let held = tokio::spawn(ask_app(a.addr, "hello", "/echo", 20));
        within(10, "a's start to begin", async {
            // Bounded by `within`: a look every 50 ms.
            while std::fs::read_to_string(&starts)
                .unwrap_or_default()
                .is_empty()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        })
        .await?;
        a.kill(10).await?;
        held.abort();
        let reply = ask_app(b.addr, "hello", "/echo", 20).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "an instance killed while starting the app holds its lock only until it expires; a \
             request on the other should then be answered 200 by a start of its own, got {} {}",
            reply.status,
            excerpt(&reply.text())
        );
        let ran = std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .count();
        ensure!(
            ran == 2,
            "the start command should have run twice (the dead instance's, then the other's), \
             it ran {ran} time(s)"
        );
        Ok(())
    }
    .await;
    // The dead instance's start command ends too.
    let _ = std::fs::write(&release, "");
    outcome
}
