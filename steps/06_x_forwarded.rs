//! Step 06 — X-Forwarded and the path problem: the upstream learns who
//! asked, and requests land under the upstream's base path.
//!
//! `cargo run --bin 06-x-forwarded -- --forwarded`, then
//! `curl -s http://127.0.0.1:8080/echo -H 'X-Forwarded-For: 1.2.3.4'`.
//! With a base path: `cargo run --bin origin` in one terminal,
//! `cargo run --bin 06-x-forwarded -- --upstream 'http://127.0.0.1:9000/echo/base?sta=tic'`
//! in another, and `curl -s 'http://127.0.0.1:8080/x?us=er'`.

use std::sync::Arc;

use clap::Parser;
use workshop::cli;
use workshop::copy_headers::round_trip;
use workshop::hop_by_hop::{strip_request, strip_response};
use workshop::listen_and_serve::serve;
use workshop::round_trip::Upstream;
use workshop::x_forwarded::{self, add_forwarded_headers, join_upstream_path, use_upstream_host};

#[derive(Parser)]
#[command(about = "Step 06 of the reverse-proxy workshop: X-Forwarded and the path problem")]
struct Args {
    #[command(flatten)]
    common: cli::Args,
    #[command(flatten)]
    forwarding: x_forwarded::Options,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = cli::listen(&args.common).await;
    let upstream = cli::upstream(&args.common).await;
    cli::try_this(
        &listener,
        &[
            "curl -s http://{addr}/echo -H 'X-Forwarded-For: 1.2.3.4'",
            "curl -s http://{addr}/echo -H 'Connection: X-Forwarded-For'",
        ],
    );

    // ANCHOR: main
    let upstream = Arc::new(Upstream::new(upstream));
    let options = Arc::new(args.forwarding);
    serve(listener, move |mut request| {
        let (upstream, options) = (upstream.clone(), options.clone());
        async move {
            // ANCHOR: order
            strip_request(request.headers_mut());
            // After the stripping: `Connection` cannot remove what we add.
            add_forwarded_headers(&mut request, "http", &options);
            if options.rewrite_host {
                use_upstream_host(&mut request, &upstream.uri);
            }
            join_upstream_path(&mut request, &upstream.uri);
            // ANCHOR_END: order
            let mut response = round_trip(&upstream, request).await;
            strip_response(response.headers_mut());
            response
        }
    })
    .await;
    // ANCHOR_END: main
}
