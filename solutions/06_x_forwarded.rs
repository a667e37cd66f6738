//! Step 06 — X-Forwarded: telling the upstream who asked; and the path
//! problem.
//!
//! Behind a proxy, the upstream sees every request come from the proxy. So
//! the proxy says who really asked, in headers:
//! - `X-Forwarded-For`: the chain of client addresses, each proxy appending
//!   the one it saw (`1.2.3.4, 127.0.0.1`);
//! - `X-Forwarded-Host`: the `Host` the client asked for;
//! - `X-Forwarded-Proto`: `http` or `https`, as the client spoke it;
//! - `Forwarded` (RFC 7239) says the same in one standard header, which few
//!   upstreams read yet (`--forwarded`).
//!
//! They are set *after* the hop-by-hop headers are removed: otherwise a
//! client could send `Connection: X-Forwarded-For` and make the proxy drop
//! them.
//!
//! The path problem: `--upstream http://app/base?sta=tic` carries a path
//! and a query of its own. Joining `/base` and `/x` must give `/base/x`
//! (one slash, whatever the slashes on either side), queries merge, and the
//! path stays exactly as escaped: decoding `%2F` into `/` would change which
//! resource is asked for.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Uri};

use crate::ip_text::push_ip;
use crate::listen_and_serve::ClientAddr;

/// How much the upstream is told, and which `Host` it sees.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Options {
    /// Also send an RFC 7239 `Forwarded` header.
    #[arg(long)]
    pub forwarded: bool,

    /// Send no X-Forwarded-* headers (for the rare upstream that must not
    /// see them).
    #[arg(long)]
    pub no_x_forwarded: bool,

    /// Send the upstream's own authority as `Host` instead of the client's
    /// (what node-http-proxy calls `changeOrigin`).
    #[arg(long)]
    pub rewrite_host: bool,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

// ANCHOR: x_forwarded
/// Adds `X-Forwarded-For`, `-Host`, `-Proto` (and `Forwarded` if asked).
/// Call it after the hop-by-hop headers are gone.
pub fn add_forwarded_headers<B>(request: &mut Request<B>, proto: &'static str, options: &Options) {
    let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>().copied() else {
        return;
    };
    // An IPv4 client of a dual-stack socket shows as ::ffff:1.2.3.4.
    let client = peer.ip().to_canonical();
    let headers = request.headers_mut();
    let host = headers.get(header::HOST).cloned();
    if options.no_x_forwarded {
        // Not even the client's own: the upstream must not see any.
        for name in [X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO] {
            headers.remove(name);
        }
    } else {
        // EXERCISE: the upstream gets one X-Forwarded-For line: every entry the client sent, in order, then `client` (`1.1.1.1, 2.2.2.2, 127.0.0.1`); X-Forwarded-Host and -Proto say what we saw (`host`, port included; `proto`), never what the client claimed. Trap: a second X-Forwarded-For line, or the client's entries dropped: two lines in must reach the upstream as one chain, ours last
        // ANCHOR: xff_chain
        // Every line the client sent, in order, each followed by `, `;
        // then the address we saw. One string, the header's value.
        let mut chain = String::with_capacity(48);
        let theirs = headers.get_all(&X_FORWARDED_FOR).iter();
        for line in theirs.filter_map(|value| value.to_str().ok()) {
            let line = line.trim();
            if !line.is_empty() {
                chain.push_str(line);
                chain.push_str(", ");
            }
        }
        push_ip(&mut chain, client);
        set(headers, X_FORWARDED_FOR, chain);
        // ANCHOR_END: xff_chain
        // Ours overwrite the client's: we know what we saw.
        match &host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST, host.clone());
            }
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        // END EXERCISE
    }
    // ANCHOR: forwarded
    if options.forwarded {
        let mut element = format!("for={}", forwarded_node(client));
        if let Some(host) = host.as_ref().and_then(|host| host.to_str().ok()) {
            element.push_str(&format!(";host={}", quoted(host)));
        }
        element.push_str(&format!(";proto={proto}"));
        // Another `Forwarded` line is the same as `, element` on the last.
        if let Ok(value) = HeaderValue::try_from(element) {
            headers.append(header::FORWARDED, value);
        }
    }
    // ANCHOR_END: forwarded
}
// ANCHOR_END: x_forwarded

// ANCHOR: rewrite_host
/// `--rewrite-host`: the upstream sees its own name as `Host`. Needed when it
/// serves several sites by name (a CDN, a PaaS); wrong when it builds links
/// from `Host` (it then links to itself, not to the proxy).
pub fn use_upstream_host<B>(request: &mut Request<B>, upstream: &Uri) {
    if let Some(authority) = upstream.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(header::HOST, value);
    }
}
// ANCHOR_END: rewrite_host

