//! Step 16 — several proxies, one app: two proxies behind a load balancer
//! share the apps started and stopped by commands (a container, a PaaS
//! app: something any of them can reach), through Redis. A child process
//! stays its proxy's own.
//!
//! Four ideas, in order:
//! - one start among all ([`start_once`]): who starts an app is whoever
//!   takes its lock in Redis; the lock is a lease (3 s, renewed while its
//!   holder works), so a holder that dies lets another take over instead
//!   of holding everyone forever; every caller subscribes *first*, then
//!   looks, and those without the lock wait for the news of that start
//!   and adopt it, success or failure;
//! - idle means idle everywhere ([`tell_what_is_used`], [`Shared`]'s
//!   stop): each proxy tells Redis, once a second at most, of the apps it
//!   served, or serves still (a long WebSocket); a proxy stops an app only
//!   if nobody has seen a request for its idle time, and only with its lock;
//! - news of the others ([`follow_the_others`]): a start or a stop made
//!   elsewhere is published, and every proxy's state follows, so every
//!   status API says the same; subscribed again, a proxy compares what it
//!   has awake with what Redis says (an app started elsewhere meanwhile is
//!   adopted at its next request);
//! - Redis down is an answer, not a wait: every operation is bounded
//!   (500 ms, the kit's), and then each proxy decides alone; nothing is
//!   lost, and the state is told again when Redis is back.
//!
//! The kit speaks Redis (`shared_state`: the lock and its script, states,
//! the last request seen, pub/sub); steps 12 and 13 know nothing of all
//! this: their starts and stops go through the kit's `Coordinator`, which
//! this step plugs in.
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 16`.
//! This file is generated from `solutions/16_instances.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/16_instances.rs solutions/16_instances.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use kit::apps::{App, Apps, Coordinator, State, Why};
use kit::apps_file::Run;
use kit::children::{Launched, Running};
use kit::shared_state::{Change, Event, LEASE, Lock, SharedApps, Unreachable};
use tokio::sync::mpsc;

/// How long to wait for the subscription before deciding alone.
const SUBSCRIBED_WITHIN: Duration = Duration::from_millis(500);

/// The apps started by commands, shared with every proxy that names the
/// same Redis: the kit's `Coordinator`, for steps 12 and 13's starts and
/// stops.
pub struct Shared {
    store: Arc<SharedApps>,
}

// ANCHOR: share
/// Shares `apps` through `store`, before serving: their starts and stops,
/// their news, the requests they get.
pub fn share(apps: &Arc<Apps>, store: SharedApps) {
    let store = Arc::new(store);
    if apps.coordinate_with(Arc::new(Shared {
        store: store.clone(),
    })) {
        tokio::spawn(follow_the_others(Arc::downgrade(apps), store.clone()));
        tokio::spawn(tell_what_is_used(Arc::downgrade(apps), store));
    }
}
// ANCHOR_END: share

/// Only an app started by commands is shared: a child runs on the machine
/// of the proxy that started it.
fn shared(app: &App) -> bool {
    matches!(app.spec().run, Run::Commands { .. })
}

// ANCHOR: start_once
/// Starts `app` once among every proxy: `launch` runs here if this one
/// takes the lock, and its outcome is announced; otherwise the start
/// another proxy made (or is making) is adopted: its upstream, or its
/// failure. Redis unreachable: `launch` runs here, alone. `patience`
/// bounds the wait for another proxy's start.
pub async fn start_once<F, Fut>(
    store: &SharedApps,
    app: &str,
    patience: Duration,
    launch: F,
) -> Result<String, String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    // ANCHOR: subscribe_first
    // Subscribed first: a change published from now on is not missed.
    let mut changes = store.changes();
    let subscribed = tokio::time::timeout(SUBSCRIBED_WITHIN, changes.recv()).await;
    if !matches!(subscribed, Ok(Some(Event::Subscribed))) {
        return launch().await;
    }
    // ANCHOR_END: subscribe_first
    // TODO: the app is started once among every proxy: this call ends with where it answers (started here, or by another proxy) or why it could not start, within `deadline`; with Redis unreachable, this proxy decides alone rather than wait. Trap: a proxy that stops the app publishes `asleep` too, and that is no failed start
    todo!(
        "the app is started once among every proxy: this call ends with where it answers (started here, or by another proxy) or why it could not start, within `deadline`; with Redis unreachable, this proxy decides alone rather than wait. Trap: a proxy that stops the app publishes `asleep` too, and that is no failed start"
    )
}

