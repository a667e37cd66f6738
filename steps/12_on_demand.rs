//! Step 12 — apps on demand: apps at `NAME.localhost` sleep while nobody
//! uses them, wake on their first request, and are stopped when idle.
//!
//! `cargo run --bin 12-on-demand` runs two demo apps (the demo origin, as
//! child processes: `hello`, and `docs` linked to it) beside step 11's
//! example routes, then
//! `curl -s http://127.0.0.1:8080/echo -H 'Host: hello.localhost'` starts
//! `hello` and is answered once it is up (watch the log).
//! `--apps FILE` serves the apps of a file (`apps/example.toml` shows the
//! format), `--admin-token TOKEN` (or `PROXY_ADMIN_TOKEN`) opens the
//! status API at `/_proxy/apps`, `--check` checks the files and exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use clap::Parser;
use complete::apps_file::{self, AppSpec, AppsFile, Defaults, Run};
use complete::on_demand::{Apps, apps_then_routes, discover_apps, stop_idle_apps};
use complete::routes_file::{self, Source};
use complete::routing::{Forward, reload};
use complete::watch;
use workshop::http2::{self, serve, tls_acceptor};
use workshop::{cli, streaming, x_forwarded};

#[derive(Parser)]
#[command(
    about = "Step 12 of the reverse-proxy workshop: apps started on their first request, stopped when idle"
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

    /// The routes file (TOML), as step 11. Without it: routes/example.toml
    /// in front of the demo origin, or everything to --upstream.
    #[arg(long, value_name = "FILE", conflicts_with = "upstream")]
    routes: Option<PathBuf>,

    /// The apps file (TOML). Without it, and without --routes or
    /// --upstream: two demo apps, `hello` and `docs`.
    #[arg(long, value_name = "FILE")]
    apps: Option<PathBuf>,

    /// Opens the status API (`/_proxy/apps`) to `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PROXY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Only check the files: exit 0 if they are valid, 2 with the error.
    #[arg(long)]
    check: bool,

    /// Serve the demo origin on this port (what the demo apps run).
    #[arg(long, value_name = "PORT", hide = true)]
    demo_app: Option<u16>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(port) = args.demo_app {
        run_demo_app(port).await;
        return;
    }
    if args.check {
        check_files(&args);
        return;
    }
    let example = routes_file::example();
    let mut source = match (&args.routes, &args.common.upstream) {
        (Some(path), _) => Source::File {
            path: path.clone(),
            origin: None,
        },
        (None, Some(upstream)) => Source::Upstream(upstream.clone()),
        (None, None) => Source::File {
            path: example.clone(),
            origin: None,
        },
    };
    let demo = args.apps.is_none() && args.routes.is_none() && args.common.upstream.is_none();
    // Every problem with the files or the certificate before listening.
    let apps_file = match (&args.apps, demo) {
        (Some(path), _) => Some(apps_file::load(path)),
        (None, true) => Some(demo_apps()),
        (None, false) => None,
    };
    let apps_file = match apps_file.transpose() {
        Ok(file) => file,
        Err(err) => exit_with(&err),
    };
    if let Err(err) = source.load() {
        exit_with(&err);
    }
    let tls = tls_acceptor(&args.http2).unwrap_or_else(|err| exit_with(&err));
    let scheme = if args.http2.uses_tls() {
        "https"
    } else {
        "http"
    };
    let listener = cli::listen_as(&args.common, scheme).await;
    for file in complete::exercises_in_use() {
        println!("running your exercises/{file} (--features exNN) instead of solutions/{file}");
    }
    let tls = tls.map(|(acceptor, fingerprint)| {
        println!("certificate sha256 fingerprint: {fingerprint}");
        acceptor
    });
    if source.is_example()
        && let Source::File { origin, .. } = &mut source
    {
        let upstream = cli::upstream(&args.common).await;
        *origin = upstream.authority().cloned();
    }
    let routes = source.load().unwrap_or_else(|err| exit_with(&err));
    let routes = Arc::new(ArcSwap::from_pointee(routes));
    if let Some(path) = source.watched().map(|path| path.to_path_buf()) {
        let routes = routes.clone();
        let watching = watch::on_change(&path, move || reload(&routes, || source.load()));
        if let Err(err) = watching {
            eprintln!("warning: {err}: the routes are not watched, send SIGHUP to reload");
        }
    }

    // ANCHOR: main
    let apps = Apps::new(apps_file.clone().unwrap_or_else(no_apps));
    tokio::spawn(stop_idle_apps(apps.clone()));
    tokio::spawn(discover_apps(apps.clone()));
    if let Some(path) = &args.apps {
        let (apps, path) = (apps.clone(), path.clone());
        let watching = watch::on_change(&path.clone(), move || match apps_file::load(&path) {
            Ok(file) => {
                tracing::info!("apps reloaded: {file}");
                apps.use_file(file);
            }
            Err(err) => tracing::warn!("apps not reloaded (the apps in force stay): {err}"),
        });
        if let Err(err) = watching {
            eprintln!("warning: {err}: the apps are not watched, send SIGHUP to reload");
        }
    }
    // ANCHOR_END: main
    println!("routes: {}", routes.load());
    match &apps_file {
        Some(file) => println!("apps: {file}"),
        None => println!("apps: none (--apps FILE to have some)"),
    }
    try_lines(&listener, &args, demo, apps_file.as_ref());

    let forward = Arc::new(Forward::new(
        args.forwarding,
        args.streaming.upstream_timeout,
        args.http2.upstream_http2,
    ));
    // An empty token (`PROXY_ADMIN_TOKEN=`) opens nothing.
    let admin_token: Option<Arc<str>> = args
        .admin_token
        .as_deref()
        .filter(|token| !token.is_empty())
        .map(Arc::from);
    let mut builder = http2::builder();
    builder.http2().enable_connect_protocol();
    let service_apps = apps.clone();
    let serving = serve(listener, tls, builder, move |request| {
        let (apps, routes, forward) = (service_apps.clone(), routes.clone(), forward.clone());
        let admin_token = admin_token.clone();
        async move { apps_then_routes(&apps, &routes, &forward, admin_token.as_deref(), request).await }
    });
    // ANCHOR: shutdown
    // Ctrl-C or SIGTERM: stop every app we started, then exit. (Requests
    // in flight are cut; step 13 lets them finish first.)
    tokio::select! {
        () = serving => {}
        () = shutdown_signal() => {
            tracing::info!("shutting down: stopping the apps this proxy started");
            apps.stop_children().await;
        }
    }
    // ANCHOR_END: shutdown
}

