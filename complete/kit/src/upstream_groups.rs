//! Groups of upstream servers, for step 17: a rule that forwards to
//! `http://NAME/…`, where `NAME` is a group of the config file (nginx's
//! `upstream` blocks), sends each request to one of the group's servers.
//!
//! - **Round robin**: each request takes the next server ([`Group::choose`],
//!   one atomic add: no lock on the hot path). Connections are kept alive
//!   per group address by step 17's client (`upstream_client`), as for any
//!   upstream.
//! - **Passive health**: a server that fails `fail_after` connects in a row
//!   (refused, or timed out after `[timeouts] connect`) rests for
//!   `cool_down`: requests skip it, then it is tried again. No probes of
//!   our own: real requests are the probes.
//! - **One retry, on connect only** ([`GroupConnector`]): when a connection
//!   cannot be made, nothing has been sent, so it is safe to make it to
//!   another server of the group, whatever the method; a request that was
//!   sent is never sent twice.
//!
//! (Least-connections balancing would need each request to hold a count
//! until its response ends: a later change, if a measurement asks for it.)

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::Uri;
use http::uri::Authority;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;
use tracing::{info, warn};

/// The groups of a config file, by name.
#[derive(Debug, Default)]
pub struct Groups {
    by_name: HashMap<String, Arc<Group>>,
}

impl Groups {
    pub fn new(groups: Vec<Group>) -> Groups {
        let by_name = groups
            .into_iter()
            .map(|group| (group.name.clone(), Arc::new(group)))
            .collect();
        Groups { by_name }
    }

    /// The group called `name`, if any (a rule's forward host).
    pub fn named(&self, name: &str) -> Option<Arc<Group>> {
        self.by_name.get(name).cloned()
    }

