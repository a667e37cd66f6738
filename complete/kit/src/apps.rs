//! The apps of steps 12 on, as data: each app's spec, its state in a
//! `tokio::sync::watch` channel, what it is doing (requests, activity) and
//! how to stop what runs; the registry of every app, swapped whole when the
//! apps file or the discovered list changes (as step 11's routes are), and
//! which app a host names.
//!
//! The lessons decide *when* an app moves: step 12 wakes it (one start for
//! many requests), step 13 puts it back to sleep (idle, crashed), step 16
//! shares the decision between proxies. This file is the bookkeeping they
//! share, and what the status API and the metrics read. It never starts an
//! app on its own; it stops one when a lesson (or the shutdown) asks.
//!
//! ```text
//!            first request                ready
//!  asleep ─────────────────▶ starting ─────────────▶ awake
//!    ▲  ▲                       │ failed, timed out     │ idle, or asked
//!    │  └───────────────────────┘                       ▼
//!    └──────────────────────────────────────────── stopping
//!              stopped (or crashed, from awake)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use http::Uri;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::apps_file::{self, AppSpec, AppsFile};
use crate::children::{self, Ended, Launched, Running};
use crate::patterns::normalize_host;

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
    /// What runs while it is awake, and how to stop it: a reload changes
    /// the next start, not how this run is stopped.
    running: Mutex<Option<Running>>,
    /// Requests and tunnels under way (step 13 counts them).
    in_flight: AtomicUsize,
    last_activity: Mutex<Instant>,
    last_request: Mutex<Option<SystemTime>>,
    /// Requests for it, answered by it or not (a waiting page, a 503).
    requests: AtomicU64,
    /// No longer in the list: served until it sleeps, then forgotten.
    retired: AtomicBool,
}

