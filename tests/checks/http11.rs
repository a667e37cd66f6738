//! The HTTP/1.1 set: what any HTTP/1.1 intermediary must get right on the
//! wire, checked with raw bytes (hyper as a client would hide how a message
//! is framed). Step 08 must pass all of it.

use sha2::{Digest, Sha256};

use crate::ensure;
use crate::harness::client::{connect, get_request, read};
use crate::harness::upstream::{Head, Reply, Scripted, Wire, excerpt};
use crate::harness::{Ctx, Failure, OrFail, Outcome, fail, within};

/// How a response's body was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// HEAD, 1xx, 204, 304: no body, whatever the headers say.
    None,
    Length(u64),
    Chunked,
    /// No length, no chunks: the body ends when the connection closes.
    Close,
}

/// A response read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    head: Head,
    body: Vec<u8>,
    framing: Framing,
}

impl Response {
    /// The demo origin's JSON; a failure says what came instead.
    fn json(&self) -> Result<serde_json::Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|_| {
            fail(format!(
                "expected the demo origin's JSON, got a {} response starting with {:?} — is the request forwarded to --upstream?",
                self.status,
                excerpt(&self.body)
            ))
        })
    }
}

/// Reads one response to a request with `method`, framed as RFC 9112 §6.3
/// says. A stray byte before it (the body of a previous response the proxy
/// should not have sent) shows up as a broken status line.
async fn response(wire: &mut Wire, method: &str, what: &str) -> Result<Response, Failure> {
    response_or_close(wire, method, what).await?.ok_or_else(|| {
        fail(format!(
            "the proxy closed the connection without answering {what}"
        ))
    })
}

/// [`response`], or `None` if the proxy closed the connection before
/// sending a byte of it.
async fn response_or_close(
    wire: &mut Wire,
    method: &str,
    what: &str,
) -> Result<Option<Response>, Failure> {
    let Some(head) = wire.head(&format!("the response to {what}")).await? else {
        return Ok(None);
    };
    let status = head
        .start_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            fail(format!(
                "the response to {what} should start with a status line like `HTTP/1.1 200 OK`, \
                 it starts with {:?}: bytes left over from an earlier response (a body where \
                 there should be none, or longer than announced)?",
                excerpt(head.start_line.as_bytes())
            ))
        })?;
    let waiting_for = format!("the body of the response to {what}");
    let (framing, body) = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        (Framing::None, Vec::new())
    } else if !head.all("transfer-encoding").is_empty() {
        if head.is_chunked() {
            (Framing::Chunked, wire.chunked(&waiting_for).await?)
        } else {
            (Framing::Close, wire.until_close(&waiting_for).await?)
        }
    } else if let Some(length) = head.content_length()? {
        (
            Framing::Length(length),
            wire.exact(length, &waiting_for).await?,
        )
    } else {
        (Framing::Close, wire.until_close(&waiting_for).await?)
    };
    Ok(Some(Response {
        status,
        head,
        body,
        framing,
    }))
}

/// `GET path` on `wire`, expecting the origin's echo of it.
async fn echo_on(wire: &mut Wire, path: &str, what: &str) -> Result<serde_json::Value, Failure> {
    wire.write(format!("GET {path} HTTP/1.1\r\nHost: http11\r\n\r\n").as_bytes())
        .await?;
    let answer = response(wire, "GET", what).await?;
    ensure!(
        answer.status == 200,
        "{what} (GET {path}) got {}, expected 200",
        answer.status
    );
    answer.json()
}

fn query_of(echo: &serde_json::Value) -> String {
    echo["query"].as_str().unwrap_or("").to_string()
}

pub async fn pipelining(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut wire = Wire::connect(proxy.addr).await?;
    // Both requests in one write: the second is on the wire before the
    // first is answered.
    wire.write(
        b"GET /echo?n=1 HTTP/1.1\r\nHost: pipelining\r\n\r\n\
          GET /echo?n=2 HTTP/1.1\r\nHost: pipelining\r\n\r\n",
    )
    .await?;
    for n in 1..=2 {
        let what = format!("pipelined request {n} of 2 (GET /echo?n={n})");
        let answer = response(&mut wire, "GET", &what).await?;
        ensure!(answer.status == 200, "{what} got {}", answer.status);
        let query = query_of(&answer.json()?);
        ensure!(
            query == format!("n={n}"),
            "response {n} of 2 answers the request with query {query:?}, expected n={n}: \
             responses must come back in the order the requests were sent"
        );
    }
    Ok(())
}

