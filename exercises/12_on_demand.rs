//! Step 12 — apps on demand: an app sleeps while nobody uses it, and the
//! first request wakes it (scale to zero, as Paastis does for PaaS review
//! apps and Sablier for containers).
//!
//! Each app at `NAME.localhost` is a state machine:
//!
//! ```text
//!            first request                ready
//!  asleep ─────────────────▶ starting ─────────────▶ awake
//!    ▲  ▲                       │ failed, timed out     │ idle, or asked
//!    │  └───────────────────────┘                       ▼
//!    └──────────────────────────────────────────── stopping
//!              stopped (or crashed, from awake)
//! ```
//!
//! Four ideas, in order:
//! - [`App::wake`]: the state lives in a `tokio::sync::watch` channel;
//!   changing `asleep` to `starting` is done under the channel's lock, so
//!   of 100 first requests exactly one starts the app and the 99 others
//!   wait for the same start;
//! - [`serve_app`]: a request for a sleeping app is held until the app is
//!   ready (an API client), or answered at once with a page that reloads
//!   itself (a browser); then it goes through step 11's [`Forward`];
//! - [`Activity`]: a request counts from its arrival to the end of its
//!   response body, a WebSocket until it closes: an app with either is not
//!   idle, however long they last;
//! - [`stop_idle_apps`]: a timer stops the groups of apps whose every
//!   member has been idle long enough.
//!
//! How a child is started, signalled and logged is the kit's
//! (`children`), and so is reading the apps file (`apps_file`).
//! Deliberate simplifications: the state lives in this process only (step
//! 13's instances share it through Redis: `[state] redis`, at the end of
//! this file), and a shutdown stops the apps without waiting for requests
//! in flight (step 13 drains them).
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 12`.
//! This file is generated from `solutions/12_on_demand.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/12_on_demand.rs solutions/12_on_demand.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};
use workshop::body::{Body, RequestBody, boxed, full, text};
use workshop::round_trip::HttpClient;
use workshop::websocket::keep_while_open;

use crate::apps_api;
use crate::apps_file::{self, AppSpec, AppsFile, Run};
use crate::children::{AppProcess, free_port, run_shell, with_stderr};
use crate::patterns::{MediaRange, accept_groups, normalize_host};
use crate::routes_file::Routes;
use crate::routing::{Forward, dispatch};
use crate::shared_state::{Event, LEASE, SharedApps, Unreachable};

/// How long a child has to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often idle apps are looked for.
const IDLE_TICK: Duration = Duration::from_millis(250);

// ANCHOR: state
/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Asleep,
    Starting,
    Awake,
    Stopping,
}

/// An app's state, and what goes with it.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    /// When it entered this state (`since` for durations, `since_wall`
    /// for people: the status API shows it).
    pub since: Instant,
    pub since_wall: SystemTime,
    /// Where it answers, while awake.
    pub upstream: Option<Uri>,
    /// Its process, if it is our child and awake.
    pub pid: Option<u32>,
    /// The spec it was started with, while awake or stopping: a reload
    /// changes the next start, not how this run is stopped.
    pub running: Option<Arc<AppSpec>>,
    /// Counts starts: a waiter knows which starts began after it came.
    pub attempt: u64,
    /// Why the last start failed, or how the app last ended.
    pub last_error: Option<String>,
}
// ANCHOR_END: state

/// One app: its spec, its state, its activity.
pub struct App {
    pub name: String,
    /// A reload swaps in a new spec; it applies from the next start.
    spec: ArcSwap<AppSpec>,
    /// The apps linked to it or it to them, directly or not, itself
    /// included: they are stopped together.
    group: ArcSwap<Vec<String>>,
    status: watch::Sender<Status>,
    in_flight: AtomicUsize,
    last_activity: Mutex<Instant>,
    last_request: Mutex<Option<SystemTime>>,
    /// Requests for it, answered by it or not (a waiting page, a 503).
    requests: AtomicU64,
    /// Asks the task that owns our child to stop it.
    stop_child: Mutex<Option<oneshot::Sender<()>>>,
    /// No longer in the list: served until it sleeps, then forgotten.
    retired: AtomicBool,
    /// Step 13's `[state] redis`, if set: the other instances (`Apps`'s).
    shared: Arc<OnceLock<Arc<SharedApps>>>,
    /// The Unix second this instance last told them of a request.
    told_seen: AtomicU64,
}

impl App {
    fn new(spec: AppSpec, group: Vec<String>, shared: Arc<OnceLock<Arc<SharedApps>>>) -> App {
        App {
            name: spec.name.clone(),
            spec: ArcSwap::from_pointee(spec),
            group: ArcSwap::from_pointee(group),
            status: watch::Sender::new(Status {
                state: State::Asleep,
                since: Instant::now(),
                since_wall: SystemTime::now(),
                upstream: None,
                pid: None,
                running: None,
                attempt: 0,
                last_error: None,
            }),
            in_flight: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
            last_request: Mutex::new(None),
            requests: AtomicU64::new(0),
            stop_child: Mutex::new(None),
            retired: AtomicBool::new(false),
            shared,
            told_seen: AtomicU64::new(0),
        }
    }

