//! Step 13 — the complete proxy: everything the workshop built, from one
//! config file, hardened (timeouts, limits, graceful shutdown, access log,
//! plain error pages).
//!
//! `cargo run --release --bin 13-complete` serves step 11's example routes
//! in front of its own demo origin and step 12's demo apps; `--config FILE`
//! serves a config file instead (`proxy.example.toml` shows every key),
//! reloaded when it changes and on SIGHUP; `--config FILE --check` checks
//! it. The flags of steps 01 to 12 work as they did, without a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use clap::Parser;
use complete::apps_file;
use complete::certificates::{self, Fallback};
use complete::config::{self, AccessLog as LogTo, Config, Limits, Listener, LogSettings, Tls};
use complete::connector::{UpstreamRoots, client_tls};
use complete::cookies::keep_to_own_host;
use complete::demo::{demo_apps, no_apps, run_demo_app};
use complete::flags::Files;
use complete::hardened::{
    AccessLog, Arrival, Bound, Hardening, Unanswered, answer_safely, forward_with_deadlines,
    limit_body, raise_open_files_limit, say_enough, serve_until_shutdown, too_large,
};
use complete::metrics::{Answerer, Metrics};
use complete::on_demand::{App, Apps, Found, apps_then_routes, discover_apps, stop_idle_apps};
use complete::routes_file::{Routes, Source};
use complete::routing::{MatchedRule, reload};
use complete::shared_state::SharedApps;
use complete::upstream_groups::Groups;
use complete::watch::{self, shutdown_signal};
use http::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tracing::{info, warn};
use workshop::body::MadeByProxy;
use workshop::http2;
use workshop::{cli, streaming, x_forwarded};

#[derive(Parser)]
#[command(
    version,
    about = "Step 13 of the reverse-proxy workshop: the complete proxy, from one config file"
)]
struct Args {
    #[command(flatten)]
    common: cli::Args,
    #[command(flatten)]
    forwarding: x_forwarded::Options,
    #[command(flatten)]
    streaming: streaming::Options,
    #[command(flatten)]
    http2: http2::Options,

    /// The config file (TOML): listeners, timeouts, limits, log, routes and
    /// apps. Without it: the flags below, as in steps 11 and 12.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["routes", "apps", "upstream", "tls", "cert", "key", "upstream_timeout"]
    )]
    config: Option<PathBuf>,

    #[command(flatten)]
    files: Files,
}

/// Where the settings come from, and how to read them again.
enum Settings {
    /// `--config FILE`: everything, watched.
    File(PathBuf),
    /// The flags of steps 11 and 12: routes and apps files, watched.
    Flags {
        routes: Source,
        apps: Option<PathBuf>,
    },
}

// ANCHOR: fast_start
fn main() {
    // On one core (`taskset`, a container's CPU quota), tokio's
    // current-thread scheduler: the multi-thread one's machinery for
    // sharing work between threads costs a quarter of the CPU of a request
    // there, for nothing. On more cores, a thread per core.
    let one_core = std::thread::available_parallelism().is_ok_and(|cores| cores.get() == 1);
    let mut builder = match one_core {
        true => tokio::runtime::Builder::new_current_thread(),
        false => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => exit_with(&format!("cannot start tokio's runtime: {err}")),
    }
}
// ANCHOR_END: fast_start

