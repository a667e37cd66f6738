//! Step 07: trailers cross the proxy, both ways, announced again after the
//! hop-by-hop headers are gone.

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::ensure;
use crate::harness::raw::read_response;
use crate::harness::{Ctx, OrFail, Outcome, within};

/// `GET /trailers` over HTTP/1.1, with these `TE` values (none if empty),
/// read as it came: chunks, trailers.
pub async fn fetch_trailers(
    addr: std::net::SocketAddr,
    te: &str,
) -> Result<crate::harness::raw::RawResponse, crate::harness::Failure> {
    within(10, "the /trailers response", async {
        let mut stream = TcpStream::connect(addr).await.or_fail("connecting")?;
        let te = match te {
            "" => String::new(),
            te => format!("TE: {te}\r\n"),
        };
        let request = format!("GET /trailers HTTP/1.1\r\nHost: trailers\r\n{te}\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .or_fail("sending the request")?;
        read_response(&mut BufReader::new(stream), false).await
    })
    .await
}

pub async fn response_trailers(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let response = fetch_trailers(proxy.addr, "trailers, deflate;q=0.5").await?;
    let received_te = response.header("x-received-te");
    ensure!(
        received_te == ["trailers"],
        "the client sent TE: trailers, deflate;q=0.5 and the origin received TE {received_te:?}: \
         only `TE: trailers` may cross (it is hop-by-hop otherwise)"
    );
    let announced = response.header("trailer").join(", ").to_ascii_lowercase();
    let checksum = response.trailer("x-body-sha256");
    let status = response.trailer("x-origin-status");
    ensure!(
        response.chunked
            && announced.contains("x-body-sha256")
            && checksum.len() == 1
            && status == ["done"],
        "the origin announced `Trailer: x-body-sha256, x-origin-status` and sent both after its body; \
         the client got Trailer: {announced:?} and trailers {:?}. hyper sends only announced trailers, \
         and only to a client that sent TE: trailers: announce them again after stripping",
        response.trailers
    );
    Ok(())
}

pub async fn request_trailers(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let response = within(10, "the /echo response", async {
        let mut stream = TcpStream::connect(proxy.addr).await.or_fail("connecting")?;
        stream
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: trailers\r\nTransfer-Encoding: chunked\r\n\
                  Trailer: X-Upload-Sum\r\nKeep-Alive: timeout=5\r\n\r\n\
                  5\r\nhello\r\n0\r\nX-Upload-Sum: 42\r\n\r\n",
            )
            .await
            .or_fail("sending the request")?;
        read_response(&mut BufReader::new(stream), false).await
    })
    .await?;
    let echo: serde_json::Value = serde_json::from_slice(&response.body)
        .or_fail("expected the origin's JSON echo of the upload")?;
    let has = |list: &str, name: &str| {
        echo[list]
            .as_array()
            .is_some_and(|pairs| pairs.iter().any(|pair| pair[0] == name))
    };
    ensure!(
        !has("headers", "keep-alive"),
        "the upstream received Keep-Alive, a hop-by-hop header: strip the request's hop-by-hop headers"
    );
    ensure!(
        echo["body_length"] == 5 && has("trailers", "x-upload-sum"),
        "the client uploaded `hello` with the announced trailer X-Upload-Sum: 42; the origin got {} bytes \
         and trailers {}: announce the request's trailers again after stripping `Trailer`",
        echo["body_length"],
        echo["trailers"]
    );
    Ok(())
}

pub async fn no_trailer_promise_without_te(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let response = fetch_trailers(proxy.addr, "").await?;
    ensure!(
        response.header("trailer").is_empty(),
        "the client did not send TE: trailers, so it will get no trailers; announcing them \
         (Trailer: {:?}) is a promise nobody keeps",
        response.header("trailer")
    );
    ensure!(
        response.body.starts_with(b"the body comes first"),
        "the body of /trailers did not arrive intact"
    );
    Ok(())
}