    pub fn spec(&self) -> Arc<AppSpec> {
        self.spec.load_full()
    }

    pub fn group(&self) -> Arc<Vec<String>> {
        self.group.load_full()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn state(&self) -> State {
        self.status.borrow().state
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> Option<SystemTime> {
        *lock(&self.last_request)
    }

    fn last_activity(&self) -> Instant {
        *lock(&self.last_activity)
    }

    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    /// Moves to `to` if the app is in one of `from` (under the channel's
    /// lock: two callers cannot both make the same move), applies
    /// `change`, and logs the move. Returns whether it moved.
    fn transition(&self, from: &[State], to: State, change: impl FnOnce(&mut Status)) -> bool {
        self.transition_if(from, to, || true, change)
    }

    /// [`App::transition`], if `allowed` also says yes, under the same lock.
    fn transition_if(
        &self,
        from: &[State],
        to: State,
        allowed: impl FnOnce() -> bool,
        change: impl FnOnce(&mut Status),
    ) -> bool {
        let mut previous = None;
        let moved = self.status.send_if_modified(|status| {
            if !from.contains(&status.state) || !allowed() {
                return false;
            }
            previous = Some((status.state, status.since.elapsed()));
            status.state = to;
            status.since = Instant::now();
            status.since_wall = SystemTime::now();
            change(status);
            true
        });
        if let Some((from, spent)) = previous {
            let name = &self.name;
            match &self.status.borrow().last_error {
                Some(why) if to == State::Asleep => {
                    warn!(
                        "{name}: {from} → {to} ({from} for {}): {why}",
                        readable(spent)
                    )
                }
                _ => info!("{name}: {from} → {to} ({from} for {})", readable(spent)),
            }
        }
        moved
    }

    // ANCHOR: wake
    /// Makes sure the app is awake and returns where it answers, or why it
    /// could not start. The first caller to find it asleep starts it (and
    /// its linked apps); every other caller waits for that same start.
    pub async fn wake(self: &Arc<App>, apps: &Arc<Apps>) -> Result<Uri, String> {
        let mut status = self.status.subscribe();
        // The starts that count for this caller: the one under way when it
        // came, and any later. If the app is asleep after one, it failed.
        let first_counting = {
            let now = status.borrow_and_update();
            match now.state {
                State::Starting => now.attempt,
                _ => now.attempt + 1,
            }
        };
        loop {
            let now = status.borrow_and_update().clone();
            match now.state {
                State::Awake => {
                    return now.upstream.ok_or_else(|| "awake, but nowhere".into());
                }
                State::Asleep if now.attempt >= first_counting => return Err(self.failure()),
                State::Asleep if self.retired.load(Ordering::Relaxed) => {
                    return Err("it is no longer in the list of apps".into());
                }
                State::Asleep => {
                    // TODO: move the app from asleep to starting with self.transition (under the channel's lock: exactly one caller wins), adding 1 to status.attempt; the winner spawns start(self.clone()) and calls apps.wake_linked(self); do not wait here: the loop looks again
                    todo!(
                        "move the app from asleep to starting with self.transition (under the channel's lock: exactly one caller wins), adding 1 to status.attempt; the winner spawns start(self.clone()) and calls apps.wake_linked(self); do not wait here: the loop looks again"
                    );
                    // Won or lost, the state has changed: look again.
                    continue;
                }
                State::Starting | State::Stopping => {}
            }
            // The sender lives in `self`: this wait ends with a change.
            let _ = status.changed().await;
        }
    }
    // ANCHOR_END: wake

    fn failure(&self) -> String {
        self.status
            .borrow()
            .last_error
            .clone()
            .unwrap_or_else(|| "it stopped while starting".into())
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Asleep => "asleep",
            State::Starting => "starting",
            State::Awake => "awake",
            State::Stopping => "stopping",
        })
    }
}

// ANCHOR: start
/// Starts an app (its state is `starting`): runs it, polls it until it
/// answers, and says `awake`, or `asleep` with the reason, by the start
/// timeout at the latest.
async fn start(app: Arc<App>) {
    let spec = app.spec();
    // On a task of its own: should it panic, the app still leaves
    // `starting` (with the reason) instead of holding its waiters forever.
    let launching = match app.shared_with_others(&spec) {
        Some(shared) => tokio::spawn(launch_once(shared, app.clone(), spec.clone())),
        None => tokio::spawn(launch(app.clone(), spec.clone())),
    };
    let started = launching
        .await
        .unwrap_or_else(|err| Err(format!("the start failed: {err}")));
    match started {
        Ok((upstream, pid)) => {
            app.touch();
            app.transition(&[State::Starting], State::Awake, |status| {
                status.upstream = Some(upstream);
                status.pid = pid;
                status.running = Some(spec);
                status.last_error = None;
            });
        }
        Err(why) => {
            app.transition(&[State::Starting], State::Asleep, |status| {
                status.last_error = Some(why);
            });
        }
    }
}

