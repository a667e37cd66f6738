//! Step 09 — HTTP/2: HTTP/1.1 and HTTP/2 on one port (h2c, or TLS with
//! ALPN), translated for an HTTP/1.1 upstream, or h2c all the way for gRPC.
//!
//! `cargo run --bin 09-http2`, then
//! `curl --http2-prior-knowledge -s http://127.0.0.1:8080/echo`;
//! `cargo run --bin 09-http2 -- --tls` and `curl -k --http2 https://127.0.0.1:8080/echo`;
//! `cargo run --bin 09-http2 -- --upstream-http2` and
//! `cargo run --bin h2-client -- http://127.0.0.1:8080/grpc hello`.

use std::sync::Arc;

use clap::Parser;
use workshop::cli;
use workshop::copy_headers::round_trip;
use workshop::hop_by_hop::{strip_request, strip_response};
use workshop::http2::{self, h2_to_h1, scheme_of, serve};
use workshop::streaming::{self, notice_when_sent, with_deadline};
use workshop::trailers::{announce_trailers, announced_trailers, client_takes_trailers};
use workshop::x_forwarded::{self, add_forwarded_headers, join_upstream_path, use_upstream_host};

#[derive(Parser)]
#[command(about = "Step 09 of the reverse-proxy workshop: HTTP/2")]
struct Args {
    #[command(flatten)]
    common: cli::Args,
    #[command(flatten)]
    forwarding: x_forwarded::Options,
    #[command(flatten)]
    streaming: streaming::Options,
    #[command(flatten)]
    http2: http2::Options,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // A bad certificate is an error before we listen, not after.
    let (listener, tls) = http2::listen(&args.common, &args.http2).await;
    let upstream = cli::upstream(&args.common).await;
    let mut tries = vec![match args.http2.uses_tls() {
        true => "{curl} -s --http2 {url}/echo -o /dev/null -w 'HTTP/%{http_version}\\n'",
        false => "{curl} -s --http2-prior-knowledge {url}/echo",
    }];
    if args.http2.upstream_http2 {
        tries.push("# gRPC over HTTP/2 end to end, request and response trailers:");
        tries.push("cargo run --bin h2-client -- {url}/grpc hello{insecure}");
    }
    cli::try_this_over(&listener, args.http2.uses_tls(), &tries);

    // ANCHOR: main
    // ANCHOR: pipeline
    let builder = http2::builder();
    let upstream = Arc::new(http2::upstream(upstream, args.http2.upstream_http2));
    let (options, timeout) = (Arc::new(args.forwarding), args.streaming.upstream_timeout);
    serve(listener, tls, builder, move |mut request| {
        let (upstream, options) = (upstream.clone(), options.clone());
        async move {
            h2_to_h1(&mut request);
            let request_trailers = announced_trailers(request.version(), request.headers());
            let takes_trailers = client_takes_trailers(request.headers());
            strip_request(request.headers_mut());
            announce_trailers(request.headers_mut(), request_trailers);
            let scheme = scheme_of(&request);
            add_forwarded_headers(&mut request, scheme, &options);
            // ANCHOR_END: pipeline
            if options.rewrite_host {
                use_upstream_host(&mut request, &upstream.uri);
            }
            join_upstream_path(&mut request, &upstream.uri);

            let (request, sent) = notice_when_sent(request);
            let round_trip = round_trip(&upstream, request);
            let mut response = with_deadline(timeout, sent, &upstream.uri, round_trip).await;
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
