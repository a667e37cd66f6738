//! Step 12 — apps on demand, part 1: waking. An app sleeps until its first
//! request wakes it (scale to zero, as Paastis does for PaaS review apps
//! and Sablier for containers): `hello.localhost` is the app `hello`.
//!
//! Four ideas, in order:
//! - [`wake`]: an app's state lives in a `tokio::sync::watch` channel, and
//!   `asleep` becomes `starting` under the channel's lock: of 100 first
//!   requests, exactly one starts the app; the 99 others wait for that
//!   same start, and each learns how it ended;
//! - [`start`]: the start runs on a task of its own, apart from the
//!   requests that wait for it (the one that began it may leave, the start
//!   goes on), and ends `awake` or `asleep` with the reason; the apps it
//!   is linked to wake with it;
//! - [`hold_until_awake`]: an API client is held until the app answers,
//!   within its start timeout; a browser gets at once a page that reloads
//!   itself (by `Accept`): a page says more than a spinner;
//! - [`OnDemand`]: the request path is a value again, one layer in front
//!   of step 11's: apps by host, then the status API, then the routes.
//!
//! The kit keeps the apps (`apps`: the registry, each app's state and how
//! to stop what runs) and launches them (`children`: a child on a free
//! port, ready when it answers, or start and stop commands).
//! Deliberate simplifications: nothing puts an app back to sleep, and a
//! crashed app stays `awake` (its requests get 502s): step 13 does both.
//! The proxy decides alone: step 16's proxies decide together.
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 12`.
//! This file is generated from `solutions/12_wake.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/12_wake.rs solutions/12_wake.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use kit::answer::{Answer, ForApp};
use kit::apps::{App, Apps, Found, State, Why};
use kit::apps_api::{self, Asked};
use kit::patterns::{MediaRange, accept_groups, host_of};
use kit::routes_file::Routes;
use workshop::body::{Body, RequestBody, full, text};
use workshop::round_trip::HttpClient;

use crate::routing::{Forward, dispatch};

// ANCHOR: wake
/// Makes sure the app is awake and returns where it answers, or why it
/// could not start. The first caller to find it asleep starts it; every
/// other caller waits for that same start.
pub async fn wake(app: &Arc<App>, apps: &Arc<Apps>) -> Result<Uri, String> {
    // ANCHOR: counting
    let mut status = app.subscribe();
    // The starts that count for this caller: the one under way when it
    // came, and any later. If the app is asleep after one, it failed.
    let first_counting = {
        let now = status.borrow_and_update();
        match now.state {
            State::Starting => now.attempt,
            _ => now.attempt + 1,
        }
    };
    // ANCHOR_END: counting
    // ANCHOR: waits
    loop {
        let now = status.borrow_and_update().clone();
        match now.state {
            State::Awake => {
                return now.upstream.ok_or_else(|| "awake, but nowhere".into());
            }
            State::Asleep if now.attempt >= first_counting => return Err(app.failure()),
            State::Asleep if app.is_retired() => {
                return Err("it is no longer in the list of apps".into());
            }
            // ANCHOR_END: waits
            State::Asleep => {
                // TODO: exactly one of the callers that find the app asleep starts it, as a new attempt that outlives its caller; then every caller, the one that started it included, waits for that start's outcome. Trap: a start run inside its caller's future dies with it when that client leaves: the app stays `starting`, and every later request waits for nothing
                todo!(
                    "exactly one of the callers that find the app asleep starts it, as a new attempt that outlives its caller; then every caller, the one that started it included, waits for that start's outcome. Trap: a start run inside its caller's future dies with it when that client leaves: the app stays `starting`, and every later request waits for nothing"
                );
                // Won or lost, the state has changed: look again.
                continue;
            }
            // ANCHOR: waits
            State::Starting | State::Stopping => {}
        }
        // The sender lives in `app`: this wait ends with a change.
        let _ = status.changed().await;
    }
    // ANCHOR_END: waits
}
// ANCHOR_END: wake

// ANCHOR: start
/// Starts an app whose state is `starting`, and the apps linked to it:
/// the kit launches it, and the app is `awake` where it answers, or
/// `asleep` with the reason, by its start timeout at the latest.
// ANCHOR: start_task
async fn start(app: Arc<App>, apps: Arc<Apps>) {
    wake_linked(&app, &apps);
    // On a task of its own: should the launch panic, the app still leaves
    // `starting` (with the reason) instead of holding its waiters forever.
    let launching = tokio::spawn({
        let (app, apps) = (app.clone(), apps.clone());
        async move { apps.launch(&app).await }
    });
    match launching.await {
        Ok(Ok(launched)) => app.awake_with(launched),
        Ok(Err(why)) => app.asleep_because(&[State::Starting], Some(why)),
        Err(panicked) => {
            let why = format!("the start failed: {panicked}");
            app.asleep_because(&[State::Starting], Some(why))
        }
    };
}
// ANCHOR_END: start_task

