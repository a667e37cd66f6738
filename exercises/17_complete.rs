//! Step 17 — the complete proxy: steps 01 to 16 from one config file, for
//! an operator to run in front of real apps.
//!
//! Four ideas, in order:
//! - one file, reloaded as a whole ([`watch_config`]): what requests meet
//!   (the rules, their upstream groups, the apps) is swapped at once, as
//!   step 11's routes were; what a running server is made of (listeners,
//!   timeouts, limits, the log, the shared state) waits for a restart, and
//!   the log says so; a broken edit keeps everything in force;
//! - listeners, each with its TLS, and a certificate per name
//!   ([`bind`]): the one the client asks for in its TLS hello (SNI);
//! - upstream groups ([`forward_with_deadlines`]): a rule forwards to a
//!   group's name, the kit's connector takes its servers in turn, rests one
//!   that refuses connections and tries the next: every connect has a
//!   deadline, `https://` upstreams are verified, idle tunnels closed;
//! - apps keep to themselves ([`Isolated`]): under one domain, an app's
//!   cookies for its siblings or the parent domain are dropped.
//!
//! The config file is the kit's (`config`: every mistake named by file,
//! line and column), and so are the certificates (`certificates`) and the
//! connector (`connector`, `upstream_groups`, `upstream_client`).
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 17`.
//! This file is generated from `solutions/17_complete.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/17_complete.rs solutions/17_complete.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderMap, Request, Response, Uri};
use kit::answer::{Answer, ForApp};
use kit::apps::{App, Apps};
use kit::certificates::{self, Fallback};
use kit::config::{self, Config, Listener, Timeouts, Tls};
use kit::connector::upstream_connector;
use kit::cookies::keep_to_own_host;
use kit::routes_file::Routes;
use kit::upstream_client::UpstreamClient;
use kit::upstream_groups::Groups;
use kit::watch;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use workshop::body::{Body, RequestBody};
use workshop::round_trip::Upstream;

use crate::hardened::Bound;
use crate::routing::Forward;

// ANCHOR: watch_config
/// Reloads the config file on a change (or SIGHUP): the rules, their
/// groups and the apps now; the rest at the next restart, as the log says.
pub fn watch_config(path: &std::path::Path, running: &Config, live: Live) -> Result<(), String> {
    let path = path.to_path_buf();
    let in_force = running.restart_settings();
    watch::on_change(&path.clone(), move || match config::load(&path, None) {
        Ok(fresh) => {
            // TODO: what requests meet (the rules, their upstream groups, the apps) changes at once, and the log says `routes reloaded` as step 11's did; what a running server is made of does not, and the log names what of it the file changed. Trap: a reload that looks as if it took everything: an operator who edited `listen` or `[timeouts]` believes them in force
            todo!(
                "what requests meet (the rules, their upstream groups, the apps) changes at once, and the log says `routes reloaded` as step 11's did; what a running server is made of does not, and the log names what of it the file changed. Trap: a reload that looks as if it took everything: an operator who edited `listen` or `[timeouts]` believes them in force"
            )
        }
        Err(err) => warn!("config not reloaded (the one in force stays): {err}"),
    })
}
// ANCHOR_END: watch_config

// ANCHOR: live
/// What a reload changes while the proxy runs.
pub struct Live {
    pub routes: Arc<ArcSwap<Routes>>,
    pub groups: Arc<ArcSwap<Groups>>,
    pub apps: Arc<Apps>,
}
// ANCHOR_END: live

/// The routes of a config without `[[rules]]`: every host that is not an
/// app's gets a 404.
pub fn no_rules() -> Routes {
    Routes::new(Vec::new(), "no rules".into())
}

// ANCHOR: bind
/// Binds every listener, each with its TLS (its certificate, and the
/// `[[tls]]` ones by name), and says where: the first line is
/// `listening on …`. A problem with a certificate or an address is an
/// exit before anything is served.
pub async fn bind(listeners: &[Listener], config: &Config) -> Result<Vec<Bound>, String> {
    let (mut bound, mut fingerprints) = (Vec::new(), Vec::new());
    for listener in listeners {
        let tls = match tls_of(listener, config) {
            None => None,
            Some(made) => {
                let (acceptor, fingerprint) = made?;
                fingerprints.push(fingerprint);
                Some(acceptor)
            }
        };
        let socket = TcpListener::bind(listener.address)
            .await
            .map_err(|err| format!("cannot listen on {}: {err}", listener.address))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let address = socket.local_addr().unwrap_or(listener.address);
        println!("listening on {scheme}://{address}");
        bound.push(Bound {
            listener: socket,
            tls,
        });
    }
    for fingerprint in fingerprints {
        println!("certificate sha256 fingerprint: {fingerprint}");
    }
    Ok(bound)
}

