//! Step 10 — WebSocket: an upgrade request is noticed before the hop-by-hop
//! headers go, asked for again upstream, and on `101` the two connections
//! are spliced; a `101` nobody asked for is a 502.
//!
//! `cargo run --bin 10-websocket`, then `cargo run --bin ws-client --
//! ws://127.0.0.1:8080/ws` and type lines. HTTP/2 clients get WebSocket too
//! (RFC 8441 extended CONNECT), bridged to the HTTP/1.1 upstream.

use std::sync::Arc;

use clap::Parser;
use workshop::cli;
use workshop::copy_headers::round_trip;
use workshop::hop_by_hop::{strip_request, strip_response};
use workshop::http2::{self, h2_to_h1, scheme_of, serve};
use workshop::streaming::{self, notice_when_sent, with_deadline};
use workshop::trailers::{announce_trailers, announced_trailers, client_takes_trailers};
use workshop::websocket::{
    bridge_extended_connect, extended_connect, refuse_unasked_switch, requested_upgrade,
    restore_upgrade, tunnel,
};
use workshop::x_forwarded::{self, add_forwarded_headers, join_upstream_path, use_upstream_host};

#[derive(Parser)]
#[command(about = "Step 10 of the reverse-proxy workshop: WebSocket")]
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
    cli::try_this_over(
        &listener,
        args.http2.uses_tls(),
        &[
            "# type lines, each comes back; Ctrl-D to close:",
            "cargo run --bin ws-client -- {ws}/ws{insecure}",
            "# the handshake, then the open connection (Ctrl-C to quit):",
            "{curl} -iN --http1.1 {url}/ws -H 'Connection: upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='",
        ],
    );

    // ANCHOR: main
    // ANCHOR: connect_protocol
    let mut builder = http2::builder();
    // RFC 8441: tell HTTP/2 clients they may open WebSockets.
    builder.http2().enable_connect_protocol();
    // ANCHOR_END: connect_protocol
    // ANCHOR: upgrades_client
    // An upgrade exists only in HTTP/1.1: with --upstream-http2 too, the
    // upgrades go upstream over HTTP/1.1, on a client of their own.
    let upgrades = Arc::new(http2::upstream(upstream.clone(), false));
    // ANCHOR_END: upgrades_client
    let upstream = Arc::new(http2::upstream(upstream, args.http2.upstream_http2));
    let (options, timeout) = (Arc::new(args.forwarding), args.streaming.upstream_timeout);
    serve(listener, tls, builder, move |mut request| {
        let (upstream, upgrades, options) = (upstream.clone(), upgrades.clone(), options.clone());
        async move {
            h2_to_h1(&mut request);
            // ANCHOR: before_strip
            // Before the stripping removes `Upgrade`.
            let upgrade = requested_upgrade(request.headers());
            let h2_websocket = extended_connect(&request);
            let request_trailers = announced_trailers(request.version(), request.headers());
            let takes_trailers = client_takes_trailers(request.headers());
            strip_request(request.headers_mut());
            // ANCHOR_END: before_strip
            announce_trailers(request.headers_mut(), request_trailers);
            let scheme = scheme_of(&request);
            add_forwarded_headers(&mut request, scheme, &options);
            if options.rewrite_host {
                use_upstream_host(&mut request, &upstream.uri);
            }
            join_upstream_path(&mut request, &upstream.uri);
            // ANCHOR: upgrade_branch
            if let Some(protocol) = upgrade {
                restore_upgrade(request.headers_mut(), &protocol);
                let (request, sent) = notice_when_sent(request);
                let tunnel = tunnel(&upgrades, request, protocol);
                return with_deadline(timeout, sent, &upstream.uri, tunnel).await;
            }
            if let Some(protocol) = h2_websocket {
                let (request, sent) = notice_when_sent(request);
                let bridge = bridge_extended_connect(&upgrades, request, protocol);
                return with_deadline(timeout, sent, &upstream.uri, bridge).await;
            }
            // ANCHOR_END: upgrade_branch

            let (request, sent) = notice_when_sent(request);
            let round_trip = round_trip(&upstream, request);
            let response = with_deadline(timeout, sent, &upstream.uri, round_trip).await;
            let mut response = refuse_unasked_switch(response, &upstream.uri);
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
