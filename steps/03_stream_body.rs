//! Step 03 — stream the bodies: frames pass as they arrive, in both
//! directions, in bounded memory.
//!
//! `cargo run --bin 03-stream-body`, then watch the chunks arrive one by one:
//! `curl -N 'http://127.0.0.1:8080/stream?n=5&interval_ms=500'`.

use std::sync::Arc;

use workshop::cli;
use workshop::listen_and_serve::serve;
use workshop::round_trip::Upstream;
use workshop::stream_body::round_trip;

#[tokio::main]
async fn main() {
    let args = cli::Args::parse();
    let listener = cli::listen(&args).await;
    let upstream = cli::upstream(&args).await;
    cli::try_this(
        &listener,
        &[
            "curl -N 'http://{addr}/stream?n=5&interval_ms=500'",
            "# 1 GiB through the proxy, counted:",
            "curl -s 'http://{addr}/big?mb=1024' -o /dev/null -w '%{size_download} bytes\\n'",
        ],
    );

    // ANCHOR: main
    let upstream = Arc::new(Upstream::new(upstream));
    serve(listener, move |request| {
        let upstream = upstream.clone();
        async move { round_trip(&upstream, request).await }
    })
    .await;
    // ANCHOR_END: main
}