    /// The group a server belongs to (the first, if several list it).
    fn serving(&self, server: &Authority) -> Option<&Arc<Group>> {
        self.by_name
            .values()
            .find(|group| group.servers.iter().any(|s| &s.address == server))
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Servers that answer for the same thing, taken in turn.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    servers: Vec<Server>,
    next: AtomicUsize,
    fail_after: u32,
    cool_down: Duration,
    /// Rests are counted in milliseconds since then (an atomic, not a lock).
    born: Instant,
}

#[derive(Debug)]
struct Server {
    address: Authority,
    /// Connect failures in a row.
    failures: AtomicU32,
    /// Skipped until then (ms since `born`; 0: never).
    resting_until: AtomicU64,
}

impl Group {
    pub fn new(
        name: String,
        servers: Vec<Authority>,
        fail_after: u32,
        cool_down: Duration,
    ) -> Group {
        let servers = servers
            .into_iter()
            .map(|address| Server {
                address,
                failures: AtomicU32::new(0),
                resting_until: AtomicU64::new(0),
            })
            .collect();
        Group {
            name,
            servers,
            next: AtomicUsize::new(0),
            fail_after: fail_after.max(1),
            cool_down,
            born: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The server for the next request: the next one in turn that is not
    /// resting. If all are resting, the one whose rest ends first (a group
    /// never refuses by itself: the connect says whether it is back).
    pub fn choose(&self) -> Authority {
        self.choose_other_than(None).unwrap_or_else(|| {
            // Only with no servers at all, which the config refuses.
            Authority::from_static("0.0.0.0:0")
        })
    }

    // ANCHOR: choose
    fn choose_other_than(&self, excluded: Option<&Authority>) -> Option<Authority> {
        let count = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        let candidates = (0..count)
            .map(|i| &self.servers[(start + i) % count])
            .filter(|server| Some(&server.address) != excluded);
        let mut earliest: Option<&Server> = None;
        for server in candidates {
            let until = server.resting_until.load(Ordering::Relaxed);
            if until <= now {
                return Some(server.address.clone());
            }
            if earliest.is_none_or(|e| until < e.resting_until.load(Ordering::Relaxed)) {
                earliest = Some(server);
            }
        }
        earliest.map(|server| server.address.clone())
    }
    // ANCHOR_END: choose

    fn server(&self, address: &Authority) -> Option<&Server> {
        self.servers.iter().find(|s| &s.address == address)
    }

    /// A connect to `address` failed: one more failure; at `fail_after`,
    /// the server rests.
    fn failed(&self, address: &Authority, why: &str) {
        let Some(server) = self.server(address) else {
            return;
        };
        let failures = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.fail_after {
            server.failures.store(0, Ordering::Relaxed);
            let until = self.now() + u64::try_from(self.cool_down.as_millis()).unwrap_or(0);
            server.resting_until.store(until, Ordering::Relaxed);
            warn!(
                "upstream group {}: {address} failed {failures} connect(s) in a row ({why}): \
                 skipped for {:?}",
                self.name, self.cool_down
            );
        }
    }

    /// A connect to `address` worked: its count of failures starts again.
    fn connected(&self, address: &Authority) {
        if let Some(server) = self.server(address) {
            // Read first: a store on every connect would bounce the cache
            // line between cores for nothing.
            if server.failures.load(Ordering::Relaxed) != 0 {
                server.failures.store(0, Ordering::Relaxed);
            }
            if server.resting_until.swap(0, Ordering::Relaxed) != 0 {
                info!("upstream group {}: {address} is back", self.name);
            }
        }
    }
}

/// hyper-util's TCP connector, which knows the groups: a connect that
/// fails counts against its server, and is made once more, to another
/// server of the same group.
///
/// The client files connections by the request's address: the retried
/// connection would be pooled as the first server's, and hide that it is
/// down. So it serves its one request, and is closed.
///
/// With `idle`, its connections close after that long without a byte either
/// way: the connector of upgrades (step 10's tunnels) bounds an idle
/// WebSocket this way, on the upstream's side; the client's side closes
/// with it.
#[derive(Clone)]
pub struct GroupConnector {
    tcp: HttpConnector,
    groups: Arc<ArcSwap<Groups>>,
    idle: Option<Duration>,
}

impl GroupConnector {
    /// `groups` is shared with whoever reloads the config.
    pub fn new(
        tcp: HttpConnector,
        groups: Arc<ArcSwap<Groups>>,
        idle: Option<Duration>,
    ) -> GroupConnector {
        GroupConnector { tcp, groups, idle }
    }
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<GroupStream, workshop::body::BoxError>> + Send>>;

impl Service<Uri> for GroupConnector {
    type Response = GroupStream;
    type Error = workshop::body::BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // HttpConnector is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let mut tcp = self.tcp.clone();
        let idle = self.idle;
        let group = uri.authority().and_then(|authority| {
            Some((
                self.groups.load().serving(authority)?.clone(),
                authority.clone(),
            ))
        });
        Box::pin(async move {
            let Some((group, first)) = group else {
                return Ok(GroupStream::new(tcp.call(uri).await?, false, idle));
            };
            let err = match tcp.call(uri.clone()).await {
                Ok(io) => {
                    group.connected(&first);
                    return Ok(GroupStream::new(io, false, idle));
                }
                Err(err) => err,
            };
            group.failed(&first, &err.to_string());
            let Some(other) = group.choose_other_than(Some(&first)) else {
                return Err(err.into());
            };
            let mut parts = uri.into_parts();
            parts.authority = Some(other.clone());
            let retry = Uri::from_parts(parts)?;
            match tcp.call(retry).await {
                Ok(io) => {
                    info!(
                        "upstream group {}: {first} failed to connect ({err}); connected to {other} instead",
                        group.name
                    );
                    group.connected(&other);
                    Ok(GroupStream::new(io, true, idle))
                }
                Err(again) => {
                    group.failed(&other, &again.to_string());
                    Err(again.into())
                }
            }
        })
    }
}

/// Marks a connection that serves one request only (a retry's).
#[derive(Debug, Clone, Copy)]
pub struct SingleUse;

/// A connection to an upstream, which says whether the pool may keep it,
/// and closes itself when idle too long (if asked).
pub struct GroupStream {
    io: TokioIo<TcpStream>,
    single_use: bool,
    idle: Option<Idle>,
}

/// No byte either way for `limit`: the connection fails with `TimedOut`.
struct Idle {
    limit: Duration,
    last: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl GroupStream {
    fn new(io: TokioIo<TcpStream>, single_use: bool, idle: Option<Duration>) -> GroupStream {
        let idle = idle.map(|limit| Idle {
            limit,
            last: tokio::time::Instant::now(),
            timer: Box::pin(tokio::time::sleep(limit)),
        });
        GroupStream {
            io,
            single_use,
            idle,
        }
    }

    /// Bytes went through: the idle time starts again. (Only a clock read:
    /// the timer is moved when it fires.)
    fn touch(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.last = tokio::time::Instant::now();
        }
    }

    /// Whether the connection has been idle for its limit; if not, the
    /// timer is set for when it would be.
    fn idle_for_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = &mut self.idle else {
            return false;
        };
        // Bounded: each turn moves the timer to a deadline in the future.
        for _ in 0..3 {
            if idle.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = idle.last + idle.limit;
            if tokio::time::Instant::now() >= deadline {
                return true;
            }
            idle.timer.as_mut().reset(deadline);
        }
        false
    }
}

impl Connection for GroupStream {
    fn connected(&self) -> Connected {
        let connected = self.io.connected();
        if self.single_use {
            // hyper-util's own way to say "never reuse this connection"
            // (poison), and the kit's, for step 17's client
            // (`upstream_client`).
            let connected = connected.extra(SingleUse);
            connected.poison();
            return connected;
        }
        connected
    }
}

// The bytes go straight through; each one counts as activity.
impl hyper::rt::Read for GroupStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending if self.idle_for_too_long(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no byte either way for the tunnel's idle time",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.touch();
                ready
            }
        }
    }
}

impl hyper::rt::Write for GroupStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if written.is_ready() {
            self.touch();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if written.is_ready() {
            self.touch();
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(servers: &[&'static str]) -> Group {
        let servers = servers.iter().map(|s| Authority::from_static(s)).collect();
        Group::new("api".into(), servers, 2, Duration::from_secs(60))
    }

    #[test]
    fn takes_servers_in_turn() {
        let group = group(&["a:1", "b:1", "c:1"]);
        let chosen: Vec<String> = (0..6).map(|_| group.choose().to_string()).collect();
        assert_eq!(chosen, ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]);
    }

    #[test]
    fn skips_a_resting_server_then_takes_it_back() {
        let group = group(&["a:1", "b:1"]);
        let a = Authority::from_static("a:1");
        group.failed(&a, "refused");
        assert_eq!(group.choose().as_str(), "a:1", "one failure is not enough");
        group.failed(&a, "refused");
        let chosen: Vec<String> = (0..4).map(|_| group.choose().to_string()).collect();
        assert_eq!(chosen, ["b:1", "b:1", "b:1", "b:1"]);
        group.connected(&a);
        let chosen: Vec<String> = (0..2).map(|_| group.choose().to_string()).collect();
        assert!(chosen.contains(&"a:1".to_string()));
    }

    #[test]
    fn all_resting_still_answers() {
        let group = group(&["a:1"]);
        let a = Authority::from_static("a:1");
        group.failed(&a, "refused");
        group.failed(&a, "refused");
        assert_eq!(group.choose().as_str(), "a:1");
        assert_eq!(group.choose_other_than(Some(&a)), None);
    }
}
