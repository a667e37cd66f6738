//! The demo origin on its own: `cargo run --bin origin`.
//!
//! Every step starts this same origin in-process when it is given no
//! `--upstream`; run it alone to look at it directly, or to point several
//! steps at one origin.

use clap::Parser;

#[derive(Parser)]
#[command(about = "The workshop's demo upstream (HTTP/1.1 and h2c)")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    workshop::cli::init_logs();
    let origin = match workshop::origin::start(&args.listen).await {
        Ok(origin) => origin,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.listen);
            std::process::exit(1);
        }
    };
    println!("listening on http://{}", origin.addr());
    println!("try, in another terminal:");
    println!("  curl -i http://{}/echo", origin.addr());
    println!();
    // The origin serves on background tasks; wait for Ctrl-C.
    let _ = tokio::signal::ctrl_c().await;
}