async fn run() {
    let args = Args::parse();
    if let Some(port) = args.files.demo_app {
        run_demo_app(port).await;
        return;
    }
    if args.files.check {
        check(&args);
        return;
    }
    let settings = match &args.config {
        Some(path) => Settings::File(path.clone()),
        None => Settings::Flags {
            routes: Source::from_flags(args.files.routes.as_deref(), args.common.upstream.as_ref()),
            apps: args.files.apps.clone(),
        },
    };
    let demo = args.config.is_none()
        && args.files.apps.is_none()
        && args.files.routes.is_none()
        && args.common.upstream.is_none();
    // Every problem with the files before listening.
    let mut config = load(&settings, &args, demo).unwrap_or_else(|err| exit_with(&err));
    cli::init_logs();
    raise_open_files_limit();
    // The access log's file too: every problem before listening.
    let log = access_log(&config.log);
    let bound = bind(&config, &args).await;
    for file in complete::exercises_in_use() {
        let step = &file[..2];
        println!("running your exercises/{file} (--features ex{step}) instead of solutions/{file}");
    }
    // The example routes run in front of a demo origin of their own.
    let mut settings = settings;
    if let Settings::Flags { routes: source, .. } = &mut settings
        && source.is_example()
        && let Source::File { origin, .. } = source
    {
        let upstream = cli::upstream(&args.common).await;
        *origin = upstream.authority().cloned();
        config = load(&settings, &args, demo).unwrap_or_else(|err| exit_with(&err));
    }

    let routes = Arc::new(ArcSwap::from_pointee(
        config
            .routes
            .take()
            .unwrap_or_else(|| Routes::new(Vec::new(), "no rules".into())),
    ));
    let apps = Apps::new(config.apps.clone());
    // `[state] redis`: the apps started by commands are shared with every
    // instance that names the same Redis (checked when the file was read).
    if let Some(url) = &config.redis {
        match SharedApps::new(url) {
            Ok(shared) => apps.share_through(Arc::new(shared)),
            Err(err) => exit_with(&err),
        }
    }
    tokio::spawn(stop_idle_apps(apps.clone()));
    tokio::spawn(discover_apps(apps.clone()));
    let groups = Arc::new(ArcSwap::from_pointee(std::mem::take(&mut config.groups)));
    let upstream_tls = client_tls(&config.upstream_roots).unwrap_or_else(|err| exit_with(&err));
    watch_settings(&settings, &config, &routes, &groups, &apps);
    println!("routes: {}", routes.load());
    println!("apps: {}", config.apps);
    let tls = bound[0].tls.is_some();
    let mut lines = vec![
        "# a request by the routes (here, to the demo origin)",
        "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
    ];
    if demo {
        lines.extend([
            "# hello is asleep: this request starts it, then is answered",
            "{curl} -s {url}/echo -H 'Host: hello.localhost' -o /dev/null -w '%{http_code}\\n'",
        ]);
    }
    cli::try_this_over(&bound[0].listener, tls, &lines);

    // ANCHOR: main
    let forward = forward_with_deadlines(
        args.forwarding,
        &config.timeouts,
        args.http2.upstream_http2,
        groups,
        upstream_tls,
    );
    let forward = Arc::new(forward);
    // The file's token, or else --admin-token / PROXY_ADMIN_TOKEN.
    let admin_token = config.admin_token.as_deref().or(args.files.admin_token());
    let admin_token: Option<Arc<str>> = admin_token.map(Arc::from);
    let service_apps = apps.clone();
    let max_request_body = config.limits.max_request_body;
    let metrics = Arc::new(Metrics::default());
    let service_metrics = metrics.clone();
    let handler = move |request: Request<Incoming>| {
        let (apps, routes, forward) = (service_apps.clone(), routes.clone(), forward.clone());
        let (admin_token, log, metrics) =
            (admin_token.clone(), log.clone(), service_metrics.clone());
        async move {
            let arrival = Arrival::from(&request);
            let app = apps.find(Some(&arrival.host));
            // A client that leaves before the answer still gets its line.
            let mut pending = Unanswered::new(arrival, log.clone(), metrics.clone());
            let arrival = pending.arrival();
            // The proxy's own endpoints: no access line, no count.
            if let Some(token) = admin_token.as_deref()
                && app.is_none()
                && arrival.target.starts_with("/_proxy/")
            {
                pending.forget();
                if request.uri().path() == "/_proxy/metrics" {
                    return metrics.answer(&apps, token, &request);
                }
                // Boxed too: inline, this rare path would make every
                // request's future as big as the pipeline's.
                let answer = apps_then_routes(&apps, &routes, &forward, Some(token), request);
                return Box::pin(answer).await;
            }
            let mut response = match limit_body(request, max_request_body) {
                None => too_large(max_request_body.unwrap_or_default()),
                Some((request, over)) => {
                    let token = admin_token.as_deref();
                    // Boxed, so that this future stays small (see `serve` in
                    // solutions/13_complete.rs).
                    let answer =
                        Box::pin(apps_then_routes(&apps, &routes, &forward, token, request));
                    let response = answer_safely(answer).await;
                    // Cut at the limit: whatever the upstream said, a 413.
                    match over.load(Ordering::Relaxed) {
                        true => too_large(max_request_body.unwrap_or_default()),
                        false => response,
                    }
                }
            };
            if let Some(Found::App(app)) = &app {
                keep_cookies_home(&apps, app, response.headers_mut());
            }
            let rule = match (&app, response.extensions().get::<MatchedRule>()) {
                (Some(Found::App(app)), _) => Answerer::App(app.name.as_str().into()),
                (_, Some(MatchedRule(line))) => Answerer::Line(*line),
                _ => Answerer::Proxy,
            };
            metrics.count(rule, response.status(), arrival.started.elapsed());
            let made_here = response.extensions().get::<MadeByProxy>().is_some();
            if made_here && matches!(response.status().as_u16(), 502 | 504) {
                metrics.upstream_error(response.status());
            }
            let response = say_enough(response, &arrival.method, &arrival.target).await;
            let arrival = pending.answered();
            match (&log, arrival) {
                (Some(log), Some(arrival)) => log.when_sent(arrival, response),
                _ => response,
            }
        }
    };
    let hardening = Hardening {
        header_read: config.timeouts.header_read,
        keep_alive: config.timeouts.keep_alive,
        max_connections: config.limits.max_connections,
        grace: config.shutdown_grace,
    };
    // A second Ctrl-C (or SIGTERM) does not wait for the grace period.
    let shutdown = async {
        shutdown_signal().await;
        tokio::spawn(async {
            shutdown_signal().await;
            warn!("a second signal: exiting now, without waiting");
            std::process::exit(1);
        });
    };
    let left = serve_until_shutdown(bound, hardening, metrics, handler, shutdown).await;
    apps.stop_children().await;
    info!("stopped ({left} connection(s) cut at the end of the grace period)");
    // ANCHOR_END: main
}

