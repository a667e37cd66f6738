//! The least a hyper reverse proxy does, to measure what hyper itself costs
//! a request: HTTP/1.1 or h2c in (hyper-util's `auto` server, as step 17
//! serves), the request passed on as it came (only `Connection` removed;
//! an HTTP/2 request's authority becomes `Host`), HTTP/1.1 out over a pool
//! of kept-alive connections, the response passed back as it came. No
//! routing, no header rules, no log, no metrics, no timeouts: not a proxy
//! to run, a floor to compare step 17 with (README.md, "Speed").
//!
//!     cargo build --profile production --example hyper-floor
//!     target/production/examples/hyper-floor --listen 127.0.0.1:8080 --upstream http://127.0.0.1:9000
//!
//! (`bench/compare.py` builds it so, and runs it beside step 17.)
//!
//! One thread (tokio's current-thread runtime), as step 17 runs on one core.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

/// Kept-alive connections to the upstream that take a request now.
type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

fn main() {
    let (listen, upstream) = match arguments() {
        Ok(both) => both,
        Err(why) => {
            eprintln!("error: {why}\nusage: hyper-floor --listen ADDR --upstream http://ADDR");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(serve(listen, upstream)),
        Err(err) => eprintln!("error: cannot start tokio's runtime: {err}"),
    }
}

/// `--listen ADDR --upstream http://ADDR`, as the steps take them.
fn arguments() -> Result<(SocketAddr, SocketAddr), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        let at = args.iter().position(|arg| arg == flag);
        at.and_then(|at| args.get(at + 1))
            .ok_or(format!("{flag} is missing"))
    };
    let listen = value("--listen")?;
    let upstream = value("--upstream")?;
    let listen = listen
        .parse()
        .map_err(|err| format!("--listen {listen}: {err}"))?;
    let address = upstream.trim_start_matches("http://").trim_end_matches('/');
    let upstream = address
        .parse()
        .map_err(|err| format!("--upstream {upstream}: an http://IP:PORT ({err})"))?;
    Ok((listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) {
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => return eprintln!("error: cannot listen on {listen}: {err}"),
    };
    if let Ok(addr) = listener.local_addr() {
        println!("listening on http://{addr}");
    }
    let pool = Pool::default();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| pass_on(pool.clone(), upstream, request));
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(client), service)
                .await;
        });
    }
}

/// Sends the request as it came over a kept-alive connection that is ready,
/// and files the connection back once the response's head is in, as step
/// 17's upstream client (the kit's `upstream_client`) does.
async fn pass_on(
    pool: Pool,
    upstream: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Incoming>, std::io::Error> {
    request.headers_mut().remove(hyper::header::CONNECTION);
    if request.version() == hyper::Version::HTTP_2 {
        // HTTP/1.1 out: the path alone, the authority in `Host`.
        let host = request.uri().authority().map(|a| a.as_str().parse());
        if let Some(Ok(host)) = host {
            request.headers_mut().insert(hyper::header::HOST, host);
        }
        let path = request.uri().path_and_query().map(|p| p.as_str().parse());
        *request.uri_mut() = path.and_then(Result::ok).unwrap_or_default();
        *request.version_mut() = hyper::Version::HTTP_11;
    }
    let ready = {
        let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
        let at = idle.iter().rposition(SendRequest::is_ready);
        if at.is_none() {
            // Closed by the upstream meanwhile: never ready again.
            idle.retain(|sender| !sender.is_closed());
        }
        at.map(|at| idle.swap_remove(at))
    };
    let mut sender = match ready {
        Some(sender) => sender,
        None => connect(upstream).await?,
    };
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    pool.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(sender);
    Ok(response)
}

async fn connect(upstream: SocketAddr) -> Result<SendRequest<Incoming>, std::io::Error> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}
