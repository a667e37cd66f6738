//! Step 11 — routing: one proxy in front of many services, choosing per
//! request by rules read from a file, and changing them while it runs.
//!
//! The rules follow mu.semte.ch's dispatcher: match on method, host, path
//! and `Accept`; main rules first, fallback rules after; within a layer,
//! the media ranges the client prefers most first, and within those, rules
//! in file order: the first match wins. mu-dispatcher compiles its rules
//! (Elixir macros) into the router; here they are data, read from a TOML
//! file (`routes_file`, the kit, does the reading and the patterns) and
//! swapped atomically when the file changes.
//!
//! Three ideas, in order:
//! - once there are several upstreams, the pipeline of steps 02–10 becomes
//!   a value, [`Forward`], pointed at one upstream or another;
//! - [`find_rule`] tries the rules in mu-dispatcher's order, and
//!   [`dispatch`] does what the winner says;
//! - the rules live behind an `ArcSwap`: a request takes the rules in
//!   force when it starts ([`dispatch`]), a reload swaps in new ones for
//!   the next requests ([`reload`]), and nothing waits for anything.

use std::borrow::Cow;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tracing::{info, warn};
use workshop::body::{Body, RequestBody, full, text};
use workshop::copy_headers::round_trip;
use workshop::hop_by_hop::{strip_request, strip_response};
use workshop::http2::{h2_to_h1, scheme_of};
use workshop::round_trip::{HttpClient, Upstream};
use workshop::streaming::{notice_when_sent, with_deadline};
use workshop::trailers::{announce_trailers, announced_trailers, client_takes_trailers};
use workshop::websocket::{
    bridge_extended_connect, extended_connect, refuse_unasked_switch, requested_upgrade,
    restore_upgrade, tunnel,
};
use workshop::x_forwarded::{self, add_forwarded_headers, join_paths, merge_queries};
use workshop::x_forwarded::{join_upstream_path, use_upstream_host};

use kit::patterns::without_dot_segments;
use kit::patterns::{AcceptGroup, Captures, host_of, normalize_host};
use kit::routes_file::{Action, Layer, Routes, Rule};

const X_REWRITE_URL: HeaderName = HeaderName::from_static("x-rewrite-url");

// ANCHOR: forward
// ANCHOR: forward_struct
/// Everything steps 02 to 10 do to a request on its way to one upstream,
/// as a value: a rule points it at its upstream with [`Forward::to`].
///
/// `T` is its clients: hyper-util's over plain TCP here; step 17's add
/// TLS, groups of servers, and HTTP/2 upstreams of their own.
#[derive(Clone)]
pub struct Forward<T = Client<HttpConnector, Body>> {
    /// Where requests go, and the client that takes them there (HTTP/1.1,
    /// or h2c with `--upstream-http2`: step 09).
    pub upstream: Upstream<T>,
    /// The same upstream over HTTP/1.1, for upgrades (step 10).
    pub upgrades: Upstream<T>,
    pub options: Arc<x_forwarded::Options>,
    /// No response head within this long: 504 (step 08).
    pub timeout: Duration,
}
// ANCHOR_END: forward_struct

impl Forward {
    /// The pipeline with its clients, not pointed anywhere yet: every rule
    /// points it at its own upstream with [`Forward::to`].
    pub fn new(options: x_forwarded::Options, timeout: Duration, upstream_http2: bool) -> Forward {
        Forward {
            upstream: workshop::http2::upstream(Uri::default(), upstream_http2),
            upgrades: workshop::http2::upstream(Uri::default(), false),
            options: Arc::new(options),
            timeout,
        }
    }
}

impl<T: HttpClient> Forward<T> {
    /// The same pipeline towards another upstream, sharing the clients
    /// (each keeps a pool of connections per upstream).
    pub fn to(&self, uri: Uri) -> Forward<T> {
        let mut forward = self.clone();
        forward.upstream.uri = uri.clone();
        forward.upgrades.uri = uri;
        forward
    }

