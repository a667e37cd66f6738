//! Step 10 — WebSocket: `101 Switching Protocols`, then two connections
//! spliced together.
//!
//! A WebSocket starts as an HTTP/1.1 request with `Connection: upgrade` and
//! `Upgrade: websocket`. If the server agrees, it answers `101` and from
//! then on the connection carries WebSocket frames, not HTTP. Step 05
//! stripped `Upgrade` (it is hop-by-hop), which broke this: here the proxy
//! notices an upgrade request before stripping, asks the upstream for the
//! same switch, and on `101` stops being an HTTP proxy: it copies bytes both
//! ways until either side closes. It does not parse a single WebSocket
//! frame: text, binary, fragments, pings and the close handshake all pass
//! untouched.
//!
//! What a proxy must refuse:
//! - a `101` to a request that asked for no upgrade, or to another
//!   protocol than the one asked for: the two ends would disagree on what
//!   the bytes mean (`502`);
//! - `Upgrade: h2c`: never passed on (see step 09).
//!
//! HTTP/2 has no `Upgrade`: a WebSocket over HTTP/2 (RFC 8441) is an
//! *extended CONNECT* — method `CONNECT`, `:protocol websocket` — on one
//! stream, which becomes the tunnel. The server must first advertise
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`. Few proxies bridge this to an
//! HTTP/1.1 upstream; this one does: it makes the HTTP/1.1 handshake itself
//! (its own `Sec-WebSocket-Key`, checking the upstream's answer), then
//! splices the stream and the upgraded connection.
//!
//! A real proxy would also bound how long a tunnel may stay idle; the
//! complete proxy (step 17) does.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, warn};

use crate::body::{Body, BoxError, empty, text};
use crate::copy_headers::{client_response, outgoing_request};
use crate::hop_by_hop::{strip_response, tokens};
use crate::round_trip::{HttpClient, Upstream, bad_gateway};

/// Whatever later steps need kept while a tunnel is open, in the
/// request's extensions: the tunnel holds it until it closes. Step 13
/// counts an open WebSocket as activity of its app this way, step 14 as
/// an open connection.
#[derive(Clone, Default)]
pub struct KeptWhileOpen(pub Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

/// Adds `value` to what a tunnel made from `request` keeps while open.
pub fn keep_while_open<B>(
    request: &mut Request<B>,
    value: std::sync::Arc<dyn std::any::Any + Send + Sync>,
) {
    let extensions = request.extensions_mut();
    match extensions.get_mut::<KeptWhileOpen>() {
        Some(kept) => kept.0.push(value),
        None => {
            extensions.insert(KeptWhileOpen(vec![value]));
        }
    }
}

// ANCHOR: requested
/// The protocols a request asks to switch to, in its order of preference:
/// `Connection: upgrade` and an `Upgrade` list (`websocket`, or
/// `websocket, foo/2`). Read them before the hop-by-hop headers are stripped.
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    // EXERCISE: the protocols asked for, in order, as one value (`foo/2, websocket`), if a Connection token (any line, any case) is `upgrade`; else None. Trap: offering `h2c` upstream: it would switch a connection the proxy still reads as HTTP/1.1
    let asks = tokens(headers, &header::CONNECTION).any(|token| token == "upgrade");
    // h2c would switch a connection we still parse as HTTP/1.1: never.
    let offered: Vec<String> = tokens(headers, &header::UPGRADE)
        .filter(|token| token != "h2c")
        .collect();
    if !asks || offered.is_empty() {
        return None;
    }
    HeaderValue::from_str(&offered.join(", ")).ok()
    // END EXERCISE
}
// ANCHOR_END: requested

/// Asks the next hop for the switch again, after the stripping.
pub fn restore_upgrade(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol.clone());
}

// ANCHOR: tunnel
/// Forwards an upgrade request; on `101` for the same protocol, splices the
/// client's connection and the upstream's until either side closes.
pub async fn tunnel<B, T: HttpClient>(
    upstream: &Upstream<T>,
    mut request: Request<B>,
    protocol: HeaderValue,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // The client's side of the switch: ready once our 101 has been sent.
    let client_side = hyper::upgrade::on(&mut request);
    let kept = request.extensions_mut().remove::<KeptWhileOpen>();
    let outgoing = outgoing_request(&upstream.uri, request);
    let mut response = match upstream.client.request(outgoing).await {
        Ok(response) => response,
        Err(err) => return bad_gateway(&upstream.uri, &*err),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream said no (a 400, a 401...): an ordinary response.
        return plain(response);
    }
    // EXERCISE: a 101 to a protocol in `protocol` (token by token): both sides spliced, `kept` too, our 101 back at once; to another one: 502. Trap: awaiting the splice before answering: the client's side switches only once our 101 is sent, a deadlock
    // ANCHOR: switch
    // One of the protocols offered, compared token by token.
    let switched_to = response.headers().get(header::UPGRADE);
    if !switched_to.is_some_and(|to| offers(&protocol, to)) {
        return switched_badly(&upstream.uri, switched_to, Some(&protocol));
    }
    let upstream_side = hyper::upgrade::on(&mut response);
    tokio::spawn(splice(client_side, upstream_side, kept));
    // ANCHOR_END: switch
    // END EXERCISE
    // Our own 101, with the upstream's headers (Sec-WebSocket-Accept...).
    let mut answer = Response::new(empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    copy_headers(response.headers(), answer.headers_mut());
    strip_response(answer.headers_mut());
    // The protocol it switched to, not the whole list offered.
    let switched_to = response.headers().get(header::UPGRADE);
    restore_upgrade(answer.headers_mut(), switched_to.unwrap_or(&protocol));
    answer
}
// ANCHOR_END: tunnel

/// Whether `chosen` is one of the `offered` protocols (`foo/2, websocket`).
fn offers(offered: &HeaderValue, chosen: &HeaderValue) -> bool {
    let chosen = String::from_utf8_lossy(chosen.as_bytes())
        .trim()
        .to_ascii_lowercase();
    offered
        .to_str()
        .is_ok_and(|list| list.split(',').any(|token| token.trim() == chosen))
}

// ANCHOR: extended_connect
/// RFC 8441: the protocol an HTTP/2 extended CONNECT asks for.
pub fn extended_connect<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.method() != Method::CONNECT {
        return None;
    }
    let protocol = request.extensions().get::<Protocol>()?;
    HeaderValue::from_str(protocol.as_str()).ok()
}

/// Bridges an HTTP/2 WebSocket (extended CONNECT) to an HTTP/1.1 upgrade.
pub async fn bridge_extended_connect<B, T: HttpClient>(
    upstream: &Upstream<T>,
    mut request: Request<B>,
    protocol: HeaderValue,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let client_side = hyper::upgrade::on(&mut request);
    let kept = request.extensions_mut().remove::<KeptWhileOpen>();
    // EXERCISE: an HTTP/1.1 handshake upstream with our own Sec-WebSocket-Key; a Sec-WebSocket-Accept that does not answer it: 502; else spliced (`kept` too) and 200, that accept left out. Trap: the CONNECT sent up as it came: an HTTP/1.1 upstream opens a WebSocket only for a GET asking for the upgrade, with a key
    let mut outgoing = outgoing_request(&upstream.uri, request);
    // HTTP/1.1 opens a WebSocket with a GET, not a CONNECT.
    *outgoing.method_mut() = Method::GET;
    restore_upgrade(outgoing.headers_mut(), &protocol);
    // ANCHOR: own_key
    // HTTP/2 clients send no key: the handshake to the upstream is ours.
    let key = generate_key();
    if let Ok(key) = HeaderValue::from_str(&key) {
        outgoing.headers_mut().insert("sec-websocket-key", key);
    }
    // ANCHOR_END: own_key
    let mut response = match upstream.client.request(outgoing).await {
        Ok(response) => response,
        Err(err) => return bad_gateway(&upstream.uri, &*err),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return plain(response);
    }
    // ANCHOR: check_accept
    let expected = derive_accept_key(key.as_bytes());
    let accept = response.headers().get("sec-websocket-accept");
    if accept.is_none_or(|accept| accept.as_bytes() != expected.as_bytes()) {
        let message = format!(
            "502 Bad Gateway: upstream {} answered our WebSocket key with a wrong Sec-WebSocket-Accept",
            upstream.uri
        );
        warn!("{message}");
        return text(StatusCode::BAD_GATEWAY, message);
    }
    // ANCHOR_END: check_accept
    let upstream_side = hyper::upgrade::on(&mut response);
    tokio::spawn(splice(client_side, upstream_side, kept));
    // On HTTP/2, `200` means "the stream is yours"; the key is ours, not
    // the client's: its answer stays here.
    let mut answer = Response::new(empty());
    copy_headers(response.headers(), answer.headers_mut());
    strip_response(answer.headers_mut());
    answer.headers_mut().remove("sec-websocket-accept");
    answer
    // END EXERCISE
}
// ANCHOR_END: extended_connect

// ANCHOR: splice
/// Once both sides have switched: bytes both ways until both are done.
/// `_kept` lives exactly as long (see [`KeptWhileOpen`]).
async fn splice(client: OnUpgrade, upstream: OnUpgrade, _kept: Option<KeptWhileOpen>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(err) => return debug!("upgrade failed: {err}"),
    };
    // When one side half-closes, the other is told (shutdown of its write
    // half) and the opposite direction goes on.
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => debug!("tunnel closed: {up} bytes up, {down} bytes down"),
        Err(err) => debug!("tunnel broke: {err}"),
    }
}
// ANCHOR_END: splice

// ANCHOR: unasked
/// For every other request: a `101` that nobody asked for is refused.
pub fn refuse_unasked_switch(response: Response<Body>, upstream: &Uri) -> Response<Body> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let switched_to = response.headers().get(header::UPGRADE).cloned();
        return switched_badly(upstream, switched_to.as_ref(), None);
    }
    response
}
// ANCHOR_END: unasked

fn switched_badly(
    upstream: &Uri,
    switched_to: Option<&HeaderValue>,
    asked: Option<&HeaderValue>,
) -> Response<Body> {
    let show = |value: Option<&HeaderValue>| {
        value.map_or("nothing".to_string(), |value| {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        })
    };
    let message = format!(
        "502 Bad Gateway: upstream {upstream} switched protocols to {}, the client asked for {}",
        show(switched_to),
        show(asked)
    );
    warn!("{message}");
    text(StatusCode::BAD_GATEWAY, message)
}

/// A non-101 answer to an upgrade request, passed on as in step 04.
fn plain(response: Response<Incoming>) -> Response<Body> {
    let mut answer = client_response(response);
    strip_response(answer.headers_mut());
    answer
}

/// Copies every header line of `from` into a response of our own (the
/// `101`s and `200`s above): `append`, since `insert` keeps only a name's
/// last value. Step 04 passes the upstream's head on instead; here the
/// upstream's response stays behind with its connection.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        to.append(name, value.clone());
    }
}
