//! The shared kit of the workshop, and the wiring of every step's module.
//!
//! Each step of the talk adds one module, written in `solutions/NN_name.rs`.
//! The attendee's version of the same module lives in `exercises/NN_name.rs`
//! (generated from the solution, with the key code replaced by `todo!()`).
//! The feature `exNN` picks the exercise for step NN only, so
//! `cargo run --bin 03-stream-body --features ex03` runs your code for step 03
//! and the reference code for every other step: skipping an exercise never
//! blocks the next one.
//!
//! The rest of this crate is the kit the steps share and do not teach:
//! [`body`] (one body type for everything), [`cli`] (arguments, logs, the
//! start-up banner) and [`origin`] (the demo upstream).

pub mod body;
pub mod cli;
pub mod origin;

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