// ANCHOR: join_path
// ANCHOR: join_upstream
/// Puts the request under the upstream's base path and query:
/// `--upstream http://app/base?sta=tic` + `/x?us=er` → `/base/x?sta=tic&us=er`.
pub fn join_upstream_path<B>(request: &mut Request<B>, upstream: &Uri) {
    // Nothing of its own to add (step 11 joins a rule's before): the
    // target stays as it came, unless it needs the slash or loses a `?`.
    let bare = matches!(upstream.path(), "" | "/") && upstream.query().is_none();
    let uri = request.uri();
    if bare && uri.path().starts_with('/') && uri.query() != Some("") {
        return;
    }
    let path = join_paths(upstream.path(), request.uri().path());
    let path_and_query = match merge_queries(upstream.query(), request.uri().query()) {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    // Both halves were valid already; a failure would be a bug, not input.
    if let Ok(path_and_query) = PathAndQuery::try_from(path_and_query) {
        *request.uri_mut() = Uri::from(path_and_query);
    }
}
// ANCHOR_END: join_upstream

// ANCHOR: join_paths
/// Go's `singleJoiningSlash`, on the raw (still escaped) paths: exactly one
/// slash between the two.
pub fn join_paths(base: &str, path: &str) -> String {
    // EXERCISE: `base` and `path` joined with exactly one slash between them, whatever slashes each brings (`/base` + `x` and `/base/` + `/x` give `/base/x`; `""` + `favicon.ico` gives `/favicon.ico`). Trap: gluing them as they come (`/base//x`), or decoding anything: `/a%2Fb/` + `/c%2Fd` must give `/a%2Fb/c%2Fd`
    match (base.ends_with('/'), path.starts_with('/')) {
        (true, true) => [base, &path[1..]].concat(),
        (false, false) => [base, "/", path].concat(),
        _ => [base, path].concat(),
    }
    // END EXERCISE
}
// ANCHOR_END: join_paths

/// The upstream's query first, then the request's, joined by `&`.
pub fn merge_queries(base: Option<&str>, query: Option<&str>) -> Option<String> {
    let base = base.filter(|query| !query.is_empty());
    let query = query.filter(|query| !query.is_empty());
    match (base, query) {
        (Some(base), Some(query)) => Some(format!("{base}&{query}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}
// ANCHOR_END: join_path

fn set(headers: &mut HeaderMap, name: HeaderName, value: String) {
    // Addresses are plain ASCII: this only fails on a bug. (The string
    // becomes the value, not copied.)
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

/// RFC 7239 §6: an IPv6 address goes in brackets, and then in quotes.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    }
}

/// A `Forwarded` value is a token, or else a quoted string (`host` has a
/// `:` whenever a port is given).
fn quoted(value: &str) -> String {
    let is_token = !value.is_empty()
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
    if is_token {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of Go's `TestJoinURLPath` and `singleJoiningSlash`.
    #[test]
    fn paths_join_with_one_slash_and_stay_escaped() {
        for (base, path, joined) in [
            ("/", "/favicon.ico", "/favicon.ico"),
            ("", "favicon.ico", "/favicon.ico"),
            ("", "/x", "/x"),
            ("/base", "/x", "/base/x"),
            ("/base/", "/x", "/base/x"),
            ("/base", "x", "/base/x"),
            ("/a%2Fb", "/c", "/a%2Fb/c"),
            ("/a%2Fb/", "/c%2Fd", "/a%2Fb/c%2Fd"),
        ] {
            assert_eq!(join_paths(base, path), joined, "{base:?} + {path:?}");
        }
    }

    #[test]
    fn queries_merge_upstream_first() {
        assert_eq!(
            merge_queries(Some("sta=tic"), Some("us=er")).as_deref(),
            Some("sta=tic&us=er")
        );
        assert_eq!(
            merge_queries(Some(""), Some("us=er")).as_deref(),
            Some("us=er")
        );
        assert_eq!(
            merge_queries(Some("sta=tic"), Some("")).as_deref(),
            Some("sta=tic")
        );
        assert_eq!(merge_queries(None, None), None);
    }

    #[test]
    fn forwarded_quotes_what_is_not_a_token() {
        assert_eq!(forwarded_node("192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(forwarded_node("::1".parse().unwrap()), "\"[::1]\"");
        assert_eq!(quoted("example.com"), "example.com");
        assert_eq!(quoted("example.com:8080"), "\"example.com:8080\"");
    }
}