/// Runs the app as its spec says, by its start timeout at the latest.
async fn launch(app: Arc<App>, spec: Arc<AppSpec>) -> Result<(Uri, Option<u32>), String> {
    let deadline = Instant::now()
        .checked_add(spec.start_timeout)
        .ok_or("start_timeout is too long")?;
    match &spec.run {
        Run::Child { command } => start_child(&app, &spec, command, deadline).await,
        Run::Commands {
            start,
            stop,
            upstream,
        } => start_by_command(&spec, start, stop, upstream, deadline).await,
    }
}
// ANCHOR_END: start

/// A child on a free port: ready when it answers, failed if it exits
/// first or is not ready by the deadline.
async fn start_child(
    app: &Arc<App>,
    spec: &AppSpec,
    command: &[String],
    deadline: Instant,
) -> Result<(Uri, Option<u32>), String> {
    let port = free_port().map_err(|err| format!("no free port: {err}"))?;
    let mut process = AppProcess::spawn(&spec.name, command, port)?;
    let address = SocketAddr::from(([127, 0, 0, 1], port)).to_string();
    // ANCHOR: race
    let outcome = tokio::select! {
        () = wait_until_ready(&address, spec.ready.as_deref()) => Ok(()),
        ended = process.exited() => Err(format!("it exited before it was ready: {ended}")),
        () = tokio::time::sleep_until(deadline.into()) => Err(format!(
            "it was not ready within {} (nothing answered on port {port})",
            readable(spec.start_timeout)
        )),
    };
    // ANCHOR_END: race
    if let Err(why) = outcome {
        let stderr = process.last_stderr();
        let ended = process.stop(STOP_GRACE).await;
        info!("{}: the failed start ended ({ended})", spec.name);
        return Err(with_stderr(why, &stderr));
    }
    let pid = process.pid();
    let (stop, stopped) = oneshot::channel();
    *lock(&app.stop_child) = Some(stop);
    tokio::spawn(supervise(app.clone(), process, stopped));
    let upstream = format!("http://{address}")
        .parse()
        .map_err(|err| format!("{err}"))?;
    Ok((upstream, Some(pid)))
}

/// Something a command starts: ready when `upstream` answers. If it does
/// not in time, its stop command runs: nothing is left half-started.
async fn start_by_command(
    spec: &AppSpec,
    start: &str,
    stop: &str,
    upstream: &Uri,
    deadline: Instant,
) -> Result<(Uri, Option<u32>), String> {
    let time_left = deadline.saturating_duration_since(Instant::now());
    run_shell(start, time_left).await?;
    let address = upstream
        .authority()
        .map(|authority| match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        })
        .unwrap_or_default();
    let ready = wait_until_ready(&address, spec.ready.as_deref());
    if tokio::time::timeout_at(deadline.into(), ready)
        .await
        .is_ok()
    {
        return Ok((upstream.clone(), None));
    }
    let mut why = format!(
        "`{start}` succeeded, but {upstream} did not answer within {}",
        readable(spec.start_timeout)
    );
    if let Err(stop_failed) = run_shell(stop, spec.start_timeout).await {
        why = format!("{why}; and then {stop_failed}");
    }
    Err(why)
}

// ANCHOR: backoff
/// Polls `address` until it answers: the port accepts a connection, or,
/// with a `ready` path, an HTTP request there gets any answer at all.
/// The pause doubles from 1 ms up to half a second: a fast app is seen
/// within a millisecond or two, a slow one is not hammered (Paastis polls
/// every second, so even a 50 ms app takes a second to wake). The caller
/// bounds the time.
async fn wait_until_ready(address: &str, ready: Option<&str>) {
    let mut pause = Duration::from_millis(1);
    loop {
        if answers(address, ready).await {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
// ANCHOR_END: backoff

/// One probe, at most a second long.
async fn answers(address: &str, ready: Option<&str>) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        let Some(path) = ready else { return Some(()) };
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await.ok()?;
        (&head == b"HTTP/").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(()))
    )
}

// ANCHOR: supervise
/// Owns a running child: if it exits on its own, the app is asleep (the
/// next request starts it again); if asked, it stops it.
async fn supervise(app: Arc<App>, mut process: AppProcess, stop: oneshot::Receiver<()>) {
    tokio::select! {
        ended = process.exited() => {
            let why = with_stderr(format!("it crashed: {ended}"), &process.last_stderr());
            // `starting` too: it may die between "ready" and "awake".
            let from = [State::Starting, State::Awake, State::Stopping];
            app.transition(&from, State::Asleep, |status| {
                status.last_error = Some(why);
                status.pid = None;
                status.upstream = None;
                status.running = None;
            });
        }
        // (A dropped sender is no request to stop: that branch is off.)
        Ok(()) = stop => {
            let ended = process.stop(STOP_GRACE).await;
            info!("{}: its process ended ({ended})", app.name);
            app.transition(&[State::Stopping], State::Asleep, |status| {
                status.pid = None;
                status.upstream = None;
                status.running = None;
            });
        }
    }
}
// ANCHOR_END: supervise

