//! Steps 11 to 17 of the workshop: what a proxy in front of many services
//! needs beyond steps 01 to 10 (the `workshop` crate). What they use and do
//! not teach is the kit, a crate of its own (`kit`, in `complete/kit/`),
//! which cannot use a lesson.
//!
//! As in the first package, each step's module is written in
//! `solutions/NN_name.rs` and the attendee's version in `exercises/`; the
//! feature `exNN` picks the exercise for step NN only.
//!
//! | step | module | the kit it uses |
//! |---|---|---|
//! | 11 | [`routing`] | `routes_file`, `patterns`, `watch` |
//! | 12 | [`wake`] | `apps`, `apps_file`, `children`, `apps_api`, `answer`, `demo` |
//! | 13 | [`sleep`] | `apps`, `apps_file` (discovery), `children` (`run_shell`) |
//! | 14 | [`hardened`] | `head_clock`, `head_size`, `answer`, `config` (timeouts, limits), `flags` |
//! | 15 | [`observed`] | `access_log`, `metrics` |
//! | 16 | [`instances`] | `shared_state` (Redis), `apps` (`Coordinator`) |
//! | 17 | [`complete_proxy`] | `config`, `certificates`, `connector`, `upstream_groups`, `upstream_client`, `cookies` |
//!
//! [`setup`] is not a lesson either: what the programs of steps 12 to 17
//! share before they serve (their files, the demo, the listener).

// What comes from the network, a file, the environment or the command line
// is never unwrapped here: an error is an answer or a message, not a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod setup;

// Step 11: rules choose the upstream; they change while the proxy runs.
#[cfg_attr(not(feature = "ex11"), path = "../../solutions/11_routing.rs")]
#[cfg_attr(feature = "ex11", path = "../../exercises/11_routing.rs")]
pub mod routing;

// Step 12: an app started by its first request, one start for many.
#[cfg_attr(not(feature = "ex12"), path = "../../solutions/12_wake.rs")]
#[cfg_attr(feature = "ex12", path = "../../exercises/12_wake.rs")]
pub mod wake;

// Step 13: what idle means; idle apps stopped, crashed ones noticed.
#[cfg_attr(not(feature = "ex13"), path = "../../solutions/13_sleep.rs")]
#[cfg_attr(feature = "ex13", path = "../../exercises/13_sleep.rs")]
pub mod sleep;

// Step 14: connection permits, deadlines, graceful shutdown, panics.
#[cfg_attr(not(feature = "ex14"), path = "../../solutions/14_hardened.rs")]
#[cfg_attr(feature = "ex14", path = "../../exercises/14_hardened.rs")]
pub mod hardened;

// Step 15: the access log, metrics, plain error pages.
#[cfg_attr(not(feature = "ex15"), path = "../../solutions/15_observed.rs")]
#[cfg_attr(feature = "ex15", path = "../../exercises/15_observed.rs")]
pub mod observed;

// Step 16: several proxies share their apps through Redis.
#[cfg_attr(not(feature = "ex16"), path = "../../solutions/16_instances.rs")]
#[cfg_attr(feature = "ex16", path = "../../exercises/16_instances.rs")]
pub mod instances;

// Step 17: everything from one config file.
#[cfg_attr(not(feature = "ex17"), path = "../../solutions/17_complete.rs")]
#[cfg_attr(feature = "ex17", path = "../../exercises/17_complete.rs")]
pub mod complete_proxy;

/// The exercises this build runs instead of the reference solutions
/// (`--features exNN`), so that every step can say so at start.
pub fn exercises_in_use() -> Vec<&'static str> {
    [
        (cfg!(feature = "ex11"), "11_routing.rs"),
        (cfg!(feature = "ex12"), "12_wake.rs"),
        (cfg!(feature = "ex13"), "13_sleep.rs"),
        (cfg!(feature = "ex14"), "14_hardened.rs"),
        (cfg!(feature = "ex15"), "15_observed.rs"),
        (cfg!(feature = "ex16"), "16_instances.rs"),
        (cfg!(feature = "ex17"), "17_complete.rs"),
    ]
    .into_iter()
    .filter_map(|(on, file)| on.then_some(file))
    .collect()
}
