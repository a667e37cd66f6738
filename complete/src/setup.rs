//! What the programs of steps 12 to 17 do before they serve, the same for
//! each: the demo apps' hidden mode, `--check`, the routes and apps files
//! (or the demo: step 11's example routes in front of a demo origin, two
//! demo apps), listening, reloading the files when they change, and the
//! commands to try. Not a lesson, and not the kit (it uses step 11's
//! reload): the wiring the programs share, so that each only builds its
//! lesson's values.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use kit::access_log::AccessLog;
use kit::answer::{Answer, Handler, handler};
use kit::apps::Apps;
use kit::apps_file::{self, AppsFile};
use kit::config::{Config, Listener, Tls};
use kit::connector::UpstreamRoots;
use kit::demo::{demo_apps, no_apps, run_demo_app};
use kit::flags::{Files, Hardening, Logs};
use kit::metrics::Metrics;
use kit::routes_file::{Routes, Source};
use kit::upstream_groups::Groups;
use kit::watch;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use workshop::body::Body;
use workshop::{cli, http2, streaming, x_forwarded};

use crate::hardened::{Bound, Hardened, OpenConnections, Server};
use crate::observed::Observed;
use crate::routing::{Forward, reload};
use crate::sleep::Sleeping;
use crate::wake::OnDemand;

/// The flags of steps 11 and 12, which every later step keeps.
#[derive(clap::Args, Debug, Clone)]
pub struct Flags {
    #[command(flatten)]
    pub common: cli::Args,
    #[command(flatten)]
    pub forwarding: x_forwarded::Options,
    #[command(flatten)]
    pub streaming: streaming::Options,
    #[command(flatten)]
    pub http2: http2::Options,
    #[command(flatten)]
    pub files: Files,
}

impl Flags {
    /// No file and no upstream: the demo (example routes, demo apps).
    pub fn demo(&self) -> bool {
        self.files.apps.is_none() && self.files.routes.is_none() && self.common.upstream.is_none()
    }

    /// Step 11's pipeline, as the flags say (steps 02 to 10's clients).
    pub fn forward(&self) -> Forward {
        let http2 = self.http2.upstream_http2;
        Forward::new(
            self.forwarding.clone(),
            self.streaming.upstream_timeout,
            http2,
        )
    }

    /// `--admin-token` (or `PROXY_ADMIN_TOKEN`), unless empty.
    pub fn admin_token(&self) -> Option<Arc<str>> {
        self.files.admin_token().map(Arc::from)
    }
}

/// The flags of steps 11 to 16 that step 17's `--config FILE` takes the
/// place of (`--listen` aside: it replaces the file's listeners).
pub const FLAGS_A_CONFIG_REPLACES: &[&str] = &[
    "routes",
    "apps",
    "upstream",
    "tls",
    "cert",
    "key",
    "upstream_timeout",
    "redis",
    "header_read_timeout",
    "keep_alive",
    "max_connections",
    "max_request_body",
    "shutdown_grace",
    "access_log",
    "log_format",
];

/// What a step serves, once it listens.
pub struct Started {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Step 11's rules, reloaded when their file changes.
    pub routes: Arc<ArcSwap<Routes>>,
    /// The apps, reloaded when their file changes.
    pub apps: Arc<Apps>,
}

/// Reads the files, listens, watches the files, says what to try
/// (`demo_lines` for the demo). `None`: there is nothing to serve (the
/// hidden demo-app mode ran, or `--check` did). A problem with a file is an
/// exit 2 before anything listens.
pub async fn start(flags: &Flags, demo_lines: &[&str]) -> Option<Started> {
    if let Some(port) = flags.files.demo_app {
        run_demo_app(port).await;
        return None;
    }
    if flags.files.check {
        if let Err(err) = flags.files.check() {
            exit_with(&err);
        }
        return None;
    }
    let mut source = Source::from_flags(
        flags.files.routes.as_deref(),
        flags.common.upstream.as_ref(),
    );
    let apps_file = apps_file(flags).unwrap_or_else(|err| exit_with(&err));
    if let Err(err) = source.load() {
        exit_with(&err);
    }
    let (listener, tls) = listen(&flags.common, &flags.http2).await;
    // The example routes run in front of a demo origin of their own.
    if source.is_example()
        && let Source::File { origin, .. } = &mut source
    {
        *origin = cli::upstream(&flags.common).await.authority().cloned();
    }
    let routes = source.load().unwrap_or_else(|err| exit_with(&err));
    let routes = Arc::new(ArcSwap::from_pointee(routes));
    let apps = Apps::new(apps_file.clone().unwrap_or_else(no_apps));
    watch_files(flags, source, &routes, &apps);
    println!("routes: {}", routes.load());
    match &apps_file {
        Some(file) => println!("apps: {file}"),
        None => println!("apps: none (--apps FILE to have some)"),
    }
    try_lines(&listener, flags, demo_lines, apps_file.as_ref());
    Some(Started {
        listener,
        tls,
        routes,
        apps,
    })
}