/// Stops an awake app, requests in flight or not (the status API, the
/// shutdown); returns once it is asleep, or after twice the grace period.
pub async fn stop(app: &Arc<App>) {
    if app.shared_with_others(&app.spec()).is_some() {
        return stop_everywhere(app, Why::Asked).await;
    }
    stop_unless(app, || false).await;
}

/// Stops an awake app unless a request has just come for it: the check
/// and the move to `stopping` happen under the same lock, so a request
/// either is seen here or sees `stopping` (and waits for a new start).
async fn stop_unless_busy(app: &Arc<App>) {
    stop_unless(app, || app.in_flight() > 0).await;
}

async fn stop_unless(app: &Arc<App>, busy: impl FnOnce() -> bool) {
    let mut running = None;
    let stopping = app.transition_if(
        &[State::Awake],
        State::Stopping,
        || !busy(),
        |status| running = status.running.clone(),
    );
    if !stopping {
        return;
    }
    let spec = running.unwrap_or_else(|| app.spec());
    match &spec.run {
        Run::Child { .. } => {
            let mut status = app.status.subscribe();
            let asked = lock(&app.stop_child).take().map(|stop| stop.send(()));
            if asked.is_some_and(|sent| sent.is_ok()) {
                let asleep = status.wait_for(|status| status.state == State::Asleep);
                let _ = tokio::time::timeout(STOP_GRACE * 2, asleep).await;
            } else {
                // Its supervisor is gone: it has exited already.
                app.transition(&[State::Stopping], State::Asleep, |status| {
                    status.pid = None;
                    status.upstream = None;
                    status.running = None;
                });
            }
        }
        Run::Commands { stop, .. } => {
            let stopped = run_shell(stop, spec.start_timeout).await;
            app.transition(&[State::Stopping], State::Asleep, |status| {
                status.upstream = None;
                status.running = None;
                status.last_error = stopped.err();
            });
        }
    }
}

// ANCHOR: activity
/// A request (or a WebSocket) in progress: the app is not idle while one
/// lives. Made when the request arrives, dropped when its response body
/// has been sent (or its tunnel closed, or the client left).
pub struct Activity(Arc<App>);

impl Activity {
    fn begin(app: Arc<App>) -> Activity {
        // SeqCst, with the load in stop_unless_busy: a request that
        // arrives as an idle stop begins is seen by it, or sees `stopping`.
        app.in_flight.fetch_add(1, Ordering::SeqCst);
        app.requests.fetch_add(1, Ordering::Relaxed);
        app.touch();
        *lock(&app.last_request) = Some(SystemTime::now());
        app.tell_others_of_a_request();
        Activity(app)
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        // The idle time counts from the end of the last request.
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
// ANCHOR_END: activity

// ANCHOR: serve_app
/// Answers a request for an app: once the app is awake, through step 11's
/// pipeline, counting as the app's activity until it is all sent.
pub async fn serve_app<B: RequestBody, T: HttpClient>(
    apps: &Arc<Apps>,
    app: Arc<App>,
    forward: &Forward<T>,
    mut request: Request<B>,
) -> Response<Body> {
    let activity = Arc::new(Activity::begin(app.clone()));
    let upstream = match hold_until_awake(apps, &app, &request).await {
        Ok(upstream) => upstream,
        Err(answer) => return answer,
    };
    // ANCHOR: keep_busy
    // An open WebSocket keeps the activity until it closes (step 10 holds
    // what is in KeptWhileOpen); a response, until its body ends.
    keep_while_open(&mut request, activity.clone());
    let response = forward.to(upstream).forward(request, |_| {}).await;
    response.map(|body| {
        boxed(body.map_frame(move |frame| {
            let _busy = &activity;
            frame
        }))
    })
    // ANCHOR_END: keep_busy
}
// ANCHOR_END: serve_app

// ANCHOR: hold
/// Where a request for `app` goes once the app is awake, or what to answer
/// at once instead: a waiting page for a browser (the app wakes on a task
/// of its own), a 503 with the reason if it cannot start. An API client
/// is held, up to the start timeout.
async fn hold_until_awake<B>(
    apps: &Arc<Apps>,
    app: &Arc<App>,
    request: &Request<B>,
) -> Result<Uri, Response<Body>> {
    // TODO: a browser (wants_a_page) asking for an app that is not awake gets waiting_page at once, while the app wakes on a task of its own; anyone else waits for app.wake, up to the start timeout + 1 s (the start's own deadline fires first, so the 503 says why); a failure is `unavailable` (503)
    todo!(
        "a browser (wants_a_page) asking for an app that is not awake gets waiting_page at once, while the app wakes on a task of its own; anyone else waits for app.wake, up to the start timeout + 1 s (the start's own deadline fires first, so the 503 says why); a failure is `unavailable` (503)"
    )
}
// ANCHOR_END: hold

// ANCHOR: apps_then_routes
/// Apps first, by host; then, on other hosts, the proxy's own API (with
/// a token configured); then step 11's routes.
pub async fn apps_then_routes<B: RequestBody, T: HttpClient>(
    apps: &Arc<Apps>,
    routes: &ArcSwap<Routes>,
    forward: &Forward<T>,
    admin_token: Option<&str>,
    request: Request<B>,
) -> Response<Body> {
    match apps.find(host_of(&request)) {
        Some(Found::App(app)) => serve_app(apps, app, forward, request).await,
        Some(Found::Unknown(name)) => text(
            StatusCode::NOT_FOUND,
            format!("404 Not Found: there is no app named {name}"),
        ),
        None => match admin_token {
            Some(token) if request.uri().path().starts_with(apps_api::PREFIX) => {
                apps_api::answer(apps, token, &request).await
            }
            _ => dispatch(routes, forward, request).await,
        },
    }
}
// ANCHOR_END: apps_then_routes

/// `Host`, or the URI's authority (HTTP/2's `:authority`).
fn host_of<B>(request: &Request<B>) -> Option<&str> {
    match request.headers().get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => request
            .uri()
            .authority()
            .map(|authority| authority.as_str()),
    }
}

/// A `GET` from a client that prefers HTML above all: a browser, which
/// would rather see a page than a spinner for thirty seconds.
fn wants_a_page<B>(request: &Request<B>) -> bool {
    let html = MediaRange::parse("text/html");
    let accepted = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok());
    request.method() == Method::GET
        && accept_groups(accepted).first().is_some_and(|best| {
            best.ranges()
                .iter()
                .any(|range| Some(range) == html.as_ref())
        })
}