/// Drops the cookies an app sets for its siblings or its parent domain
/// (`[on_demand] isolate_apps`, on by default), and says so.
fn keep_cookies_home(apps: &Apps, app: &App, headers: &mut http::HeaderMap) {
    let registry = apps.registry();
    if !registry.isolate_apps {
        return;
    }
    let host = format!("{}.{}", app.name, registry.domain);
    for dropped in keep_to_own_host(headers, &host) {
        warn!(
            "{}: Set-Cookie {dropped} dropped: an app sets cookies for its own host only",
            app.name
        );
    }
}

/// Reads the settings: the config file, or what the flags name.
fn load(settings: &Settings, args: &Args, demo: bool) -> Result<Config, String> {
    match settings {
        Settings::File(path) => config::load(path, None),
        Settings::Flags { routes, apps } => {
            let apps = match (apps, demo) {
                (Some(path), _) => apps_file::load(path)?,
                (None, true) => demo_apps()?,
                (None, false) => no_apps(),
            };
            Ok(Config {
                certificates: Vec::new(),
                listeners: vec![Listener {
                    address: listen_address(&args.common.listen)?,
                    tls: args
                        .http2
                        .uses_tls()
                        .then(|| match (&args.http2.cert, &args.http2.key) {
                            (Some(cert), Some(key)) => Tls::Pem {
                                cert: cert.clone(),
                                key: key.clone(),
                            },
                            _ => Tls::SelfSigned,
                        }),
                }],
                admin_token: args.files.admin_token().map(str::to_string),
                timeouts: config::Timeouts {
                    response_head: args.streaming.upstream_timeout,
                    ..config::Timeouts::default()
                },
                limits: Limits::default(),
                shutdown_grace: std::time::Duration::from_secs(30),
                log: LogSettings {
                    access: LogTo::Off,
                    format: config::LogFormat::Common,
                },
                routes: Some(routes.load()?),
                groups: Groups::default(),
                upstream_roots: UpstreamRoots::System,
                apps,
                redis: None,
                source: "the command line".into(),
            })
        }
    }
}

/// `--listen`'s value: an address, or a name and a port
/// (`localhost:8080`), as steps 01 to 12 took it.
fn listen_address(listen: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("--listen {listen}: not an address to listen on"))
}

