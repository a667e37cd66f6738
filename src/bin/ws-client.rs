//! A WebSocket client for the terminal: `cargo run --bin ws-client --
//! ws://127.0.0.1:8080/ws`, then type lines; each is sent as a text message
//! and whatever comes back is printed. Ctrl-D closes the WebSocket properly
//! (a close frame, then the close handshake).

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser)]
#[command(about = "Send lines from stdin over a WebSocket, print what comes back")]
struct Args {
    /// ws://host:port/path
    url: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(err) = run(&args.url).await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let request = url.into_client_request()?;
    let authority = request
        .uri()
        .authority()
        .ok_or("the URL needs a host and port")?;
    let tcp = TcpStream::connect(authority.as_str()).await?;
    let (socket, response) = tokio_tungstenite::client_async(request, tcp).await?;
    eprintln!(
        "connected: {} ({} to type, Ctrl-D to close)",
        response.status(),
        url
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
        Message::Close(frame) => println!("< close {frame:?}"),
        other => println!("< {other:?}"),
    }
}