impl App {
    fn new(spec: AppSpec, group: Vec<String>) -> App {
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
                attempt: 0,
                last_error: None,
            }),
            running: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
            last_request: Mutex::new(None),
            requests: AtomicU64::new(0),
            retired: AtomicBool::new(false),
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

    /// Every change of the status from now on (`changed`, `wait_for`).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    // ANCHOR: transition
    /// Moves to `to` if the app is in one of `from` (under the channel's
    /// lock: two callers cannot both make the same move), applies
    /// `change`, and logs the move. Returns whether it moved.
    pub fn transition(&self, from: &[State], to: State, change: impl FnOnce(&mut Status)) -> bool {
        self.transition_if(from, to, || true, change)
    }

    /// [`App::transition`], if `allowed` also says yes, under the same lock.
    pub fn transition_if(
        &self,
        from: &[State],
        to: State,
        allowed: impl FnOnce() -> bool,
        change: impl FnOnce(&mut Status),
    ) -> bool {
        let mut previous = None;
        // ANCHOR: send_if_modified
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
        // ANCHOR_END: send_if_modified
        // ANCHOR_END: transition
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

    /// Awake with what `launched` says (from `starting`): where it
    /// answers, and how to stop it. Returns whether it moved.
    pub fn awake_with(&self, launched: Launched) -> bool {
        let Launched {
            upstream,
            pid,
            running,
        } = launched;
        // Kept first: a stop right after the move finds what to stop.
        *lock(&self.running) = Some(running);
        self.touch();
        let awake = self.transition(&[State::Starting], State::Awake, |status| {
            status.upstream = Some(upstream);
            status.pid = pid;
            status.last_error = None;
        });
        if !awake && let Some(running) = lock(&self.running).take() {
            // Stopped meanwhile (the shutdown): this run is not wanted.
            tokio::spawn(running.stop());
        }
        awake
    }

    /// Asleep, from `from`, because `why` (forgets what ran).
    pub fn asleep_because(&self, from: &[State], why: Option<String>) -> bool {
        self.transition(from, State::Asleep, |status| {
            status.last_error = why;
            status.upstream = None;
            status.pid = None;
        })
    }

    /// Why the last start failed, as the requests it held are told.
    pub fn failure(&self) -> String {
        self.status
            .borrow()
            .last_error
            .clone()
            .unwrap_or_else(|| "it stopped while starting".into())
    }

    /// How the process of this app ended on its own, if it did since it
    /// was started (a crash: step 13 notices); it is forgotten then, so
    /// the next start is not taken for crashed too.
    pub fn take_crash(&self) -> Option<String> {
        let mut running = lock(&self.running);
        match running.as_ref()?.ended()? {
            Ended::Crashed(why) => {
                *running = None;
                Some(why)
            }
            Ended::Stopped(_) => None,
        }
    }

    /// Whether what runs is our child (stopped with the proxy).
    pub fn runs_our_child(&self) -> bool {
        matches!(lock(&self.running).as_ref(), Some(Running::Child(_)))
    }

    /// Keeps how to stop an app another proxy started (step 16).
    pub fn keep_running(&self, running: Running) {
        *lock(&self.running) = Some(running);
    }

    // ANCHOR: stop_unless
    /// Stops the app if it is awake and `busy()` says no: the check and
    /// the move to `stopping` happen under the same lock, so a request
    /// either is seen by `busy` or sees `stopping` (and waits for a new
    /// start). Returns once it is asleep, or after twice the grace period.
    pub async fn stop_unless(&self, busy: impl FnOnce() -> bool) {
        let stopping = self.transition_if(&[State::Awake], State::Stopping, || !busy(), |_| {});
        if !stopping {
            return;
        }
        let running = lock(&self.running).take();
        let stopped = match running {
            Some(running) => running.stop().await,
            // Nothing to stop (it was adopted without a way to stop it).
            None => Ok(()),
        };
        self.asleep_because(&[State::Stopping], stopped.err());
    }
    // ANCHOR_END: stop_unless

    /// Requests for it so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// When the last request for it came.
    pub fn last_request(&self) -> Option<SystemTime> {
        *lock(&self.last_request)
    }

    /// A request for it came: counted, and the time kept.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_request) = Some(SystemTime::now());
    }

    /// Requests and tunnels under way.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// One more request or tunnel under way. SeqCst, with the load in a
    /// `busy` check of [`App::stop_unless`]: a request that arrives as
    /// an idle stop begins is seen by it, or sees `stopping`.
    pub fn activity_began(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    /// One request or tunnel fewer; the idle time counts from now.
    pub fn activity_ended(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// When it last did something (its idle time counts from there).
    pub fn last_activity(&self) -> Instant {
        *lock(&self.last_activity)
    }

    /// Busy until `at` (another proxy served it then: step 16).
    pub fn active_at(&self, at: Instant) {
        *lock(&self.last_activity) = at;
    }

    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
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

/// Every app, by name, and the domain they answer under.
pub struct Registry {
    pub domain: String,
    pub apps: BTreeMap<String, Arc<App>>,
    /// Whether the domain is ours at all: not without apps and discovery
    /// (step 11's routes keep every host then).
    pub claims_domain: bool,
    /// Whether an app's cookies are kept to its own host (step 17 does it).
    pub isolate_apps: bool,
}

/// What a request's host names.
pub enum Found {
    App(Arc<App>),
    /// Under the apps' domain, but no such app.
    Unknown(String),
}

/// Why an app is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Idle here (another proxy may have served it lately: step 16).
    Idle,
    /// The status API or the shutdown asked.
    Asked,
}

// ANCHOR: coordinator
/// Who else has a say in an app's starts and stops. Alone (one proxy),
/// nobody: [`Alone`] runs them as they come. Step 16's proxies share
/// them through Redis, so that an app is started once among all of them.
// ANCHOR: coordinator_trait
pub trait Coordinator: Send + Sync {
    /// `launch`, once among every proxy: here, or the start another one
    /// made, adopted.
    fn start_once<'a>(
        &'a self,
        app: &'a Arc<App>,
        launch: BoxFuture<'a, Result<Launched, String>>,
    ) -> BoxFuture<'a, Result<Launched, String>>;

    /// `stop`, once among every proxy, if they agree that it should be.
    fn stop_once<'a>(
        &'a self,
        app: &'a Arc<App>,
        why: Why,
        stop: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, ()>;
}
// ANCHOR_END: coordinator_trait

/// One proxy alone: starts and stops happen here, as asked.
pub struct Alone;

