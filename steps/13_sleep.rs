//! Step 13 — apps on demand, part 2: apps that nobody uses are stopped,
//! crashed ones are noticed, and the list of apps can come from a command.
//!
//! `cargo run --bin 13-sleep` runs step 12's demo (the apps `hello` and
//! `docs`, linked) with an idle time of 20 s: wake `hello`, wait, and the
//! log says `hello: awake → stopping`. A WebSocket or a long download
//! keeps its app awake for as long as it lasts. The flags are step 12's.

use clap::Parser;
use complete::setup::{self, Flags, Started};
use complete::sleep::{Sleeping, spawn_sleepers};

#[derive(Parser)]
#[command(about = "Step 13 of the reverse-proxy workshop: idle apps stopped, crashes noticed")]
struct Args {
    #[command(flatten)]
    proxy: Flags,
}

/// What to try with the demo apps.
const DEMO: &[&str] = &[
    "# hello is asleep: this request starts it and waits",
    "{curl} -s {url}/echo -H 'Host: hello.localhost' -o /dev/null -w '%{http_code}\\n'",
    "# a stream keeps docs (and hello, linked to it) awake for as long as it lasts",
    "{curl} -sN '{url}/sse?n=3&interval_ms=500' -H 'Host: docs.localhost'",
    "# 20 s without a request, and the log says hello: awake → stopping → asleep",
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
    let sleeping = Sleeping {
        on_demand: setup::on_demand(&args.proxy, &apps, &routes),
    };
    // ANCHOR_END: main
    setup::serve_until_signal(listener, tls, sleeping, &apps).await;
}