// ANCHOR: waiting_page
/// `503` with `Retry-After` and `Refresh`: the browser shows this page and
/// asks again a second later, until the app answers instead.
fn waiting_page(app: &App) -> Response<Body> {
    let status = app.status();
    let last_error = match (&status.state, &status.last_error) {
        // Why is in the log: an app's stderr is not for every visitor.
        (State::Asleep, Some(_)) => "<p>The last start failed; trying again.</p>".to_string(),
        _ => String::new(),
    };
    let page = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=1>\
         <title>Starting {name}…</title><p>Starting <b>{name}</b>… \
         this page reloads itself until it is up.</p>{last_error}\n",
        name = app.name
    );
    let mut response = Response::new(full(page));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert("refresh", HeaderValue::from_static("1"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
// ANCHOR_END: waiting_page

/// The app could not start: `503`, when to try again, and why.
fn unavailable(name: &str, why: &str) -> Response<Body> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 Service Unavailable: the app {name} could not start: {why}"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    response
}

// ANCHOR: idle
// ANCHOR: has_been_idle
/// Whether an app whose last activity was at `last` has been idle for
/// `idle` at `now`: real durations, on a monotonic clock. (Paastis took
/// the minutes of the elapsed time modulo an hour: an app idle for 61
/// minutes looked idle for 1, and a limit of an hour was never reached.)
pub fn has_been_idle(last: Instant, now: Instant, idle: Duration) -> bool {
    now.saturating_duration_since(last) >= idle
}
// ANCHOR_END: has_been_idle

/// Forever: stops every group of linked apps that is awake and whose every
/// member is idle (nothing in flight, no activity for its idle time) or
/// asleep. A tick, not a timer per app: a group's members decide together.
pub async fn stop_idle_apps(apps: Arc<Apps>) {
    let mut tick = tokio::time::interval(IDLE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let registry = apps.registry.load_full();
        let mut seen = BTreeSet::new();
        for app in registry.apps.values() {
            let group = app.group();
            if !seen.insert(group.clone()) {
                continue;
            }
            let members: Vec<&Arc<App>> = group
                .iter()
                .filter_map(|name| registry.apps.get(name))
                .collect();
            let idle = |member: &&Arc<App>| match member.state() {
                State::Asleep => true,
                State::Awake => {
                    member.in_flight() == 0
                        && has_been_idle(member.last_activity(), now, member.spec().idle)
                }
                State::Starting | State::Stopping => false,
            };
            let awake = members.iter().any(|member| member.state() == State::Awake);
            if awake && members.iter().all(idle) {
                for member in members {
                    let member = member.clone();
                    tokio::spawn(async move { stop_everywhere(&member, Why::Idle).await });
                }
            }
        }
        apps.forget_retired();
    }
}
// ANCHOR_END: idle

// ANCHOR: instances
// Step 13 with `[state] redis`: several instances serve the same apps. An
// app started and stopped by commands is shared (a child is local to the
// instance that runs it): the kit's `shared_state` keeps its state in
// Redis, where the instances agree on who starts or stops it.

impl App {
    /// The other instances, if this app's state is shared with them.
    fn shared_with_others(&self, spec: &AppSpec) -> Option<Arc<SharedApps>> {
        match spec.run {
            Run::Commands { .. } => self.shared.get().cloned(),
            Run::Child { .. } => None,
        }
    }

    /// Tells the other instances that this one serves a request for the
    /// app: at most once a second, on a task (never in a request's time).
    fn tell_others_of_a_request(&self) {
        let Some(shared) = self.shared_with_others(&self.spec()) else {
            return;
        };
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if self.told_seen.swap(second, Ordering::Relaxed) != second {
            let name = self.name.clone();
            tokio::spawn(async move { shared.seen(&name, now).await });
        }
    }

    /// Another instance started the app: awake here too, at the same
    /// upstream (the status API of every instance shows it so).
    fn awake_elsewhere(&self, upstream: &str) {
        let spec = self.spec();
        let (Some(_), Ok(upstream)) = (self.shared_with_others(&spec), upstream.parse::<Uri>())
        else {
            return;
        };
        self.touch();
        self.transition(&[State::Asleep], State::Awake, |status| {
            status.upstream = Some(upstream);
            status.running = Some(spec);
            status.last_error = None;
        });
    }

    /// Another instance stopped the app: asleep here too (its stop command
    /// ran there).
    fn asleep_elsewhere(&self) {
        self.transition(&[State::Awake], State::Asleep, |status| {
            status.upstream = None;
            status.running = None;
        });
    }
}

/// [`launch`], once among every instance: here if this one takes the
/// lock, or else the start another instance made, adopted.
async fn launch_once(
    shared: Arc<SharedApps>,
    app: Arc<App>,
    spec: Arc<AppSpec>,
) -> Result<(Uri, Option<u32>), String> {
    let (name, patience) = (app.name.clone(), spec.start_timeout);
    let start = || async move {
        let launched = launch(app, spec).await;
        launched.map(|(upstream, _)| upstream.to_string())
    };
    let upstream = shared.start_once(&name, patience, start).await?;
    let upstream = upstream
        .parse()
        .map_err(|err| format!("another instance's upstream {upstream:?}: {err}"))?;
    Ok((upstream, None))
}

/// Why an app is stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Idle here: not if another instance served it lately.
    Idle,
    /// The status API asked.
    Asked,
}