impl Coordinator for Alone {
    fn start_once<'a>(
        &'a self,
        _: &'a Arc<App>,
        launch: BoxFuture<'a, Result<Launched, String>>,
    ) -> BoxFuture<'a, Result<Launched, String>> {
        launch
    }

    fn stop_once<'a>(
        &'a self,
        _: &'a Arc<App>,
        _: Why,
        stop: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, ()> {
        stop
    }
}
// ANCHOR_END: coordinator

/// The apps of the proxy: the registry (swapped whole on a reload, as
/// step 11's routes), the lists it is made from, and who else decides.
pub struct Apps {
    registry: ArcSwap<Registry>,
    /// Locked while the registry is rebuilt from them: a reload and a
    /// discovery at the same time cannot undo each other.
    sources: Mutex<Sources>,
    /// Set once, before serving (step 16); [`Alone`] otherwise.
    coordinator: OnceLock<Arc<dyn Coordinator>>,
    /// Woken when a child ends on its own.
    child_ended: Arc<Notify>,
}

/// What the registry is made from.
struct Sources {
    file: AppsFile,
    discovered: Vec<AppSpec>,
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
            coordinator: OnceLock::new(),
            child_ended: Arc::new(Notify::new()),
        });
        apps.rebuild(&lock(&apps.sources));
        apps
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// The app called `name`.
    pub fn named(&self, name: &str) -> Option<Arc<App>> {
        self.registry.load().apps.get(name).cloned()
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
            Some(app) if !app.is_retired() || app.state() != State::Asleep => {
                Some(Found::App(app.clone()))
            }
            _ => Some(Found::Unknown(name.to_string())),
        }
    }
    // ANCHOR_END: find

    /// Lets `coordinator` have a say in every start and stop (once, before
    /// serving); `false` if one was set already.
    pub fn coordinate_with(&self, coordinator: Arc<dyn Coordinator>) -> bool {
        self.coordinator.set(coordinator).is_ok()
    }

    fn coordinator(&self) -> &dyn Coordinator {
        match self.coordinator.get() {
            Some(coordinator) => coordinator.as_ref(),
            None => &Alone,
        }
    }

    // ANCHOR: launch
    /// Runs the app as its spec says (a child on a free port, or its start
    /// command), and waits until it answers, by its start timeout at the
    /// latest: once among every proxy, if they coordinate.
    pub async fn launch(&self, app: &Arc<App>) -> Result<Launched, String> {
        let spec = app.spec();
        let launch = children::launch(spec, self.child_ended.clone());
        self.coordinator().start_once(app, Box::pin(launch)).await
    }
    // ANCHOR_END: launch

    /// Stops `app` unless `busy()` says no (see [`App::stop_unless`]):
    /// once among every proxy, if they coordinate.
    pub async fn stop(&self, app: &Arc<App>, why: Why, busy: impl FnOnce() -> bool + Send) {
        let stop = app.stop_unless(busy);
        self.coordinator().stop_once(app, why, Box::pin(stop)).await
    }

    /// Until a child of ours ends on its own (a crash).
    pub async fn a_child_ended(&self) {
        self.child_ended.notified().await
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
                    None => Arc::new(App::new(spec.clone(), group)),
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
    pub fn forget_retired(&self) {
        let retired_asleep = |app: &Arc<App>| app.is_retired() && app.state() == State::Asleep;
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
    pub async fn stop_children(self: &Arc<Self>) {
        let mut stopping = tokio::task::JoinSet::new();
        for app in self.registry.load().apps.values() {
            let (app, apps) = (app.clone(), self.clone());
            stopping.spawn(async move {
                let mut status = app.subscribe();
                let settled = status.wait_for(|status| status.state != State::Starting);
                let patience = app.spec().start_timeout + Duration::from_secs(1);
                let _ = tokio::time::timeout(patience, settled).await;
                if app.runs_our_child() {
                    apps.stop(&app, Why::Asked, || false).await;
                }
            });
        }
        while stopping.join_next().await.is_some() {}
    }
}

/// `1.8 s`, `120 ms`: for logs and messages.
pub fn readable(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
