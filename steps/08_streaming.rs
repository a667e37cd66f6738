//! Step 08 — streaming: every chunk passes at once, a client that leaves
//! cancels the upstream request, a slow upstream gets a 504.
//!
//! `cargo run --bin 08-streaming`, then watch server-sent events arrive one
//! by one: `curl -N 'http://127.0.0.1:8080/sse?n=10&interval_ms=300'`.

use std::sync::Arc;

use clap::Parser;
use workshop::cli;
use workshop::copy_headers::round_trip;
use workshop::hop_by_hop::{strip_request, strip_response};
use workshop::listen_and_serve::serve;
use workshop::streaming::{self, notice_when_sent, streaming_upstream, with_deadline};
use workshop::trailers::{announce_trailers, announced_trailers, client_takes_trailers};
use workshop::x_forwarded::{self, add_forwarded_headers, join_upstream_path, use_upstream_host};

#[derive(Parser)]
#[command(about = "Step 08 of the reverse-proxy workshop: streaming")]
struct Args {
    #[command(flatten)]
    common: cli::Args,
    #[command(flatten)]
    forwarding: x_forwarded::Options,
    #[command(flatten)]
    streaming: streaming::Options,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = cli::listen(&args.common).await;
    let upstream = cli::upstream(&args.common).await;
    let timeout_note = format!(
        "# a 504 after --upstream-timeout ({} s):",
        args.streaming.upstream_timeout.as_secs_f64()
    );
    cli::try_this(
        &listener,
        &[
            "curl -N 'http://{addr}/sse?n=10&interval_ms=300'",
            &timeout_note,
            "curl -i 'http://{addr}/slow?ms=600000'",
        ],
    );

    // ANCHOR: main
    let upstream = Arc::new(streaming_upstream(upstream));
    let (options, timeout) = (Arc::new(args.forwarding), args.streaming.upstream_timeout);
    serve(listener, move |mut request| {
        let (upstream, options) = (upstream.clone(), options.clone());
        async move {
            let request_trailers = announced_trailers(request.version(), request.headers());
            let takes_trailers = client_takes_trailers(request.headers());
            strip_request(request.headers_mut());
            announce_trailers(request.headers_mut(), request_trailers);
            add_forwarded_headers(&mut request, "http", &options);
            if options.rewrite_host {
                use_upstream_host(&mut request, &upstream.uri);
            }
            join_upstream_path(&mut request, &upstream.uri);

            // ANCHOR: deadline_call
            let (request, sent) = notice_when_sent(request);
            let round_trip = round_trip(&upstream, request);
            let mut response = with_deadline(timeout, sent, &upstream.uri, round_trip).await;
            // ANCHOR_END: deadline_call
            let response_trailers = announced_trailers(response.version(), response.headers());
            strip_response(response.headers_mut());
            if takes_trailers {
                announce_trailers(response.headers_mut(), response_trailers);
            }
            response
        }
    })
    .await;
    // ANCHOR_END: main
}
