//! Step 12 — apps on demand, part 1: apps at `NAME.localhost` sleep until
//! their first request wakes them.
//!
//! `cargo run --bin 12-wake` runs two demo apps (the demo origin, as child
//! processes: `hello`, and `docs` linked to it) beside step 11's example
//! routes, then
//! `curl -s http://127.0.0.1:8080/echo -H 'Host: hello.localhost'` starts
//! `hello` and is answered once it is up (watch the log).
//! `--apps FILE` serves the apps of a file (`apps/example.toml` shows the
//! format), `--admin-token TOKEN` (or `PROXY_ADMIN_TOKEN`) opens the
//! status API at `/_proxy/apps`, `--check` checks the files and exits.

use clap::Parser;
use complete::setup::{self, Flags, Started};
use complete::wake::OnDemand;

#[derive(Parser)]
#[command(about = "Step 12 of the reverse-proxy workshop: apps started by their first request")]
struct Args {
    #[command(flatten)]
    proxy: Flags,
}

/// What to try with the demo apps.
const DEMO: &[&str] = &[
    "# hello is asleep: this request starts it and waits (the log shows asleep → starting → awake)",
    "{curl} -s {url}/echo -H 'Host: hello.localhost'",
    "# a browser gets a 503 page that reloads itself until docs is up (docs wakes hello too)",
    "{curl} -s {url}/ -H 'Host: docs.localhost' -H 'Accept: text/html' -o /dev/null -w '%{http_code}\\n'",
    "# no app by that name: a 404 that names it",
    "{curl} -si {url}/ -H 'Host: nope.localhost'",
    "# other hosts: step 11's routes, as before",
    "{curl} -s {url}/echo -o /dev/null -w '%{http_code}\\n'",
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
    let on_demand = OnDemand {
        apps: apps.clone(),
        routes,
        forward: args.proxy.forward(),
        admin_token: args.proxy.admin_token(),
    };
    setup::serve_until_signal(listener, tls, on_demand, &apps).await;
    // ANCHOR_END: main
}