/// Binds every listener (`--listen`, when given, takes the place of the
/// config's), and says where: the first line is `listening on …`.
async fn bind(config: &Config, args: &Args) -> Vec<Bound> {
    let listen_flag = std::env::args().any(|arg| arg == "--listen" || arg.starts_with("--listen="));
    let mut listeners = config.listeners.clone();
    if listen_flag && args.config.is_some() {
        let address = listen_address(&args.common.listen).unwrap_or_else(|err| exit_with(&err));
        listeners = vec![Listener {
            address,
            tls: listeners.first().and_then(|first| first.tls.clone()),
        }];
    }
    let (mut bound, mut fingerprints) = (Vec::new(), Vec::new());
    for listener in listeners {
        let tls = match tls_of(&listener, config) {
            None => None,
            Some(Ok((acceptor, fingerprint))) => {
                fingerprints.push(fingerprint);
                Some(acceptor)
            }
            Some(Err(err)) => exit_with(&err),
        };
        let socket = match TcpListener::bind(listener.address).await {
            Ok(socket) => socket,
            Err(err) => {
                eprintln!("error: cannot listen on {}: {err}", listener.address);
                std::process::exit(1);
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        match socket.local_addr() {
            Ok(addr) => println!("listening on {scheme}://{addr}"),
            Err(_) => println!("listening on {scheme}://{}", listener.address),
        }
        bound.push(Bound {
            listener: socket,
            tls,
        });
    }
    for fingerprint in fingerprints {
        println!("certificate sha256 fingerprint: {fingerprint}");
    }
    bound
}

/// The TLS side of a listener, if it has one: its certificates (`[[tls]]`
/// by name, its own otherwise; the self-signed one names the apps too).
fn tls_of(
    listener: &Listener,
    config: &Config,
) -> Option<Result<(tokio_rustls::TlsAcceptor, String), String>> {
    let fallback = match listener.tls.as_ref()? {
        Tls::SelfSigned => Fallback::SelfSigned(vec![format!("*.{}", config.apps.domain)]),
        Tls::Pem { cert, key } => Fallback::Pem {
            cert: cert.clone(),
            key: key.clone(),
        },
    };
    Some(certificates::acceptor(&fallback, &config.certificates))
}

/// Reloads on a change (or SIGHUP): the routes and the apps; what only a
/// restart can change is said so.
fn watch_settings(
    settings: &Settings,
    config: &Config,
    routes: &Arc<ArcSwap<Routes>>,
    groups: &Arc<ArcSwap<Groups>>,
    apps: &Arc<Apps>,
) {
    match settings {
        Settings::File(path) => {
            let (routes, apps, path) = (routes.clone(), apps.clone(), path.clone());
            let (groups, upstream_roots) = (groups.clone(), config.upstream_roots.clone());
            let (listeners, timeouts, limits) =
                (config.listeners.clone(), config.timeouts, config.limits);
            let (grace, log, admin_token, redis) = (
                config.shutdown_grace,
                config.log.clone(),
                config.admin_token.clone(),
                config.redis.clone(),
            );
            let watching = watch::on_change(&path.clone(), move || {
                match config::load(&path, None) {
                    Ok(fresh) => {
                        let later = fresh.listeners != listeners
                            || fresh.timeouts != timeouts
                            || fresh.limits != limits
                            || fresh.shutdown_grace != grace
                            || fresh.log != log
                            || fresh.admin_token != admin_token
                            || fresh.upstream_roots != upstream_roots
                            || fresh.redis != redis;
                        if later {
                            warn!(
                                "{}: listeners, timeouts, limits, grace, log, admin_token, upstream_tls and state change at the next restart",
                                path.display()
                            );
                        }
                        let fresh_routes = fresh
                            .routes
                            .unwrap_or_else(|| Routes::new(Vec::new(), "no rules".into()));
                        info!(
                            "config reloaded from {}: routes reloaded: {fresh_routes}",
                            path.display()
                        );
                        // The rules' groups, with them (their servers' health starts afresh).
                        groups.store(Arc::new(fresh.groups));
                        routes.store(Arc::new(fresh_routes));
                        apps.use_file(fresh.apps);
                    }
                    Err(err) => warn!("config not reloaded (the one in force stays): {err}"),
                }
            });
            if let Err(err) = watching {
                eprintln!("warning: {err}: the config is not watched, send SIGHUP to reload");
            }
        }
        Settings::Flags {
            routes: source,
            apps: apps_path,
        } => {
            if let Some(path) = source.watched().map(Path::to_path_buf) {
                let (routes, source) = (routes.clone(), source.clone());
                let watching = watch::on_change(&path, move || reload(&routes, || source.load()));
                if let Err(err) = watching {
                    eprintln!("warning: {err}: the routes are not watched, send SIGHUP to reload");
                }
            }
            if let Some(path) = apps_path {
                let (apps, path) = (apps.clone(), path.clone());
                let watching =
                    watch::on_change(&path.clone(), move || match apps_file::load(&path) {
                        Ok(file) => {
                            info!("apps reloaded: {file}");
                            apps.use_file(file);
                        }
                        Err(err) => warn!("apps not reloaded (the apps in force stay): {err}"),
                    });
                if let Err(err) = watching {
                    eprintln!("warning: {err}: the apps are not watched, send SIGHUP to reload");
                }
            }
        }
    }
}

/// The access log the config asks for, if any.
fn access_log(settings: &LogSettings) -> Option<AccessLog> {
    match &settings.access {
        LogTo::Off => None,
        // Buffered: the writer's lines of 50 ms go out in one write.
        LogTo::Stdout => Some(AccessLog::start(
            std::io::BufWriter::new(std::io::stdout()),
            settings.format,
        )),
        LogTo::File(path) => {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => Some(AccessLog::start(
                    std::io::BufWriter::new(file),
                    settings.format,
                )),
                Err(err) => exit_with(&format!("access log {}: {err}", path.display())),
            }
        }
    }
}

fn check(args: &Args) {
    let Some(path) = &args.config else {
        if let Err(err) = args.files.check() {
            exit_with(&err);
        }
        return;
    };
    let config = config::load(path, None).unwrap_or_else(|err| exit_with(&err));
    // The certificates too: a file that passes --check starts.
    for listener in &config.listeners {
        if let Some(Err(err)) = tls_of(listener, &config) {
            exit_with(&err);
        }
    }
    if let Err(err) = client_tls(&config.upstream_roots) {
        exit_with(&err);
    }
    println!("{}: {config}: valid", path.display());
}

fn exit_with(err: &str) -> ! {
    eprintln!("error: {err}");
    std::process::exit(2);
}
