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

use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::Parser;
use complete::apps_file::{self, AppsFile};
use complete::demo::{demo_apps, no_apps, run_demo_app};
use complete::flags::Files;
use complete::listen_with_tls;
use complete::on_demand::{Apps, apps_then_routes, discover_apps, stop_idle_apps};
use complete::routes_file::Source;
use complete::routing::{Forward, reload};
use complete::watch::{self, shutdown_signal};
use workshop::http2::{self, serve};
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

    #[command(flatten)]
    files: Files,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(port) = args.files.demo_app {
        run_demo_app(port).await;
        return;
    }
    if args.files.check {
        if let Err(err) = args.files.check() {
            exit_with(&err);
        }
        return;
    }
    let mut source =
        Source::from_flags(args.files.routes.as_deref(), args.common.upstream.as_ref());
    let demo =
        args.files.apps.is_none() && args.files.routes.is_none() && args.common.upstream.is_none();
    // Every problem with the files or the certificate before listening.
    let apps_file = match (&args.files.apps, demo) {
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
    let (listener, tls) = listen_with_tls(&args.common, &args.http2).await;
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
    if let Some(path) = &args.files.apps {
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
    let admin_token: Option<Arc<str>> = args.files.admin_token().map(Arc::from);
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

fn exit_with(err: &str) -> ! {
    eprintln!("error: {err}");
    std::process::exit(2);
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