    /// Step 10's pipeline, once: read what stripping removes, strip, let the
    /// caller change headers (`after_stripping`: a rule's changes, which a
    /// client's `Connection` can then no longer remove), add who asked and
    /// where, send (round trip, tunnel or RFC 8441 bridge) under one deadline.
    pub async fn forward<B: RequestBody>(
        &self,
        mut request: Request<B>,
        after_stripping: impl FnOnce(&mut HeaderMap),
    ) -> Response<Body> {
        h2_to_h1(&mut request);
        // What the hop-by-hop stripping would erase.
        let upgrade = requested_upgrade(request.headers());
        let h2_websocket = extended_connect(&request);
        let request_trailers = announced_trailers(request.version(), request.headers());
        let takes_trailers = client_takes_trailers(request.headers());
        strip_request(request.headers_mut());
        announce_trailers(request.headers_mut(), request_trailers);
        after_stripping(request.headers_mut());
        let scheme = scheme_of(&request);
        add_forwarded_headers(&mut request, scheme, &self.options);
        if self.options.rewrite_host {
            use_upstream_host(&mut request, &self.upstream.uri);
        }
        join_upstream_path(&mut request, &self.upstream.uri);
        if let Some(protocol) = &upgrade {
            restore_upgrade(request.headers_mut(), protocol);
        }

        // ANCHOR: one_deadline
        let switching = upgrade.is_some() || h2_websocket.is_some();
        let (request, sent) = notice_when_sent(request);
        // Rare paths boxed, the exchange pinned in place: each future 2.1 KiB less.
        let exchange = pin!(async move {
            match (upgrade, h2_websocket) {
                (Some(protocol), _) => Box::pin(tunnel(&self.upgrades, request, protocol)).await,
                (None, Some(protocol)) => {
                    Box::pin(bridge_extended_connect(&self.upgrades, request, protocol)).await
                }
                (None, None) => round_trip(&self.upstream, request).await,
            }
        });
        let response = with_deadline(self.timeout, sent, &self.upstream.uri, exchange).await;
        // ANCHOR_END: one_deadline
        if switching {
            return response;
        }
        let mut response = refuse_unasked_switch(response, &self.upstream.uri);
        let response_trailers = announced_trailers(response.version(), response.headers());
        strip_response(response.headers_mut());
        if takes_trailers {
            announce_trailers(response.headers_mut(), response_trailers);
        }
        response
    }
}
// ANCHOR_END: forward

/// On the response, which rule answered (its line): step 15 counts by it.
#[derive(Debug, Clone, Copy)]
pub struct MatchedRule(pub usize);

/// The rule a request matched, and what it captured on the way.
pub struct Matched<'r, 'a> {
    pub rule: &'r Rule,
    pub captures: Captures,
    /// What the path's `*name` captured (`/a/b`, `/`, or `""`), in place.
    pub rest: &'a str,
}

// ANCHOR: find_rule
/// mu-dispatcher's order: each layer (main, then fallback); within it, each
/// group of media ranges the client accepts, best quality first; within that,
/// each rule in file order that may match this path. The first match wins.
pub fn find_rule<'r, 'a, B>(
    routes: &'r Routes,
    request: &'a Request<B>,
) -> Option<Matched<'r, 'a>> {
    let asked = Asked::from(request);
    let groups = routes.accept_groups(asked.path, request.headers());
    // EXERCISE: the rule mu-dispatcher would choose for this request, and what it captured; None if no rule matches. Trap: file order first lets a rule for a type the client likes less win
    // ANCHOR: order
    for layer in [Layer::Main, Layer::Fallback] {
        for group in &groups {
            for rule in routes.candidates(layer, asked.path) {
                let mut captures = Captures::default();
                if let Some(rest) = rule_matches(rule, &asked, group, &mut captures) {
                    return Some(Matched {
                        rule,
                        captures,
                        rest,
                    });
                }
            }
        }
    }
    None
    // ANCHOR_END: order
    // END EXERCISE
}
// ANCHOR_END: find_rule

/// What the rules look at in a request, read once for all of them.
struct Asked<'a> {
    method: &'a Method,
    /// Lowercase, without its port (`None`: no host at all).
    host: Option<Cow<'a, str>>,
    path: &'a str,
}

impl<'a, B> From<&'a Request<B>> for Asked<'a> {
    fn from(request: &'a Request<B>) -> Asked<'a> {
        // An HTTP/2 WebSocket is a CONNECT; rules see the GET it stands for.
        let method = match extended_connect(request) {
            Some(_) => &Method::GET,
            None => request.method(),
        };
        Asked {
            method,
            // `Host`, or the URI's authority (an absolute-form request).
            host: host_of(request).map(normalize_host),
            path: request.uri().path(),
        }
    }
}

// ANCHOR: rule_matches
/// Whether a rule matches: every condition it states, the cheap ones
/// first. Returns the rest its path captured.
fn rule_matches<'a>(
    rule: &Rule,
    asked: &Asked<'a>,
    group: &AcceptGroup,
    captures: &mut Captures,
) -> Option<&'a str> {
    if let Some(methods) = &rule.methods
        && !methods.contains(asked.method)
    {
        return None;
    }
    if let Some(offered) = &rule.accept
        && !group.takes_any(offered)
    {
        return None;
    }
    if let Some(pattern) = &rule.host {
        let host = asked.host.as_deref()?;
        if !pattern.matches(host, captures) {
            return None;
        }
    }
    rule.path.matches(asked.path, captures)
}
// ANCHOR_END: rule_matches

