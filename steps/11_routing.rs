//! Step 11 — routing: rules from a TOML file choose where each request goes
//! (method, host, path, `Accept`, as mu.semte.ch's dispatcher), and the
//! file is reloaded while the proxy runs.
//!
//! `cargo run --bin 11-routing` serves `routes/example.toml` (edit it: the
//! next request uses the new rules), then
//! `curl -s 'http://127.0.0.1:8080/api/items?x=1' -H 'Accept: application/json'`.
//! `--routes FILE` serves another file, `--routes FILE --check` only checks
//! it; `--upstream URL` alone forwards everything there, as step 10 did.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::Parser;
use complete::routing::{Forward, dispatch, reload};
use complete::setup::{exit_with, listen};
use kit::routes_file::{self, Source};
use kit::watch;
use workshop::http2::{self, serve};
use workshop::{cli, streaming, x_forwarded};

#[derive(Parser)]
#[command(about = "Step 11 of the reverse-proxy workshop: routing rules, reloaded while running")]
struct Args {
    #[command(flatten)]
    common: cli::Args,
    #[command(flatten)]
    forwarding: x_forwarded::Options,
    #[command(flatten)]
    streaming: streaming::Options,
    #[command(flatten)]
    http2: http2::Options,

    /// The routes file (TOML). Without it: routes/example.toml in front of
    /// the demo origin, or everything to --upstream.
    #[arg(long, value_name = "FILE", conflicts_with = "upstream")]
    routes: Option<PathBuf>,

    /// Only check the routes file: exit 0 if it is valid, 2 with the error.
    #[arg(long, requires = "routes")]
    check: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.check {
        let file = args.routes.clone().unwrap_or_default();
        let routes = routes_file::load(&file, None).unwrap_or_else(|err| exit_with(&err));
        return println!("{}: {routes}: valid", file.display());
    }
    let mut source = Source::from_flags(args.routes.as_deref(), args.common.upstream.as_ref());
    // Every problem with the rules or the certificate before listening.
    if let Err(err) = source.load() {
        exit_with(&err);
    }
    let (listener, tls) = listen(&args.common, &args.http2).await;
    // The example runs in front of a demo origin of its own.
    let example_in_use = source.is_example();
    if example_in_use && let Source::File { origin, .. } = &mut source {
        let upstream = cli::upstream(&args.common).await;
        *origin = upstream.authority().cloned();
    }
    let routes = source.load().unwrap_or_else(|err| exit_with(&err));

    // ANCHOR: main
    let routes = Arc::new(ArcSwap::from_pointee(routes));
    let watched = source.watched().map(|path| path.to_path_buf());
    if let Some(path) = &watched {
        let routes = routes.clone();
        let watching = watch::on_change(path, move || reload(&routes, || source.load()));
        if let Err(err) = watching {
            eprintln!("warning: {err}: the file is not watched, send SIGHUP to reload");
        }
    }
    // ANCHOR_END: main
    // Said once the file is watched: a script may change it from now on.
    let loaded = routes.load();
    match &watched {
        Some(path) => println!("routes: {loaded}, reloaded when {} changes", path.display()),
        None => println!("routes: {loaded}"),
    }
    try_lines(&listener, &args, example_in_use);

    // ANCHOR: serve
    let forward = Arc::new(Forward::new(
        args.forwarding,
        args.streaming.upstream_timeout,
        args.http2.upstream_http2,
    ));
    let mut builder = http2::builder();
    builder.http2().enable_connect_protocol();
    serve(listener, tls, builder, move |request| {
        let (routes, forward) = (routes.clone(), forward.clone());
        async move { dispatch(&routes, &forward, request).await }
    })
    .await;
    // ANCHOR_END: serve
}

/// The commands to try: with the example routes, one kind of match each.
fn try_lines(listener: &tokio::net::TcpListener, args: &Args, example: bool) {
    let tls = args.http2.uses_tls();
    if args.routes.is_some() && !example {
        cli::try_this_over(
            listener,
            tls,
            &["# whatever your rules say:", "{curl} -si {url}/"],
        );
        return;
    }
    if !example {
        cli::try_this_over(listener, tls, &["{curl} -i {url}/echo"]);
        return;
    }
    cli::try_this_over(
        listener,
        tls,
        &[
            "# by path and Accept: JSON clients of /api get the API",
            "{curl} -s '{url}/api/items?x=1' -H 'Accept: application/json'",
            "# the same path, asked by a browser",
            "{curl} -s {url}/api/items -H 'Accept: text/html'",
            "# a segment captured by the path, and the response headers the rule sets",
            "{curl} -si {url}/widgets/42",
            "# by method: a POST to /widgets is answered by a rule (a GET goes on to the origin)",
            "{curl} -si -X POST {url}/widgets",
            "# by host: the label captured ({app}.example.org)",
            "{curl} -s {url}/ -H 'Host: shop.example.org'",
            "# by host: *.example.com, the apex too",
            "{curl} -s {url}/ -H 'Host: example.com'",
            "# no main rule for that host: the fallback layer answers a 404 in JSON",
            "{curl} -si {url}/ -H 'Host: nowhere.example' -H 'Accept: application/json'",
            "# nor a fallback for text/plain: the proxy's own 404",
            "{curl} -si {url}/ -H 'Host: nowhere.example' -H 'Accept: text/plain'",
            "# edit routes/example.toml and save: the next request uses the new rules",
            "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
        ],
    );
}
