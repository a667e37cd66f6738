//! Step 05 — hop-by-hop headers: what belongs to one connection stays there.
//!
//! Some headers describe the connection they travel on, not the message
//! (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`, `Transfer-Encoding`,
//! `Upgrade`... A proxy has two connections, so it must remove them in both
//! directions, along with every header that `Connection` names: a client
//! that sends `Connection: X-Secret` says "X-Secret is for the proxy only".
//!
//! Two traps:
//! - `Connection` may come as several lines, each a comma-separated list, in
//!   any case and with spaces (Go's CVE-2021-33197 was a missed variant);
//! - `Trailer` (singular) is hop-by-hop, `Trailers` (plural) is an ordinary
//!   header: RFC 2616 misspelled it in its list, and many proxies copied the
//!   typo.
//!
//! `TE` is hop-by-hop too, with one exception: `TE: trailers` says "I can
//! take trailers", which the upstream needs to know (gRPC depends on it).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// ANCHOR: hop_by_hop
/// The headers that are always connection-specific (RFC 9110 §7.6.1, and
/// the ones older specs and proxies treat the same way).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER, // singular: `Trailers` is an end-to-end header
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
// ANCHOR_END: hop_by_hop

// ANCHOR: remove
/// Removes every hop-by-hop header: the fixed list, and every header named
/// by a token of any `Connection` line.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // EXERCISE: remove every header that a token of any Connection line names, and every header of HOP_BY_HOP. Trap: removing Connection before reading what it names, or reading only its first line (CVE-2021-33197)
    // Read the names first: removing `Connection` loses them. (`close`, and
    // names of the list such as the usual `keep-alive`, need no name of
    // their own.)
    let named: Vec<HeaderName> = tokens(headers, &header::CONNECTION)
        .filter(|token| token != "close" && !HOP_BY_HOP.iter().any(|name| name == token.as_str()))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    // Most messages carry none: a look at the few names present is cheaper
    // than nine removals, each of which hashes. (The list is bound once:
    // each mention of a `const` builds its nine names anew, for every name.)
    let hop_by_hop = &HOP_BY_HOP;
    if named.is_empty() && !headers.keys().any(|name| hop_by_hop.contains(name)) {
        return;
    }
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
    // END EXERCISE
}
// ANCHOR_END: remove

// ANCHOR: request
/// What the upstream must not see of the client's connection.
pub fn strip_request(headers: &mut HeaderMap) {
    // EXERCISE: strip the hop-by-hop headers, except that the upstream gets exactly `TE: trailers` when any TE token was `trailers`. Trap: looking at TE after stripping (it is gone), or passing the client's whole TE line (`trailers, deflate`)
    let wants_trailers =
        tokens(headers, &header::TE).any(|token| token.eq_ignore_ascii_case("trailers"));
    remove_hop_by_hop(headers);
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // END EXERCISE
}
// ANCHOR_END: request

/// What the client must not see of the upstream's connection.
pub fn strip_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

/// The comma-separated tokens of every `name` line, trimmed, parameters
/// (`;q=0.5`) cut off, empty ones skipped.
// ANCHOR: tokens
pub fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|token| {
            token
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|token| !token.is_empty())
}
// ANCHOR_END: tokens