// ANCHOR: dispatch
/// Answers one request by the rules in force when it arrived.
pub async fn dispatch<B: RequestBody, T: HttpClient>(
    routes: &ArcSwap<Routes>,
    forward: &Forward<T>,
    mut request: Request<B>,
) -> Response<Body> {
    // This request keeps these rules to its end, whatever a reload swaps in.
    let routes = routes.load_full();
    // HTTP/2's `:authority` becomes `Host` before the rules read the host
    // (and before the target is rewritten below).
    h2_to_h1(&mut request);
    // The target as the client sent it, for X-Rewrite-URL.
    let rewrite_url = request.uri().path_and_query().map(|target| target.as_str());
    let rewrite_url = rewrite_url.and_then(|target| HeaderValue::from_str(target).ok());
    // Rules see, and upstreams get, the path with `..` resolved: nothing
    // slips under a rule by way of `/public/../admin`.
    if let Cow::Owned(path) = without_dot_segments(request.uri().path()) {
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Ok(target) = format!("{path}{query}").parse() {
            *request.uri_mut() = target;
        }
    }
    let varies = routes.depends_on_accept(request.uri().path());
    let Some(matched) = find_rule(&routes, &request) else {
        let mut response = text(
            StatusCode::NOT_FOUND,
            format!(
                "404 Not Found: no route for {} {}",
                request.method(),
                request.uri().path()
            ),
        );
        if varies {
            vary_on_accept(response.headers_mut());
        }
        return response;
    };
    let rule = matched.rule;
    let mut response = match &rule.action {
        Action::Respond(canned) => {
            let mut response = Response::new(full(canned.body.clone()));
            *response.status_mut() = canned.status;
            *response.headers_mut() = canned.headers.clone();
            response
        }
        Action::Forward(template) => {
            let upstream = match template.render(&matched.captures) {
                Ok(upstream) => upstream,
                Err(err) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("400 Bad Request: cannot forward this request: {err}"),
                    );
                }
            };
            // EXERCISE: the request reaches the rule's upstream, the rest its path captured after the upstream's own path, both queries kept, with the rule's request headers and X-Rewrite-URL (the target as sent). Trap: set before the hop-by-hop stripping, a header the client names in Connection never arrives
            // ANCHOR: dispatch_forward
            let (authority, path_and_query) = upstream_target(&upstream, matched.rest, &request);
            *request.uri_mut() = path_and_query;
            let rule_changes = |headers: &mut HeaderMap| {
                rule.request_headers.apply(headers);
                if let Some(target) = rewrite_url {
                    headers.insert(X_REWRITE_URL, target);
                }
            };
            forward.to(authority).forward(request, rule_changes).await
            // ANCHOR_END: dispatch_forward
            // END EXERCISE
        }
    };
    rule.response_headers.apply(response.headers_mut());
    response.extensions_mut().insert(MatchedRule(rule.line));
    // Another Accept could have chosen another rule: caches must know.
    if varies {
        vary_on_accept(response.headers_mut());
    }
    response
}
// ANCHOR_END: dispatch

// ANCHOR: upstream_target
/// Where a forwarded request goes: the upstream's scheme and authority, and
/// a target: its path and the captured rest joined by one slash (step 06's
/// `join_paths`; no rest, no join), its query and then the request's.
fn upstream_target<B>(upstream: &Uri, rest: &str, request: &Request<B>) -> (Uri, Uri) {
    let path = match rest {
        "" => upstream.path().to_string(),
        rest => join_paths(upstream.path(), rest),
    };
    let path_and_query = match merge_queries(upstream.query(), request.uri().query()) {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let target = PathAndQuery::try_from(path_and_query)
        .map(Uri::from)
        .unwrap_or_else(|_| Uri::from_static("/"));
    let mut authority = Uri::builder();
    if let Some(scheme) = upstream.scheme() {
        authority = authority.scheme(scheme.clone());
    }
    if let Some(host) = upstream.authority() {
        authority = authority.authority(host.clone());
    }
    let authority = authority
        .path_and_query(PathAndQuery::from_static("/"))
        .build()
        .unwrap_or_else(|_| upstream.clone());
    (authority, target)
}
// ANCHOR_END: upstream_target

/// Adds `Accept` to `Vary`, unless the upstream already said it (or `*`).
fn vary_on_accept(headers: &mut http::HeaderMap) {
    let said = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim() == "*" || token.trim().eq_ignore_ascii_case("accept"));
    if !said {
        headers.append(header::VARY, HeaderValue::from_static("Accept"));
    }
}

// ANCHOR: reload
/// Loads the rules again and swaps them in, or keeps the ones in force and
/// says why. Requests in flight keep the rules they started with; the
/// next ones take the new rules.
pub fn reload(routes: &ArcSwap<Routes>, load: impl Fn() -> Result<Routes, String>) {
    match load() {
        Ok(fresh) => {
            info!("routes reloaded: {fresh}");
            routes.store(Arc::new(fresh));
        }
        Err(err) => warn!(
            "routes not reloaded (the {} in force stay): {err}",
            routes.load()
        ),
    }
}
// ANCHOR_END: reload