/// A stop, once among every instance: by the one that takes the lock, the
/// others follow; an idle stop not while another instance has seen a
/// request within the idle time. Redis unreachable: this instance decides
/// alone.
async fn stop_everywhere(app: &Arc<App>, why: Why) {
    let stopping = async {
        match why {
            Why::Idle => stop_unless_busy(app).await,
            Why::Asked => stop_unless(app, || false).await,
        }
    };
    let spec = app.spec();
    let Some(shared) = app.shared_with_others(&spec) else {
        return stopping.await;
    };
    if why == Why::Idle
        && let Ok(Some(seen)) = shared.last_seen(&app.name).await
    {
        let ago = SystemTime::now().duration_since(seen).unwrap_or_default();
        if ago < spec.idle {
            // Busy elsewhere: idle here from that request on.
            *lock(&app.last_activity) =
                Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
            return;
        }
    }
    let lock = match shared.try_lock(&app.name, LEASE).await {
        Ok(Some(lock)) => Some(lock),
        // Another instance starts or stops it right now.
        Ok(None) => return,
        Err(_) => None,
    };
    // Stopped by another instance just before (its news not here yet).
    if let Ok(Some(status)) = shared.status(&app.name).await
        && status.state == "asleep"
    {
        app.asleep_elsewhere();
        if let Some(lock) = lock {
            let _ = shared.release(lock).await;
        }
        return;
    }
    let _ = shared.announce(&app.name, "stopping", None).await;
    match &lock {
        Some(lock) => shared.while_holding(lock, stopping).await,
        None => stopping.await,
    }
    let state = app.state();
    let now = if state == State::Asleep {
        "asleep"
    } else {
        "awake"
    };
    let upstream = app.status().upstream.map(|upstream| upstream.to_string());
    let _ = shared.announce(&app.name, now, upstream.as_deref()).await;
    if let Some(lock) = lock {
        let _ = shared.release(lock).await;
    }
}

