//! Step 07 — trailers: what each side announced is announced again on the
//! other side, so trailers cross the proxy both ways.
//!
//! `cargo run --bin 07-trailers`, then
//! `curl --raw -s http://127.0.0.1:8080/trailers -H 'TE: trailers'`.

use std::sync::Arc;

use clap::Parser;
use workshop::cli;
use workshop::copy_headers::round_trip;
use workshop::hop_by_hop::{strip_request, strip_response};
use workshop::listen_and_serve::serve;
use workshop::round_trip::Upstream;
use workshop::trailers::{announce_trailers, announced_trailers, client_takes_trailers};
use workshop::x_forwarded::{self, add_forwarded_headers, join_upstream_path, use_upstream_host};

#[derive(Parser)]
#[command(about = "Step 07 of the reverse-proxy workshop: trailers")]
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
            "curl --raw -s http://{addr}/trailers -H 'TE: trailers'",
            "curl --raw -s http://{addr}/trailers",
        ],
    );

    // ANCHOR: main
    let upstream = Arc::new(Upstream::new(upstream));
    let options = Arc::new(args.forwarding);
    serve(listener, move |mut request| {
        let (upstream, options) = (upstream.clone(), options.clone());
        async move {
            // ANCHOR: trailers
            // Read before stripping: `Trailer` is a hop-by-hop header.
            let request_trailers = announced_trailers(request.version(), request.headers());
            let takes_trailers = client_takes_trailers(request.headers());
            strip_request(request.headers_mut());
            announce_trailers(request.headers_mut(), request_trailers);
            // ANCHOR_END: trailers
            add_forwarded_headers(&mut request, "http", &options);
            if options.rewrite_host {
                use_upstream_host(&mut request, &upstream.uri);
            }
            join_upstream_path(&mut request, &upstream.uri);

            // ANCHOR: trailers
            let mut response = round_trip(&upstream, request).await;
            let response_trailers = announced_trailers(response.version(), response.headers());
            strip_response(response.headers_mut());
            // Announcing trailers to a client that cannot read them would be
            // a promise hyper will not keep.
            if takes_trailers {
                announce_trailers(response.headers_mut(), response_trailers);
            }
            // ANCHOR_END: trailers
            response
        }
    })
    .await;
    // ANCHOR_END: main
}