/// With the lock: unless another proxy woke the app just before, runs
/// `launch` (renewing the lease meanwhile), says how it went, and gives
/// the lock back.
async fn start_holding<F, Fut>(
    store: &SharedApps,
    app: &str,
    lock: Lock,
    launch: F,
) -> Result<String, String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    // ANCHOR: start_holding
    if let Ok(Some(status)) = store.status(app).await
        && status.state == "awake"
        && let Some(upstream) = status.upstream
    {
        let _ = store.release(lock).await;
        return Ok(upstream);
    }
    let _ = store.announce(app, "starting", None).await;
    let started = store.while_holding(&lock, launch()).await;
    let _ = match &started {
        Ok(upstream) => store.announce(app, "awake", Some(upstream)).await,
        Err(_) => store.announce(app, "asleep", None).await,
    };
    let _ = store.release(lock).await;
    started
    // ANCHOR_END: start_holding
}

/// The next change of `app`'s state another proxy publishes. Once the
/// subscription is gone, nothing more comes: the caller's timeout ends
/// the wait, and it looks in Redis instead.
async fn next_change(app: &str, changes: &mut mpsc::Receiver<Event>) -> Change {
    // Bounded by the caller's timeout.
    while let Some(event) = changes.recv().await {
        if let Event::Changed(change) = event
            && change.app == app
        {
            return change;
        }
    }
    std::future::pending().await
}
// ANCHOR_END: start_once

impl Coordinator for Shared {
    fn start_once<'a>(
        &'a self,
        app: &'a Arc<App>,
        launch: BoxFuture<'a, Result<Launched, String>>,
    ) -> BoxFuture<'a, Result<Launched, String>> {
        if !shared(app) {
            return launch;
        }
        Box::pin(async move {
            let spec = app.spec();
            let mut here = None;
            let launching = || async {
                let launched = launch.await?;
                let upstream = launched.upstream.to_string();
                here = Some(launched);
                Ok(upstream)
            };
            let upstream =
                start_once(&self.store, &app.name, spec.start_timeout, launching).await?;
            if let Some(launched) = here {
                return Ok(launched);
            }
            // Another proxy's start: its upstream, and our way to stop it.
            let upstream = upstream
                .parse()
                .map_err(|err| format!("another proxy's upstream {upstream:?}: {err}"))?;
            let running =
                Running::of(&spec).ok_or("an app started by commands has a stop command")?;
            Ok(Launched {
                upstream,
                pid: None,
                running,
            })
        })
    }

    // ANCHOR: stop_once
    fn stop_once<'a>(
        &'a self,
        app: &'a Arc<App>,
        why: Why,
        stop: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, ()> {
        // Not awake here: nothing of ours to stop, and nothing to tell the
        // others (saying "asleep" would put to sleep what runs elsewhere).
        if !shared(app) || app.state() != State::Awake {
            return stop;
        }
        Box::pin(async move {
            let (store, name, spec) = (&self.store, &app.name, app.spec());
            // ANCHOR: seen_lately
            // Seen by another proxy lately: idle here from that request on.
            if why == Why::Idle
                && let Ok(Some(seen)) = store.last_seen(name).await
            {
                let ago = SystemTime::now().duration_since(seen).unwrap_or_default();
                if ago < spec.idle {
                    app.active_at(Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
                    return;
                }
            }
            // ANCHOR_END: seen_lately
            // ANCHOR: stop_with_lock
            let lock = match store.try_lock(name, LEASE).await {
                Ok(Some(lock)) => Some(lock),
                // Another proxy starts or stops it right now.
                Ok(None) => return,
                Err(Unreachable) => None,
            };
            // Stopped by another proxy just before (its news not here yet).
            if let Ok(Some(status)) = store.status(name).await
                && status.state == "asleep"
            {
                app.asleep_because(&[State::Awake], None);
            } else {
                let _ = store.announce(name, "stopping", None).await;
                match &lock {
                    Some(lock) => store.while_holding(lock, stop).await,
                    None => stop.await,
                }
                let _ = announce_state(store, app).await;
            }
            if let Some(lock) = lock {
                let _ = store.release(lock).await;
            }
            // ANCHOR_END: stop_with_lock
        })
    }
    // ANCHOR_END: stop_once
}

