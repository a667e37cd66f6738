//! Step 02 — RoundTrip: every request goes to the upstream; the answer is
//! its status and (collected) body.
//!
//! `cargo run --bin 02-round-trip` (starts the demo origin), then
//! `curl -i http://127.0.0.1:8080/echo`.

use std::sync::Arc;

use workshop::cli;
use workshop::listen_and_serve::serve;
use workshop::round_trip::{Upstream, round_trip};

#[tokio::main]
async fn main() {
    let args = cli::Args::parse();
    let listener = cli::listen(&args).await;
    let upstream = cli::upstream(&args).await;
    cli::try_this(
        &listener,
        &[
            "curl -i http://{addr}/echo",
            "# the upstream's status, as it came: a 418",
            "curl -i http://{addr}/status/418",
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
