//! Step 04 — the headers, both ways: the proxy passes each head on and
//! decides what does not cross; repeated headers stay repeated.
//!
//! `cargo run --bin 04-copy-headers`, then
//! `curl -i http://127.0.0.1:8080/headers` (two `Set-Cookie` lines).

use std::sync::Arc;

use workshop::cli;
use workshop::copy_headers::round_trip;
use workshop::listen_and_serve::serve;
use workshop::round_trip::Upstream;

#[tokio::main]
async fn main() {
    let args = cli::Args::parse();
    let listener = cli::listen(&args).await;
    let upstream = cli::upstream(&args).await;
    cli::try_this(
        &listener,
        &[
            "curl -i http://{addr}/headers",
            "curl -i http://{addr}/echo -H 'X-Multi: one' -H 'X-Multi: two'",
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