// ANCHOR: tls_of
/// The TLS side of a listener, if it has one: the `[[tls]]` certificates
/// by name, its own otherwise (the self-signed one names the apps too).
pub fn tls_of(
    listener: &Listener,
    config: &Config,
) -> Option<Result<(TlsAcceptor, String), String>> {
    let fallback = match listener.tls.as_ref()? {
        Tls::SelfSigned => Fallback::SelfSigned(vec![format!("*.{}", config.apps.domain)]),
        Tls::Pem { cert, key } => Fallback::Pem {
            cert: cert.clone(),
            key: key.clone(),
        },
    };
    Some(certificates::acceptor(&fallback, &config.certificates))
}
// ANCHOR_END: tls_of
// ANCHOR_END: bind

/// `--config FILE --check`: the file, its certificates and its upstreams'
/// CA too: a file that passes starts.
pub fn check(path: &std::path::Path, config: &Config) -> Result<(), String> {
    for listener in &config.listeners {
        if let Some(Err(err)) = tls_of(listener, config) {
            return Err(err);
        }
    }
    kit::connector::client_tls(&config.upstream_roots)?;
    println!("{}: {config}: valid", path.display());
    Ok(())
}

/// `--listen ADDR` in place of the config's listeners (the first one's
/// TLS kept): tests and a quick try pick their own port. The config keeps
/// its own: a reload compares the file with the file.
pub fn listen_instead(config: &Config, address: SocketAddr) -> Vec<Listener> {
    let tls = config.listeners.first().and_then(|first| first.tls.clone());
    vec![Listener { address, tls }]
}

// ANCHOR: connect_deadline
/// Step 11's pipeline with the kit's clients: a deadline per connect,
/// groups of servers, TLS, HTTP/2 upstreams of its own, idle tunnels
/// closed.
pub fn forward_with_deadlines(
    options: workshop::x_forwarded::Options,
    timeouts: &Timeouts,
    upstream_http2: bool,
    groups: Arc<ArcSwap<Groups>>,
    tls: rustls::ClientConfig,
) -> Forward<UpstreamClient> {
    // ANCHOR: clients
    let connector = |http2, idle| {
        upstream_connector(timeouts.connect, groups.clone(), tls.clone(), http2, idle)
    };
    let client = match upstream_http2 {
        true => UpstreamClient::http2(connector(true, None)),
        false => UpstreamClient::http1(connector(false, None)),
    };
    // Upgrades are HTTP/1.1 (step 10); their tunnels close when idle.
    let upgrades = UpstreamClient::http1(connector(false, Some(timeouts.tunnel_idle)));
    // ANCHOR_END: clients
    let upstream = |client| Upstream {
        uri: Uri::default(),
        client,
    };
    Forward {
        upstream: upstream(client),
        upgrades: upstream(upgrades),
        options: Arc::new(options),
        timeout: timeouts.response_head,
    }
}
// ANCHOR_END: connect_deadline

// ANCHOR: isolated
/// Apps that keep to themselves: the request path of step 17, wrapped
/// around step 13's (inside step 14's and 15's).
pub struct Isolated<S> {
    pub inner: S,
    pub apps: Arc<Apps>,
}

impl<S: Answer<B>, B: RequestBody> Answer<B> for Isolated<S> {
    async fn answer(&self, request: Request<B>) -> Response<Body> {
        let mut response = self.inner.answer(request).await;
        let app = response.extensions().get::<ForApp>().cloned();
        if let Some(ForApp(app)) = app {
            keep_cookies_home(&self.apps, &app, response.headers_mut());
        }
        response
    }
}

// ANCHOR: cookies_home
/// Drops the cookies an app sets for its siblings or its parent domain
/// (`[on_demand] isolate_apps`, on by default), and says so.
fn keep_cookies_home(apps: &Apps, app: &App, headers: &mut HeaderMap) {
    let registry = apps.registry();
    if !registry.isolate_apps {
        return;
    }
    let host = format!("{}.{}", app.name, registry.domain);
    for dropped in keep_to_own_host(headers, &host) {
        let name = &app.name;
        warn!("{name}: Set-Cookie {dropped} dropped: an app sets cookies for its own host only");
    }
}
// ANCHOR_END: cookies_home
// ANCHOR_END: isolated