/// The apps the flags name: `--apps FILE`, the demo's, or none.
pub fn apps_file(flags: &Flags) -> Result<Option<AppsFile>, String> {
    match (&flags.files.apps, flags.demo()) {
        (Some(path), _) => apps_file::load(path).map(Some),
        (None, true) => demo_apps().map(Some),
        (None, false) => Ok(None),
    }
}

/// Steps 11 on start as step 09 does, and say which exercises they run.
pub async fn listen(
    common: &cli::Args,
    options: &http2::Options,
) -> (TcpListener, Option<TlsAcceptor>) {
    let listening = http2::listen(common, options).await;
    cli::say_exercises(&crate::exercises_in_use());
    listening
}

/// The routes file and the apps file the flags name, reloaded when they
/// change (or on SIGHUP).
pub fn watch_files(
    flags: &Flags,
    routes_source: Source,
    routes: &Arc<ArcSwap<Routes>>,
    apps: &Arc<Apps>,
) {
    watch_routes(routes_source, routes);
    if let Some(path) = &flags.files.apps {
        watch_apps(path, apps);
    }
}

/// Whether `--listen` is on the command line (it has a default: only then
/// does it take the place of a config file's listeners).
pub fn listen_flag_given() -> bool {
    std::env::args().any(|arg| arg == "--listen" || arg.starts_with("--listen="))
}

/// Step 11's reload, when the routes file changes (or on SIGHUP).
pub fn watch_routes(source: Source, routes: &Arc<ArcSwap<Routes>>) {
    let Some(path) = source.watched().map(|path| path.to_path_buf()) else {
        return;
    };
    let routes = routes.clone();
    if let Err(err) = watch::on_change(&path, move || reload(&routes, || source.load())) {
        eprintln!("warning: {err}: the routes are not watched, send SIGHUP to reload");
    }
}

/// The apps file again when it changes (or on SIGHUP): the apps keep their
/// state; a broken file keeps the apps in force.
pub fn watch_apps(path: &Path, apps: &Arc<Apps>) {
    let (apps, file) = (apps.clone(), path.to_path_buf());
    let watching = watch::on_change(path, move || match apps_file::load(&file) {
        Ok(fresh) => {
            info!("apps reloaded: {fresh}");
            apps.use_file(fresh);
        }
        Err(err) => warn!("apps not reloaded (the apps in force stay): {err}"),
    });
    if let Err(err) = watching {
        eprintln!("warning: {err}: the apps are not watched, send SIGHUP to reload");
    }
}

/// The commands to try: `demo_lines` for the demo, else one for the
/// first app of the file (or the routes, without apps).
fn try_lines(listener: &TcpListener, flags: &Flags, demo_lines: &[&str], apps: Option<&AppsFile>) {
    let tls = flags.http2.uses_tls();
    if flags.demo() {
        return cli::try_this_over(listener, tls, demo_lines);
    }
    let Some((app, file)) = apps.and_then(|file| file.apps.first().map(|app| (app, file))) else {
        let lines = [
            "# no --apps: every request goes by the routes, as in step 11",
            "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
        ];
        return cli::try_this_over(listener, tls, &lines);
    };
    let note = format!(
        "# {} is asleep: this request starts it, and waits",
        app.name
    );
    let line = format!(
        "{{curl}} -s {{url}}/ -H 'Host: {}.{}'",
        app.name, file.domain
    );
    cli::try_this_over(listener, tls, &[&note, &line]);
}

/// Says `err` and exits 2: a problem with the files or the flags.
pub fn exit_with(err: &str) -> ! {
    eprintln!("error: {err}");
    std::process::exit(2);
}

/// Ctrl-C or SIGTERM, for a graceful shutdown: a second one does not wait
/// for the grace period (the process exits 1 at once).
pub async fn shutdown_requested() {
    watch::shutdown_signal().await;
    tokio::spawn(async {
        watch::shutdown_signal().await;
        warn!("a second signal: exiting now, without waiting");
        std::process::exit(1);
    });
}

