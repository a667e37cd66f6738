//! Step 17: the complete proxy, from a config file: checked, reloaded as
//! a whole, listeners with certificates by name, upstream groups, deadlines
//! to connect, apps that keep their cookies to themselves.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, StatusCode};
use tokio::net::TcpStream;
use workshop::body::empty;

use super::on_demand::ask_app;
use crate::ensure;
use crate::harness::client::{excerpt, get};
use crate::harness::folder::FileIn;
use crate::harness::upstream::dead_address;
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

/// A config file in a folder of its own, removed with it.
struct ConfigFile(FileIn);

impl ConfigFile {
    /// `{origin}` in `text` is the demo origin's address.
    fn new(ctx: &Ctx, text: &str) -> Result<ConfigFile, Failure> {
        let file = ConfigFile(FileIn::new("config", "proxy.toml", "")?);
        file.write(ctx, text)?;
        Ok(file)
    }

    fn write(&self, ctx: &Ctx, text: &str) -> Outcome {
        self.0
            .replace(&text.replace("{origin}", &ctx.origin.to_string()))
    }

    fn path(&self) -> std::path::PathBuf {
        self.0.path()
    }

    /// Writes another file beside the config (a certificate), and says where.
    fn beside(&self, name: &str, text: &str) -> Result<std::path::PathBuf, Failure> {
        self.0.beside(name, text)
    }
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
    let proxy = ctx.spawn_ready(&args, "routes:", "--config FILE").await?;
    Ok((proxy, file))
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

/// A reload takes at once what requests meet (an app added to the file
/// answers); a `[timeouts]` edit waits for a restart, and the log names it.
pub async fn config_reload_now_or_at_restart(ctx: Ctx) -> Outcome {
    let (proxy, file) = configured(&ctx, FORWARD_ALL).await?;
    let before = ask_app(proxy.addr, "sleepy", "/echo", 10).await?;
    ensure!(
        before.status == StatusCode::OK,
        "sleepy.localhost, no app yet, should go by the rule to the origin, got {}",
        before.status
    );
    // An app whose start fails: once it is in, its host is a 503.
    file.write(
        &ctx,
        &format!(
            "{FORWARD_ALL}\n[timeouts]\nresponse_head = \"7s\"\n\n[[apps]]\nname = \"sleepy\"\n\
             start = \"exit 1\"\nstop = \"true\"\nupstream = \"http://127.0.0.1:9\"\n"
        ),
    )?;
    proxy
        .stderr_until(
            "a log line saying that [timeouts] changed, in force at the next restart",
            |log| {
                log.lines()
                    .any(|line| line.contains("[timeouts]") && line.contains("next restart"))
            },
            10,
        )
        .await?;
    let added = within(10, "the app added by the reload to answer", async {
        // Bounded by `within`: a request every 50 ms.
        loop {
            let reply = ask_app(proxy.addr, "sleepy", "/echo", 10).await?;
            if reply.status != StatusCode::OK {
                return Ok(reply);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .map_err(|failure| {
        fail(format!(
            "an app added to the config file should be in force once it is reloaded: \
             sleepy.localhost still goes by the rules ({failure})"
        ))
    })?;
    ensure!(
        added.status == StatusCode::SERVICE_UNAVAILABLE,
        "sleepy, whose start fails, should answer 503 once the reload added it, got {} {}",
        added.status,
        excerpt(&added.text())
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
