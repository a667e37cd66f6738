//! Step 05 — hop-by-hop headers: stripped in both directions, around the
//! round trip of step 04.
//!
//! `cargo run --bin 05-hop-by-hop`, then see what the origin receives:
//! `curl -s http://127.0.0.1:8080/echo -H 'Connection: X-Secret' -H 'X-Secret: 1' -H 'Keep-Alive: timeout=5'`.

use std::sync::Arc;

use workshop::cli;
use workshop::copy_headers::round_trip;
use workshop::hop_by_hop::{strip_request, strip_response};
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
            "curl -s http://{addr}/echo -H 'Connection: X-Secret' -H 'X-Secret: 1' -H 'Keep-Alive: timeout=5'",
            "curl -s http://{addr}/echo -H 'TE: trailers, deflate' -H 'Trailers: end-to-end'",
        ],
    );

    // ANCHOR: main
    let upstream = Arc::new(Upstream::new(upstream));
    serve(listener, move |mut request| {
        let upstream = upstream.clone();
        async move {
            strip_request(request.headers_mut());
            let mut response = round_trip(&upstream, request).await;
            strip_response(response.headers_mut());
            response
        }
    })
    .await;
    // ANCHOR_END: main
}
