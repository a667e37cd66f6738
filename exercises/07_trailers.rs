//! Step 07 — trailers: headers that come after the body.
//!
//! A trailer carries what is only known at the end: a checksum, gRPC's
//! `grpc-status`. In HTTP/1.1 they travel after the last chunk of a chunked
//! body, and only under two conditions:
//! - the sender *announces* them in a `Trailer` header (hyper sends only
//!   the announced ones);
//! - for a response, the client said `TE: trailers` ("I read trailers").
//!
//! Step 05 removed `Trailer` as hop-by-hop (it describes how this message is
//! framed on this connection), so the trailers stopped crossing. Here the
//! proxy notes what each side announced before stripping, and announces it
//! again on the other side: for the response, only if the client takes
//! trailers. A trailer that nobody announced, or a response to a client
//! without `TE: trailers`, cannot be carried by HTTP/1.1: hyper drops those
//! trailers, and so does every HTTP/1.1 proxy (HTTP/2 has no such limit).
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 07`.
//! This file is generated from `solutions/07_trailers.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/07_trailers.rs solutions/07_trailers.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::hop_by_hop::{HOP_BY_HOP, tokens};

// ANCHOR: announced
/// The trailer names a message announces (every `Trailer` line), minus the
/// ones that may never be trailers: framing, routing, hop-by-hop headers.
/// Only a chunked HTTP/1.1 message can carry trailers at all; any HTTP/2
/// one can (its frames end it, it has no `Transfer-Encoding`): step 09's
/// HTTP/2 clients and upstreams.
pub fn announced_trailers(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    let chunked = tokens(headers, &header::TRANSFER_ENCODING).any(|coding| coding == "chunked");
    if !chunked && version != Version::HTTP_2 {
        return None;
    }
    // TODO: every name the message's Trailer lines announce (any line, any case), as one value separated by ", ", minus those that may never be trailers (framing, routing, auth, hop-by-hop); None when none is left. Trap: a name lost on the way (only the first line or name, another separator): hyper writes only the trailers announced, so that one never arrives
    todo!(
        "every name the message's Trailer lines announce (any line, any case), as one value separated by \", \", minus those that may never be trailers (framing, routing, auth, hop-by-hop); None when none is left. Trap: a name lost on the way (only the first line or name, another separator): hyper writes only the trailers announced, so that one never arrives"
    )
}
// ANCHOR_END: announced

// ANCHOR: announce
/// Announces `names` again, after the hop-by-hop headers are gone.
pub fn announce_trailers(headers: &mut HeaderMap, names: Option<HeaderValue>) {
    if let Some(names) = names {
        headers.insert(header::TRAILER, names);
    }
}

/// Did the client say it reads trailers (`TE: trailers`)?
pub fn client_takes_trailers(request_headers: &HeaderMap) -> bool {
    tokens(request_headers, &header::TE).any(|token| token == "trailers")
}
// ANCHOR_END: announce

/// RFC 9110 §6.5.1: no framing, routing, authentication or control data in
/// trailers.
fn may_be_trailer(name: &str) -> bool {
    const FORBIDDEN: [HeaderName; 6] = [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::HOST,
        header::AUTHORIZATION,
        header::SET_COOKIE,
    ];
    !FORBIDDEN
        .iter()
        .chain(&HOP_BY_HOP)
        .any(|forbidden| forbidden == name)
}
