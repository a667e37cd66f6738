//! Step 09: HTTP/2 clients (h2c and TLS with ALPN), translated for an
//! HTTP/1.1 upstream; h2c upstream for gRPC; no `Upgrade: h2c` tunnel.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use rustls::pki_types::ServerName;
use sha2::Digest;
use tokio::net::TcpStream;
use workshop::body::boxed;
use workshop::origin::pattern_body;
use workshop::tls::{Trust, client_config};

use crate::ensure;
use crate::harness::client::{
    connect_h2, excerpt, fetch_h2, fetch_h2_with_trailers, h2_over, h2_request,
};
use crate::harness::{Ctx, Failure, OrFail, Outcome, fail, within};

use super::forwarding::{echo_with, echoed, echoed_headers};

pub async fn h2c_prior_knowledge(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let reply = fetch_h2(&mut h2, h2_request(&proxy.addr.to_string(), "/echo?x=1")).await?;
    let echo = reply.json()?;
    ensure!(
        echo["query"] == "x=1" && echo["version"] == "HTTP/1.1",
        "an HTTP/2 request should reach the HTTP/1.1 origin as HTTP/1.1; it saw version {} and query {}",
        echo["version"],
        echo["query"]
    );
    Ok(())
}

pub async fn h2_authority_becomes_host(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let echo = fetch_h2(&mut h2, h2_request("workshop.example:8080", "/echo"))
        .await?
        .json()?;
    let (host, forwarded_host) = (echoed(&echo, "host"), echoed(&echo, "x-forwarded-host"));
    ensure!(
        host == ["workshop.example:8080"] && forwarded_host == ["workshop.example:8080"],
        "HTTP/2 has no Host header, only :authority (workshop.example:8080); the HTTP/1.1 upstream should \
         see it as Host and X-Forwarded-Host, got Host {host:?} and X-Forwarded-Host {forwarded_host:?}"
    );
    Ok(())
}

pub async fn h2_cookies_joined(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let mut request = h2_request(&proxy.addr.to_string(), "/echo");
    for crumb in ["a=1", "b=2"] {
        request
            .headers_mut()
            .append("cookie", HeaderValue::from_static(crumb));
    }
    let echo = fetch_h2(&mut h2, request).await?.json()?;
    let cookies = echoed(&echo, "cookie");
    ensure!(
        cookies == ["a=1; b=2"],
        "an HTTP/2 client split its cookies in two fields (a=1, b=2); HTTP/1.1 allows one Cookie line: \
         expected [\"a=1; b=2\"], got {cookies:?}"
    );
    Ok(())
}

pub async fn h2_many_streams(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echoes = echoes_at_once(proxy.addr, 100).await?;
    for (i, echo) in echoes.iter().enumerate() {
        ensure!(
            echo["query"] == format!("i={i}"),
            "stream {i} got the answer of {}",
            echo["query"]
        );
    }
    Ok(())
}

/// `GET /echo?i=0` to `?i={count - 1}`, all at once on one HTTP/2
/// connection to `addr`: the origin's echoes, in the order asked.
async fn echoes_at_once(addr: SocketAddr, count: usize) -> Result<Vec<serde_json::Value>, Failure> {
    let h2 = connect_h2(addr).await?;
    let authority = addr.to_string();
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..count {
        let (mut h2, authority) = (h2.clone(), authority.clone());
        streams.spawn(async move {
            let reply = fetch_h2(&mut h2, h2_request(&authority, &format!("/echo?i={i}"))).await?;
            Ok::<_, Failure>((i, reply.json()?))
        });
    }
    within(
        20,
        &format!("{count} concurrent streams on one connection"),
        async {
            let mut echoes = vec![serde_json::Value::Null; count];
            while let Some(stream) = streams.join_next().await {
                let (i, echo) = stream.or_fail("a stream task")??;
                echoes[i] = echo;
            }
            Ok(echoes)
        },
    )
    .await
}

