//! Steps 11 to 13 of the workshop, and their kit: what a proxy in front of
//! many services needs beyond steps 01 to 10 (the `workshop` crate).
//!
//! As in the first package, each step's module is written in
//! `solutions/NN_name.rs` and the attendee's version in `exercises/`; the
//! feature `exNN` picks the exercise for step NN only.
//!
//! The kit: [`routes_file`] (reading a routes file, with errors that name
//! line and column), [`patterns`] (path, host and media-type patterns),
//! [`watch`] (reloading on a change or `SIGHUP`), and for step 12
//! [`apps_file`] (the apps file), [`children`] (child processes) and
//! [`apps_api`] (the token-guarded status API).

// What comes from the network, a file, the environment or the command line
// is never unwrapped here: an error is an answer or a message, not a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod apps_api;
pub mod metrics;
pub use kit::{
    apps_file, certificates, children, config, connector, cookies, demo, flags, head_clock,
    patterns, routes_file, shared_state, upstream_client, upstream_groups, watch,
};

/// Steps 11 on start as step 09 does, and say which exercises they run.
pub async fn listen_with_tls(
    common: &workshop::cli::Args,
    options: &workshop::http2::Options,
) -> (tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>) {
    let listening = workshop::http2::listen(common, options).await;
    workshop::cli::say_exercises(&exercises_in_use());
    listening
}

// Step 11: rules choose the upstream; they change while the proxy runs.
#[cfg_attr(not(feature = "ex11"), path = "../../solutions/11_routing.rs")]
#[cfg_attr(feature = "ex11", path = "../../exercises/11_routing.rs")]
pub mod routing;

// Step 12: apps started on their first request, stopped when idle.
#[cfg_attr(not(feature = "ex12"), path = "../../solutions/12_on_demand.rs")]
#[cfg_attr(feature = "ex12", path = "../../exercises/12_on_demand.rs")]
pub mod on_demand;

// Step 13: everything from one config file, hardened.
#[cfg_attr(not(feature = "ex13"), path = "../../solutions/13_complete.rs")]
#[cfg_attr(feature = "ex13", path = "../../exercises/13_complete.rs")]
pub mod hardened;

/// The exercises this build runs instead of the reference solutions
/// (`--features exNN`), so that every step can say so at start.
pub fn exercises_in_use() -> Vec<&'static str> {
    [
        (cfg!(feature = "ex11"), "11_routing.rs"),
        (cfg!(feature = "ex12"), "12_on_demand.rs"),
        (cfg!(feature = "ex13"), "13_complete.rs"),
    ]
    .into_iter()
    .filter_map(|(on, file)| on.then_some(file))
    .collect()
}