pub async fn head_request(ctx: Ctx) -> Outcome {
    const LENGTH: u64 = 1 << 20;
    let proxy = ctx.proxy().await?;
    let mut wire = Wire::connect(proxy.addr).await?;
    wire.write(format!("HEAD /big?bytes={LENGTH} HTTP/1.1\r\nHost: head\r\n\r\n").as_bytes())
        .await?;
    let answer = response(&mut wire, "HEAD", "HEAD /big").await?;
    ensure!(
        answer.status == 200,
        "HEAD /big?bytes={LENGTH} got {}, expected 200",
        answer.status
    );
    let length = answer.head.all("content-length");
    ensure!(
        length == [LENGTH.to_string()],
        "HEAD /big?bytes={LENGTH}: the origin says Content-Length: {LENGTH} (what a GET would \
         carry), the client got Content-Length {length:?}: is the upstream's Content-Length \
         copied? hyper can only count the (empty) body of a HEAD response"
    );
    // No body: the next bytes on the connection must be the next response.
    let echo = echo_on(&mut wire, "/echo?after=head", "a GET after the HEAD")
        .await
        .map_err(|failure| {
            fail(format!(
                "after a HEAD response, the same connection should answer a GET: a HEAD response \
                 has a head only, never the body its Content-Length announces ({failure})"
            ))
        })?;
    ensure!(
        query_of(&echo) == "after=head",
        "the GET after the HEAD was answered with the echo of {:?}",
        query_of(&echo)
    );
    Ok(())
}

pub async fn no_body_statuses(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut wire = Wire::connect(proxy.addr).await?;
    for code in [204, 304] {
        let what = format!("GET /status/{code}");
        wire.write(format!("GET /status/{code} HTTP/1.1\r\nHost: nobody\r\n\r\n").as_bytes())
            .await?;
        let answer = response(&mut wire, "GET", &what).await?;
        ensure!(
            answer.status == code,
            "{what}: the origin answered {code}, the client got {}",
            answer.status
        );
        let framing = answer.head.all("transfer-encoding");
        ensure!(
            framing.is_empty(),
            "{what}: a {code} response has no body, yet it came with Transfer-Encoding {framing:?}"
        );
    }
    let echo = echo_on(
        &mut wire,
        "/echo?after=304",
        "a GET after the 204 and the 304",
    )
    .await
    .map_err(|failure| {
        fail(format!(
            "after a 204 and a 304 the connection should serve the next request: those \
             responses end with their head, no body and no chunked terminator ({failure})"
        ))
    })?;
    ensure!(
        query_of(&echo) == "after=304",
        "the GET after the 304 was answered with the echo of {:?}",
        query_of(&echo)
    );
    Ok(())
}

