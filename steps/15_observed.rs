//! Step 15 — observed: an access log line per request, Prometheus metrics,
//! and error pages that say enough to the client and the rest to the log.
//!
//! `cargo run --bin 15-observed -- --access-log stdout` serves step 14's
//! demo and logs every request; with `--admin-token TOKEN`,
//! `curl -s http://127.0.0.1:8080/_proxy/metrics -H 'Authorization: Bearer
//! TOKEN'` shows the counts. `--log-format json` writes JSON lines;
//! `--access-log FILE` appends to a file. Step 14's flags work as they did.

use clap::Parser;
use complete::hardened::Bound;
use complete::setup::{self, Flags, Started};
use complete::sleep::spawn_sleepers;
use kit::access_log::AccessLog;
use kit::flags::{Hardening, Logs};

#[derive(Parser)]
#[command(about = "Step 15 of the reverse-proxy workshop: access log, metrics, plain errors")]
struct Args {
    #[command(flatten)]
    proxy: Flags,
    #[command(flatten)]
    hardening: Hardening,
    #[command(flatten)]
    logs: Logs,
}

/// What to try with the demo.
const DEMO: &[&str] = &[
    "# a request: with --access-log stdout, its line in this terminal",
    "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
    "# a request for an app: its line names the host, and says how long the start took",
    "{curl} -s {url}/echo -H 'Host: hello.localhost' -o /dev/null -w '%{http_code}\\n'",
];

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // The access log's file too: every problem before listening.
    let log = AccessLog::open(&args.logs.settings()).unwrap_or_else(|err| setup::exit_with(&err));
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
    spawn_sleepers(&apps);
    let server = setup::server(&args.proxy, &args.hardening);
    let hardened = setup::hardened(&args.proxy, &args.hardening, &apps, &routes);
    let observed = setup::observed(hardened, log, args.proxy.admin_token(), &apps, &server);
    setup::serve_until_shutdown(server, vec![Bound { listener, tls }], observed, &apps).await;
    // ANCHOR_END: main
}