/// Serves `answer` on `listener` (step 09's `serve`: HTTP/1.1 and HTTP/2,
/// WebSockets over both) until Ctrl-C or SIGTERM, then stops the apps
/// this proxy started: steps 12 and 13.
pub async fn serve_until_signal<A: Answer<Incoming>>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    answer: A,
    apps: &Arc<Apps>,
) {
    let mut builder = http2::builder();
    builder.http2().enable_connect_protocol();
    let answer = handler(Arc::new(answer));
    let serving = http2::serve(listener, tls, builder, move |request| answer(request));
    // ANCHOR: shutdown
    // Ctrl-C or SIGTERM: stop every app we started, then exit. (Requests
    // in flight are cut; step 14 lets them finish first.)
    tokio::select! {
        () = serving => {}
        () = watch::shutdown_signal() => {
            info!("shutting down: stopping the apps this proxy started");
            apps.stop_children().await;
        }
    }
    // ANCHOR_END: shutdown
}

/// Step 12's request path, as the flags say: the apps, then the routes,
/// through step 11's pipeline.
pub fn on_demand(
    flags: &Flags,
    apps: &Arc<Apps>,
    routes: &Arc<ArcSwap<Routes>>,
) -> OnDemand<Client<HttpConnector, Body>> {
    OnDemand {
        apps: apps.clone(),
        routes: routes.clone(),
        forward: flags.forward(),
        admin_token: flags.admin_token(),
    }
}

/// Steps 12 to 14's request path, as the flags say: step 12's, its apps'
/// activity counted (step 13), its requests unable to take the proxy down
/// (step 14).
pub fn hardened(
    flags: &Flags,
    hardening: &Hardening,
    apps: &Arc<Apps>,
    routes: &Arc<ArcSwap<Routes>>,
) -> Hardened<Sleeping<Client<HttpConnector, Body>>> {
    Hardened {
        inner: Sleeping {
            on_demand: on_demand(flags, apps, routes),
        },
        max_request_body: hardening.max_request_body,
    }
}

/// Step 14's server, as its flags say (the limit on open files raised:
/// each connection is one).
pub fn server(flags: &Flags, hardening: &Hardening) -> Server {
    kit::flags::raise_open_files_limit();
    let timeouts = hardening.timeouts(flags.streaming.upstream_timeout);
    Server::new(timeouts, hardening.limits(), hardening.shutdown_grace)
}

// ANCHOR: observed
/// Step 15's request path around `inner`: logged (if `log`) and counted,
/// `/_proxy/metrics` open to the admin token.
pub fn observed<S>(
    inner: S,
    log: Option<AccessLog>,
    admin_token: Option<Arc<str>>,
    apps: &Arc<Apps>,
    server: &Server,
) -> Observed<S> {
    Observed {
        inner,
        log,
        metrics: Arc::new(Metrics::default()),
        admin_token,
        apps: apps.clone(),
        open_connections: server.open_connections(),
    }
}
// ANCHOR_END: observed

/// Serves `answer` on `listeners` with step 14's `server` until Ctrl-C or
/// SIGTERM, lets what is in flight finish, then stops the apps we started.
pub async fn serve_until_shutdown<A: Answer<Incoming>>(
    server: Server,
    listeners: Vec<Bound>,
    answer: A,
    apps: &Arc<Apps>,
) {
    serve_handler_until_shutdown(server, listeners, handler(Arc::new(answer)), apps.clone()).await
}

/// [`serve_until_shutdown`], once the request path is a [`Handler`]: not
/// generic, compiled once in this crate rather than in every program.
async fn serve_handler_until_shutdown(
    server: Server,
    listeners: Vec<Bound>,
    handler: Handler,
    apps: Arc<Apps>,
) {
    give_memory_back_when_idle(server.open_connections());
    let left = server
        .serve_until_shutdown(listeners, handler, shutdown_requested())
        .await;
    apps.stop_children().await;
    info!("stopped ({left} connection(s) cut at the end of the grace period)");
}

