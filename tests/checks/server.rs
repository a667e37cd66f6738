//! Step 01: a server that answers HTTP/1.1, one task per connection.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::ensure;
use crate::harness::client::{connect, excerpt, get, get_request};
use crate::harness::{Ctx, OrFail, Outcome, within};

pub async fn answers_http11(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut request = get_request(proxy.addr, "/echo?x=1");
    request
        .headers_mut()
        .insert("x-hello", "world".parse().or_fail("header value")?);
    let reply = crate::harness::client::fetch(proxy.addr, request).await?;
    ensure!(reply.status == 200, "expected 200 OK, got {}", reply.status);
    let page = reply.text().to_lowercase();
    for needle in ["get", "/echo", "x=1", "x-hello", "world"] {
        ensure!(
            page.contains(needle),
            "the page should show the request's method, path, query and headers; {needle:?} is missing from:\n{}",
            excerpt(&page)
        );
    }
    Ok(())
}

pub async fn keep_alive(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let mut connection = connect(proxy.addr).await?;
    for attempt in ["first", "second"] {
        let response = within(10, "a response on the same connection", async {
            connection
                .send_request(get_request(proxy.addr, "/echo"))
                .await
                .or_fail(&format!(
                    "the {attempt} request on one connection failed (closed after one request?)"
                ))
        })
        .await?;
        let reply = crate::harness::client::read(response).await?;
        ensure!(
            reply.status == 200,
            "the {attempt} request got {}",
            reply.status
        );
    }
    Ok(())
}

pub async fn one_task_per_connection(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    // Half a request, kept open: a server that serves connections one after
    // the other is now stuck reading it.
    let mut stuck = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
    stuck
        .write_all(b"GET /echo HTTP/1.1\r\nHost: stuck\r\n")
        .await
        .or_fail("writing half a request")?;
    let reply = within(5, "an answer on a second connection", async {
        get(proxy.addr, "/echo").await
    })
    .await
    .map_err(|_| {
        crate::harness::fail(
            "a second connection got no answer while the first sent half a request: \
             is each connection served on its own task (tokio::spawn)?",
        )
    })?;
    ensure!(
        reply.status == 200,
        "the second connection got {}",
        reply.status
    );
    drop(stuck);
    Ok(())
}

pub async fn invalid_upstream_exits_2(ctx: Ctx) -> Outcome {
    let (code, stderr) = ctx
        .run_to_exit(&["--listen", "127.0.0.1:0", "--upstream", "not a url"])
        .await?;
    ensure!(
        code == Some(2),
        "`--upstream 'not a url'` should stop the program at once with exit code 2 (a usage error), got {code:?}"
    );
    ensure!(
        stderr.contains("--upstream"),
        "the error should name the --upstream flag; stderr was:\n{}",
        excerpt(&stderr)
    );
    Ok(())
}