/// Tells the other proxies what state `app` is in here.
async fn announce_state(store: &SharedApps, app: &App) -> Result<(), Unreachable> {
    let status = app.status();
    let (state, upstream) = match status.state {
        State::Awake => (
            "awake",
            status.upstream.map(|upstream| upstream.to_string()),
        ),
        _ => ("asleep", None),
    };
    store.announce(&app.name, state, upstream.as_deref()).await
}

// ANCHOR: tell_what_is_used
/// Forever: tells Redis, at most once a second per app, of the shared apps
/// that got a request, or have one in flight (a WebSocket open for an
/// hour keeps its app awake for every proxy). On a task of its own: never
/// in a request's time.
async fn tell_what_is_used(apps: std::sync::Weak<Apps>, store: Arc<SharedApps>) {
    let mut told: std::collections::HashMap<String, SystemTime> = Default::default();
    let mut every = tokio::time::interval(Duration::from_millis(200));
    // Ends when the apps are gone.
    while let Some(apps) = {
        every.tick().await;
        apps.upgrade()
    } {
        let now = SystemTime::now();
        for app in apps.registry().apps.values().filter(|app| shared(app)) {
            let last = told
                .get(&app.name)
                .copied()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let used = app.in_flight() > 0 || app.last_request().is_some_and(|at| at > last);
            let a_second = now.duration_since(last).unwrap_or_default() >= Duration::from_secs(1);
            if used && a_second && store.seen(&app.name, now).await.is_ok() {
                told.insert(app.name.clone(), now);
            }
        }
    }
}
// ANCHOR_END: tell_what_is_used

// ANCHOR: follow
/// Forever: follows the other proxies' starts and stops, so that the state
/// here (and every status API) says what they did; subscribed again, tells
/// Redis what it may have lost.
async fn follow_the_others(apps: std::sync::Weak<Apps>, store: Arc<SharedApps>) {
    let mut changes = store.changes();
    // Ends with the subscription, or when the apps are gone.
    while let Some(event) = changes.recv().await {
        let Some(apps) = apps.upgrade() else {
            return;
        };
        match event {
            // ANCHOR: changed
            Event::Changed(change) => {
                let Some(app) = apps.named(&change.app).filter(|app| shared(app)) else {
                    continue;
                };
                match (change.state.as_str(), change.upstream) {
                    ("asleep", _) => {
                        app.asleep_because(&[State::Awake], None);
                    }
                    ("awake", Some(upstream)) => awake_elsewhere(&app, &upstream),
                    _ => {}
                }
            }
            // ANCHOR_END: changed
            // Subscribed (again): what was missed meanwhile, and what a
            // Redis that lost its data does not know. (Its connection may
            // come back a moment after this one: tried for 5 s.)
            Event::Subscribed => {
                for _ in 0..5 {
                    if resynchronise(&apps, &store).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Another proxy started the app: awake here too, at the same upstream,
/// and this proxy can stop it (its stop command).
fn awake_elsewhere(app: &App, upstream: &str) {
    let (Ok(upstream), Some(running)) = (upstream.parse(), Running::of(&app.spec())) else {
        return;
    };
    app.keep_running(running);
    app.active_at(Instant::now());
    app.transition(&[State::Asleep], State::Awake, |status| {
        status.upstream = Some(upstream);
        status.last_error = None;
    });
}

// ANCHOR: resynchronise
/// Makes this proxy's shared apps and Redis agree: asleep here if it says
/// so; awake there (with the upstream) if it knows nothing.
async fn resynchronise(apps: &Apps, store: &SharedApps) -> Result<(), Unreachable> {
    for app in apps.registry().apps.values() {
        if app.state() != State::Awake || !shared(app) {
            continue;
        }
        match store.status(&app.name).await? {
            Some(status) if status.state == "asleep" => {
                app.asleep_because(&[State::Awake], None);
            }
            Some(_) => {}
            None => announce_state(store, app).await?,
        }
    }
    Ok(())
}
// ANCHOR_END: resynchronise
// ANCHOR_END: follow