pub async fn expect_100_continue(ctx: Ctx) -> Outcome {
    const LENGTH: usize = 256 * 1024;
    let body: Vec<u8> = (0..LENGTH).map(|i| (i % 251) as u8).collect();
    let proxy = ctx.proxy().await?;
    let mut wire = Wire::connect(proxy.addr).await?;
    wire.write(
        format!(
            "POST /upload HTTP/1.1\r\nHost: expect\r\nContent-Length: {LENGTH}\r\n\
             Expect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    // The client holds its body back until the proxy says go on.
    let interim = within(5, "`HTTP/1.1 100 Continue`", async {
        response(
            &mut wire,
            "POST",
            "the head of an Expect: 100-continue upload",
        )
        .await
    })
    .await
    .map_err(|failure| {
        fail(format!(
            "sent the head of a POST with `Expect: 100-continue` and held the body back: \
             expected `HTTP/1.1 100 Continue` within 5 s ({failure}); hyper sends it when the \
             request body is first read, so is the body read (streamed upstream)?"
        ))
    })?;
    ensure!(
        interim.status == 100,
        "sent the head of a POST with `Expect: 100-continue`: expected `100 Continue` before \
         the body, got `{}` — the request was answered without its body (is it forwarded?)",
        interim.head.start_line
    );
    wire.write(&body).await?;
    let mut answer = response(&mut wire, "POST", "the upload after 100 Continue").await?;
    // Another interim response may come (the origin's own 100, passed on).
    while answer.status == 100 {
        answer = response(&mut wire, "POST", "the upload after 100 Continue").await?;
    }
    ensure!(
        answer.status == 200,
        "the upload after 100 Continue got {}, expected 200",
        answer.status
    );
    let json = answer.json()?;
    let sha: String = Sha256::digest(&body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    ensure!(
        json["length"] == LENGTH && json["sha256"] == sha.as_str(),
        "sent {LENGTH} bytes after 100 Continue, the origin received {} (sha256 {})",
        json["length"],
        json["sha256"]
    );
    Ok(())
}

pub async fn http10_client(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    // An HTTP/1.0 client: no Host, no keep-alive, no chunked encoding. The
    // second path streams (the origin answers it chunked to HTTP/1.1).
    for (path, expected) in [
        ("/echo?v=1.0", None),
        (
            "/stream?n=3&interval_ms=0",
            Some("chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n"),
        ),
    ] {
        let what = format!("`GET {path} HTTP/1.0`");
        let mut wire = Wire::connect(proxy.addr).await?;
        wire.write(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await?;
        let answer = response(&mut wire, "GET", &what).await?;
        ensure!(
            answer.status == 200,
            "{what} (no Host header) got {}, expected 200",
            answer.status
        );
        ensure!(
            answer.framing != Framing::Chunked,
            "{what}: the response is chunked, which an HTTP/1.0 client cannot read: \
             without a length, the body must end with the connection"
        );
        match expected {
            None => {
                let echo = answer.json()?;
                ensure!(
                    echo["method"] == "GET" && echo["path"] == "/echo",
                    "{what}: the origin saw {} {}",
                    echo["method"],
                    echo["path"]
                );
            }
            Some(expected) => {
                ensure!(
                    answer.body == expected.as_bytes(),
                    "{what}: expected the body {expected:?}, got {:?}",
                    excerpt(&answer.body)
                );
            }
        }
        if answer.framing != Framing::Close {
            ensure!(
                wire.closes_within(5).await?,
                "{what}: after the response the connection stayed open for 5 s: an HTTP/1.0 \
                 request without `Connection: keep-alive` ends with its response"
            );
        }
    }
    Ok(())
}

pub async fn close_delimited_upstream(ctx: Ctx) -> Outcome {
    // About 100 KiB, several reads long, with a last line to spot a cut.
    let mut body = String::new();
    for i in 0..2500 {
        body.push_str(&format!("line {i:05} of a close-delimited body\n"));
    }
    body.push_str("the end\n");
    let reply = {
        let mut bytes =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".to_vec();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    };
    let upstream = Scripted::start(4, move |_| Reply {
        bytes: reply.clone(),
        close: true,
    })
    .await?;
    let proxy = ctx
        .spawn(&["--upstream", &format!("http://{}", upstream.addr)])
        .await?;
    let mut wire = Wire::connect(proxy.addr).await?;
    wire.write(b"GET /close-delimited HTTP/1.1\r\nHost: close\r\n\r\n")
        .await?;
    let answer = response(&mut wire, "GET", "GET /close-delimited").await?;
    ensure!(
        answer.status == 200,
        "the upstream answered 200 (a body ended by closing the connection), the client got {}",
        answer.status
    );
    ensure!(
        matches!(answer.framing, Framing::Length(_) | Framing::Chunked),
        "the upstream ended its body by closing; the proxy's response to the HTTP/1.1 client \
         has neither Content-Length nor chunked encoding, so the client cannot tell a whole \
         body from a cut one: frame it (hyper does, for a body whose size is unknown)"
    );
    ensure!(
        answer.body == body.as_bytes(),
        "the upstream sent {} bytes ending with \"the end\", the client got {} ending with {:?}",
        body.len(),
        answer.body.len(),
        String::from_utf8_lossy(&answer.body[answer.body.len().saturating_sub(40)..])
    );
    Ok(())
}

pub async fn no_request_smuggling(ctx: Ctx) -> Outcome {
    let mut upstream = Scripted::start(16, |seen| {
        let text = format!("the upstream saw {}\n", seen.head.start_line);
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            text.len()
        )
        .into_bytes();
        bytes.extend_from_slice(text.as_bytes());
        Reply {
            bytes,
            close: false,
        }
    })
    .await?;
    let proxy = ctx
        .spawn(&["--upstream", &format!("http://{}", upstream.addr)])
        .await?;

    // Each payload on a connection of its own: the answer (None: closed
    // without one), and whether the proxy then closed the connection.
    let mut answers = Vec::new();
    for payload in smuggling_payloads() {
        let mut wire = Wire::connect(proxy.addr).await?;
        // A proxy may answer 400 and close before reading it all.
        let _ = wire.write(&payload.bytes).await;
        // The one failure accepted: a connection closed without an answer
        // (a refusal, like a 400). A garbled answer or none within the
        // read timeout fails the check.
        let status = response_or_close(&mut wire, "POST", payload.name)
            .await
            .map_err(|failure| fail(format!("{}: {failure}", payload.name)))?
            .map(|answer| answer.status);
        let closed = match status {
            Some(_) => wire.closes_within(5).await,
            None => Ok(true),
        };
        answers.push((payload, status, closed));
    }

    // Close the proxy's side so that every upstream connection ends, then
    // judge by everything the upstream received, worst news first.
    drop(proxy);
    upstream.finish(15).await?;
    let (seen, problems) = (upstream.seen(), upstream.problems());
    let lines: Vec<&str> = seen.iter().map(|s| s.head.start_line.as_str()).collect();
    for (payload, _, _) in &answers {
        ensure!(
            !lines.iter().any(|line| line.contains(payload.hidden)),
            "{}: the upstream received `{}` as a request of its own (it saw {lines:?}): bytes \
             the client sent as one request's body became a second request — request \
             smuggling. With both Content-Length and Transfer-Encoding, Transfer-Encoding \
             wins; forward the decoded body with one framing, and close the client's \
             connection after answering",
            payload.name,
            payload.hidden
        );
    }
    ensure!(
        !seen.iter().any(|s| s.ambiguous),
        "the upstream received a request with both Content-Length and Transfer-Encoding \
         ({lines:?}): the upstream may pick the other framing than the proxy did — a chunked \
         request is forwarded without Content-Length"
    );
    ensure!(
        problems.is_empty(),
        "the upstream could not read what the proxy forwarded: {problems:?}"
    );
    for (payload, status, closed) in answers {
        let closed = closed.map_err(|failure| {
            fail(format!(
                "{}: after the answer, the proxy went on with what followed on the connection \
                 ({failure}): bytes after an ambiguous request must be dropped, by closing",
                payload.name
            ))
        })?;
        // RFC 9112 §6.3: after a request with both framings, the server
        // MUST close: what follows on the connection cannot be trusted.
        ensure!(
            closed,
            "{}: the proxy answered, then kept the connection open for 5 s; after a request \
             with both Content-Length and Transfer-Encoding the server must close it \
             (RFC 9112 §6.3), or the bytes that follow are read as the next request",
            payload.name
        );
        match status {
            Some(400..=499) | None => {}
            Some(status @ 200..=299) => {
                ensure!(
                    lines.iter().any(|line| line.contains(payload.front)),
                    "{}: the proxy answered {status} without forwarding `{}` (the upstream saw \
                     {lines:?}); expected a 400, or the request forwarded as one request",
                    payload.name,
                    payload.front
                );
            }
            Some(other) => {
                return Err(fail(format!(
                    "{}: expected a 400 (or the request forwarded as one), got {other}",
                    payload.name
                )));
            }
        }
    }
    Ok(())
}

/// A request that hides a second one, for a peer that frames it differently.
struct Payload {
    name: &'static str,
    /// The path of the request the client sent.
    front: &'static str,
    /// The path of the request hidden in it.
    hidden: &'static str,
    bytes: Vec<u8>,
}

fn smuggling_payloads() -> Vec<Payload> {
    let hidden = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: smuggled\r\n\r\n");
    let with_head = |front: &str, headers: &str, body: &str| {
        format!("POST {front} HTTP/1.1\r\nHost: smuggling\r\n{headers}\r\n{body}").into_bytes()
    };
    // CL.TE: by Content-Length the hidden request is body; by
    // Transfer-Encoding the body ends at `0`, and the hidden request follows.
    let clte_body = format!("0\r\n\r\n{}", hidden("/smuggled-clte"));
    // TE.CL: by Transfer-Encoding the hidden request is inside the chunk; by
    // Content-Length (4: the chunk-size line) it follows the body.
    let inner = hidden("/smuggled-tecl");
    let tecl_body = format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len());
    // TE.TE: `chunked` that is not the final coding, and an obfuscated name.
    let tete_body = format!("0\r\n\r\n{}", hidden("/smuggled-tete"));
    let space_body = format!("0\r\n\r\n{}", hidden("/smuggled-space"));
    vec![
        Payload {
            name: "CL.TE (Content-Length covers a `0` chunk and a second request)",
            front: "/front-clte",
            hidden: "/smuggled-clte",
            bytes: with_head(
                "/front-clte",
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    clte_body.len()
                ),
                &clte_body,
            ),
        },
        Payload {
            name: "TE.CL (Content-Length: 4, a chunk that holds a second request)",
            front: "/front-tecl",
            hidden: "/smuggled-tecl",
            bytes: with_head(
                "/front-tecl",
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                &tecl_body,
            ),
        },
        Payload {
            name: "TE.TE (Transfer-Encoding: chunked, then Transfer-Encoding: identity)",
            front: "/front-tete",
            hidden: "/smuggled-tete",
            bytes: with_head(
                "/front-tete",
                &format!(
                    "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: {}\r\n",
                    tete_body.len()
                ),
                &tete_body,
            ),
        },
        Payload {
            name: "`Transfer-Encoding : chunked` (a space before the colon)",
            front: "/front-space",
            hidden: "/smuggled-space",
            bytes: with_head(
                "/front-space",
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding : chunked\r\n",
                    space_body.len()
                ),
                &space_body,
            ),
        },
    ]
}

pub async fn many_keepalive_clients(ctx: Ctx) -> Outcome {
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 20;
    let proxy = ctx.proxy().await?;
    let addr = proxy.addr;
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        clients.spawn(async move {
            let mut connection = connect(addr).await?;
            for request in 0..REQUESTS {
                let path = format!("/echo?client={client}&request={request}");
                let response = within(10, "a response on a busy proxy", async {
                    connection
                        .send_request(get_request(addr, &path))
                        .await
                        .or_fail(&format!(
                            "client {client}, request {request} on its connection \
                             (closed after an earlier request?)"
                        ))
                })
                .await?;
                let reply = read(response).await?;
                ensure!(
                    reply.status == 200,
                    "client {client}, request {request}: got {}",
                    reply.status
                );
                let query = reply.json()?["query"].as_str().unwrap_or("").to_string();
                let expected = format!("client={client}&request={request}");
                ensure!(
                    query == expected,
                    "client {client} asked for {expected}, its connection answered {query:?}: \
                     a response went to the wrong connection or request"
                );
            }
            Ok::<(), Failure>(())
        });
    }
    within(15, "200 clients × 20 requests", async {
        while let Some(done) = clients.join_next().await {
            done.or_fail("a client task")??;
        }
        Ok(())
    })
    .await
}

