//! The kit of steps 11 on: what a proxy in front of many services needs
//! and the workshop does not teach. The lessons (`solutions/NN_*.rs`, the
//! `complete` crate) use it; it never uses them: it is a crate of its own.
//!
//! | module | what it is | used from step |
//! |---|---|---|
//! | [`routes_file`] | the routes file (TOML), errors with file:line:column | 11 |
//! | [`patterns`] | path, host and media-type patterns; a request's host | 11 |
//! | [`watch`] | a reload on a file's change or `SIGHUP`; the shutdown signal | 11 |
//! | [`flags`] | the flags of steps 11 to 16 (files, limits, log); the open-files limit | 11 |
//! | [`answer`] | the request path as a value ([`answer::Answer`]), boxed once for the server ([`answer::handler`]) | 12 |
//! | [`apps`] | the apps: state, activity, registry, host → app, stops, `Coordinator` | 12 |
//! | [`apps_file`] | the apps file and a discovery command's list | 12 |
//! | [`children`] | launching an app (a child or commands) until it answers | 12 |
//! | [`apps_api`] | the token-guarded status API, `/_proxy/apps` | 12 |
//! | [`demo`] | the demo apps (the demo origin as children) | 12 |
//! | [`head_clock`] | a deadline for each HTTP/1.1 request head, from its first byte, and for the wait between requests | 14 |
//! | [`head_size`] | step 09's bound on a request head, without bounding what hyper reads at once | 14 |
//! | [`access_log`] | the access log's lines and the thread that writes them | 15 |
//! | [`metrics`] | `/_proxy/metrics`, in Prometheus' text format | 15 |
//! | [`shared_state`] | apps' state in Redis: a lock (lease), states, pub/sub | 16 |
//! | [`config`] | the one config file of step 17 | 17 |
//! | [`certificates`] | certificates chosen by name (SNI) | 17 |
//! | [`connector`] | connects to upstreams: groups, TLS, a deadline | 17 |
//! | [`upstream_groups`] | groups of servers: in turn, resting a failing one | 17 |
//! | [`upstream_client`] | the complete proxy's own HTTP/1.1 and HTTP/2 upstream clients | 17 |
//! | [`cookies`] | an app's cookies kept to its own host | 17 |

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
pub mod head_size;
pub mod metrics;
pub mod patterns;
pub mod routes_file;
pub mod shared_state;
pub mod upstream_client;
pub mod upstream_groups;
pub mod watch;
