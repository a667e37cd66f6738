//! Step 14: hardened. A slow client is cut off, a shutdown finishes what
//! is in flight, a flood of connections waits its turn, a body over the
//! limit is a 413: each set by a flag (the config file's `[timeouts]`,
//! `[limits]` and `[shutdown]` from step 17 on).

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::ensure;
use crate::harness::client::{connect_h2, excerpt, get, h2_request};
use crate::harness::raw::{read_response, send_slowly};
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

/// The step in front of the demo origin, with `flags`.
async fn hardened(ctx: &Ctx, flags: &[&str]) -> Result<Proxy, Failure> {
    let upstream = format!("http://{}", ctx.origin);
    let mut args = vec!["--upstream", upstream.as_str()];
    args.extend_from_slice(flags);
    ctx.spawn_ready(&args, "routes:", &flags.join(" ")).await
}

/// A client that sends its request head one byte every 40 ms is cut off
/// after `--header-read-timeout` (1 s here), long before it is done; one that sends
/// nothing is closed as soon; one that asked to upgrade, and was answered
/// without a 101, is still timed.
pub async fn slowloris_cut_off(ctx: Ctx) -> Outcome {
    let proxy = hardened(&ctx, &["--header-read-timeout", "1s"]).await?;
    let (mut read, mut write) = TcpStream::connect(proxy.addr)
        .await
        .or_fail("connecting")?
        .into_split();
    let head = b"GET /echo HTTP/1.1\r\nhost: slow.example\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // 25 bytes a second: this head would take about 4 s to send.
    let cut = within(10, "the proxy to cut the slow client off", async {
        Ok(send_slowly(&mut write, &mut read, head, Duration::from_millis(40)).await)
    })
    .await?;
    ensure!(
        cut,
        "a client sending its request head one byte at a time (4 s in all) should be cut off \
         after --header-read-timeout (1 s), not served"
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
        "a connection that sends nothing should be closed after --header-read-timeout"
    );
    // Asking to switch protocols is not switching: after an Upgrade the
    // origin ignores, the next head on the connection is timed like any other.
    let (read, mut write) = TcpStream::connect(proxy.addr)
        .await
        .or_fail("connecting")?
        .into_split();
    let mut reader = BufReader::new(read);
    let asking = b"GET /echo HTTP/1.1\r\nhost: slow.example\r\nconnection: upgrade\r\nupgrade: slowloris\r\n\r\n";
    write.write_all(asking).await.or_fail("sending")?;
    let refused = within(
        10,
        "the answer to an Upgrade the origin ignores",
        read_response(&mut reader, false),
    )
    .await?;
    ensure!(
        refused.status != 101,
        "the origin's /echo does not switch protocols, yet the client got a 101"
    );
    let cut = within(10, "the proxy to cut the slow head off", async {
        Ok(send_slowly(&mut write, &mut reader, head, Duration::from_millis(40)).await)
    })
    .await
    .unwrap_or(false);
    ensure!(
        cut,
        "after a request asking to upgrade, answered {}, a head sent one byte every 40 ms \
         should still be cut off after --header-read-timeout (1 s): asking to switch \
         protocols is not switching",
        refused.status
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
    let mut proxy = hardened(&ctx, &["--shutdown-grace", "20s"]).await?;
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

/// With `--max-connections 2`, a third connection waits (in the backlog,
/// as do twenty more: the proxy holds no socket for them) until one of the
/// two closes, then is served.
pub async fn connection_limit_waits(ctx: Ctx) -> Outcome {
    let proxy = hardened(&ctx, &["--max-connections", "2"]).await?;
    let first = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let second = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    let mut third = tokio::spawn(raw_get(proxy.addr));
    // A second to see that the third is not served while two are open.
    let early = tokio::time::timeout(Duration::from_secs(1), &mut third).await;
    ensure!(
        early.is_err(),
        "with --max-connections 2 and two connections open, a third should wait, but it was \
         served: does the proxy take a permit before it accepts?"
    );
    // Twenty more: they wait in the kernel's backlog, not in the proxy,
    // which would hold a socket (a descriptor) for each.
    if let Some(pid) = proxy.pid() {
        let before = open_files(pid);
        let mut waiting = Vec::new();
        for _ in 0..20 {
            waiting.push(TcpStream::connect(proxy.addr).await.or_fail("connecting")?);
        }
        // A second to see that the proxy does not take them (bounded: 20
        // looks, 50 ms apart).
        let mut most = before;
        for _ in 0..20 {
            most = most.max(open_files(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(
            most < before + 10,
            "with --max-connections 2 and two connections open, 20 more clients should wait in \
             the kernel's backlog; the proxy opened {} descriptors meanwhile: does it accept \
             first, and wait for a permit after? Then it holds a socket for every client that \
             waits",
            most - before
        );
    }
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

/// How many files (sockets included) process `pid` has open.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count())
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

/// `--max-request-body`: a body announced bigger is a 413 at once; a chunked
/// one is counted while it streams and cut at the limit (a 413 too); one
/// under the limit goes through.
pub async fn request_body_limit_413(ctx: Ctx) -> Outcome {
    let proxy = hardened(&ctx, &["--max-request-body", "1024"]).await?;
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
            "with --max-request-body 1024, a body {what} should get a {status}, got {:?}",
            excerpt(answer)
        );
    }
    Ok(())
}

/// A request body the client broke (a chunk size of `-1` or of 17 hex
/// digits, a 100 KiB chunk extension, 10,000 trailer lines) is the
/// client's fault: a 400, as nginx answers, never a 502 that blames the
/// upstream (which waits for the whole body before it answers).
pub async fn broken_request_body_400(ctx: Ctx) -> Outcome {
    let proxy = hardened(&ctx, &[]).await?;
    let trailers = "x-t: 1\r\n".repeat(10_000);
    let extension = format!("5;{}\r\nhello\r\n", "e".repeat(100 * 1024));
    let bodies = [
        ("a chunk size of -1", "5\r\nhello\r\n-1\r\n".to_string()),
        (
            "a chunk size of 17 hex digits",
            "5\r\nhello\r\n1ffffffffffffffff\r\n".into(),
        ),
        ("a 100 KiB chunk extension", extension),
        (
            "10,000 trailer lines",
            format!("5\r\nhello\r\n0\r\n{trailers}\r\n"),
        ),
    ];
    for (what, body) in bodies {
        let mut tcp = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
        let head = "POST /upload HTTP/1.1\r\nhost: broken.example\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        // The proxy may answer and close before reading it all.
        let _ = tcp.write_all(format!("{head}{body}").as_bytes()).await;
        let mut reader = BufReader::new(tcp);
        let answer = within(10, "an answer", read_response(&mut reader, false)).await;
        let status = answer.map(|answer| answer.status);
        ensure!(
            matches!(status, Ok(400)),
            "a request body with {what} is the client's fault: expected 400 Bad Request (a \
             502 blames the upstream, in the log and the metrics), got {status:?}"
        );
    }
    Ok(())
}

/// `--header-read-timeout 1s`, `--keep-alive 4s`: a keep-alive connection idle for
/// 2 s still serves (waiting is not a head); a head then sent a byte every
/// 40 ms on it is cut off after 1 s; a connection left idle is closed
/// after 4 s, not 1, and so is one whose answer streamed for 5 s.
pub async fn keep_alive_apart_from_header_read(ctx: Ctx) -> Outcome {
    let proxy = hardened(&ctx, &["--header-read-timeout", "1s", "--keep-alive", "4s"]).await?;
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
    // Pacing, not synchronisation: idle for twice the head deadline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    write.write_all(request).await.or_fail("sending")?;
    let second = within(10, "the second answer", read_response(&mut reader, false))
        .await
        .map_err(|failure| {
            fail(format!(
                "after 2 s idle (--header-read-timeout 1s, --keep-alive 4s), the keep-alive connection \
                 should still serve: the wait for a request is not a request head ({failure})"
            ))
        })?;
    ensure!(
        second.status == 200,
        "the second request got {}",
        second.status
    );
    // A slow head on the same connection: the head deadline counts from its first byte.
    let slow =
        b"GET /echo HTTP/1.1\r\nhost: slow.example\r\nx-padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let cut = within(10, "the proxy to cut the slow head off", async {
        Ok(send_slowly(&mut write, &mut reader, slow, Duration::from_millis(40)).await)
    })
    .await?;
    ensure!(
        cut,
        "a second request head sent a byte every 40 ms (about 3 s in all) on a keep-alive \
         connection should be cut off after --header-read-timeout (1 s), not served"
    );
    // A connection left idle after its answer is closed after keep_alive;
    // so is one whose answer streamed for longer than keep_alive (not cut
    // meanwhile: a response in flight is not idleness).
    let (short, long) = tokio::join!(
        idle_after(proxy.addr, "/echo"),
        idle_after(proxy.addr, "/stream?n=6&interval_ms=1000"),
    );
    for ((took, idle), what) in [(short?, "an answer"), (long?, "a 5 s stream")] {
        ensure!(
            idle >= Duration::from_millis(3500),
            "an idle keep-alive connection should be closed after keep_alive (4 s), not before: \
             after {what} ({took:?}), closed after {idle:?}"
        );
    }
    Ok(())
}

/// One request for `target` on a new connection, its answer read whole:
/// how long that took, then how long until the proxy closed the idle
/// connection (at most 10 s).
async fn idle_after(addr: SocketAddr, target: &str) -> Result<(Duration, Duration), Failure> {
    let (read, mut write) = TcpStream::connect(addr)
        .await
        .or_fail("connecting")?
        .into_split();
    let mut reader = BufReader::new(read);
    let request = format!("GET {target} HTTP/1.1\r\nhost: keep.example\r\n\r\n");
    let asked = tokio::time::Instant::now();
    write
        .write_all(request.as_bytes())
        .await
        .or_fail("sending")?;
    let answer = within(20, "an answer", read_response(&mut reader, false)).await?;
    ensure!(answer.status == 200, "GET {target} got {}", answer.status);
    let (took, idle) = (asked.elapsed(), tokio::time::Instant::now());
    let mut rest = Vec::new();
    within(
        10,
        "the idle connection to be closed (--keep-alive 4s)",
        async {
            let _ = reader.read_to_end(&mut rest).await;
            Ok(())
        },
    )
    .await?;
    ensure!(
        rest.is_empty(),
        "after its answer to GET {target}, an idle connection sent {} more bytes",
        rest.len()
    );
    Ok((took, idle.elapsed()))
}