pub async fn chunked_request_body(ctx: Ctx) -> Outcome {
    // Chunks of odd sizes, upper- and lower-case hex, a chunk extension:
    // all of it framing, none of it body.
    let sizes = [1usize, 0x1a, 0xFFF, 0x10000, 3];
    let body: Vec<u8> = (0..sizes.iter().sum::<usize>())
        .map(|i| (i % 251) as u8)
        .collect();
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut offset = 0;
    for (index, size) in sizes.iter().enumerate() {
        let size_line = match index {
            1 => format!("{size:x};name=value\r\n"),
            2 => format!("{size:X}\r\n"),
            _ => format!("{size:x}\r\n"),
        };
        request.extend_from_slice(size_line.as_bytes());
        request.extend_from_slice(&body[offset..offset + size]);
        request.extend_from_slice(b"\r\n");
        offset += size;
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let proxy = ctx.proxy().await?;
    let mut wire = Wire::connect(proxy.addr).await?;
    wire.write(&request).await?;
    let answer = response(&mut wire, "POST", "a chunked POST /upload").await?;
    ensure!(
        answer.status == 200,
        "a chunked upload (no Content-Length) got {}, expected 200",
        answer.status
    );
    let json = answer.json()?;
    let sha: String = Sha256::digest(&body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    ensure!(
        json["length"] == body.len() && json["sha256"] == sha.as_str(),
        "sent {} bytes in 5 chunks (one with an extension), the origin received {} bytes \
         (sha256 {}): chunk sizes, extensions and CRLFs are framing, only the chunk data is body",
        body.len(),
        json["length"],
        json["sha256"]
    );
    Ok(())
}

pub async fn absolute_form_target(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut wire = Wire::connect(proxy.addr).await?;
    // RFC 9112 §3.2.2: a server must accept the absolute form, and use its
    // path; the upstream is still the one the proxy forwards to.
    wire.write(
        b"GET http://absolute.example/echo?form=absolute HTTP/1.1\r\nHost: absolute.example\r\n\r\n",
    )
    .await?;
    let answer = response(&mut wire, "GET", "a request with an absolute-form target").await?;
    ensure!(
        answer.status == 200,
        "`GET http://absolute.example/echo?form=absolute` got {}, expected 200",
        answer.status
    );
    let echo = answer.json()?;
    ensure!(
        echo["path"] == "/echo" && echo["query"] == "form=absolute",
        "`GET http://absolute.example/echo?form=absolute`: the origin should see /echo?form=absolute, \
         it saw {}?{}: take the path and query of the target, whatever its form",
        echo["path"],
        echo["query"]
    );
    Ok(())
}