pub async fn h2_body_1mib(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let length = (1 << 20) + 3;
    let mut request = h2_request(&proxy.addr.to_string(), "/upload");
    *request.method_mut() = Method::POST;
    *request.body_mut() = pattern_body(length);
    let answer = fetch_h2(&mut h2, request).await?.json()?;
    ensure!(
        answer["length"] == length,
        "a 1 MiB HTTP/2 request body reached the origin as {} bytes",
        answer["length"]
    );
    Ok(())
}

pub async fn h2_trailers_to_client(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let mut request = h2_request(&proxy.addr.to_string(), "/trailers");
    request
        .headers_mut()
        .insert("te", HeaderValue::from_static("trailers"));
    let (_, _, trailers) = fetch_h2_with_trailers(&mut h2, request).await?;
    ensure!(
        trailers.contains_key("x-body-sha256") && trailers.contains_key("x-origin-status"),
        "the origin's trailers (x-body-sha256, x-origin-status) should reach an HTTP/2 client \
         (HTTP/2 needs no announcement); got {trailers:?}"
    );
    Ok(())
}

pub async fn h2_no_connection_headers(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let path = "/headers?add=Connection:X-Secret&add=X-Secret:1&add=Keep-Alive:timeout%3D5&add=Upgrade:foo";
    let reply = fetch_h2(&mut h2, h2_request(&proxy.addr.to_string(), path)).await.map_err(|failure| {
        fail(format!(
            "an HTTP/2 response with connection-specific headers is malformed and the client rejects it: \
             strip them ({failure})"
        ))
    })?;
    let leaked: Vec<&str> = ["connection", "x-secret", "keep-alive", "upgrade"]
        .into_iter()
        .filter(|name| reply.headers.contains_key(*name))
        .collect();
    ensure!(
        leaked.is_empty(),
        "connection-specific headers {leaked:?} went out on HTTP/2"
    );
    Ok(())
}

