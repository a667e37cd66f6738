//! What every step binary does before its first request: read the command
//! line, set up logs, bind the port, and say so.
//!
//! The conventions (shared by every step, relied upon by the tests):
//! - `--listen ADDR` (default `127.0.0.1:8080`; port 0 picks a free port);
//! - `--upstream URL`; without it the step starts the demo origin in-process;
//! - the first line on stdout is `listening on http://ADDR` (`https://` under
//!   `--tls`), with the real port, so a script can start a step on port 0 and
//!   read where it is;
//! - logs go to stderr through `tracing`, filtered by `RUST_LOG`.

use std::net::SocketAddr;

use http::Uri;
use tokio::net::TcpListener;

/// The arguments every step accepts. Later steps add their own flags next to
/// these with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Parser)]
#[command(about = "One step of the reverse-proxy workshop")]
// No argument group named after the struct: a step's own `Args` flattens
// this one, and two groups called `Args` would clash.
#[group(skip)]
pub struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Where to forward requests: http://host:port, optionally with a base
    /// path. Without it, the step starts the demo origin on a free port.
    #[arg(long, value_name = "URL", value_parser = parse_upstream)]
    pub upstream: Option<Uri>,
}

impl Args {
    /// Parse the command line; a bad value prints why and exits with code 2.
    pub fn parse() -> Args {
        <Args as clap::Parser>::parse()
    }
}

/// Checks an `--upstream` value at start, so a typo is a clear error now
/// rather than a 502 on every request later.
pub fn parse_upstream(value: &str) -> Result<Uri, String> {
    let uri: Uri = value
        .parse()
        .map_err(|err| format!("not a URL ({err}); expected http://host:port"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme `{other}` is not supported; use http://")),
        None => return Err("missing scheme; expected http://host:port".into()),
    }
    if uri
        .authority()
        .is_none_or(|authority| authority.host().is_empty())
    {
        return Err("missing host; expected http://host:port".into());
    }
    Ok(uri)
}

/// Sets up logs, binds `--listen` and prints the `listening on` line.
///
/// Exits the process with a clear message if the address cannot be bound:
/// there is nothing useful a proxy can do without its port.
pub async fn listen(args: &Args) -> TcpListener {
    listen_as(args, "http").await
}

/// [`listen`], announcing another scheme: `listening on https://ADDR`.
pub async fn listen_as(args: &Args, scheme: &str) -> TcpListener {
    init_logs();
    let listener = match TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.listen);
            std::process::exit(1);
        }
    };
    println!("listening on {scheme}://{}", local_addr(&listener));
    say_exercises(&crate::exercises_in_use());
    listener
}

/// Says which exercises (`exercises/NN_*.rs`) this build runs instead of
/// the solutions, just after `listening on`.
pub fn say_exercises(files: &[&str]) {
    for file in files {
        let step = &file[..2];
        println!("running your exercises/{file} (--features ex{step}) instead of solutions/{file}");
    }
}

/// The upstream to forward to: `--upstream`, or the demo origin started
/// in-process on a free port so that every step is one command.
pub async fn upstream(args: &Args) -> Uri {
    if let Some(upstream) = &args.upstream {
        return upstream.clone();
    }
    match crate::origin::start("127.0.0.1:0").await {
        Ok(origin) => {
            println!(
                "no --upstream given: started the demo origin on http://{}",
                origin.addr()
            );
            format!("http://{}", origin.addr())
                .parse()
                .expect("a socket address makes a valid URI")
        }
        Err(err) => {
            eprintln!("error: cannot start the demo origin: {err}");
            std::process::exit(1);
        }
    }
}

/// Prints a few commands to try, with `{addr}` replaced by the real address.
/// A line that starts with `# ` is a note about the command after it (a
/// comment, if pasted); every other line is a command that pastes into a
/// shell as it is: no trailing comments (zsh would pass them to the command).
pub fn try_this(listener: &TcpListener, lines: &[&str]) {
    try_this_over(listener, false, lines);
}

/// [`try_this`] for a step that may serve TLS: `{url}` is `http://ADDR` or
/// `https://ADDR`, `{ws}` is `ws://ADDR` or `wss://ADDR`, `{curl}` is `curl`
/// or `curl -k` (the dev certificate is self-signed: curl must be told to
/// trust it), `{insecure}` is nothing or ` --insecure` (the same, for the
/// demo clients).
pub fn try_this_over(listener: &TcpListener, tls: bool, lines: &[&str]) {
    let addr = local_addr(listener).to_string();
    let (http, ws, curl, insecure) = match tls {
        false => ("http", "ws", "curl", ""),
        true => ("https", "wss", "curl -k", " --insecure"),
    };
    println!("try, in another terminal:");
    for line in lines {
        let line = line
            .replace("{url}", &format!("{http}://{addr}"))
            .replace("{ws}", &format!("{ws}://{addr}"))
            .replace("{curl}", curl)
            .replace("{insecure}", insecure)
            .replace("{addr}", &addr);
        println!("  {line}");
    }
    // The end of the list, for the eye and for scripts.
    println!();
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has a local address")
}

/// Logs to stderr (stdout is for the `listening on` line and the tips),
/// `info` unless `RUST_LOG` says otherwise (`RUST_LOG=debug`,
/// `RUST_LOG=warn,workshop=debug`: levels per target, no regexes).
pub fn init_logs() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => directives.parse::<Targets>().unwrap_or_else(|err| {
            eprintln!("RUST_LOG={directives:?} ignored: {err}");
            Targets::new().with_default(tracing::Level::INFO)
        }),
        Err(_) => Targets::new().with_default(tracing::Level::INFO),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours for a terminal, plain text for a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(filter)
        .try_init();
}
