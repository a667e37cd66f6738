//! A WebSocket client for the terminal: `cargo run --bin ws-client --
//! ws://127.0.0.1:8080/ws`, then type lines; each is sent as a text message
//! and whatever comes back is printed. Ctrl-D closes the WebSocket properly
//! (a close frame, then the close handshake).
//!
//! `wss://` works too: against a proxy started with `--tls`, add
//! `--insecure` (its certificate is self-signed, as curl's `-k` says) or
//! `--cacert FILE`.

use std::path::PathBuf;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use workshop::tls::{self, Trust};

#[derive(Parser)]
#[command(about = "Send lines from stdin over a WebSocket, print what comes back")]
struct Args {
    /// ws://host:port/path or wss://host:port/path
    url: String,

    /// With wss://, accept any certificate (like curl -k): for the
    /// self-signed one of `--tls`.
    #[arg(long, short = 'k')]
    insecure: bool,

    /// With wss://, trust the certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    cacert: Option<PathBuf>,
}

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(err) = run(args).await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let request = args.url.as_str().into_client_request()?;
    let uri = request.uri().clone();
    let tcp = tls::connect_tcp(&uri).await?;
    if uri.scheme_str() != Some("wss") {
        return talk(request, tcp, &args.url).await;
    }
    let trust = Trust::from_flags(args.insecure, args.cacert);
    let stream = tls::connect_tls(tcp, &uri, trust, &[b"http/1.1"]).await?;
    talk(request, stream, &args.url).await
}

/// The WebSocket handshake over `stream`, then lines out, messages in.
async fn talk<S>(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    stream: S,
    url: &str,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|err| match err {
            // Bytes that are not HTTP: most likely TLS, from a `--tls` proxy.
            tokio_tungstenite::tungstenite::Error::Http(_)
            | tokio_tungstenite::tungstenite::Error::HttpFormat(_)
                if url.starts_with("ws://") =>
            {
                format!("{err} (a proxy started with --tls? use wss://… --insecure)")
            }
            err => err.to_string(),
        })?;
    eprintln!(
        "connected to {url} ({}): type lines, Ctrl-D to close",
        response.status()
    );
    let (mut sender, mut receiver) = socket.split();

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => sender.send(Message::text(line)).await?,
                None => {
                    sender.send(Message::Close(None)).await?;
                    break;
                }
            },
            message = receiver.next() => match message {
                Some(message) => print_message(message?),
                None => return Ok(()),
            },
        }
    }
    // Read until the server answers our close.
    while let Some(message) = receiver.next().await {
        print_message(message?);
    }
    Ok(())
}

fn print_message(message: Message) {
    match message {
        Message::Text(text) => println!("< {text}"),
        Message::Binary(bytes) => println!("< {} bytes of binary", bytes.len()),
        Message::Ping(_) | Message::Pong(_) => {}
        Message::Close(frame) => eprintln!("closed{}", describe_close(frame)),
        Message::Frame(_) => {}
    }
}

fn describe_close(frame: Option<CloseFrame>) -> String {
    match frame {
        None => String::new(),
        Some(frame) if frame.reason.is_empty() => format!(" ({})", u16::from(frame.code)),
        Some(frame) => format!(" ({}: {})", u16::from(frame.code), frame.reason),
    }
}