/// The demo apps: the demo origin, run by this very executable.
fn demo_apps() -> Result<AppsFile, String> {
    let me = std::env::current_exe()
        .map_err(|err| format!("cannot find this program to run the demo apps: {err}"))?;
    let command = vec![
        me.display().to_string(),
        "--demo-app".to_string(),
        "{port}".to_string(),
    ];
    let app = |name: &str, linked: &[&str]| AppSpec {
        name: name.to_string(),
        run: Run::Child {
            command: command.clone(),
        },
        ready: Some("/".to_string()),
        idle: Duration::from_secs(20),
        start_timeout: Duration::from_secs(10),
        linked: linked.iter().map(|name| name.to_string()).collect(),
    };
    Ok(AppsFile {
        domain: "localhost".to_string(),
        apps: vec![app("hello", &[]), app("docs", &["hello"])],
        discover: None,
        defaults: Defaults::default(),
        source: "the built-in demo".to_string(),
    })
}

/// No apps at all: every host goes to the routes.
fn no_apps() -> AppsFile {
    AppsFile {
        domain: "localhost".to_string(),
        apps: Vec::new(),
        discover: None,
        defaults: Defaults::default(),
        source: "no file".to_string(),
    }
}

/// The demo origin on 127.0.0.1:`port`, until SIGTERM.
async fn run_demo_app(port: u16) {
    cli::init_logs();
    match workshop::origin::start(&format!("127.0.0.1:{port}")).await {
        Ok(origin) => println!("demo app listening on http://{}", origin.addr()),
        Err(err) => exit_with(&format!("cannot listen on 127.0.0.1:{port}: {err}")),
    }
    shutdown_signal().await;
}

fn check_files(args: &Args) {
    if args.apps.is_none() && args.routes.is_none() {
        exit_with("--check needs --apps FILE or --routes FILE (or both)");
    }
    if let Some(path) = &args.apps {
        match apps_file::load(path) {
            Ok(file) => println!("{}: {file}: valid", path.display()),
            Err(err) => exit_with(&err),
        }
    }
    if let Some(path) = &args.routes {
        match routes_file::load(path, None) {
            Ok(routes) => println!("{}: {routes}: valid", path.display()),
            Err(err) => exit_with(&err),
        }
    }
}

fn exit_with(err: &str) -> ! {
    eprintln!("error: {err}");
    std::process::exit(2);
}

/// SIGINT (Ctrl-C) or SIGTERM (what service managers send).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The commands to try.
fn try_lines(
    listener: &tokio::net::TcpListener,
    args: &Args,
    demo: bool,
    apps_file: Option<&AppsFile>,
) {
    let tls = args.http2.uses_tls();
    if !demo {
        let Some(first) = apps_file.and_then(|file| file.apps.first().map(|app| (app, file)))
        else {
            cli::try_this_over(
                listener,
                tls,
                &[
                    "# no --apps: every request goes by the routes, as in step 11",
                    "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
                ],
            );
            return;
        };
        let (app, file) = first;
        let note = format!(
            "# {} is asleep: this request starts it, and waits",
            app.name
        );
        let line = format!(
            "{{curl}} -s {{url}}/ -H 'Host: {}.{}'",
            app.name, file.domain
        );
        cli::try_this_over(listener, tls, &[&note, &line]);
        return;
    }
    cli::try_this_over(
        listener,
        tls,
        &[
            "# hello is asleep: this request starts it and waits (the log shows asleep → starting → awake)",
            "{curl} -s {url}/echo -H 'Host: hello.localhost'",
            "# a browser gets a 503 page that reloads itself until docs is up (docs wakes hello too)",
            "{curl} -s {url}/ -H 'Host: docs.localhost' -H 'Accept: text/html' -o /dev/null -w '%{http_code}\\n'",
            "# no app by that name: a 404 that names it",
            "{curl} -si {url}/ -H 'Host: nope.localhost'",
            "# other hosts: step 11's routes, as before",
            "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
            "# 20 s without a request, and the log says hello: awake → stopping → asleep",
        ],
    );
}
