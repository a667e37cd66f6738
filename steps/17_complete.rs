//! Step 17 — the complete proxy: everything the workshop built, from one
//! config file.
//!
//! `cargo run --release --bin 17-complete` serves step 11's example routes
//! in front of its own demo origin and step 12's demo apps; `--config FILE`
//! serves a config file instead (`proxy.example.toml` shows every key),
//! reloaded when it changes and on SIGHUP; `--config FILE --check` checks
//! it. Without a file, the flags of steps 01 to 16 work as they did.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::Parser;
use complete::complete_proxy::{self as one_file, Isolated, Live, forward_with_deadlines};
use complete::hardened::{Hardened, Server};
use complete::instances::share;
use complete::setup::{self, Flags, exit_with};
use complete::sleep::{Sleeping, spawn_sleepers};
use complete::wake::OnDemand;
use kit::apps::Apps;
use kit::config;
use kit::flags::{Hardening, Logs};
use kit::routes_file::Source;
use kit::shared_state::SharedApps;
use workshop::cli;

#[derive(Parser)]
#[command(
    version,
    about = "Step 17 of the reverse-proxy workshop: the complete proxy"
)]
struct Args {
    #[command(flatten)]
    proxy: Flags,
    #[command(flatten)]
    hardening: Hardening,
    #[command(flatten)]
    logs: Logs,
    /// Share the apps started by commands through this Redis (step 16).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The config file (TOML): listeners, timeouts, limits, log, routes and
    /// apps. Without it: the flags, as in steps 11 to 16.
    #[arg(long, value_name = "FILE", conflicts_with_all = setup::FLAGS_A_CONFIG_REPLACES)]
    config: Option<PathBuf>,
}

/// What to try with the demo.
const DEMO: &[&str] = &[
    "# a request by the routes (without --config, to the demo origin)",
    "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
    "# hello is asleep: this request starts it, then is answered",
    "{curl} -s {url}/echo -H 'Host: hello.localhost' -o /dev/null -w '%{http_code}\\n'",
];

fn main() {
    // tokio's runtime as the machine has cores (one: the current thread).
    setup::block_on(run(Args::parse()));
}

async fn run(args: Args) {
    let flags = &args.proxy;
    let load = |routes: &Source| match &args.config {
        Some(path) => config::load(path, None),
        None => setup::config_from_flags(
            flags,
            &args.hardening,
            &args.logs,
            args.redis.clone(),
            routes,
        ),
    };
    // The files, the listeners, the log: every problem before serving.
    let Some(setup::OneFile {
        mut config,
        listeners,
        log,
        source,
        upstream_tls,
    }) = setup::one_file(flags, args.config.as_deref(), load).await
    else {
        return;
    };

    // ANCHOR: main
    let routes = Arc::new(ArcSwap::from_pointee(
        config.routes.take().unwrap_or_else(one_file::no_rules),
    ));
    let groups = Arc::new(ArcSwap::from_pointee(std::mem::take(&mut config.groups)));
    let apps = Apps::new(config.apps.clone());
    if let Some(url) = &config.redis {
        share(
            &apps,
            SharedApps::new(url).unwrap_or_else(|err| exit_with(&err)),
        );
    }
    spawn_sleepers(&apps);
    match &args.config {
        Some(path) => {
            let live = Live {
                routes: routes.clone(),
                groups: groups.clone(),
                apps: apps.clone(),
            };
            if let Err(err) = one_file::watch_config(path, &config, live) {
                eprintln!("warning: {err}: the config is not watched, send SIGHUP to reload");
            }
        }
        None => setup::watch_files(flags, source, &routes, &apps),
    }
    println!("routes: {}\napps: {}", routes.load(), config.apps);
    let (options, http2) = (flags.forwarding.clone(), flags.http2.upstream_http2);
    let forward = forward_with_deadlines(options, &config.timeouts, http2, groups, upstream_tls);
    // The file's token, or else --admin-token / PROXY_ADMIN_TOKEN.
    let admin_token = config
        .admin_token
        .as_deref()
        .map(Arc::from)
        .or(flags.admin_token());
    // ANCHOR: request_path
    let on_demand = OnDemand {
        apps: apps.clone(),
        routes,
        forward,
        admin_token: admin_token.clone(),
    };
    // Each layer's future holds the next's; the server boxes the whole, once.
    let isolated = Isolated {
        inner: Sleeping { on_demand },
        apps: apps.clone(),
    };
    let hardened = Hardened {
        inner: isolated,
        max_request_body: config.limits.max_request_body,
    };
    let server = Server::new(config.timeouts, config.limits, config.shutdown_grace);
    let observed = setup::observed(hardened, log, admin_token, &apps, &server);
    // ANCHOR_END: request_path
    let demo = args.config.is_none() && flags.demo();
    if let Some(first) = listeners.first() {
        cli::try_this_over(
            &first.listener,
            first.tls.is_some(),
            if demo { DEMO } else { &DEMO[..2] },
        );
    }
    setup::serve_until_shutdown(server, listeners, observed, &apps).await;
    // ANCHOR_END: main
}
