//! The shared kit of the workshop, and the wiring of every step's module.
//!
//! Each step of the talk adds one module, written in `solutions/NN_name.rs`.
//! The attendee's version of the same module lives in `exercises/NN_name.rs`
//! (generated from the solution, with the key code replaced by `todo!` calls).
//! The feature `exNN` picks the exercise for step NN only, so
//! `cargo run --bin 03-stream-body --features ex03` runs your code for step 03
//! and the reference code for every other step: skipping an exercise never
//! blocks the next one.
//!
//! The rest of this crate is the kit the steps share and do not teach:
//! [`body`] (one body type for everything), [`cli`] (arguments, logs, the
//! start-up banner), [`origin`] (the demo upstream), [`tls`] (how the demo
//! clients trust a dev certificate), [`ip_text`] (a client's address as
//! text, fast) and [`deck`] (the talk, served as a reveal.js presentation).

pub mod body;
pub mod cli;
pub mod deck;
pub mod ip_text;
pub mod origin;
pub mod repo;
pub mod tls;

// Step 01: a hyper server, one task per connection.
#[cfg_attr(not(feature = "ex01"), path = "../solutions/01_listen_and_serve.rs")]
#[cfg_attr(feature = "ex01", path = "../exercises/01_listen_and_serve.rs")]
pub mod listen_and_serve;

// Step 02: send the request upstream and answer with its status.
#[cfg_attr(not(feature = "ex02"), path = "../solutions/02_round_trip.rs")]
#[cfg_attr(feature = "ex02", path = "../exercises/02_round_trip.rs")]
pub mod round_trip;

// Step 03: bodies as streams of frames, never collected.
#[cfg_attr(not(feature = "ex03"), path = "../solutions/03_stream_body.rs")]
#[cfg_attr(feature = "ex03", path = "../exercises/03_stream_body.rs")]
pub mod stream_body;

// Step 04: a proxy decides which headers cross, in both directions.
#[cfg_attr(not(feature = "ex04"), path = "../solutions/04_copy_headers.rs")]
#[cfg_attr(feature = "ex04", path = "../exercises/04_copy_headers.rs")]
pub mod copy_headers;

// Step 05: connection-specific headers stay on their connection.
#[cfg_attr(not(feature = "ex05"), path = "../solutions/05_hop_by_hop.rs")]
#[cfg_attr(feature = "ex05", path = "../exercises/05_hop_by_hop.rs")]
pub mod hop_by_hop;

// Step 06: X-Forwarded-* headers, the Host policy, and the path problem.
#[cfg_attr(not(feature = "ex06"), path = "../solutions/06_x_forwarded.rs")]
#[cfg_attr(feature = "ex06", path = "../exercises/06_x_forwarded.rs")]
pub mod x_forwarded;

// Step 07: trailers, announced again after the hop-by-hop headers are gone.
#[cfg_attr(not(feature = "ex07"), path = "../solutions/07_trailers.rs")]
#[cfg_attr(feature = "ex07", path = "../exercises/07_trailers.rs")]
pub mod trailers;

// Step 08: streaming without buffering, cancellation, deadlines.
#[cfg_attr(not(feature = "ex08"), path = "../solutions/08_streaming.rs")]
#[cfg_attr(feature = "ex08", path = "../exercises/08_streaming.rs")]
pub mod streaming;

// Step 09: HTTP/1.1 and HTTP/2 on one port, with or without TLS.
#[cfg_attr(not(feature = "ex09"), path = "../solutions/09_http2.rs")]
#[cfg_attr(feature = "ex09", path = "../exercises/09_http2.rs")]
pub mod http2;

// Step 10: WebSocket, and any other HTTP/1.1 upgrade, spliced through.
#[cfg_attr(not(feature = "ex10"), path = "../solutions/10_websocket.rs")]
#[cfg_attr(feature = "ex10", path = "../exercises/10_websocket.rs")]
pub mod websocket;

/// The exercises this build runs instead of the reference solutions
/// (`--features exNN`), so that every step can say so at start.
pub fn exercises_in_use() -> Vec<&'static str> {
    [
        (cfg!(feature = "ex01"), "01_listen_and_serve.rs"),
        (cfg!(feature = "ex02"), "02_round_trip.rs"),
        (cfg!(feature = "ex03"), "03_stream_body.rs"),
        (cfg!(feature = "ex04"), "04_copy_headers.rs"),
        (cfg!(feature = "ex05"), "05_hop_by_hop.rs"),
        (cfg!(feature = "ex06"), "06_x_forwarded.rs"),
        (cfg!(feature = "ex07"), "07_trailers.rs"),
        (cfg!(feature = "ex08"), "08_streaming.rs"),
        (cfg!(feature = "ex09"), "09_http2.rs"),
        (cfg!(feature = "ex10"), "10_websocket.rs"),
    ]
    .into_iter()
    .filter_map(|(on, file)| on.then_some(file))
    .collect()
}
