//! The common harness: runs named black-box checks against real step binaries.
//!
//! A check starts the step under test as a real process (`--listen
//! 127.0.0.1:0`, the port read from its first stdout line), points it at the
//! demo origin running in this test process, and talks to it with real
//! clients: raw TCP where the exact bytes matter, hyper otherwise. With
//! `PROXY_ADDR=host:port` the same checks target a proxy that is already
//! running (the attendee's own); checks that need to start the proxy
//! themselves are skipped then.
//!
//! No check sleeps to synchronise: each waits for an observable event under a
//! timeout, and says what it expected and the likely mistake when it fails.

#![allow(dead_code)] // each test crate uses a different part of the harness

pub mod client;
pub mod folder;
pub mod logs;
pub mod outcome;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod report;
pub mod run;
pub mod upstream;

pub use outcome::{Failure, OrFail, Outcome, fail, within};
pub use proxy::{Ctx, Proxy};
