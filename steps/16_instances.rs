//! Step 16 — several proxies, one app: the apps started by commands are
//! shared through Redis, so that two proxies behind a load balancer start
//! an app once, and stop it only when neither serves it.
//!
//! With a `redis-server` running: `cargo run --bin 16-instances --
//! --redis redis://127.0.0.1:6379/0 --apps FILE`, twice (`--listen
//! 127.0.0.1:8081` for the second). Without `--redis`, step 15 as it was;
//! Redis down, each proxy decides alone. Step 15's flags work as they did.

use clap::Parser;
use complete::hardened::Bound;
use complete::instances::share;
use complete::setup::{self, Flags, Started};
use complete::sleep::spawn_sleepers;
use kit::access_log::AccessLog;
use kit::flags::{Hardening, Logs};
use kit::shared_state::SharedApps;

#[derive(Parser)]
#[command(about = "Step 16 of the reverse-proxy workshop: apps shared by several proxies")]
struct Args {
    #[command(flatten)]
    proxy: Flags,
    #[command(flatten)]
    hardening: Hardening,
    #[command(flatten)]
    logs: Logs,
    /// Share the apps started by commands with every proxy that names this
    /// Redis (`redis://HOST:PORT/DB`).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

/// What to try with the demo (its apps are children: not shared).
const DEMO: &[&str] = &[
    "# the demo's apps are children of this proxy: not shared; --apps FILE with start/stop commands are",
    "{curl} -s {url}/echo -H 'Host: hello.localhost' -o /dev/null -w '%{http_code}\\n'",
];

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let log = AccessLog::open(&args.logs.settings()).unwrap_or_else(|err| setup::exit_with(&err));
    let store = args.redis.as_deref().map(SharedApps::new).transpose();
    let store = store.unwrap_or_else(|err| setup::exit_with(&err));
    let Some(started) = setup::start(&args.proxy, DEMO).await else {
        return;
    };

    // ANCHOR: main
    let Started {
        listener,
        tls,
        routes,
        apps,
    } = started;
    // Before serving: every start and stop from now on goes through Redis.
    if let Some(store) = store {
        share(&apps, store);
    }
    spawn_sleepers(&apps);
    let server = setup::server(&args.proxy, &args.hardening);
    let hardened = setup::hardened(&args.proxy, &args.hardening, &apps, &routes);
    let observed = setup::observed(hardened, log, args.proxy.admin_token(), &apps, &server);
    setup::serve_until_shutdown(server, vec![Bound { listener, tls }], observed, &apps).await;
    // ANCHOR_END: main
}
