//! Step 01 — ListenAndServe: a server that describes every request it gets.
//!
//! `cargo run --bin 01-listen-and-serve`, then
//! `curl -i 'http://127.0.0.1:8080/hello?name=you' -H 'X-Hello: world'`.

use workshop::cli;
use workshop::listen_and_serve::{describe_request, serve};

#[tokio::main]
async fn main() {
    let args = cli::Args::parse();
    let listener = cli::listen(&args).await;
    if args.upstream.is_some() {
        println!("step 01 answers every request itself: --upstream is not used yet");
    }
    cli::try_this(
        &listener,
        &["curl -i 'http://{addr}/hello?name=you' -H 'X-Hello: world'"],
    );

    // ANCHOR: main
    serve(listener, describe_request).await;
    // ANCHOR_END: main
}
