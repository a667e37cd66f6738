//! The kit of steps 11 on: what a proxy in front of many services needs
//! and the workshop does not teach. The lessons (`solutions/NN_*.rs`, the
//! `complete` crate) use it; it never uses them: it is a crate of its own.

// What comes from the network, a file, the environment or the command line
// is never unwrapped here: an error is an answer or a message, not a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access_log;
pub mod answer;
pub mod apps;
pub mod apps_api;
pub mod apps_file;
pub mod certificates;
pub mod children;
pub mod config;
pub mod connector;
pub mod cookies;
pub mod demo;
pub mod flags;
pub mod head_clock;
pub mod metrics;
pub mod patterns;
pub mod routes_file;
pub mod shared_state;
pub mod upstream_client;
pub mod upstream_groups;
pub mod watch;
