//! Step 14 — hardened: limits and deadlines for what clients do, a panic
//! that stays one request's, and a graceful shutdown.
//!
//! `cargo run --bin 14-hardened` serves step 13's demo; then
//! `curl -s http://127.0.0.1:8080/echo -d @big-file` with
//! `--max-request-body 1024` is a 413, and a client that sends its request
//! head one byte at a time is cut off after `--header-read-timeout`.
//! `--max-connections N`, `--keep-alive DURATION` and `--shutdown-grace
//! DURATION` set the rest; step 12's flags work as they did.

use clap::Parser;
use complete::hardened::{Bound, Hardened};
use complete::setup::{self, Flags, Started};
use complete::sleep::{Sleeping, spawn_sleepers};
use kit::flags::Hardening;

#[derive(Parser)]
#[command(about = "Step 14 of the reverse-proxy workshop: limits, deadlines, graceful shutdown")]
struct Args {
    #[command(flatten)]
    proxy: Flags,
    #[command(flatten)]
    hardening: Hardening,
}

/// What to try with the demo.
const DEMO: &[&str] = &[
    "# a request, as before",
    "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
    "# a connection that says nothing is closed after --header-read-timeout (10 s by default)",
    "{curl} -s --max-time 15 telnet://{addr} -o /dev/null -w 'closed after %{time_total} s\\n'",
    "# Ctrl-C here: the requests in flight finish first (--shutdown-grace)",
];

#[tokio::main]
async fn main() {
    let args = Args::parse();
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
    let hardened = Hardened {
        inner: Sleeping {
            on_demand: setup::on_demand(&args.proxy, &apps, &routes),
        },
        max_request_body: args.hardening.max_request_body,
    };
    let server = setup::server(&args.proxy, &args.hardening);
    setup::serve_until_shutdown(server, vec![Bound { listener, tls }], hardened, &apps).await;
    // ANCHOR_END: main
}
