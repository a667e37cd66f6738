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
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 05`.
//! This file is generated from `solutions/05_hop_by_hop.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/05_hop_by_hop.rs solutions/05_hop_by_hop.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

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
    // TODO: remove every header that a token of any Connection line names, and every header of HOP_BY_HOP. Trap: removing Connection before reading what it names, or reading only its first line (CVE-2021-33197)
    todo!(
        "remove every header that a token of any Connection line names, and every header of HOP_BY_HOP. Trap: removing Connection before reading what it names, or reading only its first line (CVE-2021-33197)"
    )
}
// ANCHOR_END: remove

// ANCHOR: request
/// What the upstream must not see of the client's connection.
pub fn strip_request(headers: &mut HeaderMap) {
    // TODO: strip the hop-by-hop headers, except that the upstream gets exactly `TE: trailers` when any TE token was `trailers`. Trap: looking at TE after stripping (it is gone), or passing the client's whole TE line (`trailers, deflate`)
    todo!(
        "strip the hop-by-hop headers, except that the upstream gets exactly `TE: trailers` when any TE token was `trailers`. Trap: looking at TE after stripping (it is gone), or passing the client's whole TE line (`trailers, deflate`)"
    )
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
