//! A small HTTP/2 client on the `h2` crate: `cargo run --bin h2-client --
//! http://127.0.0.1:8080/grpc hello`.
//!
//! It speaks h2c (HTTP/2 without TLS, prior knowledge) to an `http://`
//! URL, or HTTP/2 over TLS (ALPN `h2`) to an `https://` one, sends a POST
//! with `te: trailers` like a gRPC client, ends its body with a trailer, and
//! prints the response: status, headers, body and trailers. (curl shows
//! response trailers too, but cannot send request trailers.) The demo of
//! step 09 needs nothing else. Against a proxy started with `--tls`, add
//! `--insecure` (its certificate is self-signed) or `--cacert FILE`.

use std::path::PathBuf;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Request, Uri};
use tokio::io::{AsyncRead, AsyncWrite};
use workshop::tls::{self, Trust};

#[derive(Parser)]
#[command(about = "POST over HTTP/2 and print the response, trailers included")]
struct Args {
    /// Where to send it: http://host:port/path (h2c) or https://… (TLS)
    url: Uri,
    /// The request body.
    #[arg(default_value = "hello")]
    body: String,

    /// With https://, accept any certificate (like curl -k): for the
    /// self-signed one of `--tls`.
    #[arg(long, short = 'k')]
    insecure: bool,

    /// With https://, trust the certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    cacert: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(err) = run(args).await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

type Error = Box<dyn std::error::Error>;

async fn run(args: Args) -> Result<(), Error> {
    let tcp = tls::connect_tcp(&args.url).await?;
    if args.url.scheme_str() != Some("https") {
        return post(&args, tcp).await;
    }
    let trust = Trust::from_flags(args.insecure, args.cacert.clone());
    let stream = tls::connect_tls(tcp, &args.url, trust, &[b"h2"]).await?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the server did not agree to HTTP/2 (ALPN h2)".into());
    }
    post(&args, stream).await
}

/// The POST, its trailer, and the response printed, over `io`.
async fn post<I>(args: &Args, io: I) -> Result<(), Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await?;
    // The connection's own error, if any, reaches the request too: the
    // request reports it, once.
    tokio::spawn(connection);
    let mut client = client.ready().await?;

    let request = Request::post(args.url.clone())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (response, mut stream) = client.send_request(request, false)?;
    stream.send_data(Bytes::from(args.body.clone()), false)?;
    let mut trailers = HeaderMap::new();
    trailers.insert(
        "x-client-trailer",
        HeaderValue::from_static("sent after the body"),
    );
    stream.send_trailers(trailers)?;

    let response = response.await?;
    let status = response.status();
    println!("{:?} {status}", response.version());
    for (name, value) in response.headers() {
        println!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    let mut body = response.into_body();
    println!();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        // Flow control: tell the sender it may send this much more.
        let _ = body.flow_control().release_capacity(chunk.len());
        print!("{}", String::from_utf8_lossy(&chunk));
    }
    println!();
    match body.trailers().await? {
        Some(trailers) => {
            println!("trailers:");
            for (name, value) in &trailers {
                println!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
            }
        }
        None => println!("(no trailers)"),
    }
    // Like `curl --fail`: a script can tell an error status from success.
    match status.is_success() {
        true => Ok(()),
        false => Err(format!("the server answered {status}").into()),
    }
}
