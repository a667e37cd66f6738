//! The talk, presented: `cargo run --bin slides`, then open the address it
//! prints. `S` opens the speaker view (notes, timer), `Esc` the overview;
//! add `?print-pdf` to the address and print to get a PDF.
//!
//! Everything is served from the repository: the decks (`slides/*.md`, with
//! their code expanded from the sources on every request: edit a solution,
//! reload) and reveal.js itself (`slides/reveal.js/`): no network needed.
//! `--export DIR` writes the same pages into a folder that opens from
//! `file://` or any static host.
//!
//! It runs on step 01's `serve`: the workshop's first step is a real server.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use workshop::{cli, deck, repo};

#[derive(Parser)]
#[command(about = "Serve the workshop's talk as a reveal.js presentation, offline")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,

    /// Write the talk as static files into DIR instead of serving it.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,

    /// The repository to read slides/ and the sources from.
    #[arg(long, value_name = "DIR", default_value_os_t = repo::root())]
    root: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    cli::init_logs();
    if let Err(err) = deck::decks(&args.root) {
        eprintln!(
            "error: cannot read {}: {err} (use --root to point at the repository)",
            args.root.join("slides").display()
        );
        std::process::exit(2);
    }
    if let Some(dir) = &args.export {
        match deck::export(&args.root, dir) {
            Ok(files) => {
                println!(
                    "wrote {files} files to {}; open {} in a browser",
                    dir.display(),
                    dir.join("index.html").display()
                );
                return;
            }
            Err(err) => {
                eprintln!("error: cannot export to {}: {err}", dir.display());
                std::process::exit(1);
            }
        }
    }

    let common = cli::Args {
        listen: args.listen.clone(),
        upstream: None,
    };
    let listener = cli::listen(&common).await;
    let addr = listener
        .local_addr()
        .map_or_else(|_| args.listen.clone(), |addr| addr.to_string());
    println!("the talk: http://{addr}/   (S: speaker view, Esc: overview)");
    println!("one deck: http://{addr}/03_stream_body.html   print: http://{addr}/?print-pdf");
    let root = Arc::new(args.root);
    workshop::listen_and_serve::serve(listener, move |request| {
        let root = root.clone();
        async move {
            let path = request.uri().path().trim_start_matches('/');
            deck::respond(&root, path)
        }
    })
    .await;
}