/// Once the last client connection has closed, what glibc kept of the
/// busy spell for the next one goes back to the system (`malloc_trim`):
/// freed, but still resident. After small requests then 1 MiB responses
/// (`bench/compare.py`'s order), step 17 stayed at 14.1 MiB. Checked once
/// a second, never on a request's path. (A fixed trim threshold instead
/// made every large read buffer an `mmap`: 1 MiB responses took a third
/// more CPU.) Other C libraries have no such call, and this does nothing
/// there.
fn give_memory_back_when_idle(open: OpenConnections) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut was_busy = false;
        // Ends with the runtime, as the proxy stops.
        loop {
            every.tick().await;
            let busy = open.now() > 0;
            if was_busy && !busy {
                // SAFETY: malloc_trim gives free pages back to the system;
                // no memory in use is touched.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
            was_busy = busy;
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = open;
}

/// Step 17's config when there is no config file: what the flags of steps
/// 11 to 16 say, as a config file would say it.
pub fn config_from_flags(
    flags: &Flags,
    hardening: &Hardening,
    logs: &Logs,
    redis: Option<String>,
    routes: &Source,
) -> Result<Config, String> {
    let tls = flags
        .http2
        .uses_tls()
        .then(|| match (&flags.http2.cert, &flags.http2.key) {
            (Some(cert), Some(key)) => Tls::Pem {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => Tls::SelfSigned,
        });
    Ok(Config {
        certificates: Vec::new(),
        listeners: vec![Listener {
            address: listen_address(&flags.common.listen)?,
            tls,
        }],
        admin_token: flags.files.admin_token().map(str::to_string),
        timeouts: hardening.timeouts(flags.streaming.upstream_timeout),
        limits: hardening.limits(),
        shutdown_grace: hardening.shutdown_grace,
        log: logs.settings(),
        routes: Some(routes.load()?),
        groups: Groups::default(),
        upstream_roots: UpstreamRoots::System,
        apps: apps_file(flags)?.unwrap_or_else(no_apps),
        redis,
        source: "the command line".into(),
    })
}

/// `--listen`'s value: an address, or a name and a port
/// (`localhost:8080`), as steps 01 to 16 take it.
pub fn listen_address(listen: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("--listen {listen}: not an address to listen on"))
}

/// What step 17 has before it serves.
pub struct OneFile {
    pub config: Config,
    pub listeners: Vec<Bound>,
    pub log: Option<AccessLog>,
    /// The routes file the flags name (no config file), to watch.
    pub source: Source,
    pub upstream_tls: rustls::ClientConfig,
}

/// Step 17's start: the config (`config_file`, or what `load` makes of the
/// flags), `--check`, the access log's file, the listeners bound, the
/// upstreams' CA read. `None`: nothing to serve (`--check` did, or the
/// hidden demo-app mode ran). A problem is an exit 2 before serving.
pub async fn one_file(
    flags: &Flags,
    config_file: Option<&std::path::Path>,
    load: impl Fn(&Source) -> Result<Config, String>,
) -> Option<OneFile> {
    if let Some(port) = flags.files.demo_app {
        run_demo_app(port).await;
        return None;
    }
    let mut source = Source::from_flags(
        flags.files.routes.as_deref(),
        flags.common.upstream.as_ref(),
    );
    let mut config = load(&source).unwrap_or_else(|err| exit_with(&err));
    if flags.files.check {
        let checked = match config_file {
            Some(path) => crate::complete_proxy::check(path, &config),
            None => flags.files.check(),
        };
        checked.unwrap_or_else(|err| exit_with(&err));
        return None;
    }
    cli::init_logs();
    kit::flags::raise_open_files_limit();
    let log = AccessLog::open(&config.log).unwrap_or_else(|err| exit_with(&err));
    let listen = match (config_file, listen_flag_given()) {
        (Some(_), true) => {
            let address =
                listen_address(&flags.common.listen).unwrap_or_else(|err| exit_with(&err));
            crate::complete_proxy::listen_instead(&config, address)
        }
        _ => config.listeners.clone(),
    };
    let listeners = crate::complete_proxy::bind(&listen, &config)
        .await
        .unwrap_or_else(|err| exit_with(&err));
    cli::say_exercises(&crate::exercises_in_use());
    // The example routes run in front of a demo origin of their own.
    if config_file.is_none()
        && source.is_example()
        && let Source::File { origin, .. } = &mut source
    {
        *origin = cli::upstream(&flags.common).await.authority().cloned();
        config = load(&source).unwrap_or_else(|err| exit_with(&err));
    }
    let upstream_tls =
        kit::connector::client_tls(&config.upstream_roots).unwrap_or_else(|err| exit_with(&err));
    Some(OneFile {
        config,
        listeners,
        log,
        source,
        upstream_tls,
    })
}

// ANCHOR: fast_start
/// Runs `main` to its end on tokio's runtime. On one core (`taskset`, a
/// container's CPU quota), the current-thread scheduler: the multi-thread
/// one's machinery for sharing work between threads costs a quarter of the
/// CPU of a request there, for nothing. On more cores, a thread per core.
pub fn block_on(main: impl std::future::Future<Output = ()>) {
    let one_core = std::thread::available_parallelism().is_ok_and(|cores| cores.get() == 1);
    let mut builder = match one_core {
        true => tokio::runtime::Builder::new_current_thread(),
        false => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(main),
        Err(err) => exit_with(&format!("cannot start tokio's runtime: {err}")),
    }
}
// ANCHOR_END: fast_start
