//! A small HTTP/2 client on the `h2` crate: `cargo run --bin h2-client --
//! http://127.0.0.1:8080/grpc hello`.
//!
//! It speaks h2c (HTTP/2 without TLS, prior knowledge), sends a POST with
//! `te: trailers` like a gRPC client, ends its body with a trailer, and
//! prints the response: status, headers, body and trailers. (curl shows
//! response trailers too, but cannot send request trailers.) The demo of
//! step 09 needs nothing else.

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Request, Uri};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "POST over h2c and print the response, trailers included")]
struct Args {
    /// Where to send it: http://host:port/path
    url: Uri,
    /// The request body.
    #[arg(default_value = "hello")]
    body: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(err) = run(args).await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let authority = args
        .url
        .authority()
        .ok_or("the URL needs a host and port")?;
    let tcp = TcpStream::connect(authority.as_str()).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("connection: {err}");
        }
    });
    let mut client = client.ready().await?;

    let request = Request::post(args.url.clone())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (response, mut stream) = client.send_request(request, false)?;
    stream.send_data(Bytes::from(args.body), false)?;
    let mut trailers = HeaderMap::new();
    trailers.insert(
        "x-client-trailer",
        HeaderValue::from_static("sent after the body"),
    );
    stream.send_trailers(trailers)?;

    let response = response.await?;
    println!("{:?} {}", response.version(), response.status());
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
    Ok(())
}