impl Apps {
    /// Shares the apps started by commands with the other instances that
    /// use `shared` (before serving; once), and follows their changes.
    pub fn share_through(self: &Arc<Apps>, shared: Arc<SharedApps>) {
        if self.shared.set(shared.clone()).is_err() {
            return;
        }
        let apps = Arc::downgrade(self);
        let mut changes = shared.changes();
        tokio::spawn(async move {
            // Ends with the subscription, or when the apps are gone.
            while let Some(event) = changes.recv().await {
                let Some(apps) = apps.upgrade() else {
                    return;
                };
                match event {
                    Event::Changed(change) if change.state == "asleep" => {
                        if let Some(app) = apps.registry().apps.get(&change.app) {
                            app.asleep_elsewhere();
                        }
                    }
                    Event::Changed(change) if change.state == "awake" => {
                        let app = apps.registry().apps.get(&change.app).cloned();
                        if let (Some(app), Some(upstream)) = (app, change.upstream) {
                            app.awake_elsewhere(&upstream);
                        }
                    }
                    // Subscribed (again): what was missed meanwhile, and
                    // what a Redis that lost its data does not know. (Its
                    // connection may come back a moment after this one:
                    // tried for 5 s.)
                    Event::Subscribed => {
                        for _ in 0..5 {
                            if resynchronise(&apps, &shared).await.is_ok() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    Event::Changed(_) => {}
                }
            }
        });
    }
}

/// Makes this instance's shared apps and Redis agree: asleep here if it
/// says so; awake there (with the upstream) if it knows nothing.
async fn resynchronise(apps: &Apps, shared: &SharedApps) -> Result<(), Unreachable> {
    for app in apps.registry().apps.values() {
        if app.state() != State::Awake || app.shared_with_others(&app.spec()).is_none() {
            continue;
        }
        match shared.status(&app.name).await? {
            Some(status) if status.state == "asleep" => app.asleep_elsewhere(),
            Some(_) => {}
            None => {
                let upstream = app.status().upstream.map(|up| up.to_string());
                shared
                    .announce(&app.name, "awake", upstream.as_deref())
                    .await?;
            }
        }
    }
    Ok(())
}
// ANCHOR_END: instances

/// Every app, by name, and the domain they answer under.
pub struct Registry {
    pub domain: String,
    pub apps: BTreeMap<String, Arc<App>>,
    /// Whether the domain is ours at all: not without apps and discovery
    /// (step 11's routes keep every host then).
    pub claims_domain: bool,
    /// Whether an app's cookies are kept to its own host (step 13 does it).
    pub isolate_apps: bool,
}

/// The apps of the proxy: the registry (swapped whole on a reload, as
/// step 11's routes), and the lists it is made from.
pub struct Apps {
    registry: ArcSwap<Registry>,
    /// Locked while the registry is rebuilt from them: a reload and a
    /// discovery at the same time cannot undo each other.
    sources: Mutex<Sources>,
    /// Step 13's `[state] redis`: set once, before serving.
    shared: Arc<OnceLock<Arc<SharedApps>>>,
}

/// What the registry is made from.
struct Sources {
    file: AppsFile,
    discovered: Vec<AppSpec>,
}

/// What a request's host names.
pub enum Found {
    App(Arc<App>),
    /// Under the apps' domain, but no such app.
    Unknown(String),
}

impl Apps {
    pub fn new(file: AppsFile) -> Arc<Apps> {
        let apps = Arc::new(Apps {
            registry: ArcSwap::from_pointee(Registry {
                domain: file.domain.clone(),
                apps: BTreeMap::new(),
                claims_domain: false,
                isolate_apps: true,
            }),
            sources: Mutex::new(Sources {
                file,
                discovered: Vec::new(),
            }),
            shared: Arc::default(),
        });
        apps.rebuild(&lock(&apps.sources));
        apps
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    // ANCHOR: find
    /// The app a host names: the first label of a host under the domain
    /// (`hello.localhost:8080` → `hello`). `None`: not under the domain
    /// (step 11's routes decide).
    pub fn find(&self, host: Option<&str>) -> Option<Found> {
        let registry = self.registry.load();
        if !registry.claims_domain {
            return None;
        }
        let host = normalize_host(host?);
        let under = host.strip_suffix(registry.domain.as_str())?;
        let name = under.strip_suffix('.')?.split('.').next()?;
        match registry.apps.get(name) {
            Some(app) if !app.retired.load(Ordering::Relaxed) || app.state() != State::Asleep => {
                Some(Found::App(app.clone()))
            }
            _ => Some(Found::Unknown(name.to_string())),
        }
    }
    // ANCHOR_END: find

    /// Wakes, on tasks of their own, the apps `app` is linked to (which
    /// wake theirs in turn).
    fn wake_linked(self: &Arc<Apps>, app: &App) {
        let registry = self.registry.load();
        for name in &app.spec().linked {
            if let Some(linked) = registry.apps.get(name) {
                let (linked, apps) = (linked.clone(), self.clone());
                tokio::spawn(async move { linked.wake(&apps).await });
            }
        }
    }

    /// A new apps file (a reload): the apps keep their state.
    pub fn use_file(&self, file: AppsFile) {
        let mut sources = lock(&self.sources);
        if file.discover.is_none() {
            sources.discovered.clear();
        }
        sources.file = file;
        self.rebuild(&sources);
    }

    /// A new list from the discovery command; returns what changed.
    pub fn use_discovered(&self, discovered: Vec<AppSpec>) -> Vec<String> {
        let mut sources = lock(&self.sources);
        let before: BTreeSet<&str> = sources
            .discovered
            .iter()
            .map(|app| app.name.as_str())
            .collect();
        let after: BTreeSet<&str> = discovered.iter().map(|app| app.name.as_str()).collect();
        let added = after.difference(&before).map(|name| format!("+{name}"));
        let gone = before.difference(&after).map(|name| format!("-{name}"));
        let changes = added.chain(gone).collect();
        sources.discovered = discovered;
        self.rebuild(&sources);
        changes
    }

    /// The discovery command of the file in force, and the defaults of
    /// the apps it finds.
    pub fn discovery(&self) -> Option<(apps_file::Discover, apps_file::Defaults)> {
        let sources = lock(&self.sources);
        let file = &sources.file;
        file.discover
            .clone()
            .map(|discover| (discover, file.defaults))
    }

    /// Merges the file's apps and the discovered ones (the file wins a
    /// name), keeps the state of the apps that stay, retires the others.
    fn rebuild(&self, sources: &Sources) {
        let file = &sources.file;
        let mut specs = file.apps.clone();
        for spec in &sources.discovered {
            if !specs.iter().any(|known| known.name == spec.name) {
                specs.push(spec.clone());
            }
        }
        let groups = apps_file::groups(&specs);
        self.registry.rcu(|old| {
            let mut apps = BTreeMap::new();
            for spec in &specs {
                let group = groups.get(&spec.name).cloned().unwrap_or_default();
                let app = match old.apps.get(&spec.name) {
                    Some(app) => {
                        app.spec.store(Arc::new(spec.clone()));
                        app.group.store(Arc::new(group));
                        app.retired.store(false, Ordering::Relaxed);
                        app.clone()
                    }
                    None => Arc::new(App::new(spec.clone(), group, self.shared.clone())),
                };
                apps.insert(spec.name.clone(), app);
            }
            for (name, app) in &old.apps {
                if !apps.contains_key(name) && app.state() != State::Asleep {
                    app.retired.store(true, Ordering::Relaxed);
                    app.group.store(Arc::new(vec![name.clone()]));
                    apps.insert(name.clone(), app.clone());
                }
            }
            Registry {
                domain: file.domain.clone(),
                claims_domain: file.discover.is_some() || !apps.is_empty(),
                isolate_apps: file.isolate_apps,
                apps,
            }
        });
    }

    /// Forgets the retired apps that are asleep now.
    fn forget_retired(&self) {
        let retired_asleep =
            |app: &Arc<App>| app.retired.load(Ordering::Relaxed) && app.state() == State::Asleep;
        if !self.registry.load().apps.values().any(retired_asleep) {
            return;
        }
        self.registry.rcu(|old| Registry {
            domain: old.domain.clone(),
            claims_domain: old.claims_domain,
            isolate_apps: old.isolate_apps,
            apps: old
                .apps
                .iter()
                .filter(|(_, app)| !retired_asleep(app))
                .map(|(name, app)| (name.clone(), app.clone()))
                .collect(),
        });
    }

    /// Stops every app that is our child (at shutdown: no orphans),
    /// letting one that is starting finish first. Apps started by commands
    /// are not ours to stop when the proxy goes.
    pub async fn stop_children(&self) {
        let mut stopping = tokio::task::JoinSet::new();
        for app in self.registry.load().apps.values() {
            let app = app.clone();
            stopping.spawn(async move {
                let mut status = app.status.subscribe();
                let settled = status.wait_for(|status| status.state != State::Starting);
                let patience = app.spec().start_timeout + Duration::from_secs(1);
                let _ = tokio::time::timeout(patience, settled).await;
                let ours = match &app.status().running {
                    Some(running) => matches!(running.run, Run::Child { .. }),
                    None => false,
                };
                if ours {
                    stop(&app).await;
                }
            });
        }
        while stopping.join_next().await.is_some() {}
    }
}

/// Runs a discovery command every so often and swaps in the list it
/// prints; a failure keeps the last list, and says why.
pub async fn discover_apps(apps: Arc<Apps>) {
    loop {
        let Some((discover, defaults)) = apps.discovery() else {
            // No command (yet): the file may get one on a reload.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let patience = discover.every.max(Duration::from_secs(5));
        let found = run_shell(&discover.command, patience)
            .await
            .and_then(|json| apps_file::parse_discovered(&json, &defaults));
        match found {
            Ok(found) => {
                let changes = apps.use_discovered(found);
                if !changes.is_empty() {
                    info!("apps discovered: {}", changes.join(" "));
                }
            }
            Err(why) => warn!("discovery failed, the last list of apps stays: {why}"),
        }
        tokio::time::sleep(discover.every).await;
    }
}

/// `1.8 s`, `120 ms`: for logs and messages.
fn readable(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_counted_in_real_durations() {
        let now = Instant::now() + Duration::from_secs(7200);
        let minutes = |m: u64| Duration::from_secs(60 * m);
        // Paastis' bug: 61 minutes looked like 1 (minutes modulo 60).
        assert!(has_been_idle(now - minutes(61), now, minutes(15)));
        assert!(has_been_idle(now - minutes(15), now, minutes(15)));
        assert!(!has_been_idle(now - minutes(14), now, minutes(15)));
        // A last activity "in the future" (a request that just ended) is no idle time.
        assert!(!has_been_idle(now + minutes(1), now, minutes(15)));
    }
}