/// Wakes, on tasks of their own, the apps `app` is linked to (which wake
/// theirs in turn).
fn wake_linked(app: &App, apps: &Arc<Apps>) {
    for name in &app.spec().linked {
        if let Some(linked) = apps.named(name) {
            let apps = apps.clone();
            tokio::spawn(async move { wake(&linked, &apps).await });
        }
    }
}
// ANCHOR_END: start

// ANCHOR: hold
/// Where a request for `app` goes once the app is awake, or what to answer
/// at once instead: a waiting page for a browser (the app wakes on a task
/// of its own), a 503 with the reason if it cannot start. An API client
/// is held, up to the start timeout.
// ANCHOR: hold_body
async fn hold_until_awake(
    apps: &Arc<Apps>,
    app: &Arc<App>,
    browser: bool,
) -> Result<Uri, Response<Body>> {
    // TODO: a browser asking for an app that is not awake gets the waiting page at once, and the app wakes all the same; anyone else waits for the start and gets where the app answers, or a 503 that says why. Trap: the page alone wakes nothing: the browser reloads it, and gets it again, forever
    todo!(
        "a browser asking for an app that is not awake gets the waiting page at once, and the app wakes all the same; anyone else waits for the start and gets where the app answers, or a 503 that says why. Trap: the page alone wakes nothing: the browser reloads it, and gets it again, forever"
    )
}
// ANCHOR_END: hold_body
// ANCHOR_END: hold

// ANCHOR: on_demand
/// Step 11's routes, with the apps in front: the request path of step 12.
pub struct OnDemand<T> {
    pub apps: Arc<Apps>,
    pub routes: Arc<ArcSwap<Routes>>,
    pub forward: Forward<T>,
    /// Opens the status API (`/_proxy/apps`) to whoever has it.
    pub admin_token: Option<Arc<str>>,
}

impl<T: HttpClient> OnDemand<T> {
    /// Apps first, by host (`found`: what the host names); then, on other
    /// hosts, the proxy's own API (with a token configured); then step
    /// 11's routes.
    // ANCHOR: answer_found
    pub async fn answer_found<B: RequestBody>(
        &self,
        found: Option<Found>,
        request: Request<B>,
    ) -> Response<Body> {
        match found {
            Some(Found::App(app)) => self.serve_app(app, request).await,
            Some(Found::Unknown(name)) => text(
                StatusCode::NOT_FOUND,
                format!("404 Not Found: there is no app named {name}"),
            ),
            None => match self.admin_token.as_deref() {
                Some(token) if request.uri().path().starts_with(apps_api::PREFIX) => {
                    let asked = apps_api::read(&self.apps, token, &request);
                    self.status_api(asked).await
                }
                _ => dispatch(&self.routes, &self.forward, request).await,
            },
        }
    }
    // ANCHOR_END: answer_found

    /// Once the app is awake, step 11's pipeline, pointed at it.
    // ANCHOR: serve_app
    pub async fn serve_app<B: RequestBody>(
        &self,
        app: Arc<App>,
        request: Request<B>,
    ) -> Response<Body> {
        app.count_request();
        let browser = wants_a_page(&request);
        let mut response = match hold_until_awake(&self.apps, &app, browser).await {
            Ok(upstream) => self.forward.to(upstream).forward(request, |_| {}).await,
            Err(answer) => answer,
        };
        response.extensions_mut().insert(ForApp(app.clone()));
        response
    }
    // ANCHOR_END: serve_app
    // ANCHOR_END: on_demand

    /// `/_proxy/apps` (the kit reads it): a start is a wake, as a request's.
    async fn status_api(&self, asked: Asked) -> Response<Body> {
        match asked {
            Asked::Answer(response) => response,
            Asked::Start(app) => {
                let woken = wake(&app, &self.apps).await;
                apps_api::after(&app, woken.map(|_| ()))
            }
            Asked::Stop(app) => {
                self.apps.stop(&app, Why::Asked, || false).await;
                apps_api::after(&app, Ok(()))
            }
        }
    }
}

impl<T: HttpClient, B: RequestBody> Answer<B> for OnDemand<T> {
    async fn answer(&self, request: Request<B>) -> Response<Body> {
        let found = self.apps.find(host_of(&request));
        self.answer_found(found, request).await
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

/// The app could not start: `503`, when to try again, and why. A
/// simplification: the why (an app's stderr, an address) is for the
/// operator, and step 15 moves it from the body to the log.
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