pub async fn tls_alpn(ctx: Ctx) -> Outcome {
    // A certificate for localhost, trusted by this client only.
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).or_fail("rcgen")?;
    let dir = std::env::temp_dir().join(format!(
        "workshop-tls-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).or_fail("making a temp dir")?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).or_fail("writing cert.pem")?;
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).or_fail("writing key.pem")?;
    let upstream = format!("http://{}", ctx.origin);
    let spawned = ctx
        .spawn(&[
            "--upstream",
            &upstream,
            "--tls",
            "--cert",
            &cert_path.to_string_lossy(),
            "--key",
            &key_path.to_string_lossy(),
        ])
        .await;
    let proxy = match spawned {
        Ok(proxy) => proxy,
        Err(failure) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(failure);
        }
    };

    // The client trusts that one certificate, as `curl --cacert` would.
    let trust = Trust::Pem(cert_path);
    let outcome = async {
        for (alpn, expect_h2) in [(&b"h2"[..], true), (&b"http/1.1"[..], false)] {
            let config = client_config(&trust, &[alpn]).or_fail("a TLS client configuration")?;
            let tls = tls_handshake(proxy.addr, config).await?;
            let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            ensure!(
                negotiated.as_deref() == Some(alpn),
                "the client offered only {:?} by ALPN; the proxy chose {:?}",
                String::from_utf8_lossy(alpn),
                negotiated.map(|p| String::from_utf8_lossy(&p).into_owned())
            );
            let echo = if expect_h2 {
                let mut h2 = h2_over(tls).await?;
                let mut request = h2_request("localhost", "/echo");
                *request.uri_mut() = format!("https://localhost:{}/echo", proxy.addr.port())
                    .parse()
                    .or_fail("uri")?;
                fetch_h2(&mut h2, request).await?.json()?
            } else {
                let (mut h1, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await
                        .or_fail("handshake")?;
                tokio::spawn(connection);
                let request = crate::harness::client::get_request(proxy.addr, "/echo");
                let response = h1
                    .send_request(request)
                    .await
                    .or_fail("HTTP/1.1 over TLS")?;
                crate::harness::client::read(response).await?.json()?
            };
            ensure!(
                echoed(&echo, "x-forwarded-proto") == ["https"],
                "over TLS, X-Forwarded-Proto must be https; the origin saw {:?}",
                echoed(&echo, "x-forwarded-proto")
            );
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// A TLS session with the proxy at `addr`, asking for `localhost`.
async fn tls_handshake(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.or_fail("connecting")?;
    let name = ServerName::try_from("localhost").or_fail("server name")?;
    within(10, "the TLS handshake", async {
        connector
            .connect(name, tcp)
            .await
            .or_fail("the TLS handshake (is --tls serving TLS?)")
    })
    .await
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub async fn tls_self_signed(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--tls"])
        .await
        .map_err(|failure| match failure {
            Failure::Fail(why) => fail(format!(
                "with --tls the first line must read `listening on https://ADDR` ({why})"
            )),
            other => other,
        })?;
    let printed = proxy
        .stdout_line("certificate sha256 fingerprint: ", 5)
        .await
        .map_err(|failure| {
            fail(format!(
                "with --tls and no --cert, the step should make a certificate and print \
                 `certificate sha256 fingerprint: AA:BB:…` ({}); stdout was {:?}",
                failure.message(),
                proxy.stdout()
            ))
        })?;
    let printed = printed
        .trim_start_matches("certificate sha256 fingerprint: ")
        .trim();

    // A client that trusts anything, as `curl -k` does: the handshake must
    // complete, and the certificate it shows must be the one printed.
    let config =
        client_config(&Trust::Anything, &[b"http/1.1"]).or_fail("a TLS client configuration")?;
    let tls = tls_handshake(proxy.addr, config).await?;
    let served = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| {
            let digest: Vec<String> = sha2::Sha256::digest(certificate.as_ref())
                .iter()
                .map(|byte| format!("{byte:02X}"))
                .collect();
            digest.join(":")
        })
        .or_fail("the proxy sent no certificate")?;
    ensure!(
        served.eq_ignore_ascii_case(printed),
        "the certificate the proxy serves has the sha256 fingerprint {served}, but it printed \
         {printed:?}: print the fingerprint of the certificate you serve, so that a user can \
         compare it with what the browser shows"
    );
    let (mut h1, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .or_fail("HTTP/1.1 handshake over TLS")?;
    tokio::spawn(connection);
    let response = within(10, "an answer over TLS", async {
        h1.send_request(crate::harness::client::get_request(proxy.addr, "/echo"))
            .await
            .or_fail("GET /echo over TLS")
    })
    .await?;
    let echo = crate::harness::client::read(response).await?.json()?;
    ensure!(
        echo["path"] == "/echo",
        "GET /echo over TLS reached the origin as {}",
        echo["path"]
    );
    Ok(())
}

pub async fn upstream_http2_grpc(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-http2"])
        .await?;
    let mut h2 = connect_h2(proxy.addr).await?;
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(2);
    tokio::spawn(async move {
        let _ = sender.send_data(Bytes::from_static(b"hello grpc")).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-client-trailer", HeaderValue::from_static("1"));
        let _ = sender.send_trailers(trailers).await;
    });
    let mut request = h2_request(&proxy.addr.to_string(), "/grpc");
    *request.method_mut() = Method::POST;
    request
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    request
        .headers_mut()
        .insert("te", HeaderValue::from_static("trailers"));
    *request.body_mut() = boxed(body);
    let (status, body, trailers) = fetch_h2_with_trailers(&mut h2, request).await?;
    ensure!(
        body.as_ref() == b"hello grpc",
        "the gRPC echo should return the request body, got {status} {:?} (trailers {trailers:?})",
        excerpt(&String::from_utf8_lossy(&body))
    );
    ensure!(
        trailers
            .get("grpc-status")
            .is_some_and(|status| status == "0"),
        "gRPC's status travels in response trailers: expected grpc-status: 0, got trailers {trailers:?}"
    );
    ensure!(
        trailers.get("x-request-trailers").is_some_and(|names| names
            .to_str()
            .is_ok_and(|names| names.contains("x-client-trailer"))),
        "the client's request trailer (x-client-trailer) should reach the h2c upstream; the origin saw {:?}",
        trailers.get("x-request-trailers")
    );
    Ok(())
}

/// RFC 9113 §8.3.1: a request forwarded over HTTP/2 carries the client's
/// host as `:authority`, and no `host` field that says otherwise.
pub async fn h2_upstream_authority(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-http2"])
        .await?;
    let echo = echo_with(proxy.addr, "/echo", &[("host", "workshop.example:8080")]).await?;
    ensure!(
        echo["version"] == "HTTP/2.0",
        "with --upstream-http2 the origin should be reached over HTTP/2; it saw {}",
        echo["version"]
    );
    ensure!(
        echo["authority"] == "workshop.example:8080",
        "over HTTP/2 the client's host (workshop.example:8080) should travel as :authority; \
         the origin saw :authority {}",
        echo["authority"]
    );
    let host = echoed(&echo, "host");
    ensure!(
        host.is_empty(),
        "an HTTP/2 request should carry no host field besides :authority; the origin saw host {host:?}"
    );
    Ok(())
}

/// `--upstream-http2`: 32 requests at once through a proxy that has no
/// upstream connection yet share one, as HTTP/2 means them to: no
/// stampede of connections, one per request that found none.
pub async fn h2_upstream_one_connection(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-http2"])
        .await?;
    let mut peers = std::collections::BTreeSet::new();
    for echo in echoes_at_once(proxy.addr, 32).await? {
        let peer = echo["peer"].as_str().filter(|peer| !peer.is_empty());
        peers.insert(
            peer.or_fail("the origin's echo names the connection it came on")?
                .to_string(),
        );
    }
    ensure!(
        peers.len() == 1,
        "32 requests arriving together on a proxy with no upstream connection yet should share \
         one HTTP/2 connection to it (one connect, the others wait for it); the origin saw them \
         from {} connections: {peers:?}",
        peers.len()
    );
    Ok(())
}

/// Trailers from an HTTP/2 upstream reach an HTTP/1.1 client that sent
/// `TE: trailers`: the upstream announced them, though its body is not
/// chunked (HTTP/2 has no Transfer-Encoding).
pub async fn h2_upstream_trailers_to_http11(ctx: Ctx) -> Outcome {
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--upstream", &upstream, "--upstream-http2"])
        .await?;
    let response = super::trailers::fetch_trailers(proxy.addr, "trailers").await?;
    let status = response.trailer("x-origin-status");
    ensure!(
        response.chunked && status == ["done"] && response.trailer("x-body-sha256").len() == 1,
        "the HTTP/2 origin announced `trailer: x-body-sha256, x-origin-status` and sent both; \
         the HTTP/1.1 client (TE: trailers) got Trailer: {:?} and trailers {:?}. An HTTP/2 body \
         has no Transfer-Encoding: chunked, and still ends with trailers",
        response.header("trailer"),
        response.trailers
    );
    Ok(())
}

pub async fn h2c_upgrade_not_tunnelled(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let echo = echo_with(
        proxy.addr,
        "/echo",
        &[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    )
    .await
    .map_err(|failure| {
        fail(format!(
            "an HTTP/1.1 request asking for `Upgrade: h2c` should simply be answered over HTTP/1.1 ({failure})"
        ))
    })?;
    let leaked: Vec<String> = echoed_headers(&echo)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| ["upgrade", "http2-settings", "connection"].contains(&name.as_str()))
        .collect();
    ensure!(
        leaked.is_empty(),
        "the upstream received {leaked:?}: `Upgrade: h2c` must never be passed on (the upstream would switch \
         a connection the proxy still treats as HTTP/1.1: a request-smuggling tunnel)"
    );
    Ok(())
}
